/*
 * test-cache.c: the verdict cache: hits and misses by key and password,
 * positive and negative time to live, TEMPFAIL never kept, LRU eviction,
 * limits, flush of everything and of one user, the hit and miss counters,
 * and many threads at once.
 */
#include "gh-build.h"

#include "cache.h"

#include <string.h>

#define SEC ((gint64)G_USEC_PER_SEC)
#define T0 (1000 * SEC)

/* The cache by the request's parts, as the core makes its key. */
static gboolean
lookup_pw(GhCache *cache,
	  const char *chain,
	  const char *service,
	  const char *user,
	  const char *password,
	  gsize password_len,
	  gint64 now_us,
	  GhCacheEntry *out)
{
	GhCacheKey key;

	gh_cache_make_key(cache, chain, service, user, password, password_len, &key);
	return gh_cache_lookup(cache, &key, now_us, out);
}

static void
store_pw(GhCache *cache,
	 const char *chain,
	 const char *service,
	 const char *user,
	 const char *password,
	 gsize password_len,
	 gint64 now_us,
	 const GhCacheEntry *entry)
{
	GhCacheKey key;

	gh_cache_make_key(cache, chain, service, user, password, password_len, &key);
	gh_cache_store(cache, &key, user, now_us, entry);
}

static void
store(GhCache *cache, const char *user, const char *pw, gint64 now, GhAuthVerdict verdict)
{
	GhCacheEntry e = {
	    .verdict = verdict,
	    .module = (char *)"users",
	    .module_type = (char *)"file",
	    .canonical_user = (char *)user,
	    .route = (char *)"10.0.0.5:143",
	    .reason = verdict == GH_AUTH_OK ? NULL : (char *)"wrong password",
	};

	store_pw(cache, "chain", "imap", user, pw, strlen(pw), now, &e);
}

/* Store under any chain and service, with the canonical user apart from
 * the user as given (NULL as for a failed verdict). */
static void
store_as(GhCache *cache,
	 const char *chain,
	 const char *service,
	 const char *user,
	 const char *canonical,
	 gint64 now,
	 GhAuthVerdict verdict)
{
	GhCacheEntry e = {.verdict = verdict, .canonical_user = (char *)canonical};

	store_pw(cache, chain, service, user, "pw", 2, now, &e);
}

static gboolean
lookup_as(GhCache *cache, const char *chain, const char *service, const char *user, gint64 now)
{
	GhCacheEntry e;
	gboolean hit = lookup_pw(cache, chain, service, user, "pw", 2, now, &e);

	gh_cache_entry_clear(&e);
	return hit;
}

/* TRUE on a hit, with the verdict in *verdict_out. */
static gboolean
lookup(GhCache *cache, const char *user, const char *pw, gint64 now, GhAuthVerdict *verdict_out)
{
	GhCacheEntry e;
	gboolean hit = lookup_pw(cache, "chain", "imap", user, pw, strlen(pw), now, &e);

	if (verdict_out != NULL)
		*verdict_out = hit ? e.verdict : GH_AUTH_TEMPFAIL;
	if (hit)
		gh_cache_entry_clear(&e);
	return hit;
}

static void
test_hit(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(100, 60, 10);
	GhCacheEntry e = {.verdict = GH_AUTH_OK, .module = (char *)"users"};
	GhCacheEntry out;

	store(cache, "alice", "secret", T0, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 1);
	g_assert_true(lookup_pw(cache, "chain", "imap", "alice", "secret", 6, T0 + SEC, &out));
	g_assert_cmpint(out.verdict, ==, GH_AUTH_OK);
	g_assert_cmpstr(out.module, ==, "users");
	g_assert_cmpstr(out.module_type, ==, "file");
	g_assert_cmpstr(out.canonical_user, ==, "alice");
	g_assert_cmpstr(out.route, ==, "10.0.0.5:143");
	g_assert_null(out.reason);
	gh_cache_entry_clear(&out);
	g_assert_null(out.module);

	/* Every part of the key counts. */
	g_assert_false(lookup_pw(cache, "other", "imap", "alice", "secret", 6, T0, &out));
	g_assert_false(lookup_pw(cache, "chain", "smtp", "alice", "secret", 6, T0, &out));
	g_assert_false(lookup_pw(cache, "chain", "imap", "Alice", "secret", 6, T0, &out));
	g_assert_false(lookup_pw(cache, "chain", "imap", "alice", "secret", 5, T0, &out));
	g_assert_null(out.module);

	/* The join cannot be fooled by a separator inside a name. */
	store_pw(cache,
		 "a\x1f"
		 "b",
		 "c", "u", "pw", 2, T0, &e);
	g_assert_false(lookup_pw(cache, "a",
				 "b\x1f"
				 "c",
				 "u", "pw", 2, T0, &out));
	g_assert_false(lookup_pw(cache, "a", "b", "c\x1fu", "pw", 2, T0, &out));
	g_assert_true(lookup_pw(cache,
				"a\x1f"
				"b",
				"c", "u", "pw", 2, T0, &out));
	gh_cache_entry_clear(&out);

	/* An empty password is a password like any other. */
	store_pw(cache, "chain", "imap", "nopw", NULL, 0, T0, &e);
	g_assert_true(lookup_pw(cache, "chain", "imap", "nopw", "", 0, T0, &out));
	gh_cache_entry_clear(&out);
	g_assert_false(lookup_pw(cache, "chain", "imap", "nopw", "x", 1, T0, &out));
}

static void
test_password_change(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(100, 60, 10);
	GhAuthVerdict v;

	store(cache, "alice", "old", T0, GH_AUTH_OK);
	g_assert_true(lookup(cache, "alice", "old", T0, &v));
	g_assert_false(lookup(cache, "alice", "new", T0, NULL));
	/* A miss on another password keeps the entry ... */
	g_assert_true(lookup(cache, "alice", "old", T0, NULL));
	/* ... until the verdict for the new one replaces it. */
	store(cache, "alice", "new", T0 + SEC, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 1);
	g_assert_true(lookup(cache, "alice", "new", T0 + SEC, &v));
	g_assert_cmpint(v, ==, GH_AUTH_OK);
	g_assert_false(lookup(cache, "alice", "old", T0 + SEC, NULL));
}

static void
test_expiry(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(100, 60, 10);

	store(cache, "alice", "secret", T0, GH_AUTH_OK);
	g_assert_true(lookup(cache, "alice", "secret", T0 + 59 * SEC, NULL));
	g_assert_cmpuint(gh_cache_size(cache), ==, 1);
	g_assert_false(lookup(cache, "alice", "secret", T0 + 60 * SEC, NULL));
	/* The expired entry went away on that lookup. */
	g_assert_cmpuint(gh_cache_size(cache), ==, 0);
	g_assert_false(lookup(cache, "alice", "secret", T0, NULL));

	/* A negative verdict lives for negative_ttl only. */
	store(cache, "bob", "bad", T0, GH_AUTH_WRONG_PASSWORD);
	g_assert_true(lookup(cache, "bob", "bad", T0 + 9 * SEC, NULL));
	g_assert_false(lookup(cache, "bob", "bad", T0 + 10 * SEC, NULL));
	g_assert_cmpuint(gh_cache_size(cache), ==, 0);

	/* A refreshed store restarts the clock. */
	store(cache, "carol", "pw", T0, GH_AUTH_OK);
	store(cache, "carol", "pw", T0 + 50 * SEC, GH_AUTH_OK);
	g_assert_true(lookup(cache, "carol", "pw", T0 + 100 * SEC, NULL));
	g_assert_false(lookup(cache, "carol", "pw", T0 + 110 * SEC, NULL));
}

static void
test_negative(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(100, 60, 10);
	GhAuthVerdict v = GH_AUTH_OK;

	store(cache, "alice", "wrong", T0, GH_AUTH_WRONG_PASSWORD);
	g_assert_true(lookup(cache, "alice", "wrong", T0 + SEC, &v));
	g_assert_cmpint(v, ==, GH_AUTH_WRONG_PASSWORD);
	g_assert_false(lookup(cache, "alice", "right", T0 + SEC, NULL));

	store(cache, "ghost", "pw", T0, GH_AUTH_UNKNOWN_USER);
	g_assert_true(lookup(cache, "ghost", "pw", T0 + SEC, &v));
	g_assert_cmpint(v, ==, GH_AUTH_UNKNOWN_USER);
	g_assert_false(lookup(cache, "ghost", "other", T0 + SEC, NULL));

	/* A success after a cached failure replaces it. */
	store(cache, "alice", "right", T0 + 2 * SEC, GH_AUTH_OK);
	g_assert_true(lookup(cache, "alice", "right", T0 + 3 * SEC, &v));
	g_assert_cmpint(v, ==, GH_AUTH_OK);
	g_assert_false(lookup(cache, "alice", "wrong", T0 + 3 * SEC, NULL));
}

static void
test_not_stored(void)
{
	static const struct {
		guint max, pos, neg;
		GhAuthVerdict verdict;
		gboolean kept;
	} cases[] = {
	    {10, 60, 10, GH_AUTH_TEMPFAIL, FALSE},
	    {10, 60, 10, GH_AUTH_OK, TRUE},
	    {10, 0, 10, GH_AUTH_OK, FALSE},
	    {10, 0, 10, GH_AUTH_WRONG_PASSWORD, TRUE},
	    {10, 60, 0, GH_AUTH_WRONG_PASSWORD, FALSE},
	    {10, 60, 0, GH_AUTH_UNKNOWN_USER, FALSE},
	    {10, 60, 0, GH_AUTH_OK, TRUE},
	    {0, 60, 10, GH_AUTH_OK, FALSE},
	    {0, 60, 10, GH_AUTH_WRONG_PASSWORD, FALSE},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GhCache) cache = gh_cache_new(cases[i].max, cases[i].pos, cases[i].neg);
		GhAuthVerdict v;

		g_test_message("case %zu", i);
		store(cache, "alice", "pw", T0, cases[i].verdict);
		g_assert_cmpuint(gh_cache_size(cache), ==, cases[i].kept ? 1 : 0);
		g_assert_cmpint(lookup(cache, "alice", "pw", T0, &v), ==, cases[i].kept);
		if (cases[i].kept)
			g_assert_cmpint(v, ==, cases[i].verdict);
	}
}

/* A TEMPFAIL leaves an earlier verdict alone. */
static void
test_tempfail_keeps(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(10, 60, 10);
	GhAuthVerdict v;

	store(cache, "alice", "pw", T0, GH_AUTH_OK);
	store(cache, "alice", "pw", T0 + SEC, GH_AUTH_TEMPFAIL);
	g_assert_true(lookup(cache, "alice", "pw", T0 + SEC, &v));
	g_assert_cmpint(v, ==, GH_AUTH_OK);
}

static void
test_lru(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(3, 60, 10);

	store(cache, "a", "pw", T0, GH_AUTH_OK);
	store(cache, "b", "pw", T0 + 1, GH_AUTH_OK);
	store(cache, "c", "pw", T0 + 2, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 3);
	/* a is the oldest; touching it leaves b the least recently used. */
	g_assert_true(lookup(cache, "a", "pw", T0 + 3, NULL));
	store(cache, "d", "pw", T0 + 4, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 3);
	g_assert_false(lookup(cache, "b", "pw", T0 + 5, NULL));
	g_assert_true(lookup(cache, "a", "pw", T0 + 5, NULL));
	g_assert_true(lookup(cache, "c", "pw", T0 + 5, NULL));
	g_assert_true(lookup(cache, "d", "pw", T0 + 5, NULL));

	/* A miss on the password does not count as a use: a, c, d were used in
	 * that order, so a wrong password for a leaves a the oldest. */
	g_assert_false(lookup(cache, "a", "other", T0 + 6, NULL));
	store(cache, "e", "pw", T0 + 7, GH_AUTH_OK);
	g_assert_false(lookup(cache, "a", "pw", T0 + 8, NULL));
	g_assert_true(lookup(cache, "c", "pw", T0 + 8, NULL));

	/* Replacing an entry makes it the most recent without growing. */
	store(cache, "d", "pw2", T0 + 9, GH_AUTH_OK);
	store(cache, "f", "pw", T0 + 10, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 3);
	g_assert_false(lookup(cache, "e", "pw", T0 + 11, NULL));
	g_assert_true(lookup(cache, "d", "pw2", T0 + 11, NULL));
	g_assert_true(lookup(cache, "c", "pw", T0 + 11, NULL));
	g_assert_true(lookup(cache, "f", "pw", T0 + 11, NULL));
}

static void
test_disabled(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(0, 60, 10);

	store(cache, "alice", "pw", T0, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 0);
	g_assert_false(lookup(cache, "alice", "pw", T0, NULL));
}

static void
test_flush(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(100, 60, 10);
	char user[16];

	for (int i = 0; i < 20; i++) {
		g_snprintf(user, sizeof user, "u%d", i);
		store(cache, user, "pw", T0, i % 2 ? GH_AUTH_OK : GH_AUTH_WRONG_PASSWORD);
	}
	g_assert_cmpuint(gh_cache_size(cache), ==, 20);
	g_assert_cmpuint(gh_cache_flush(cache), ==, 20);
	g_assert_cmpuint(gh_cache_size(cache), ==, 0);
	g_assert_cmpuint(gh_cache_flush(cache), ==, 0);
	g_assert_false(lookup(cache, "u1", "pw", T0, NULL));
	/* Still usable afterwards. */
	store(cache, "u1", "pw", T0, GH_AUTH_OK);
	g_assert_true(lookup(cache, "u1", "pw", T0, NULL));
	g_assert_cmpuint(gh_cache_flush(cache), ==, 1);
}

static void
test_flush_user(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(100, 60, 10);
	g_autoptr(GhCache) off = gh_cache_new(0, 60, 10);

	/* alice's, under several chains and services and spellings */
	store_as(cache, "chain", "imap", "alice", "alice", T0, GH_AUTH_OK);
	store_as(cache, "chain", "smtp", "alice", "alice", T0, GH_AUTH_OK);
	store_as(cache, "other", "imap", "alice", "alice", T0, GH_AUTH_OK);
	store_as(cache, "chain", "pop3", "Alice", NULL, T0, GH_AUTH_UNKNOWN_USER);
	store_as(cache, "chain", "imap", "alice@example.com", "alice", T0, GH_AUTH_OK);
	store_as(cache, "chain", "imap", "ALICE", NULL, T0, GH_AUTH_WRONG_PASSWORD);
	/* not alice's: a longer name, a name that only contains hers, a
	 * canonical user that only starts like hers */
	store_as(cache, "chain", "imap", "alice2", "alice2", T0, GH_AUTH_OK);
	store_as(cache, "chain", "imap", "malice", NULL, T0, GH_AUTH_UNKNOWN_USER);
	store_as(cache, "chain", "imap", "al", "alice-archive", T0, GH_AUTH_OK);
	/* bob's, one of them given by address */
	store_as(cache, "chain", "imap", "bob", "bob", T0, GH_AUTH_OK);
	store_as(cache, "chain", "smtp", "bob", "bob", T0, GH_AUTH_OK);
	store_as(cache, "chain", "imap", "bob@example.com", "bob", T0, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 12);

	g_assert_cmpuint(gh_cache_flush_user(cache, "aLiCe"), ==, 6);
	g_assert_cmpuint(gh_cache_size(cache), ==, 6);
	g_assert_false(lookup_as(cache, "chain", "imap", "alice", T0));
	g_assert_false(lookup_as(cache, "chain", "smtp", "alice", T0));
	g_assert_false(lookup_as(cache, "other", "imap", "alice", T0));
	g_assert_false(lookup_as(cache, "chain", "pop3", "Alice", T0));
	g_assert_false(lookup_as(cache, "chain", "imap", "alice@example.com", T0));
	g_assert_false(lookup_as(cache, "chain", "imap", "ALICE", T0));
	g_assert_true(lookup_as(cache, "chain", "imap", "alice2", T0));
	g_assert_true(lookup_as(cache, "chain", "imap", "malice", T0));
	g_assert_true(lookup_as(cache, "chain", "imap", "al", T0));
	g_assert_true(lookup_as(cache, "chain", "imap", "bob", T0));
	g_assert_true(lookup_as(cache, "chain", "smtp", "bob", T0));
	g_assert_true(lookup_as(cache, "chain", "imap", "bob@example.com", T0));
	/* Nothing of hers is left. */
	g_assert_cmpuint(gh_cache_flush_user(cache, "alice"), ==, 0);

	/* The name as given, when it is not the canonical one ... */
	g_assert_cmpuint(gh_cache_flush_user(cache, "Bob@Example.COM"), ==, 1);
	g_assert_true(lookup_as(cache, "chain", "imap", "bob", T0));
	g_assert_false(lookup_as(cache, "chain", "imap", "bob@example.com", T0));
	/* ... and the canonical one, when it is not the name as given. */
	g_assert_cmpuint(gh_cache_flush_user(cache, "alice-archive"), ==, 1);
	g_assert_false(lookup_as(cache, "chain", "imap", "al", T0));
	g_assert_cmpuint(gh_cache_flush_user(cache, "nobody"), ==, 0);
	g_assert_cmpuint(gh_cache_flush_user(cache, ""), ==, 0);
	g_assert_cmpuint(gh_cache_size(cache), ==, 4);

	/* Stored again, an entry of hers is found as before. */
	store_as(cache, "chain", "imap", "alice", "alice", T0 + SEC, GH_AUTH_OK);
	g_assert_true(lookup_as(cache, "chain", "imap", "alice", T0 + SEC));
	g_assert_cmpuint(gh_cache_flush_user(cache, "ALICE"), ==, 1);
	g_assert_cmpuint(gh_cache_size(cache), ==, 4);

	g_assert_cmpuint(gh_cache_flush_user(off, "alice"), ==, 0);
}

static void
test_counts(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(100, 60, 10);
	g_autoptr(GhCache) off = gh_cache_new(0, 60, 10);
	guint64 hits = 99, misses = 99;

	gh_cache_counts(cache, &hits, &misses);
	g_assert_cmpuint(hits, ==, 0);
	g_assert_cmpuint(misses, ==, 0);

	/* absent, then present, then another password, then expired */
	g_assert_false(lookup(cache, "alice", "pw", T0, NULL));
	store(cache, "alice", "pw", T0, GH_AUTH_OK);
	g_assert_true(lookup(cache, "alice", "pw", T0 + SEC, NULL));
	g_assert_true(lookup(cache, "alice", "pw", T0 + 2 * SEC, NULL));
	g_assert_false(lookup(cache, "alice", "other", T0 + 2 * SEC, NULL));
	g_assert_false(lookup(cache, "alice", "pw", T0 + 60 * SEC, NULL));
	gh_cache_counts(cache, &hits, &misses);
	g_assert_cmpuint(hits, ==, 2);
	g_assert_cmpuint(misses, ==, 3);

	/* Storing and flushing are no lookups, and a flush keeps the counts. */
	store(cache, "bob", "pw", T0, GH_AUTH_WRONG_PASSWORD);
	g_assert_cmpuint(gh_cache_flush(cache), ==, 1);
	gh_cache_counts(cache, &hits, NULL);
	gh_cache_counts(cache, NULL, &misses);
	g_assert_cmpuint(hits, ==, 2);
	g_assert_cmpuint(misses, ==, 3);

	/* Disabled, a lookup is neither a hit nor a miss ... */
	gh_cache_set_limits(cache, 0, 60, 10);
	g_assert_false(lookup(cache, "alice", "pw", T0, NULL));
	gh_cache_counts(cache, &hits, &misses);
	g_assert_cmpuint(hits, ==, 2);
	g_assert_cmpuint(misses, ==, 3);
	/* ... and enabled again, counting goes on from there. */
	gh_cache_set_limits(cache, 10, 60, 10);
	g_assert_false(lookup(cache, "alice", "pw", T0, NULL));
	gh_cache_counts(cache, &hits, &misses);
	g_assert_cmpuint(hits, ==, 2);
	g_assert_cmpuint(misses, ==, 4);

	/* A cache made disabled counts nothing. */
	store(off, "alice", "pw", T0, GH_AUTH_OK);
	g_assert_false(lookup(off, "alice", "pw", T0, NULL));
	gh_cache_counts(off, &hits, &misses);
	g_assert_cmpuint(hits, ==, 0);
	g_assert_cmpuint(misses, ==, 0);
}

static void
test_set_limits(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(5, 60, 60);
	char user[16];

	for (int i = 0; i < 5; i++) {
		g_snprintf(user, sizeof user, "u%d", i);
		store(cache, user, "pw", T0 + i, GH_AUTH_OK);
	}
	/* Shrinking keeps the most recently used. */
	gh_cache_set_limits(cache, 2, 60, 60);
	g_assert_cmpuint(gh_cache_size(cache), ==, 2);
	g_assert_false(lookup(cache, "u2", "pw", T0 + 10, NULL));
	g_assert_true(lookup(cache, "u3", "pw", T0 + 10, NULL));
	g_assert_true(lookup(cache, "u4", "pw", T0 + 10, NULL));

	/* A shorter TTL applies to entries already in. */
	gh_cache_set_limits(cache, 2, 5, 60);
	g_assert_true(lookup(cache, "u4", "pw", T0 + 4 * SEC, NULL));
	g_assert_false(lookup(cache, "u4", "pw", T0 + 6 * SEC, NULL));
	/* A TTL of 0 disables that kind at once. */
	gh_cache_set_limits(cache, 2, 0, 60);
	g_assert_false(lookup(cache, "u3", "pw", T0 + 20, NULL));
	g_assert_cmpuint(gh_cache_size(cache), ==, 0);

	/* Down to 0 empties and disables. */
	gh_cache_set_limits(cache, 0, 60, 60);
	store(cache, "u9", "pw", T0, GH_AUTH_OK);
	g_assert_cmpuint(gh_cache_size(cache), ==, 0);
}

#define THREADS 4
#define ROUNDS 10000
#define THREAD_USERS 50
#define THREAD_MAX 64

typedef struct {
	GhCache *cache;
	int id;
	guint hits;
	guint bad;
} ThreadData;

/* What the (pretend) back end says about password number k of user u. */
static GhAuthVerdict
thread_verdict(int u, int k)
{
	return k == u % 3 ? GH_AUTH_OK : GH_AUTH_WRONG_PASSWORD;
}

/* Each thread stores verdicts for its own users and looks them up again with
 * one of three passwords; a hit must give back the verdict for that very
 * password.  Thread 0 flushes now and then to stir things up. */
static gpointer
thread_main(gpointer data)
{
	ThreadData *td = data;
	char user[32];
	char pw[8];

	for (int i = 0; i < ROUNDS; i++) {
		int u = i % THREAD_USERS;
		int k = i % 3;
		int k2 = (i / 2) % 3;
		GhAuthVerdict got;

		g_snprintf(user, sizeof user, "t%d-u%d", td->id, u);
		g_snprintf(pw, sizeof pw, "p%d", k);
		store(td->cache, user, pw, T0 + i, thread_verdict(u, k));
		g_snprintf(pw, sizeof pw, "p%d", k2);
		if (lookup(td->cache, user, pw, T0 + i, &got)) {
			td->hits++;
			if (got != thread_verdict(u, k2))
				td->bad++;
		}
		if (i % 2500 == 1999 && td->id == 0)
			gh_cache_flush(td->cache);
	}
	return NULL;
}

static void
test_threads(void)
{
	g_autoptr(GhCache) cache = gh_cache_new(THREAD_MAX, 60, 60);
	ThreadData td[THREADS];
	GThread *threads[THREADS];
	guint hits = 0;
	guint64 all_hits = 0, all_misses = 0;

	for (int i = 0; i < THREADS; i++) {
		td[i] = (ThreadData){.cache = cache, .id = i};
		threads[i] = g_thread_new("cache-test", thread_main, &td[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		g_thread_join(threads[i]);
		g_assert_cmpuint(td[i].bad, ==, 0);
		hits += td[i].hits;
	}
	g_assert_cmpuint(gh_cache_size(cache), <=, THREAD_MAX);
	g_assert_cmpuint(hits, >, 0);
	/* every lookup counted once, none lost between threads */
	gh_cache_counts(cache, &all_hits, &all_misses);
	g_assert_cmpuint(all_hits, ==, hits);
	g_assert_cmpuint(all_hits + all_misses, ==, (guint64)THREADS * ROUNDS);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();

	g_test_add_func("/gatehouse/cache/hit", test_hit);
	g_test_add_func("/gatehouse/cache/password-change", test_password_change);
	g_test_add_func("/gatehouse/cache/expiry", test_expiry);
	g_test_add_func("/gatehouse/cache/negative", test_negative);
	g_test_add_func("/gatehouse/cache/not-stored", test_not_stored);
	g_test_add_func("/gatehouse/cache/tempfail-keeps", test_tempfail_keeps);
	g_test_add_func("/gatehouse/cache/lru", test_lru);
	g_test_add_func("/gatehouse/cache/disabled", test_disabled);
	g_test_add_func("/gatehouse/cache/flush", test_flush);
	g_test_add_func("/gatehouse/cache/flush-user", test_flush_user);
	g_test_add_func("/gatehouse/cache/counts", test_counts);
	g_test_add_func("/gatehouse/cache/set-limits", test_set_limits);
	g_test_add_func("/gatehouse/cache/threads", test_threads);
	return g_test_run();
}
