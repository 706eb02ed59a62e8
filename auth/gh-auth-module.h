/*
 * gh-auth-module.h: the ABI between gatehouse's authentication core and its
 * loadable modules (file, pam, ldap, and third-party ones).
 *
 * This is the only gatehouse header a module includes.  A module is a shared
 * object that exports one symbol, `gh_auth_module`, a GhAuthModule whose first
 * two fields (abi_version, struct_size) never move, so that the core can refuse
 * a module built against another ABI before it touches anything else.
 *
 * Threads: init, refresh and deinit are called on the core's thread that loads
 * the configuration; verify is called on the core's worker threads, several at
 * once unless the module leaves out GH_AUTH_MODULE_THREAD_SAFE (the core then
 * serializes its calls).  A module never touches a GMainContext.
 */
#pragma once

#include <glib.h>
#include <string.h>
#include <gmodule.h>

G_BEGIN_DECLS

/* Bump on any incompatible change of the structs below. */
#define GH_AUTH_MODULE_ABI 1

/* The verdict of one module on one request. */
typedef enum {
	GH_AUTH_OK = 0,         /* password right: stop the chain, log in */
	GH_AUTH_WRONG_PASSWORD, /* user known, password wrong (or account refused): stop */
	GH_AUTH_UNKNOWN_USER,   /* this module does not know the user: try the next one */
	GH_AUTH_TEMPFAIL,       /* the module's back end is unreachable: stop, answer "try later" */
} GhAuthVerdict;

/* What is being verified.  All strings are NUL-terminated and valid UTF-8 or
 * at least free of CR, LF and NUL (the core checks).  The password may contain
 * any byte but NUL.  (transfer none): valid for the duration of verify(). */
typedef struct {
	const char *user;     /* login name as the client sent it */
	const char *password; /* never log it, never keep it past verify() */
	gsize password_len;
	const char *service;     /* "smtp" or "imap" */
	const char *listener;    /* name of the [listener NAME] group */
	const char *remote_addr; /* client address, textual (no port) */
	guint16 remote_port;
	const char *local_addr; /* address the client connected to */
	guint16 local_port;
	gboolean tls;           /* the client connection is encrypted */
	const char *session_id; /* for log lines */
} GhAuthRequest;

/* What a module may return besides its verdict.  The module sets the fields
 * with g_strdup() (transfer full to the core) or leaves them NULL. */
typedef struct {
	char *canonical_user; /* name to log in to the backend with (default: request user) */
	char *route;          /* the backend server for this user (a route, below), or NULL */
	char *reason;         /* for the log only, never for the client: "unknown user", ... */
} GhAuthResult;

typedef struct _GhAuthHost GhAuthHost;

/* Services the core offers a module.  Everything here is safe to call from
 * any thread. */
struct _GhAuthHost {
	guint32 struct_size;
	/* Set *error (domain G_KEY_FILE_ERROR, code G_KEY_FILE_ERROR_INVALID_VALUE)
	 * to "FILE:LINE: [GROUP] KEY: message", locating the key in the config
	 * file the module was configured from.  key may be NULL (the group's line). */
	void (*config_error)(const GhAuthHost *host,
			     GError **error,
			     const char *group,
			     const char *key,
			     const char *format,
			     ...) G_GNUC_PRINTF(5, 6);
	/* Tell the core that the module's data changed (users file reloaded):
	 * the core drops cached verdicts. */
	void (*data_changed)(const GhAuthHost *host);
	gpointer priv; /* the core's own; modules leave it alone */

	/* Members after priv are appended as the interface grows (the ABI
	 * version stays): a core older than this header stops short of them,
	 * so a module checks GH_AUTH_HOST_HAS(host, member) before it uses one. */

	/* TRUE when the `len` bytes at `route` are a route the core can dial:
	 * HOST or HOST:PORT, HOST a name or an IPv4 address (letters, digits,
	 * '.', '-', '_', not beginning with '.' or '-'), or [IPV6] or
	 * [IPV6]:PORT; PORT 1..65535.  Without a port the backend's own `port`
	 * is dialled, so one value (a directory's mailHost) can route a user's
	 * IMAP and SMTP sessions alike.  The rule of route= in a users file,
	 * gatehouse.conf(5); a module checks every route it returns in
	 * GhAuthResult with this.  Pure.  (A core older than bare hosts refuses
	 * a route without a port here, so a module never hands one to it.) */
	gboolean (*route_valid)(const char *route, gsize len);

	/* A connected stream socket (close-on-exec; the module closes it) to
	 * a new helper process of this module: the program NAME-helper in
	 * the module directory (NAME the module's name), with the socket on
	 * its fd 3.  When gatehoused was started as root, the helper runs as
	 * the configured user with that user's groups, which gatehoused itself
	 * gives up; otherwise as the caller runs.  For a module whose blocking
	 * work must not run inside gatehoused (PAM).  May block briefly (fork
	 * and exec); call it from verify(), not for every request: a helper
	 * serves until the module closes its socket.  -1 with *error set. */
	int (*helper_connect)(const GhAuthHost *host, GError **error);
};

/* TRUE when `host` (const GhAuthHost *) is new enough to have `member`:
 * struct_size tells how much of the struct the core filled in. */
#define GH_AUTH_HOST_HAS(host, member)                                                             \
	((host)->struct_size >= G_STRUCT_OFFSET(GhAuthHost, member) + sizeof((host)->member))

typedef enum {
	GH_AUTH_MODULE_THREAD_SAFE = 1 << 0, /* verify() may run on several threads at once */
} GhAuthModuleFlags;

typedef struct {
	guint32 abi_version; /* GH_AUTH_MODULE_ABI: first two fields never move */
	guint32 struct_size; /* sizeof (GhAuthModule) */
	const char *name;    /* "file": the value of `module =` that selects it */
	guint32 flags;       /* GhAuthModuleFlags */

	/* Keys the module accepts in its [auth NAME] group, NULL-terminated.
	 * `module` is implicit.  Any other key is a configuration error. */
	const char *const *keys;

	/* Read the module's keys from `group` of `kf` and set up.  Returns the
	 * module's state (transfer full), or NULL with *error set (use
	 * host->config_error so the admin gets file:line).  May block briefly
	 * (read a file); must not connect to a network service. */
	gpointer (*init)(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error);

	/* Optional.  Re-read backing data (users file) when it changed, or always
	 * when `force` (re-read even when the data looks unchanged; SIGHUP builds
	 * fresh instances through init instead).  Returns 1 when new data is now in force, 0 when
	 * nothing changed, -1 with *error set when the new data is bad (the old
	 * data stays in force).  Called every second or so from a worker thread,
	 * never concurrently with itself. */
	int (*refresh)(gpointer state, gboolean force, GError **error);

	/* Verify one request.  May block (crypt, PAM, LDAP).  Fill *result as
	 * documented above; result->reason should say why for every verdict but OK. */
	GhAuthVerdict (*verify)(gpointer state, const GhAuthRequest *request, GhAuthResult *result);

	/* Free the state.  Optional when init returns no state. */
	void (*deinit)(gpointer state);

	/* Optional; a module built before it existed (struct_size) counts as
	 * one that may.  Can verify() give a route now (file: some user has a
	 * route=; ldap: route_attribute is set)?  A listener whose chain
	 * cannot route knows its backend server before the verdict and
	 * connects while the credentials are checked.  Any thread; must not
	 * block. */
	gboolean (*may_route)(gpointer state);
} GhAuthModule;

/* Every module defines exactly this:
 *   G_MODULE_EXPORT const GhAuthModule gh_auth_module = { GH_AUTH_MODULE_ABI, sizeof
 * (GhAuthModule), ... };
 */

/* Constant-time comparison for secrets of equal or different length: the time
 * taken depends only on the lengths.  Returns TRUE when equal. */
static inline gboolean
gh_auth_secure_equal(const void *a, gsize a_len, const void *b, gsize b_len)
{
	const volatile guint8 *pa = a;
	const volatile guint8 *pb = b;
	guint8 diff = a_len != b_len;
	gsize n = MIN(a_len, b_len);
	for (gsize i = 0; i < n; i++)
		diff |= pa[i] ^ pb[i];
	return diff == 0;
}

/* Key values as the modules' groups take them: "yes"/"true" or
 * "no"/"false" (any case).  FALSE, *out untouched, for anything else. */
static inline gboolean
gh_auth_parse_bool(const char *value, gboolean *out)
{
	if (g_ascii_strcasecmp(value, "yes") == 0 || g_ascii_strcasecmp(value, "true") == 0) {
		*out = TRUE;
		return TRUE;
	}
	if (g_ascii_strcasecmp(value, "no") == 0 || g_ascii_strcasecmp(value, "false") == 0) {
		*out = FALSE;
		return TRUE;
	}
	return FALSE;
}

/* Digits only (no sign, unit or blanks), within [min, max]. */
static inline gboolean
gh_auth_parse_uint(const char *value, guint min, guint max, guint *out)
{
	guint64 v;
	if (*value == '\0' || strlen(value) > 10)
		return FALSE;
	for (const char *p = value; *p != '\0'; p++)
		if (!g_ascii_isdigit(*p))
			return FALSE;
	v = g_ascii_strtoull(value, NULL, 10);
	if (v < min || v > max)
		return FALSE;
	*out = (guint)v;
	return TRUE;
}

G_END_DECLS
