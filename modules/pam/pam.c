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
 *
 * Owns the parsed keys and a counting semaphore (a GMutex, a GCond and the
 * number of conversations in progress) that bounds how many PAM
 * conversations run at once: some PAM modules are slow, leak or are not
 * thread-safe, and each conversation holds one of the core's worker threads.
 *
 * Invariants:
 *  - One pam_handle_t per request, created and ended inside verify() on the
 *    calling worker thread; handles are never shared or kept.
 *  - `active` never exceeds `max_concurrent`; a request that cannot get a
 *    slot within `timeout` seconds answers TEMPFAIL without touching PAM.
 *  - The conversation answers only PAM_PROMPT_ECHO_OFF, with a malloc()ed
 *    copy of the password (PAM frees the answers); on any failure it wipes
 *    and frees what it made, so PAM never sees half an answer.  Every other
 *    prompt is refused with PAM_CONV_ERR.
 *  - The password is never logged: messages PAM modules send are logged at
 *    debug level only, and withheld if they contain the password.
 *  - PAM's own failure delay (pam_unix asks for about 2 s) is taken over by
 *    a PAM_FAIL_DELAY function that does nothing: the core has its own
 *    penalty timer, and a sleeping worker thread would hold a slot.
 */
#include "gh-build.h"

#define G_LOG_DOMAIN "gh-auth-pam"

#include "gh-auth-module.h"

#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_SERVICE "gatehouse"
#define DEFAULT_MAX_CONCURRENT 16
#define DEFAULT_TIMEOUT 10
#define MAX_MAX_CONCURRENT 1024
#define MAX_TIMEOUT 3600
#define MAX_SERVICE_LEN 128
#define MAX_LOGGED_MESSAGE 200
#define SLOT_WARNING_INTERVAL_US (60 * G_USEC_PER_SEC)

typedef struct {
	char *service;
	gboolean account;
	guint max_concurrent;
	guint timeout; /* seconds */

	GMutex lock; /* guards `active` and `last_slot_warning` */
	GCond freed; /* signalled whenever a slot is given back */
	guint active;
	gint64 last_slot_warning; /* monotonic time of the last "slots busy" warning */
} PamState;

/* What the conversation function needs: the request (for the password and
 * the session id to log with). */
typedef struct {
	const GhAuthRequest *req;
	guint prompts; /* password prompts answered */
} ConvData;

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

static void
pam_deinit(gpointer state)
{
	PamState *st = state;

	if (st == NULL)
		return;
	g_free(st->service);
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
	gboolean bad;

	g_mutex_init(&st->lock);
	g_cond_init(&st->freed);
	st->account = TRUE;
	st->max_concurrent = DEFAULT_MAX_CONCURRENT;
	st->timeout = DEFAULT_TIMEOUT;

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

	check_service_file(st->service);
	g_debug("PAM service '%s': account stage %s, at most %u conversations at once, "
		"%u s wait for a slot",
		st->service, st->account ? "on" : "off", st->max_concurrent, st->timeout);
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

static void
slot_release(PamState *st)
{
	g_mutex_lock(&st->lock);
	st->active--;
	g_cond_signal(&st->freed);
	g_mutex_unlock(&st->lock);
}

/* ------------------------------------------------------------ conversation */

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

/* Log what a PAM module said, escaped and cut short, unless it holds the
 * password. */
static void
log_pam_message(const ConvData *cd, const char *kind, const char *text)
{
	const GhAuthRequest *req = cd->req;
	g_autofree char *escaped = NULL;

	if (text == NULL)
		text = "";
	if (req->password_len > 0 && strstr(text, req->password) != NULL) {
		g_debug("session %s: PAM %s withheld from the log: it holds the password",
			req->session_id, kind);
		return;
	}
	escaped = g_strescape(text, NULL);
	if (strlen(escaped) > MAX_LOGGED_MESSAGE)
		strcpy(escaped + MAX_LOGGED_MESSAGE - 3, "...");
	g_debug("session %s: PAM %s: \"%s\"", req->session_id, kind, escaped);
}

static int
conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *appdata)
{
	ConvData *cd = appdata;
	const GhAuthRequest *req = cd->req;
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
			r[i].resp = malloc(req->password_len + 1);
			if (r[i].resp == NULL) {
				response_wipe_free(r, n);
				return PAM_BUF_ERR;
			}
			memcpy(r[i].resp, req->password, req->password_len);
			r[i].resp[req->password_len] = '\0';
			cd->prompts++;
			break;
		case PAM_ERROR_MSG:
			log_pam_message(cd, "error message", m->msg);
			break;
		case PAM_TEXT_INFO:
			log_pam_message(cd, "info message", m->msg);
			break;
		default:
			/* a visible prompt (a user name, an OTP code), a binary
			 * prompt: nothing a mail client's login can answer */
			log_pam_message(cd,
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

/* The PAM_FAIL_DELAY item: PAM calls it instead of sleeping (appdata is
 * the conversation's).  The debug line lets an admin see that a module
 * asked for a delay, and which one, though nobody sleeps it. */
static void
no_fail_delay(int retval, unsigned usec_delay, void *appdata)
{
	const ConvData *cd = appdata;

	if (retval != PAM_SUCCESS && usec_delay > 0)
		g_debug("session %s: PAM asked for a failure delay of %u ms: not slept, "
			"failure_delay applies instead",
			cd->req->session_id, usec_delay / 1000);
}

/* ------------------------------------------------------------ verify */

/* Map a PAM result to a verdict, with the reason for the log. */
static GhAuthVerdict
map_result(pam_handle_t *ph, const char *stage, int rc, char **reason)
{
	const char *why;
	GhAuthVerdict v;

	switch (rc) {
	case PAM_SUCCESS:
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
		/* Linux-PAM's name for what other PAMs call PAM_AUTHTOKEN_REQD:
		 * the password is right but must be changed first */
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

static GhAuthVerdict
pam_verify(gpointer state, const GhAuthRequest *req, GhAuthResult *res)
{
	PamState *st = state;
	ConvData cd = {.req = req};
	struct pam_conv conv = {.conv = conversation, .appdata_ptr = &cd};
	union {
		void (*fn)(int, unsigned, void *);
		const void *item;
	} delay = {.fn = no_fail_delay};
	const int flags = PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK;
	g_autofree char *tty = NULL;
	pam_handle_t *ph = NULL;
	const char *stage;
	GhAuthVerdict v;
	gint64 start;
	int rc;

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

	start = g_get_monotonic_time();
	stage = "pam_start";
	rc = pam_start(st->service, req->user, &conv, &ph);
	if (rc == PAM_SUCCESS && req->remote_addr != NULL) {
		stage = "pam_set_item(PAM_RHOST)";
		rc = pam_set_item(ph, PAM_RHOST, req->remote_addr);
	}
	if (rc == PAM_SUCCESS && req->listener != NULL) {
		/* for pam_access and pam_time rules; no session is ever opened */
		tty = g_strconcat("gatehouse/", req->listener, NULL);
		stage = "pam_set_item(PAM_TTY)";
		rc = pam_set_item(ph, PAM_TTY, tty);
	}
	if (rc == PAM_SUCCESS) {
		stage = "pam_set_item(PAM_FAIL_DELAY)";
		rc = pam_set_item(ph, PAM_FAIL_DELAY, delay.item);
	}
	if (rc == PAM_SUCCESS) {
		stage = "pam_authenticate";
		rc = pam_authenticate(ph, flags);
	}
	if (rc == PAM_SUCCESS && st->account) {
		stage = "pam_acct_mgmt";
		rc = pam_acct_mgmt(ph, flags);
	}
	v = map_result(ph, stage, rc, &res->reason);
	if (v == GH_AUTH_OK && cd.prompts == 0)
		/* not an error (pam_permit asks nothing), but worth a look */
		g_debug("session %s: PAM service '%s' accepted the login without asking for "
			"the password",
			req->session_id, st->service);
	else if (cd.prompts > 1)
		/* two modules without use_first_pass, or a second factor that
		 * the password cannot answer */
		g_debug("session %s: PAM service '%s' asked for the password %u times",
			req->session_id, st->service, cd.prompts);
	if (ph != NULL)
		pam_end(ph, rc);
	slot_release(st);

	if (v == GH_AUTH_TEMPFAIL)
		g_message("session %s: PAM service '%s': %s: %s", req->session_id, st->service,
			  stage, pam_strerror(NULL, rc));
	else
		g_debug("session %s: PAM service '%s': %s: %s (%.1f ms)", req->session_id,
			st->service, stage, pam_strerror(NULL, rc),
			(g_get_monotonic_time() - start) / 1000.0);
	return v;
}

static const char *const pam_keys[] = {"service", "account", "max_concurrent", "timeout", NULL};

G_MODULE_EXPORT const GhAuthModule gh_auth_module = {
    .abi_version = GH_AUTH_MODULE_ABI,
    .struct_size = sizeof(GhAuthModule),
    .name = "pam",
    .flags = GH_AUTH_MODULE_THREAD_SAFE,
    .keys = pam_keys,
    .init = pam_init,
    .verify = pam_verify,
    .deinit = pam_deinit,
};
