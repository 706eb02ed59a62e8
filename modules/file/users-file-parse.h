/*
 * users-file-parse.h: the users file of the `file` module (gatehouse.conf(5),
 * USERS FILE), parsed from text in memory.  Pure: includes only <glib.h>.
 *
 *   name:hash[:attributes]
 *
 * Split on the first two colons only.  hash is a crypt(3) string ($y$, $7$,
 * $6$, $5$, $2b$/$2a$/$2y$) or {PLAIN}password.  attributes are space-separated
 * key=value pairs; known keys: route=ROUTE (HOST, HOST:PORT, [IPv6] or
 * [IPv6]:PORT), user=NAME; any other key is an error.  '#' lines and blank
 * lines are skipped; CRLF line ends are accepted.
 * Whether a route is valid is asked of a function the caller passes (the
 * module passes the core's GhAuthHost.route_valid), so that the rule is
 * written once, in the core.
 */
#pragma once

#include <glib.h>

typedef enum {
	GH_HASH_CRYPT, /* hash is a crypt(3) string */
	GH_HASH_PLAIN, /* hash is the password itself (after "{PLAIN}") */
} GhHashKind;

typedef struct {
	char *name;
	GhHashKind kind;
	char *hash;  /* crypt string, or the plain password (wiped on free) */
	char *route; /* NULL when absent */
	char *user;  /* NULL when absent */
	guint line;
} GhUserEntry;

typedef struct {
	GHashTable *users; /* name -> GhUserEntry* (owned) */
	guint n_plain;     /* entries using {PLAIN}, for the load-time warning */
	guint n_routes;    /* entries with a route= */
	guint n_users;
} GhUsersFile;

/* TRUE when the `len` bytes at `route` are a valid route. */
typedef gboolean (*GhUsersFileRouteCheck)(const char *route, gsize len);

/* Parse the whole text, checking each route= value with route_valid.  On the
 * first bad line returns NULL and sets *error (domain G_KEY_FILE_ERROR, code
 * G_KEY_FILE_ERROR_PARSE) to "line N: reason" and *error_line_out (may be
 * NULL) to N.  The reason never quotes the hash or the password.  A name
 * given twice is an error.  (transfer full) */
GhUsersFile *gh_users_file_parse(const char *text,
				 gsize len,
				 GhUsersFileRouteCheck route_valid,
				 guint *error_line_out,
				 GError **error);
void gh_users_file_free(GhUsersFile *uf);
const GhUserEntry *gh_users_file_lookup(const GhUsersFile *uf, const char *name);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhUsersFile, gh_users_file_free)
