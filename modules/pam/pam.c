/*
 * pam.c: the `pam` auth module: checks logins through a PAM service
 * (Linux-PAM), configured with these keys, all optional:
 *
 *   [auth system]
 *   module = pam
 *   service = gatehouse    ; the PAM service: /etc/pam.d/gatehouse
 *   account = yes          ; also run the account stage (pam_acct_mgmt)
 *   max_concurrent = 16    ; PAM conversations at once, across worker threads
 *   timeout = 10           ; seconds a request waits for a free slot
 *   helper_timeout = 30    ; seconds a helper has to answer one login
 *   helper_socket =        ; a socket of systemd's gatehouse-pam.socket
 *
 * PAM itself never runs in this process: each conversation runs in a
 * helper process (pam-helper.c), reached over a stream socket with the
 * frames of pam-proto.h.  A helper comes from the core (GhAuthHost's
 * helper_connect: started by gatehoused, as the configured user with the
 * groups only the helpers keep) or, with helper_socket, from systemd
 * (one helper per connection).  This file owns the keys, a counting
 * semaphore (a GMutex, a GCond and the number of conversations in
 * progress) and the idle helpers' sockets.
 *
 * Invariants:
 *  - A helper serves one conversation at a time: a socket is either idle
 *    in `idle` or held by exactly one verify(); there are never more
 *    sockets than max_concurrent.
 *  - `active` never exceeds `max_concurrent`; a request that cannot get a
 *    slot within `timeout` seconds answers TEMPFAIL without a helper.
 *  - A helper that is gone, does not answer within helper_timeout, or
 *    answers what is not a frame of pam-proto.h gives TEMPFAIL, never
 *    another verdict, and its socket is closed (the helper dies a second
 *    later, by its own alarm); the next request gets a new helper.
 *  - An idle socket that reads as closed or readable (a helper that died
 *    while idle) is closed before use, so a dead idle helper costs no
 *    login a TEMPFAIL.
 *  - The password goes into one stack buffer, wiped after the request is
 *    written; it is never logged: the helper withholds PAM messages that
 *    hold it, and its log lines go out here at debug level.
 */
#include "gh-build.h"

#define G_LOG_DOMAIN "gh-auth-pam"

#include "gh-auth-module.h"

#include "pam-proto.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SERVICE "gatehouse"
#define DEFAULT_MAX_CONCURRENT 16
#define DEFAULT_TIMEOUT 10
#define DEFAULT_HELPER_TIMEOUT 30
/* the helper's own limit is one second longer (below) */
#define MAX_HELPER_TIMEOUT (GH_PAM_MAX_LIMIT - 1)
#define MAX_MAX_CONCURRENT 1024
#define MAX_TIMEOUT 3600
#define MAX_SERVICE_LEN 128
#define SLOT_WARNING_INTERVAL_US (60 * G_USEC_PER_SEC)

typedef struct {
	char *service;
	gboolean account;
	guint max_concurrent;
	guint timeout;        /* seconds */
	guint helper_timeout; /* seconds */
	char *helper_socket;  /* NULL: helpers from the core */
	const GhAuthHost *host;

	GMutex lock; /* guards what follows */
	GCond freed; /* signalled whenever a slot is given back */
	guint active;
	gint64 last_slot_warning; /* monotonic time of the last "slots busy" warning */
	GArray *idle;             /* of int: sockets of helpers waiting for a request */
} PamState;

/* ------------------------------------------------------------ keys */

/* A PAM service is a file name in /etc/pam.d. */
static gboolean
valid_service(const char *s)
{
	gsize len = strlen(s);

	if (len == 0 || len > MAX_SERVICE_LEN || s[0] == '.' || s[0] == '-')
		return FALSE;
	for (const char *p = s; *p != '\0'; p++)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_' && *p != '.')
			return FALSE;
	return TRUE;
}

/* The key's value, stripped, or NULL when the key is absent.  (transfer full) */
static char *
get_value(const GhAuthHost *host,
	  GKeyFile *kf,
	  const char *group,
	  const char *key,
	  GError **error,
	  gboolean *bad)
{
	g_autoptr(GError) local = NULL;
	char *value;

	*bad = FALSE;
	if (!g_key_file_has_key(kf, group, key, NULL))
		return NULL;
	value = g_key_file_get_string(kf, group, key, &local);
	if (local != NULL) {
		host->config_error(host, error, group, key, "bad value: %s", local->message);
		g_free(value);
		*bad = TRUE;
		return NULL;
	}
	return g_strstrip(value);
}

/* Linux-PAM falls back to the rules of the service `other` when there is no
 * file for the service: say so, since that is rarely what the admin meant.
 * Not under pam_wrapper (the test suite's PAM), which reads its service
 * files from elsewhere. */
static void
check_service_file(const char *service)
{
	static const char *const dirs[] = {"/etc/pam.d", "/usr/lib/pam.d", NULL};

	if (g_strcmp0(g_getenv("PAM_WRAPPER"), "1") == 0)
		return;
	/* without /etc/pam.d, Linux-PAM reads /etc/pam.conf instead: too
	 * much to parse for a warning */
	if (!g_file_test("/etc/pam.d", G_FILE_TEST_IS_DIR))
		return;
	for (guint i = 0; dirs[i] != NULL; i++) {
		g_autofree char *path = g_build_filename(dirs[i], service, NULL);
		if (g_file_test(path, G_FILE_TEST_EXISTS))
			return;
	}
	g_warning("PAM service '%s': no file /etc/pam.d/%s; PAM will apply the rules of the "
		  "service 'other' instead",
		  service, service);
}

/* ------------------------------------------------------------ the module */

/* PAM says yes or no, never where to go. */
static gboolean
pam_may_route(gpointer state)
{
	(void)state;
	return FALSE;
}

static void
pam_deinit(gpointer state)
{
	PamState *st = state;

	if (st == NULL)
		return;
	for (guint i = 0; st->idle != NULL && i < st->idle->len; i++)
		close(g_array_index(st->idle, int, i));
	if (st->idle != NULL)
		g_array_free(st->idle, TRUE);
	g_free(st->service);
	g_free(st->helper_socket);
	g_mutex_clear(&st->lock);
	g_cond_clear(&st->freed);
	g_free(st);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PamState, pam_deinit)

static gpointer
pam_init(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	g_autoptr(PamState) st = g_new0(PamState, 1);
	g_autofree char *service = NULL;
	g_autofree char *account = NULL;
	g_autofree char *max_concurrent = NULL;
	g_autofree char *timeout = NULL;
	g_autofree char *helper_timeout = NULL;
	g_autofree char *helper_socket = NULL;
	gboolean bad;

	g_mutex_init(&st->lock);
	g_cond_init(&st->freed);
	st->idle = g_array_new(FALSE, FALSE, sizeof(int));
	st->host = host;
	st->account = TRUE;
	st->max_concurrent = DEFAULT_MAX_CONCURRENT;
	st->timeout = DEFAULT_TIMEOUT;
	st->helper_timeout = DEFAULT_HELPER_TIMEOUT;

	service = get_value(host, kf, group, "service", error, &bad);
	if (bad)
		return NULL;
	if (service != NULL && *service != '\0' && !valid_service(service)) {
		host->config_error(host, error, group, "service",
				   "bad PAM service name '%s': a file name in /etc/pam.d is "
				   "needed (letters, digits, '-', '_', '.')",
				   service);
		return NULL;
	}
	st->service = g_strdup(service != NULL && *service != '\0' ? service : DEFAULT_SERVICE);

	account = get_value(host, kf, group, "account", error, &bad);
	if (bad)
		return NULL;
	if (account != NULL && !gh_auth_parse_bool(account, &st->account)) {
		host->config_error(host, error, group, "account",
				   "bad value '%s': expected yes or no", account);
		return NULL;
	}

	max_concurrent = get_value(host, kf, group, "max_concurrent", error, &bad);
	if (bad)
		return NULL;
	if (max_concurrent != NULL &&
	    !gh_auth_parse_uint(max_concurrent, 1, MAX_MAX_CONCURRENT, &st->max_concurrent)) {
		host->config_error(host, error, group, "max_concurrent",
				   "bad value '%s': expected a whole number from 1 to %u",
				   max_concurrent, MAX_MAX_CONCURRENT);
		return NULL;
	}

	timeout = get_value(host, kf, group, "timeout", error, &bad);
	if (bad)
		return NULL;
	if (timeout != NULL && !gh_auth_parse_uint(timeout, 0, MAX_TIMEOUT, &st->timeout)) {
		host->config_error(host, error, group, "timeout",
				   "bad value '%s': expected a whole number of seconds from 0 "
				   "to %u",
				   timeout, MAX_TIMEOUT);
		return NULL;
	}

	helper_timeout = get_value(host, kf, group, "helper_timeout", error, &bad);
	if (bad)
		return NULL;
	if (helper_timeout != NULL &&
	    !gh_auth_parse_uint(helper_timeout, 1, MAX_HELPER_TIMEOUT, &st->helper_timeout)) {
		host->config_error(host, error, group, "helper_timeout",
				   "bad value '%s': expected a whole number of seconds from 1 "
				   "to %u",
				   helper_timeout, MAX_HELPER_TIMEOUT);
		return NULL;
	}

	helper_socket = get_value(host, kf, group, "helper_socket", error, &bad);
	if (bad)
		return NULL;
	if (helper_socket != NULL && *helper_socket != '\0') {
		if (!g_path_is_absolute(helper_socket) ||
		    strlen(helper_socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
			host->config_error(host, error, group, "helper_socket",
					   "bad value '%s': expected the absolute path of a Unix "
					   "socket, shorter than 108 bytes",
					   helper_socket);
			return NULL;
		}
		st->helper_socket = g_steal_pointer(&helper_socket);
	} else if (!GH_AUTH_HOST_HAS(host, helper_connect)) {
		host->config_error(host, error, group, NULL,
				   "this gatehoused cannot start PAM helpers: set helper_socket");
		return NULL;
	}

	check_service_file(st->service);
	g_debug("PAM service '%s': account stage %s, at most %u conversations at once, "
		"%u s wait for a slot, %u s for a helper's answer, helpers %s%s",
		st->service, st->account ? "on" : "off", st->max_concurrent, st->timeout,
		st->helper_timeout, st->helper_socket != NULL ? "at " : "started by gatehouse",
		st->helper_socket != NULL ? st->helper_socket : "");
	return g_steal_pointer(&st);
}

/* ------------------------------------------------------------ slots */

/* Wait up to `timeout` seconds for one of the max_concurrent slots. */
static gboolean
slot_acquire(PamState *st, const GhAuthRequest *req)
{
	gint64 start = g_get_monotonic_time();
	gint64 deadline = start + (gint64)st->timeout * G_USEC_PER_SEC;
	gboolean waited = FALSE;
	gboolean got = TRUE;
	gboolean warn = FALSE;

	g_mutex_lock(&st->lock);
	while (st->active >= st->max_concurrent) {
		waited = TRUE;
		if (!g_cond_wait_until(&st->freed, &st->lock, deadline) &&
		    st->active >= st->max_concurrent) {
			got = FALSE;
			break;
		}
	}
	if (got) {
		st->active++;
	} else if (st->last_slot_warning == 0 ||
		   g_get_monotonic_time() - st->last_slot_warning >= SLOT_WARNING_INTERVAL_US) {
		st->last_slot_warning = g_get_monotonic_time();
		warn = TRUE;
	}
	g_mutex_unlock(&st->lock);

	if (warn)
		g_warning("PAM service '%s': all %u conversation slots stayed busy for %u s; "
			  "answering 'try later' (raise max_concurrent or timeout if PAM is "
			  "just slow; logged at most once a minute)",
			  st->service, st->max_concurrent, st->timeout);
	else if (waited && got)
		g_debug("session %s: waited %.1f ms for a PAM slot", req->session_id,
			(g_get_monotonic_time() - start) / 1000.0);
	return got;
}

/* ------------------------------------------------------------ helpers */

/* An idle helper's socket that still looks alive, or -1.  A helper waiting
 * for a request sends nothing: a socket that reads as anything (EOF, an
 * error, stray bytes) belongs to a helper that is gone. */
static int
take_idle(PamState *st)
{
	for (;;) {
		struct pollfd p = {.events = POLLIN};
		int fd = -1;

		g_mutex_lock(&st->lock);
		if (st->idle->len > 0) {
			fd = g_array_index(st->idle, int, st->idle->len - 1);
			g_array_set_size(st->idle, st->idle->len - 1);
		}
		g_mutex_unlock(&st->lock);
		if (fd < 0)
			return -1;
		p.fd = fd;
		if (poll(&p, 1, 0) == 0)
			return fd;
		close(fd);
	}
}

/* A socket to a new helper: systemd's (helper_socket) or the core's. */
static int
connect_helper(PamState *st, GError **error)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (st->helper_socket == NULL)
		return st->host->helper_connect(st->host, error);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "socket: %s",
			    g_strerror(errno));
		return -1;
	}
	g_strlcpy(sa.sun_path, st->helper_socket, sizeof sa.sun_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		int e = errno;
		close(fd);
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e),
			    "cannot connect to helper_socket %s: %s (is gatehouse-pam.socket "
			    "listening?)",
			    st->helper_socket, g_strerror(e));
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------ verify */

/* Give the slot back, and the helper's socket to the idle ones (fd >= 0). */
static void
slot_release(PamState *st, int fd)
{
	g_mutex_lock(&st->lock);
	st->active--;
	if (fd >= 0)
		g_array_append_val(st->idle, fd);
	g_cond_signal(&st->freed);
	g_mutex_unlock(&st->lock);
}

/* One request to the helper on fd, its answer in `frame` (and *res
 * pointing into it); NULL, or what went wrong for the log. */
static const char *
ask_helper(PamState *st, int fd, const GhAuthRequest *req, guint8 *frame, GhPamResponse *res)
{
	g_autofree char *tty = NULL;
	gint64 deadline = g_get_monotonic_time() + (gint64)st->helper_timeout * G_USEC_PER_SEC;
	GhPamRequest pr = {
	    .service = st->service,
	    .account = st->account,
	    .user = req->user,
	    .password = req->password,
	    .rhost = req->remote_addr != NULL ? req->remote_addr : "",
	    .session_id = req->session_id != NULL ? req->session_id : "",
	    /* a second after we give up: the helper never dies while its
	     * answer could still count, so a late death is never taken for
	     * a crash */
	    .limit = st->helper_timeout + 1,
	};
	const char *why;
	GhPamIo io;
	gsize len;
	gsize n;

	if (req->listener != NULL)
		/* for pam_access and pam_time rules; no session is ever opened */
		tty = g_strconcat("gatehouse/", req->listener, NULL);
	pr.tty = tty != NULL ? tty : "";
	n = gh_pam_request_encode(&pr, frame, GH_PAM_HEADER + GH_PAM_FRAME_MAX);
	if (n == 0)
		return "could not be asked: the request does not fit in a frame";
	io = gh_pam_write_all(fd, frame, n, deadline);
	explicit_bzero(frame, n);
	if (io == GH_PAM_IO_OK)
		io = gh_pam_read_frame(fd, frame, &len, deadline);
	switch (io) {
	case GH_PAM_IO_OK:
		break;
	case GH_PAM_IO_TIMEOUT:
		return "did not answer in time (helper_timeout)";
	case GH_PAM_IO_EOF:
		return "died before it answered";
	default:
		return "broke the connection";
	}
	if (!gh_pam_response_decode((const char *)frame, len, res, &why))
		return "answered what is not a response";
	return NULL;
}

static GhAuthVerdict
pam_verify(gpointer state, const GhAuthRequest *req, GhAuthResult *res)
{
	PamState *st = state;
	guint8 frame[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	g_autoptr(GError) error = NULL;
	GhPamResponse answer;
	const char *failure;
	int fd;

	/* PAM_DISALLOW_NULL_AUTHTOK is a hint some modules ignore; an empty
	 * password never logs in, whatever the stack says */
	if (req->password_len == 0 || req->password[0] == '\0') {
		res->reason = g_strdup("empty password");
		return GH_AUTH_WRONG_PASSWORD;
	}
	if (!slot_acquire(st, req)) {
		res->reason = g_strdup_printf(
		    "too many PAM conversations in progress (max_concurrent = %u, waited %u s)",
		    st->max_concurrent, st->timeout);
		return GH_AUTH_TEMPFAIL;
	}
	fd = take_idle(st);
	if (fd < 0)
		fd = connect_helper(st, &error);
	if (fd < 0) {
		slot_release(st, -1);
		g_message("session %s: PAM service '%s': no helper: %s", req->session_id,
			  st->service, error->message);
		res->reason = g_strdup_printf("no PAM helper (%s)", error->message);
		return GH_AUTH_TEMPFAIL;
	}

	failure = ask_helper(st, fd, req, frame, &answer);
	if (failure != NULL) {
		/* the helper dies at the same limit if it has not already */
		close(fd);
		slot_release(st, -1);
		g_message("session %s: PAM service '%s': the helper %s; answering 'try later'",
			  req->session_id, st->service, failure);
		res->reason = g_strdup_printf("the PAM helper %s", failure);
		return GH_AUTH_TEMPFAIL;
	}
	for (guint i = 0; i < answer.n_lines; i++)
		g_debug("session %s: %s", req->session_id, answer.lines[i]);
	if (answer.verdict != GH_AUTH_OK)
		res->reason = g_strdup(answer.reason);
	if (answer.verdict == GH_AUTH_TEMPFAIL)
		g_message("session %s: PAM service '%s': %s", req->session_id, st->service,
			  answer.reason);
	slot_release(st, fd);
	return (GhAuthVerdict)answer.verdict;
}

static const char *const pam_keys[] = {
    "service", "account", "max_concurrent", "timeout", "helper_timeout", "helper_socket", NULL};

G_MODULE_EXPORT const GhAuthModule gh_auth_module = {
    .abi_version = GH_AUTH_MODULE_ABI,
    .struct_size = sizeof(GhAuthModule),
    .name = "pam",
    .flags = GH_AUTH_MODULE_THREAD_SAFE,
    .keys = pam_keys,
    .init = pam_init,
    .verify = pam_verify,
    .deinit = pam_deinit,
    .may_route = pam_may_route,
};
