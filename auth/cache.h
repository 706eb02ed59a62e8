/*
 * cache.h: the verdict cache of the authentication core.
 *
 * A bounded LRU map from (chain, service, user) to the last verdict reached for
 * that key, with positive (OK) and negative (WRONG_PASSWORD, UNKNOWN_USER)
 * time-to-live.  The password itself is never stored: each entry keeps an
 * HMAC-SHA256 of it under a key drawn at random when the cache is made, and a
 * lookup hits only when the HMAC of the offered password matches, so a changed
 * password always misses.  TEMPFAIL is never cached.  The user name of the
 * key is kept in plain, so that one user's entries can be dropped; hits and
 * misses are counted for the stats.
 *
 * Thread-safe: every function may be called from any thread.
 */
#pragma once

#include <glib.h>
#include "gh-auth-module.h"

typedef struct _GhCache GhCache;

typedef struct {
	GhAuthVerdict verdict;
	char *module;         /* instance name that decided ("users"), may be NULL */
	char *module_type;    /* module name ("file"), may be NULL */
	char *canonical_user; /* may be NULL */
	char *route;          /* may be NULL */
	char *reason;         /* may be NULL */
} GhCacheEntry;

/* max_entries 0 disables the cache (every lookup misses, stores are dropped).
 * A ttl of 0 seconds disables caching of that kind of verdict. */
GhCache *gh_cache_new(guint max_entries, guint positive_ttl_s, guint negative_ttl_s);
void gh_cache_free(GhCache *cache);
void
gh_cache_set_limits(GhCache *cache, guint max_entries, guint positive_ttl_s, guint negative_ttl_s);

/* What a request is to the cache: the keyed hash of (chain, service, user)
 * and the HMAC of the password (never the password).  Made once per request
 * and used for its lookup, its store and to join an identical request in
 * flight; equal keys are the same credentials for the same check.  Holds a
 * derivative of the password: wipe it (explicit_bzero) after use. */
typedef struct {
	guint8 id[16];
	guint8 pw_mac[32];
} GhCacheKey;

void gh_cache_make_key(GhCache *cache,
		       const char *chain,
		       const char *service,
		       const char *user,
		       const char *password,
		       gsize password_len,
		       GhCacheKey *out);

/* Look up; on a hit fill *entry_out with copies (transfer full: free with
 * gh_cache_entry_clear) and return TRUE.  now_us is g_get_monotonic_time()
 * (a parameter so that tests can move time).  Counts a hit or a miss, except
 * while the cache is disabled (max_entries 0). */
gboolean
gh_cache_lookup(GhCache *cache, const GhCacheKey *key, gint64 now_us, GhCacheEntry *entry_out);

/* Store (or replace) the verdict for the key; `user` is the key's user as
 * the client gave it (for gh_cache_flush_user).  TEMPFAIL is ignored. */
void gh_cache_store(GhCache *cache,
		    const GhCacheKey *key,
		    const char *user,
		    gint64 now_us,
		    const GhCacheEntry *entry);

guint gh_cache_key_hash(gconstpointer key); /* of a GhCacheKey *, for a GHashTable */
gboolean gh_cache_key_equal(gconstpointer a, gconstpointer b); /* in constant time */
/* TRUE when a verdict of this kind would be stored now: the cache is on
 * and that kind's ttl is not 0 (never for TEMPFAIL).  verdict -1: any kind. */
gboolean gh_cache_keeps(GhCache *cache, int verdict);

/* Drop every entry (users file changed, SIGHUP, gatehousectl flush-cache);
 * returns how many there were, expired ones included. */
guint gh_cache_flush(GhCache *cache);
/* Drop the entries whose key's user (as the client gave it) or whose
 * canonical_user equals `user`, ASCII case-insensitively, whatever their
 * chain and service; returns how many.  Walks every entry: for operators'
 * commands, not for the login path. */
guint gh_cache_flush_user(GhCache *cache, const char *user);
/* Entries held now, expired ones not yet dropped included. */
guint gh_cache_size(GhCache *cache);
/* Lookups that hit and that missed since the cache was made (lookups while
 * it was disabled are neither); either pointer may be NULL. */
void gh_cache_counts(GhCache *cache, guint64 *hits, guint64 *misses);
void gh_cache_entry_clear(GhCacheEntry *entry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhCache, gh_cache_free)
