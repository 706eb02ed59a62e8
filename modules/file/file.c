/*
 * file.c: the `file` auth module: checks logins against a users file
 * (gatehouse.conf(5), USERS FILE), configured with one key:
 *
 *   [auth users]
 *   module = file
 *   path = /etc/gatehouse/users
 *
 * Owns the parsed file in force, the identity (device, inode, size, times) of
 * the file it was read from, and a dummy yescrypt hash for unknown users.
 *
 * Invariants:
 *  - The contents in force are an immutable, reference-counted Snapshot.
 *    verify() takes a reference under a read lock held only for that, so a
 *    reload swaps the pointer under the write lock without waiting for the
 *    crypt(3) calls in flight, and they finish with the contents they began
 *    with.
 *  - A file that cannot be read or parsed never replaces the contents in
 *    force (init fails instead).  `loaded`, `failed` and `seen` are touched
 *    by init and refresh only, which the core never runs concurrently.
 *  - A change is read only once two checks in a row (a second apart) find
 *    the same identity: a file being written in place (truncated, then
 *    written) is not read half-way, unless its writer pauses longer.
 *  - Every answer pays for one crypt(3) call: a known user for its hash, an
 *    unknown or {PLAIN} user for the dummy hash, so a quick answer does not
 *    tell which names exist.
 *  - The password is never logged, never kept, and the crypt(3) work area
 *    and file buffers that held one are wiped before they are freed.
 */
#include "gh-build.h"

#define G_LOG_DOMAIN "gh-auth-file"

#include "gh-auth-module.h"
#include "users-file-parse.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Which file a snapshot came from: a change in any of these means the file
 * was replaced or written to.  `err` is the errno of a failed open or stat,
 * so that a missing file is a state that can be remembered too. */
typedef struct {
	int err;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
	struct timespec ctim;
} FileId;

typedef struct {
	GhUsersFile *users;
	GMutex warned_lock;
	GHashTable *warned; /* names whose hash crypt(3) refused, already logged */
} Snapshot;

typedef struct {
	const GhAuthHost *host;
	char *path;
	char *dummy_hash; /* yescrypt, of a random password nobody knows */
	GRWLock lock;     /* guards the pointer `current`, not what it points to */
	Snapshot *current;
	FileId loaded; /* the file `current` was read from */
	FileId failed; /* the last file that did not load, not to report twice */
	gboolean has_failed;
	FileId seen; /* a change found by the last check, read if the next finds it too */
	gboolean has_seen;
} FileState;

typedef enum {
	CHECK_MATCH,
	CHECK_MISMATCH,
	CHECK_UNSUPPORTED,
} CheckOutcome;

/* ------------------------------------------------------------ snapshots */

static void
snapshot_clear(gpointer data)
{
	Snapshot *snap = data;

	gh_users_file_free(snap->users);
	g_hash_table_unref(snap->warned);
	g_mutex_clear(&snap->warned_lock);
}

static void
snapshot_release(Snapshot *snap)
{
	g_atomic_rc_box_release_full(snap, snapshot_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Snapshot, snapshot_release)

/* Wrap a parsed file, logging the entries whose hash this system's crypt(3)
 * cannot check at all: they would fail at every login otherwise unnoticed
 * until someone complains.  (transfer full of uf) */
static Snapshot *
snapshot_new(const char *path, GhUsersFile *uf)
{
	Snapshot *snap = g_atomic_rc_box_new0(Snapshot);
	GHashTableIter iter;
	gpointer value;

	snap->users = uf;
	g_mutex_init(&snap->warned_lock);
	snap->warned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_hash_table_iter_init(&iter, uf->users);
	while (g_hash_table_iter_next(&iter, NULL, &value)) {
		const GhUserEntry *e = value;
		if (e->kind != GH_HASH_CRYPT)
			continue;
		switch (crypt_checksalt(e->hash)) {
		case CRYPT_SALT_OK:
			break;
		case CRYPT_SALT_METHOD_LEGACY:
			g_message("users file %s line %u: user '%s' has a weak legacy hash; make a "
				  "new one with gatehousectl hash-password",
				  path, e->line, e->name);
			break;
		default:
			g_warning("users file %s line %u: the hash of user '%s' is not supported "
				  "by this system's crypt(3); that user cannot log in",
				  path, e->line, e->name);
			g_hash_table_add(snap->warned, g_strdup(e->name));
			break;
		}
	}
	return snap;
}

static Snapshot *
state_get_snapshot(FileState *st)
{
	Snapshot *snap;

	g_rw_lock_reader_lock(&st->lock);
	snap = g_atomic_rc_box_acquire(st->current);
	g_rw_lock_reader_unlock(&st->lock);
	return snap;
}

/* ------------------------------------------------------------ reading */

static void
file_id_from_stat(FileId *id, const struct stat *sb)
{
	memset(id, 0, sizeof *id);
	id->dev = sb->st_dev;
	id->ino = sb->st_ino;
	id->size = sb->st_size;
	id->mtim = sb->st_mtim;
	id->ctim = sb->st_ctim;
}

static void
file_id_from_errno(FileId *id, int err)
{
	memset(id, 0, sizeof *id);
	id->err = err;
}

static gboolean
file_id_equal(const FileId *a, const FileId *b)
{
	if (a->err != 0 || b->err != 0)
		return a->err == b->err;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
	       a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

static void
file_id_stat(const char *path, FileId *id)
{
	struct stat sb;

	if (stat(path, &sb) != 0)
		file_id_from_errno(id, errno);
	else
		file_id_from_stat(id, &sb);
}

/* Grow a buffer that may hold passwords without leaving copies behind. */
static char *
buffer_grow(char *buf, gsize len, gsize *cap)
{
	gsize new_cap = *cap * 2;
	char *bigger = g_malloc(new_cap);

	memcpy(bigger, buf, len);
	explicit_bzero(buf, *cap);
	g_free(buf);
	*cap = new_cap;
	return bigger;
}

static void
buffer_wipe_free(char *buf, gsize cap)
{
	explicit_bzero(buf, cap);
	g_free(buf);
}

/* Read and parse the file.  The identity is taken with fstat() on the
 * descriptor that is read, before reading: if the file changes while it is
 * read, the next refresh sees an identity that differs and reads it again.
 * *id_out is set in every case; *line_out to the failing line or 0.
 * Errors do not name the path (the callers do). */
static GhUsersFile *
users_file_read(
    const GhAuthHost *host, const char *path, FileId *id_out, guint *line_out, GError **error)
{
	struct stat sb;
	GhUsersFile *uf;
	char *buf;
	gsize cap, len = 0;
	int fd, saved;

	*line_out = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		saved = errno;
		file_id_from_errno(id_out, saved);
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved), "cannot open: %s",
			    g_strerror(saved));
		return NULL;
	}
	if (fstat(fd, &sb) != 0) {
		saved = errno;
		file_id_from_errno(id_out, saved);
		close(fd);
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved), "cannot stat: %s",
			    g_strerror(saved));
		return NULL;
	}
	file_id_from_stat(id_out, &sb);
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		g_set_error_literal(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "not a regular file");
		return NULL;
	}

	cap = (gsize)MAX(sb.st_size, 0) + 1024;
	buf = g_malloc(cap);
	for (;;) {
		gssize n;

		if (len == cap)
			buf = buffer_grow(buf, len, &cap);
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			saved = errno;
			close(fd);
			buffer_wipe_free(buf, cap);
			g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved),
				    "cannot read: %s", g_strerror(saved));
			return NULL;
		}
		if (n == 0)
			break;
		len += (gsize)n;
	}
	close(fd);
	uf = gh_users_file_parse(buf, len, host->route_valid, line_out, error);
	buffer_wipe_free(buf, cap);
	return uf;
}

/* ------------------------------------------------------------ crypt(3) */

/* Run crypt(3) on the password with `hash` as setting and compare the result
 * with `hash` in constant time.  struct crypt_data is 32 KiB: too big for a
 * worker's stack, and cheap to allocate next to a yescrypt run. */
static CheckOutcome
crypt_check(const char *hash, const char *password)
{
	struct crypt_data *data = g_malloc0(sizeof *data);
	const char *out = crypt_rn(password, hash, data, sizeof *data);
	CheckOutcome outcome;

	if (out == NULL || out[0] == '*')
		outcome = CHECK_UNSUPPORTED;
	else if (gh_auth_secure_equal(out, strlen(out), hash, strlen(hash)))
		outcome = CHECK_MATCH;
	else
		outcome = CHECK_MISMATCH;
	/* The work area holds the password and the hash computed from it. */
	explicit_bzero(data, sizeof *data);
	g_free(data);
	return outcome;
}

static char *
make_dummy_hash(GError **error)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	char phrase[33];
	struct crypt_data *data;
	const char *out;
	char *hash = NULL;

	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting) == NULL) {
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "crypt(3) cannot make a yescrypt salt: %s", g_strerror(errno));
		return NULL;
	}
	for (gsize i = 0; i < sizeof phrase - 1; i++)
		phrase[i] = (char)g_random_int_range('!', '~' + 1);
	phrase[sizeof phrase - 1] = '\0';
	data = g_malloc0(sizeof *data);
	out = crypt_rn(phrase, setting, data, sizeof *data);
	if (out != NULL && out[0] != '*')
		hash = g_strdup(out);
	else
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "crypt(3) cannot make a yescrypt hash: %s", g_strerror(errno));
	explicit_bzero(phrase, sizeof phrase);
	explicit_bzero(data, sizeof *data);
	g_free(data);
	return hash;
}

/* ------------------------------------------------------------ the module */

static void
log_loaded(const char *path, const GhUsersFile *uf, gboolean reload)
{
	if (reload)
		g_message("users file %s reloaded: %u users", path, uf->n_users);
	else
		g_message("users file %s: %u users loaded", path, uf->n_users);
	if (uf->n_plain > 0)
		g_warning("users file %s: %u entries use {PLAIN} passwords; use crypt hashes "
			  "(gatehousectl hash-password)",
			  path, uf->n_plain);
}

/* Routes come from the users file in force now. */
static gboolean
file_may_route(gpointer state)
{
	g_autoptr(Snapshot) snap = state_get_snapshot(state);
	return snap->users->n_routes > 0;
}

static void
file_deinit(gpointer state)
{
	FileState *st = state;

	if (st == NULL)
		return;
	g_clear_pointer(&st->current, snapshot_release);
	g_rw_lock_clear(&st->lock);
	g_free(st->path);
	g_free(st->dummy_hash);
	g_free(st);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(FileState, file_deinit)

static gpointer
file_init(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	g_autoptr(FileState) st = NULL;
	g_autoptr(GError) local = NULL;
	g_autofree char *path = g_key_file_get_string(kf, group, "path", NULL);
	g_autofree char *dummy = NULL;
	GhUsersFile *uf;
	FileId id;
	guint line;

	if (path != NULL)
		g_strstrip(path);
	if (path == NULL || *path == '\0') {
		host->config_error(host, error, group, "path",
				   "missing: module 'file' needs the path of a users file");
		return NULL;
	}
	if (!GH_AUTH_HOST_HAS(host, route_valid)) {
		host->config_error(host, error, group, NULL,
				   "module 'file' needs a newer gatehouse (no route check)");
		return NULL;
	}
	dummy = make_dummy_hash(&local);
	if (dummy == NULL) {
		host->config_error(host, error, group, NULL, "%s", local->message);
		return NULL;
	}
	uf = users_file_read(host, path, &id, &line, &local);
	if (uf == NULL) {
		/* A parse error already reads "line N: reason". */
		host->config_error(host, error, group, "path", "users file %s%s%s", path,
				   line > 0 ? " " : ": ", local->message);
		return NULL;
	}
	log_loaded(path, uf, FALSE);

	st = g_new0(FileState, 1);
	st->host = host;
	st->path = g_steal_pointer(&path);
	st->dummy_hash = g_steal_pointer(&dummy);
	g_rw_lock_init(&st->lock);
	st->current = snapshot_new(st->path, uf);
	st->loaded = id;
	return g_steal_pointer(&st);
}

static int
file_refresh(gpointer state, gboolean force, GError **error)
{
	FileState *st = state;
	g_autoptr(GError) local = NULL;
	GhUsersFile *uf;
	Snapshot *old;
	FileId id;
	guint line;

	file_id_stat(st->path, &id);
	if (!force) {
		if (file_id_equal(&id, &st->loaded) ||
		    (st->has_failed && file_id_equal(&id, &st->failed))) {
			st->has_seen = FALSE;
			return 0;
		}
		if (!st->has_seen || !file_id_equal(&id, &st->seen)) {
			/* changed since the last check: maybe still being written */
			st->seen = id;
			st->has_seen = TRUE;
			return 0;
		}
	}
	st->has_seen = FALSE;

	uf = users_file_read(st->host, st->path, &id, &line, &local);
	if (uf == NULL) {
		g_autoptr(Snapshot) in_force = state_get_snapshot(st);

		st->failed = id;
		st->has_failed = TRUE;
		g_warning("users file %s: %s; keeping the previous contents (%u users)", st->path,
			  local->message, in_force->users->n_users);
		g_set_error(error, local->domain, local->code, "users file %s: %s", st->path,
			    local->message);
		return -1;
	}
	log_loaded(st->path, uf, TRUE);

	g_rw_lock_writer_lock(&st->lock);
	old = st->current;
	st->current = snapshot_new(st->path, uf);
	g_rw_lock_writer_unlock(&st->lock);
	snapshot_release(old);
	st->loaded = id;
	st->has_failed = FALSE;
	if (st->host->data_changed != NULL)
		st->host->data_changed(st->host);
	return 1;
}

/* Log once per loaded file and user that crypt(3) refused the user's hash:
 * it will refuse it at every login until the file changes. */
static void
warn_unsupported(FileState *st, Snapshot *snap, const GhUserEntry *e)
{
	gboolean first;

	g_mutex_lock(&snap->warned_lock);
	first = g_hash_table_add(snap->warned, g_strdup(e->name));
	g_mutex_unlock(&snap->warned_lock);
	if (first)
		g_warning("users file %s line %u: crypt(3) cannot check the hash of user '%s'",
			  st->path, e->line, e->name);
}

static GhAuthVerdict
file_verify(gpointer state, const GhAuthRequest *req, GhAuthResult *result)
{
	FileState *st = state;
	g_autoptr(Snapshot) snap = state_get_snapshot(st);
	const GhUserEntry *e = gh_users_file_lookup(snap->users, req->user);
	/* crypt(3) takes a C string of at most CRYPT_MAX_PASSPHRASE_SIZE - 1
	 * bytes; a longer one (or one with a NUL, which the core rejects) can
	 * match no hash, but still costs the dummy hash's time. */
	gboolean usable = req->password_len < CRYPT_MAX_PASSPHRASE_SIZE &&
			  strlen(req->password) == req->password_len;
	const char *phrase = usable ? req->password : "";
	gboolean match = FALSE;

	if (e == NULL || e->kind == GH_HASH_PLAIN || !usable)
		(void)crypt_check(st->dummy_hash, phrase);
	if (e == NULL) {
		result->reason = g_strdup("unknown user");
		return GH_AUTH_UNKNOWN_USER;
	}
	if (e->kind == GH_HASH_PLAIN) {
		match = gh_auth_secure_equal(req->password, req->password_len, e->hash,
					     strlen(e->hash));
	} else if (usable) {
		switch (crypt_check(e->hash, phrase)) {
		case CHECK_MATCH:
			match = TRUE;
			break;
		case CHECK_MISMATCH:
			break;
		case CHECK_UNSUPPORTED:
			/* The admin's problem, not the client's: answer "try
			 * later" rather than count a failed login. */
			warn_unsupported(st, snap, e);
			result->reason = g_strdup("unsupported hash for user");
			return GH_AUTH_TEMPFAIL;
		}
	}
	if (!match) {
		result->reason = g_strdup(usable ? "wrong password" : "wrong password (too long)");
		return GH_AUTH_WRONG_PASSWORD;
	}
	if (e->user != NULL)
		result->canonical_user = g_strdup(e->user);
	if (e->route != NULL)
		result->route = g_strdup(e->route);
	return GH_AUTH_OK;
}

static const char *const file_keys[] = {"path", NULL};

G_MODULE_EXPORT const GhAuthModule gh_auth_module = {
    .abi_version = GH_AUTH_MODULE_ABI,
    .struct_size = sizeof(GhAuthModule),
    .name = "file",
    .flags = GH_AUTH_MODULE_THREAD_SAFE,
    .keys = file_keys,
    .init = file_init,
    .refresh = file_refresh,
    .verify = file_verify,
    .deinit = file_deinit,
    .may_route = file_may_route,
};
