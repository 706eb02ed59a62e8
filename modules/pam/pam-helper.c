/*
 * pam-helper.c: the process that runs PAM for the `pam` module, so that
 * gatehoused itself never calls into PAM, never forks per login (pam_exec,
 * pam_unix's unix_chkpwd) and never needs the right to read /etc/shadow.
 * Installed as `pam-helper` in the module directory, beside pam.so.
 *
 *   pam-helper             serve the connected stream socket on fd 3:
 *                          started by gatehoused or gatehousectl (one
 *                          socket pair per helper), or by systemd's
 *                          gatehouse-pam.socket (Accept=yes: one helper
 *                          per connection)
 *   pam-helper --spawner   fd 3 is a SOCK_SEQPACKET channel from
 *                          gatehoused: for each message on it, fork a
 *                          helper and send back its socket (SCM_RIGHTS);
 *                          gatehoused starts this before it gives up root,
 *                          as the configured user with that user's groups
 *                          (shadow, for pam_unix), which gatehoused drops
 *
 * A helper answers requests one at a time (pam-proto.h) until the other
 * end closes; the pool and the limits are the module's (pam.c).
 *
 * Invariants:
 *  - One pam_handle_t per request, ended before the answer is sent.
 *  - A request that takes longer than its LIMIT kills the helper (alarm,
 *    default action): the module has answered "try later" by then and
 *    drops the socket; no verdict is ever sent late.
 *  - The password is wiped from every buffer once the answer is sent, and
 *    never written anywhere: the helper logs nothing itself (its log lines
 *    go back to gatehoused in the answer), and a message from a PAM module
 *    that holds the password is withheld.
 *  - Only a peer with the helper's own uid, or root, is served.
 *  - The spawner runs no PAM and holds no password; it exits when
 *    gatehoused closes the channel, and its children are reaped by the
 *    kernel (SIGCHLD ignored), reset to the default in each helper so that
 *    pam_exec can wait for its own children.
 */
#include "gh-build.h"

#include "gh-auth-module.h"
#include "pam-proto.h"

#include <errno.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHANNEL_FD 3
#define HELPER_NICE 10
#define HELPER_MAX_FILES 1024
#define MAX_LOGGED_MESSAGE 200
#define ANSWER_WRITE_US (10 * G_USEC_PER_SEC)

static void G_GNUC_PRINTF(1, 2) die(const char *format, ...)
{
	va_list ap;

	fprintf(stderr, "gatehouse pam-helper[%d]: ", (int)getpid());
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(1);
}

/* ------------------------------------------------------------ one request */

typedef struct {
	const GhPamRequest *req;
	guint prompts; /* password prompts answered */
	GPtrArray *lines;
} Conv;

static void G_GNUC_PRINTF(2, 3) add_line(Conv *cv, const char *format, ...)
{
	va_list ap;

	if (cv->lines->len >= GH_PAM_MAX_LINES)
		return;
	va_start(ap, format);
	g_ptr_array_add(cv->lines, g_strdup_vprintf(format, ap));
	va_end(ap);
}

static void
response_wipe_free(struct pam_response *r, int n)
{
	for (int i = 0; i < n; i++) {
		if (r[i].resp != NULL) {
			explicit_bzero(r[i].resp, strlen(r[i].resp));
			free(r[i].resp);
		}
	}
	free(r);
}

/* What a PAM module said, escaped and cut short, unless it holds the
 * password. */
static void
note_message(Conv *cv, const char *kind, const char *text)
{
	g_autofree char *escaped = NULL;

	if (text == NULL)
		text = "";
	if (cv->req->password[0] != '\0' && strstr(text, cv->req->password) != NULL) {
		add_line(cv, "PAM %s withheld from the log: it holds the password", kind);
		return;
	}
	escaped = g_strescape(text, NULL);
	if (strlen(escaped) > MAX_LOGGED_MESSAGE)
		strcpy(escaped + MAX_LOGGED_MESSAGE - 3, "...");
	add_line(cv, "PAM %s: \"%s\"", kind, escaped);
}

static int
conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *appdata)
{
	Conv *cv = appdata;
	gsize len = strlen(cv->req->password);
	struct pam_response *r;

	if (n <= 0 || n > PAM_MAX_NUM_MSG || msg == NULL || resp == NULL)
		return PAM_CONV_ERR;
	/* calloc: PAM frees the array and the answers with free() */
	r = calloc((size_t)n, sizeof *r);
	if (r == NULL)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		const struct pam_message *m = msg[i];

		switch (m->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
			r[i].resp = malloc(len + 1);
			if (r[i].resp == NULL) {
				response_wipe_free(r, n);
				return PAM_BUF_ERR;
			}
			memcpy(r[i].resp, cv->req->password, len + 1);
			cv->prompts++;
			break;
		case PAM_ERROR_MSG:
			note_message(cv, "error message", m->msg);
			break;
		case PAM_TEXT_INFO:
			note_message(cv, "info message", m->msg);
			break;
		default:
			/* a visible prompt (a user name, an OTP code), a binary
			 * prompt: nothing a mail client's login can answer */
			note_message(cv,
				     m->msg_style == PAM_PROMPT_ECHO_ON
					 ? "prompt with echo refused"
					 : "prompt of unknown style refused",
				     m->msg);
			response_wipe_free(r, n);
			return PAM_CONV_ERR;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
}

/* The PAM_FAIL_DELAY item: PAM calls it instead of sleeping.  The core has
 * its own failure delay; a sleeping helper would hold a slot. */
static void
no_fail_delay(int retval, unsigned usec_delay, void *appdata)
{
	Conv *cv = appdata;

	if (retval != PAM_SUCCESS && usec_delay > 0)
		add_line(cv,
			 "PAM asked for a failure delay of %u ms: not slept, failure_delay "
			 "applies instead",
			 usec_delay / 1000);
}

/* A PAM result as a verdict, with the reason for the log. */
static GhAuthVerdict
map_result(pam_handle_t *ph, const char *stage, int rc, char **reason)
{
	const char *why;
	GhAuthVerdict v;

	switch (rc) {
	case PAM_SUCCESS:
		*reason = g_strdup("");
		return GH_AUTH_OK;
	case PAM_USER_UNKNOWN:
		v = GH_AUTH_UNKNOWN_USER;
		why = "unknown user";
		break;
	case PAM_AUTH_ERR:
	case PAM_MAXTRIES:
		v = GH_AUTH_WRONG_PASSWORD;
		why = "wrong password";
		break;
	case PAM_PERM_DENIED:
		v = GH_AUTH_WRONG_PASSWORD;
		why = "permission denied";
		break;
	case PAM_ACCT_EXPIRED:
		v = GH_AUTH_WRONG_PASSWORD;
		why = "account expired";
		break;
	case PAM_NEW_AUTHTOK_REQD:
	case PAM_AUTHTOK_EXPIRED:
		/* the password is right but must be changed first */
		v = GH_AUTH_WRONG_PASSWORD;
		why = "password expired";
		break;
	default:
		/* PAM_AUTHINFO_UNAVAIL, PAM_SYSTEM_ERR, PAM_BUF_ERR,
		 * PAM_CONV_ERR, PAM_ABORT, ...: the admin's problem, or a
		 * passing one; the client should try again later */
		v = GH_AUTH_TEMPFAIL;
		why = "PAM failure";
		break;
	}
	*reason = g_strdup_printf("%s (%s: %s)", why, stage, pam_strerror(ph, rc));
	return v;
}

/* Run one request through PAM into *res, whose strings are *reason and
 * the log lines added to `lines` (the caller frees both once the answer
 * is sent). */
static void
run_pam(const GhPamRequest *req, GhPamResponse *res, GPtrArray *lines, char **reason)
{
	Conv cv = {.req = req, .lines = lines};
	struct pam_conv conv = {.conv = conversation, .appdata_ptr = &cv};
	union {
		void (*fn)(int, unsigned, void *);
		const void *item;
	} delay = {.fn = no_fail_delay};
	const int flags = PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK;
	pam_handle_t *ph = NULL;
	const char *stage;
	gint64 start = g_get_monotonic_time();
	int rc;

	stage = "pam_start";
	rc = pam_start(req->service, req->user, &conv, &ph);
	if (rc == PAM_SUCCESS && req->rhost[0] != '\0') {
		stage = "pam_set_item(PAM_RHOST)";
		rc = pam_set_item(ph, PAM_RHOST, req->rhost);
	}
	if (rc == PAM_SUCCESS && req->tty[0] != '\0') {
		/* for pam_access and pam_time rules; no session is ever opened */
		stage = "pam_set_item(PAM_TTY)";
		rc = pam_set_item(ph, PAM_TTY, req->tty);
	}
	if (rc == PAM_SUCCESS) {
		stage = "pam_set_item(PAM_FAIL_DELAY)";
		rc = pam_set_item(ph, PAM_FAIL_DELAY, delay.item);
	}
	if (rc == PAM_SUCCESS) {
		stage = "pam_authenticate";
		rc = pam_authenticate(ph, flags);
	}
	if (rc == PAM_SUCCESS && req->account) {
		stage = "pam_acct_mgmt";
		rc = pam_acct_mgmt(ph, flags);
	}
	res->verdict = map_result(ph, stage, rc, reason);
	res->reason = *reason;
	if (res->verdict == GH_AUTH_OK && cv.prompts == 0)
		/* not an error (pam_permit asks nothing), but worth a look */
		add_line(&cv, "PAM service '%s' accepted the login without asking for the password",
			 req->service);
	else if (cv.prompts > 1)
		/* two modules without use_first_pass, or a second factor that
		 * the password cannot answer */
		add_line(&cv, "PAM service '%s' asked for the password %u times", req->service,
			 cv.prompts);
	add_line(&cv, "PAM service '%s': %s: %s (%.1f ms, helper %d)", req->service, stage,
		 pam_strerror(ph, rc), (g_get_monotonic_time() - start) / 1000.0, (int)getpid());
	if (ph != NULL)
		pam_end(ph, rc);
}

/* ------------------------------------------------------------ serving */

static void
check_peer(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof cred;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		die("fd %d is not a Unix socket (%s): run me from gatehoused or "
		    "gatehouse-pam.socket",
		    fd, g_strerror(errno));
	if (cred.uid != 0 && cred.uid != getuid())
		die("refusing a peer with uid %u (not root, not my uid %u)", (guint)cred.uid,
		    (guint)getuid());
}

/* Serve requests on fd until gatehoused lets go.  `forked`: a child of the
 * spawner, which shares what the spawner's libraries set up at start (a
 * preloaded pam_wrapper's directory, say) and so leaves with _exit(). */
static G_GNUC_NORETURN void
serve(int fd, gboolean forked)
{
	/* static: 32 KiB off a small stack, and one request at a time */
	static guint8 in[GH_PAM_FRAME_MAX];
	static guint8 out[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	int type = 0;
	socklen_t tlen = sizeof type;

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM)
		die("fd %d is not a stream socket: run me from gatehoused or gatehouse-pam.socket",
		    fd);
	{
		int listening = 0;
		socklen_t llen = sizeof listening;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) == 0 && listening)
			die("fd %d is a listening socket: the socket unit needs Accept=yes", fd);
	}
	check_peer(fd);

	for (;;) {
		g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
		g_autofree char *reason = NULL;
		GhPamRequest req;
		GhPamResponse res = {0};
		const char *why;
		gsize len = 0;
		gsize n;

		switch (gh_pam_read_frame(fd, in, &len, 0)) {
		case GH_PAM_IO_OK:
			break;
		case GH_PAM_IO_EOF:
			/* gatehoused let go of this helper */
			if (forked)
				_exit(0);
			exit(0);
		default:
			die("reading a request: %s", g_strerror(errno));
		}
		if (!gh_pam_request_decode((const char *)in, len, &req, &why)) {
			explicit_bzero(in, sizeof in);
			die("bad request (%s)", why);
		}
		alarm(req.limit);
		run_pam(&req, &res, lines, &reason);
		res.n_lines = MIN(lines->len, (guint)GH_PAM_MAX_LINES);
		for (guint i = 0; i < res.n_lines; i++)
			res.lines[i] = g_ptr_array_index(lines, i);
		n = gh_pam_response_encode(&res, out, sizeof out);
		explicit_bzero(in, len);
		if (n == 0)
			die("the answer does not fit in a frame");
		if (gh_pam_write_all(fd, out, n, g_get_monotonic_time() + ANSWER_WRITE_US) !=
		    GH_PAM_IO_OK)
			_exit(0); /* gatehoused gave up on the request */
		alarm(0);
	}
}

/* ------------------------------------------------------------ spawning */

static G_GNUC_NORETURN void
spawner(int channel)
{
	int type = 0;
	socklen_t tlen = sizeof type;

	if (getsockopt(channel, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_SEQPACKET)
		die("--spawner: fd %d is not a SOCK_SEQPACKET socket", channel);
	signal(SIGCHLD, SIG_IGN);

	for (;;) {
		char byte;
		char ok = 'y';
		int sv[2];
		ssize_t r = recv(channel, &byte, 1, 0);
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} control;
		struct iovec iov = {.iov_base = &ok, .iov_len = 1};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		pid_t pid;

		if (r == 0)
			exit(0); /* gatehoused is gone */
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("--spawner: reading the channel: %s", g_strerror(errno));
		}
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
			ok = 'n';
			(void)send(channel, &ok, 1, MSG_NOSIGNAL);
			continue;
		}
		pid = fork();
		if (pid == 0) {
			close(channel);
			close(sv[0]);
			signal(SIGCHLD, SIG_DFL);
			serve(sv[1], TRUE);
		}
		close(sv[1]);
		if (pid < 0) {
			ok = 'n';
			(void)send(channel, &ok, 1, MSG_NOSIGNAL);
			close(sv[0]);
			continue;
		}
		memset(&control, 0, sizeof control);
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof control.buf;
		{
			struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &sv[0], sizeof(int));
		}
		if (sendmsg(channel, &msg, MSG_NOSIGNAL) < 0 && errno != EINTR)
			die("--spawner: answering on the channel: %s", g_strerror(errno));
		close(sv[0]);
	}
}

/* Make room for gatehoused: what a helper does (crypt, the children of
 * pam_exec) runs below the I/O threads' priority, as the auth threads do;
 * and a child of pam_exec, which closes every descriptor up to the limit
 * before it execs, has 1024 to close rather than gatehoused's tens of
 * thousands.  Best effort: a seccomp filter without @resources (the
 * unit) refuses both, and the unit sets Nice= and LimitNOFILE= instead. */
static void
step_aside(void)
{
	struct rlimit rl;

	errno = 0;
	if (getpriority(PRIO_PROCESS, 0) < HELPER_NICE && errno == 0)
		(void)setpriority(PRIO_PROCESS, 0, HELPER_NICE);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > HELPER_MAX_FILES) {
		rl.rlim_cur = HELPER_MAX_FILES;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
main(int argc, char **argv)
{
	/* it holds passwords: no core dumps, no ptrace by its own user */
	(void)prctl(PR_SET_DUMPABLE, 0);
	step_aside();

	if (argc == 2 && strcmp(argv[1], "--spawner") == 0)
		spawner(CHANNEL_FD);
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("gatehouse pam-helper %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (argc != 1) {
		fprintf(stderr,
			"usage: %s [--spawner]\n"
			"Runs PAM for gatehoused's pam module, on fd 3; not for use "
			"by hand (see gatehouse.conf(5), \"Module pam\").\n",
			argv[0]);
		return 64;
	}
	serve(CHANNEL_FD, FALSE);
}
