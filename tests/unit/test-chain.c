/*
 * test-chain.c: the auth core end to end with the `fake` test module: the
 * chain's fall-through rules, the cache in front of it and flushing it (all
 * of it or one user's), the queue bound, cancellation, the failure delay,
 * the core's stats, module loading and the ABI check, and configuration
 * problems reported with file:line.
 */
#include "gh-build.h"

#include "gh-auth.h"

#include <glib/gstdio.h>
#include <gmodule.h>
#include <string.h>

typedef struct {
	char *dir;
	char *conf;
	GKeyFile *kf;
	GhAuthCore *core;
	GhAuthSet *set;
	GPtrArray *problems;
} Fixture;

typedef struct {
	gboolean done;
	GhAuthVerdict verdict;
	char *instance;
	char *canonical;
	char *route;
	char *reason;
	gboolean cached;
	guint delay_ms;
	gint64 at_us;
} Result;

static const char *
module_dir(void)
{
	const char *d = g_getenv("GH_TEST_MODULE_DIR");
	return d != NULL ? d : "tests/unit/modules/.libs";
}

static guint
fake_calls(void)
{
	g_autofree char *path = g_build_filename(module_dir(), "fake.so", NULL);
	GModule *m = g_module_open(path, G_MODULE_BIND_LOCAL);
	guint (*fn)(void) = NULL;
	guint n;
	g_assert_nonnull(m);
	g_assert_true(g_module_symbol(m, "gh_fake_calls", (gpointer *)&fn));
	n = fn();
	g_module_close(m);
	return n;
}

static void
fixture_setup_text(Fixture *f, const char *text, const GhAuthSettings *settings)
{
	g_autoptr(GError) error = NULL;
	GhAuthSettings def = {
	    .workers = 4,
	    .queue_max = 64,
	    .cache_size = 100,
	    .cache_ttl = 60,
	    .cache_negative_ttl = 60,
	    .failure_delay = 0,
	};
	f->dir = g_dir_make_tmp("gh-chain-XXXXXX", &error);
	g_assert_no_error(error);
	f->conf = g_build_filename(f->dir, "gatehouse.conf", NULL);
	g_assert_true(g_file_set_contents(f->conf, text, -1, &error));
	f->kf = g_key_file_new();
	g_assert_true(g_key_file_load_from_file(f->kf, f->conf, G_KEY_FILE_NONE, &error));
	f->core = gh_auth_core_new(settings != NULL ? settings : &def);
	f->problems = g_ptr_array_new_with_free_func(g_free);
	f->set = gh_auth_set_new(f->core, f->kf, f->conf, module_dir(), f->problems);
}

static void
fixture_teardown(Fixture *f)
{
	gh_auth_set_unref(f->set);
	gh_auth_core_free(f->core);
	g_key_file_unref(f->kf);
	g_ptr_array_unref(f->problems);
	g_unlink(f->conf);
	g_rmdir(f->dir);
	g_free(f->conf);
	g_free(f->dir);
}

static void
on_done(const GhAuthOutcome *o, gpointer data)
{
	Result *r = data;
	g_assert_false(r->done);
	r->done = TRUE;
	r->verdict = o->verdict;
	r->instance = g_strdup(o->instance);
	r->canonical = g_strdup(o->canonical_user);
	r->route = g_strdup(o->route);
	r->reason = g_strdup(o->reason);
	r->cached = o->cached;
	r->delay_ms = o->delay_ms;
	r->at_us = g_get_monotonic_time();
}

static void
result_clear(Result *r)
{
	g_free(r->instance);
	g_free(r->canonical);
	g_free(r->route);
	g_free(r->reason);
	memset(r, 0, sizeof *r);
}

static void
verify(Fixture *f, const char *chain_text, const char *user, const char *pw, guint flags, Result *r)
{
	g_auto(GStrv) chain = g_strsplit(chain_text, " ", -1);
	GhAuthRequest req = {
	    .user = user,
	    .password = pw,
	    .password_len = strlen(pw),
	    .service = "imap",
	    .listener = "imap",
	    .remote_addr = "192.0.2.1",
	    .local_addr = "127.0.0.1",
	    .session_id = "test",
	};
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

	GhAuthPending *p;
	gboolean decided;

	result_clear(r);
	p = gh_auth_verify_async(f->set, (const char *const *)chain, &req, flags, NULL, on_done, r);
	/* the callback never runs inside the call */
	g_assert_false(r->done);
	decided = gh_auth_pending_decided(p);
	while (!r->done && g_get_monotonic_time() < deadline)
		g_main_context_iteration(NULL, TRUE);
	g_assert_true(r->done);
	/* known at once exactly when the cache had it or the queue was full */
	g_assert_cmpint(decided, ==,
			r->cached || g_strcmp0(r->reason, "verification queue full") == 0);
}

static const char two_modules[] = "[auth a]\n"
				  "module = fake\n"
				  "users = alice:pw-a:10.0.0.1:143 carol:pw-c\n"
				  "canonical = a-\n"
				  "\n"
				  "[auth b]\n"
				  "module = fake\n"
				  "users = bob:pw-b alice:pw-b-alice\n"
				  "\n"
				  "[auth down]\n"
				  "module = fake\n"
				  "tempfail = yes\n";

static void
test_chain_rules(void)
{
	Fixture f = {0};
	Result r = {0};
	static const struct {
		const char *chain, *user, *pw;
		GhAuthVerdict verdict;
		const char *instance, *canonical, *route;
	} cases[] = {
	    /* known to the first: decided there */
	    {"a b", "alice", "pw-a", GH_AUTH_OK, "a", "a-alice", "10.0.0.1:143"},
	    /* unknown to the first: falls through to the second */
	    {"a b", "bob", "pw-b", GH_AUTH_OK, "b", "bob", NULL},
	    /* a wrong password stops the chain even if a later module would accept */
	    {"a b", "alice", "pw-b-alice", GH_AUTH_WRONG_PASSWORD, "a", "alice", NULL},
	    /* unknown everywhere */
	    {"a b", "nobody", "x", GH_AUTH_UNKNOWN_USER, "b", "nobody", NULL},
	    /* TEMPFAIL stops the chain: no fall-through to a module that knows the user */
	    {"down a", "alice", "pw-a", GH_AUTH_TEMPFAIL, "down", "alice", NULL},
	    /* ... but a module before it decides first */
	    {"a down", "carol", "pw-c", GH_AUTH_OK, "a", "a-carol", NULL},
	    {"a down", "bob", "pw-b", GH_AUTH_TEMPFAIL, "down", "bob", NULL},
	    /* a failed verdict never carries a route or canonical name */
	    {"a", "alice", "nope", GH_AUTH_WRONG_PASSWORD, "a", "alice", NULL},
	};

	fixture_setup_text(&f, two_modules, NULL);
	g_assert_nonnull(f.set);
	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %u: chain '%s' user %s", i, cases[i].chain, cases[i].user);
		verify(&f, cases[i].chain, cases[i].user, cases[i].pw, GH_AUTH_VERIFY_NO_CACHE, &r);
		g_assert_cmpint(r.verdict, ==, cases[i].verdict);
		g_assert_cmpstr(r.instance, ==, cases[i].instance);
		g_assert_cmpstr(r.canonical, ==, cases[i].canonical);
		g_assert_cmpstr(r.route, ==, cases[i].route);
		g_assert_nonnull(r.reason);
		g_assert_false(r.cached);
	}
	result_clear(&r);
	fixture_teardown(&f);
}

static void
test_chain_short_circuit(void)
{
	Fixture f = {0};
	Result r = {0};
	guint before;

	fixture_setup_text(&f, two_modules, NULL);
	/* a WRONG_PASSWORD in `a` must not consult `b`: exactly one call */
	before = fake_calls();
	verify(&f, "a b", "alice", "pw-b-alice", GH_AUTH_VERIFY_NO_CACHE, &r);
	g_assert_cmpuint(fake_calls() - before, ==, 1);
	/* UNKNOWN_USER in `a` consults `b`: two calls */
	before = fake_calls();
	verify(&f, "a b", "bob", "pw-b", GH_AUTH_VERIFY_NO_CACHE, &r);
	g_assert_cmpuint(fake_calls() - before, ==, 2);
	result_clear(&r);
	fixture_teardown(&f);
}

static void
test_chain_cache(void)
{
	Fixture f = {0};
	Result r = {0};
	guint before;

	fixture_setup_text(&f, two_modules, NULL);
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_OK);
	g_assert_false(r.cached);
	before = fake_calls();
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_OK);
	g_assert_true(r.cached);
	g_assert_cmpstr(r.instance, ==, "a");
	g_assert_cmpstr(r.canonical, ==, "a-alice");
	g_assert_cmpstr(r.route, ==, "10.0.0.1:143");
	g_assert_cmpuint(fake_calls(), ==, before);
	/* another password misses the cache and reaches the module */
	verify(&f, "a b", "alice", "other", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_WRONG_PASSWORD);
	g_assert_false(r.cached);
	g_assert_cmpuint(fake_calls(), ==, before + 1);
	/* TEMPFAIL is never cached */
	verify(&f, "down", "alice", "pw-a", 0, &r);
	before = fake_calls();
	verify(&f, "down", "alice", "pw-a", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_TEMPFAIL);
	g_assert_false(r.cached);
	g_assert_cmpuint(fake_calls(), ==, before + 1);
	/* a flush forgets, and says how much: alice's entry under "a b" (the
	 * wrong password replaced the right one's), TEMPFAIL never stored */
	g_assert_cmpuint(gh_auth_core_flush_cache(f.core), ==, 1);
	g_assert_cmpuint(gh_auth_core_flush_cache(f.core), ==, 0);
	before = fake_calls();
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_false(r.cached);
	g_assert_cmpuint(fake_calls(), ==, before + 1);
	result_clear(&r);
	fixture_teardown(&f);
}

/* Wait until no job is queued or running (the callback may run before the
 * worker counts its job done). */
static void
wait_pool_idle(Fixture *f)
{
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

	while (gh_auth_core_busy(f->core) > 0 && g_get_monotonic_time() < deadline)
		g_usleep(1000);
	g_assert_cmpuint(gh_auth_core_busy(f->core), ==, 0);
}

static void
assert_stats(Fixture *f,
	     guint cache_entries,
	     guint64 cache_hits,
	     guint64 cache_misses,
	     guint penalty_entries)
{
	GhAuthCoreStats st;

	wait_pool_idle(f);
	gh_auth_core_stats(f->core, &st);
	g_assert_cmpuint(st.running, ==, 0);
	g_assert_cmpuint(st.queued, ==, 0);
	g_assert_cmpuint(st.cache_entries, ==, cache_entries);
	g_assert_cmpuint(st.cache_hits, ==, cache_hits);
	g_assert_cmpuint(st.cache_misses, ==, cache_misses);
	g_assert_cmpuint(st.penalty_entries, ==, penalty_entries);
}

static void
test_chain_stats(void)
{
	Fixture f = {0};
	Result r = {0};
	GhAuthCoreStats st;
	GhAuthSettings s = {
	    .workers = 3,
	    .queue_max = 17,
	    .cache_size = 50,
	    .cache_ttl = 60,
	    .cache_negative_ttl = 60,
	    .failure_delay = 60,
	};
	GhAuthRequest bad = {
	    .user = "alice",
	    .password = "bad",
	    .password_len = 3,
	    .service = "imap",
	    .remote_addr = "192.0.2.1",
	};
	const char *chain_a[] = {"a", NULL};
	GhAuthPending *p;

	fixture_setup_text(&f, two_modules, &s);
	g_assert_nonnull(f.set);
	gh_auth_core_stats(f.core, &st);
	g_assert_cmpuint(st.workers, ==, 3);
	g_assert_cmpuint(st.queue_max, ==, 17);
	g_assert_cmpuint(st.cache_max, ==, 50);
	assert_stats(&f, 0, 0, 0, 0);

	/* a miss that is stored, then a hit */
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_false(r.cached);
	assert_stats(&f, 1, 0, 1, 0);
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_true(r.cached);
	assert_stats(&f, 1, 1, 1, 0);
	/* a verification that bypasses the cache looks nothing up */
	verify(&f, "a b", "alice", "pw-a", GH_AUTH_VERIFY_NO_CACHE, &r);
	g_assert_false(r.cached);
	assert_stats(&f, 1, 1, 1, 0);
	/* another key; a TEMPFAIL misses and is not stored */
	verify(&f, "a b", "bob", "pw-b", 0, &r);
	assert_stats(&f, 2, 1, 2, 0);
	verify(&f, "down", "alice", "pw-a", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_TEMPFAIL);
	assert_stats(&f, 2, 1, 3, 0);

	/* A wrong password gives its address a penalty (and a cached
	 * verdict); the answer then waits 60 s on its timer, so cancel it once
	 * it is back on our context. */
	result_clear(&r);
	p = gh_auth_verify_async(f.set, chain_a, &bad, 0, NULL, on_done, &r);
	while (gh_auth_core_busy(f.core) > 0 || g_main_context_pending(NULL))
		g_main_context_iteration(NULL, FALSE);
	assert_stats(&f, 3, 1, 4, 1);
	gh_auth_pending_cancel(p);
	g_assert_false(r.done);
	/* a success from that address (here from the cache) clears it */
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_true(r.cached);
	assert_stats(&f, 3, 2, 4, 0);

	/* a flush empties the cache but the counts go on */
	g_assert_cmpuint(gh_auth_core_flush_cache(f.core), ==, 3);
	assert_stats(&f, 0, 2, 4, 0);

	/* the limits follow a reload */
	s.workers = 5;
	s.queue_max = 9;
	s.cache_size = 2;
	gh_auth_core_update(f.core, &s);
	gh_auth_core_stats(f.core, &st);
	g_assert_cmpuint(st.workers, ==, 5);
	g_assert_cmpuint(st.queue_max, ==, 9);
	g_assert_cmpuint(st.cache_max, ==, 2);
	result_clear(&r);
	fixture_teardown(&f);
}

/* One worker busy with a slow verification and two more waiting: running
 * and queued, read while the first one sleeps in the module. */
static void
test_chain_stats_pool(void)
{
	Fixture f = {0};
	Result r[3];
	GhAuthSettings s = {.workers = 1, .queue_max = 8};
	GhAuthRequest req = {
	    .user = "alice",
	    .password = "pw",
	    .password_len = 2,
	    .service = "imap",
	    .remote_addr = "192.0.2.1",
	};
	const char *chain[] = {"slow", NULL};
	GhAuthPending *p[G_N_ELEMENTS(r)];
	GhAuthCoreStats st = {0};
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

	memset(r, 0, sizeof r);
	fixture_setup_text(&f, "[auth slow]\nmodule = fake\nusers = alice:pw\ndelay_ms = 1000\n",
			   &s);
	g_assert_nonnull(f.set);
	for (guint i = 0; i < G_N_ELEMENTS(r); i++)
		p[i] = gh_auth_verify_async(f.set, chain, &req, 0, NULL, on_done, &r[i]);
	/* the worker takes the first within the second it then sleeps */
	do {
		gh_auth_core_stats(f.core, &st);
		if (st.running == 0)
			g_usleep(1000);
	} while (st.running == 0 && g_get_monotonic_time() < deadline);
	g_assert_cmpuint(st.workers, ==, 1);
	g_assert_cmpuint(st.running, ==, 1);
	g_assert_cmpuint(st.queued, ==, 2);
	g_assert_cmpuint(gh_auth_core_busy(f.core), ==, 3);

	/* cancelled, the waiting ones are dropped unrun */
	for (guint i = 0; i < G_N_ELEMENTS(r); i++)
		gh_auth_pending_cancel(p[i]);
	while (gh_auth_core_busy(f.core) > 0 || g_main_context_pending(NULL)) {
		if (!g_main_context_iteration(NULL, FALSE))
			g_usleep(1000);
	}
	gh_auth_core_stats(f.core, &st);
	g_assert_cmpuint(st.running, ==, 0);
	g_assert_cmpuint(st.queued, ==, 0);
	for (guint i = 0; i < G_N_ELEMENTS(r); i++)
		g_assert_false(r[i].done);
	fixture_teardown(&f);
}

static void
test_chain_flush_user(void)
{
	Fixture f = {0};
	Result r = {0};
	GhAuthCoreStats st;
	guint before;

	fixture_setup_text(&f, two_modules, NULL);
	g_assert_nonnull(f.set);
	/* alice's: two chains, and "Alice" whom no module knows (a failed
	 * verdict: no canonical user) */
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_cmpstr(r.canonical, ==, "a-alice");
	verify(&f, "a", "alice", "pw-a", 0, &r);
	verify(&f, "a b", "Alice", "pw-a", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_UNKNOWN_USER);
	/* not hers */
	verify(&f, "a b", "bob", "pw-b", 0, &r);
	verify(&f, "a b", "carol", "pw-c", 0, &r);
	g_assert_cmpstr(r.canonical, ==, "a-carol");
	gh_auth_core_stats(f.core, &st);
	g_assert_cmpuint(st.cache_entries, ==, 5);

	g_assert_cmpuint(gh_auth_core_flush_user(f.core, "ALICE"), ==, 3);
	gh_auth_core_stats(f.core, &st);
	g_assert_cmpuint(st.cache_entries, ==, 2);
	/* bob is still answered from the cache, alice goes to the module */
	before = fake_calls();
	verify(&f, "a b", "bob", "pw-b", 0, &r);
	g_assert_true(r.cached);
	g_assert_cmpuint(fake_calls(), ==, before);
	verify(&f, "a b", "alice", "pw-a", 0, &r);
	g_assert_false(r.cached);
	g_assert_cmpuint(fake_calls(), ==, before + 1);

	/* by the canonical user the module gave */
	g_assert_cmpuint(gh_auth_core_flush_user(f.core, "A-Carol"), ==, 1);
	g_assert_cmpuint(gh_auth_core_flush_user(f.core, "a-alice"), ==, 1);
	g_assert_cmpuint(gh_auth_core_flush_user(f.core, "nobody"), ==, 0);
	gh_auth_core_stats(f.core, &st);
	g_assert_cmpuint(st.cache_entries, ==, 1);
	verify(&f, "a b", "carol", "pw-c", 0, &r);
	g_assert_false(r.cached);
	result_clear(&r);
	fixture_teardown(&f);
}

static void
test_chain_queue_full(void)
{
	Fixture f = {0};
	Result r = {0};
	GhAuthSettings s = {.workers = 1, .queue_max = 0, .cache_size = 0};

	fixture_setup_text(&f, two_modules, &s);
	verify(&f, "a", "alice", "pw-a", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_TEMPFAIL);
	g_assert_null(r.instance);
	g_assert_cmpstr(r.reason, ==, "verification queue full");
	result_clear(&r);
	fixture_teardown(&f);
}

static void
test_chain_cancel(void)
{
	Fixture f = {0};
	Result r = {0};
	GhAuthPending *p;
	GhAuthRequest req = {
	    .user = "alice",
	    .password = "pw",
	    .password_len = 2,
	    .service = "imap",
	    .remote_addr = "192.0.2.1",
	};
	const char *chain[] = {"slow", NULL};
	gint64 until;

	fixture_setup_text(&f, "[auth slow]\nmodule = fake\nusers = alice:pw\ndelay_ms = 100\n",
			   NULL);
	g_assert_nonnull(f.set);
	p = gh_auth_verify_async(f.set, chain, &req, 0, NULL, on_done, &r);
	gh_auth_pending_cancel(p);
	until = g_get_monotonic_time() + 300 * 1000;
	while (g_get_monotonic_time() < until)
		g_main_context_iteration(NULL, FALSE);
	g_assert_false(r.done);
	fixture_teardown(&f);
}

/* The failure delay, asserted by its lower bound (tight) and by order, not
 * by how fast this machine is: with a delay of 60 s, an answer inside
 * verify()'s 10 s deadline was not delayed. */
static void
test_chain_failure_delay(void)
{
	Fixture f = {0};
	Result r = {0};
	GhAuthSettings s = {
	    .workers = 2,
	    .queue_max = 8,
	    .cache_size = 10,
	    .cache_ttl = 60,
	    .cache_negative_ttl = 60,
	    .failure_delay = 1,
	};
	gint64 t0;

	/* failure: answered after the delay, on a timer of our context */
	fixture_setup_text(&f, two_modules, &s);
	t0 = g_get_monotonic_time();
	verify(&f, "a", "alice", "bad", 0, &r);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_WRONG_PASSWORD);
	g_assert_cmpuint(r.delay_ms, ==, 1000);
	g_assert_cmpint(r.at_us - t0, >=, 1000 * 1000);
	result_clear(&r);
	fixture_teardown(&f);

	s.failure_delay = 60;
	fixture_setup_text(&f, two_modules, &s);
	/* success: no delay */
	verify(&f, "a", "alice", "pw-a", 0, &r);
	g_assert_true(r.done);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_OK);
	g_assert_cmpuint(r.delay_ms, ==, 0);
	/* the gatehousectl flag skips it */
	verify(&f, "a", "alice", "bad2", GH_AUTH_VERIFY_NO_DELAY, &r);
	g_assert_true(r.done);
	g_assert_cmpint(r.verdict, ==, GH_AUTH_WRONG_PASSWORD);
	g_assert_cmpuint(r.delay_ms, ==, 0);
	result_clear(&r);
	fixture_teardown(&f);
}

/* Cancelled while its failure delay runs: the answer never comes, and the
 * timer's reference is given back (valgrind sees the leak otherwise). */
static void
test_chain_cancel_in_failure_delay(void)
{
	Fixture f = {0};
	Result r = {0};
	GhAuthSettings s = {.workers = 2, .queue_max = 8, .failure_delay = 60};
	GhAuthRequest req = {
	    .user = "alice",
	    .password = "bad",
	    .password_len = 3,
	    .service = "imap",
	    .remote_addr = "192.0.2.7",
	};
	const char *chain[] = {"a", NULL};
	GhAuthPending *p;

	fixture_setup_text(&f, two_modules, &s);
	p = gh_auth_verify_async(f.set, chain, &req, 0, NULL, on_done, &r);
	/* the verdict is back on our context once the pool is idle and nothing
	 * is left to dispatch: it now waits on its 60 s timer */
	while (gh_auth_core_busy(f.core) > 0 || g_main_context_pending(NULL))
		g_main_context_iteration(NULL, FALSE);
	g_assert_false(r.done);
	gh_auth_pending_cancel(p);
	while (g_main_context_iteration(NULL, FALSE))
		;
	g_assert_false(r.done);
	fixture_teardown(&f);
}

static void
test_module_abi(void)
{
	g_autoptr(GError) error = NULL;
	const GhAuthModule *m = gh_auth_module_load(module_dir(), "badabi", &error);
	g_assert_null(m);
	g_assert_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_ABI);
	g_assert_nonnull(strstr(error->message, "module 'badabi'"));
	g_assert_nonnull(strstr(error->message, "ABI version 999"));
	g_assert_nonnull(strstr(error->message, "needs ABI version 1"));
	g_clear_error(&error);

	m = gh_auth_module_load(module_dir(), "fake", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(m->name, ==, "fake");
	g_assert_cmpuint(m->abi_version, ==, GH_AUTH_MODULE_ABI);
	/* loaded once: the same descriptor again */
	g_assert_true(gh_auth_module_load(module_dir(), "fake", NULL) == m);

	m = gh_auth_module_load(module_dir(), "nosuch", &error);
	g_assert_null(m);
	g_assert_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_NOT_FOUND);
	g_clear_error(&error);
	m = gh_auth_module_load(module_dir(), "../fake", &error);
	g_assert_null(m);
	g_assert_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_NOT_FOUND);
}

static void
test_set_problems(void)
{
	static const struct {
		const char *text;
		const char *expect; /* after "PATH:" */
	} cases[] = {
	    {"[auth x]\nmodule = fake\nbogus = 1\n",
	     "3: [auth x] bogus: unknown key for module 'fake'"},
	    {"[auth x]\nmodule = badabi\n", "2: [auth x] module: module 'badabi'"},
	    {"[auth x]\nmodule = nosuch\n", "2: [auth x] module: module 'nosuch' not found"},
	    {"[auth x]\nusers = a:b\n", "1: [auth x]: missing key 'module'"},
	    {"[auth x]\nmodule = fake\n\n[auth y]\nmodule = fake\nfail_init = yes\n",
	     "6: [auth y] fail_init: asked to fail"},
	};
	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		Fixture f = {0};
		g_autofree char *want = NULL;
		fixture_setup_text(&f, cases[i].text, NULL);
		g_assert_null(f.set);
		g_assert_cmpuint(f.problems->len, ==, 1);
		want = g_strdup_printf("%s:%s", f.conf, cases[i].expect);
		g_test_message("got: %s", (char *)g_ptr_array_index(f.problems, 0));
		g_assert_true(g_str_has_prefix(g_ptr_array_index(f.problems, 0), want));
		fixture_teardown(&f);
	}
}

static void
test_many_concurrent(void)
{
	Fixture f = {0};
	Result r[200];
	const char *chain[] = {"a", NULL};
	guint done = 0;
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

	/* a queue that holds them all: this test is about many requests in
	 * flight on several workers, not about the bound (see queue-full) */
	GhAuthSettings settings = {
	    .workers = 4,
	    .queue_max = 256,
	    .cache_size = 100,
	    .cache_ttl = 60,
	    .cache_negative_ttl = 60,
	    .failure_delay = 0,
	};

	memset(r, 0, sizeof r);
	fixture_setup_text(&f, two_modules, &settings);
	for (guint i = 0; i < G_N_ELEMENTS(r); i++) {
		GhAuthRequest req = {
		    .user = i % 2 ? "alice" : "carol",
		    .password = i % 2 ? "pw-a" : "bad",
		    .password_len = i % 2 ? 4 : 3,
		    .service = "smtp",
		    .remote_addr = "192.0.2.9",
		};
		gh_auth_verify_async(f.set, chain, &req, GH_AUTH_VERIFY_NO_CACHE, NULL, on_done,
				     &r[i]);
	}
	while (done < G_N_ELEMENTS(r) && g_get_monotonic_time() < deadline) {
		g_main_context_iteration(NULL, TRUE);
		done = 0;
		for (guint i = 0; i < G_N_ELEMENTS(r); i++)
			done += r[i].done;
	}
	g_assert_cmpuint(done, ==, G_N_ELEMENTS(r));
	for (guint i = 0; i < G_N_ELEMENTS(r); i++) {
		g_assert_cmpint(r[i].verdict, ==, (i % 2 ? GH_AUTH_OK : GH_AUTH_WRONG_PASSWORD));
		result_clear(&r[i]);
	}
	fixture_teardown(&f);
}

/* ---- identical requests in flight ---- */

/* Start n identical requests at once (a slow module keeps the first one
 * in flight while the others come), cancel the first if asked, and wait
 * for the others' answers. */
static void
storm(Fixture *f,
      const char *chain_text,
      const char *user,
      const char *pw,
      guint n,
      gboolean cancel_first,
      Result *r)
{
	g_auto(GStrv) chain = g_strsplit(chain_text, " ", -1);
	GhAuthRequest req = {
	    .user = user,
	    .password = pw,
	    .password_len = strlen(pw),
	    .service = "imap",
	    .remote_addr = "192.0.2.1",
	};
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
	guint done = 0;

	for (guint i = 0; i < n; i++) {
		GhAuthPending *p;
		result_clear(&r[i]);
		p = gh_auth_verify_async(f->set, (const char *const *)chain, &req, 0, NULL, on_done,
					 &r[i]);
		g_assert_false(gh_auth_pending_decided(p));
		if (i == 0 && cancel_first)
			gh_auth_pending_cancel(p);
	}
	while (done < n - (cancel_first ? 1 : 0) && g_get_monotonic_time() < deadline) {
		g_main_context_iteration(NULL, TRUE);
		done = 0;
		for (guint i = cancel_first ? 1 : 0; i < n; i++)
			done += r[i].done;
	}
	g_assert_cmpuint(done, ==, n - (cancel_first ? 1 : 0));
	wait_pool_idle(f);
}

static const char slow_modules[] = "[auth slow]\n"
				   "module = fake\n"
				   "users = alice:pw\n"
				   "canonical = c-\n"
				   "delay_ms = 300\n"
				   "\n"
				   "[auth slowdown]\n"
				   "module = fake\n"
				   "tempfail = yes\n"
				   "delay_ms = 100\n";

/* Twenty identical logins while the first is checked: one check, twenty
 * answers, each with the whole outcome; none claims to come from the cache,
 * and the verdict is cached once for the next. */
static void
test_flight_one_check(void)
{
	Fixture f = {0};
	Result r[20];
	guint before;

	memset(r, 0, sizeof r);
	fixture_setup_text(&f, slow_modules, NULL);
	before = fake_calls();
	storm(&f, "slow", "alice", "pw", G_N_ELEMENTS(r), FALSE, r);
	g_assert_cmpuint(fake_calls(), ==, before + 1);
	for (guint i = 0; i < G_N_ELEMENTS(r); i++) {
		g_assert_cmpint(r[i].verdict, ==, GH_AUTH_OK);
		g_assert_cmpstr(r[i].instance, ==, "slow");
		g_assert_cmpstr(r[i].canonical, ==, "c-alice");
		g_assert_false(r[i].cached);
	}
	verify(&f, "slow", "alice", "pw", 0, &r[0]);
	g_assert_true(r[0].cached);
	g_assert_cmpuint(fake_calls(), ==, before + 1);

	/* a wrong password is another request: checked on its own, and its
	 * twins share its no (the negative cache is on) */
	storm(&f, "slow", "alice", "guess", 5, FALSE, r);
	g_assert_cmpuint(fake_calls(), ==, before + 2);
	for (guint i = 0; i < 5; i++)
		g_assert_cmpint(r[i].verdict, ==, GH_AUTH_WRONG_PASSWORD);
	for (guint i = 0; i < G_N_ELEMENTS(r); i++)
		result_clear(&r[i]);
	fixture_teardown(&f);
}

/* The first request's session goes away: its check still answers the
 * others, and its own callback never runs. */
static void
test_flight_leader_cancelled(void)
{
	Fixture f = {0};
	Result r[6];
	guint before;

	memset(r, 0, sizeof r);
	fixture_setup_text(&f, slow_modules, NULL);
	before = fake_calls();
	storm(&f, "slow", "alice", "pw", G_N_ELEMENTS(r), TRUE, r);
	g_assert_false(r[0].done);
	g_assert_cmpuint(fake_calls(), ==, before + 1);
	for (guint i = 1; i < G_N_ELEMENTS(r); i++)
		g_assert_cmpint(r[i].verdict, ==, GH_AUTH_OK);
	for (guint i = 0; i < G_N_ELEMENTS(r); i++)
		result_clear(&r[i]);
	fixture_teardown(&f);
}

/* What the cache would not keep is not shared: a TEMPFAIL (the directory
 * may be back for the next), a no while negative caching is off, and
 * anything with the cache off -- each request is then checked itself. */
static void
test_flight_not_shared(void)
{
	Fixture f = {0};
	Result r[4];
	guint before;
	GhAuthSettings no_negative = {
	    .workers = 4, .queue_max = 64, .cache_size = 100, .cache_ttl = 60};
	GhAuthSettings off = {.workers = 4, .queue_max = 64};

	memset(r, 0, sizeof r);
	fixture_setup_text(&f, slow_modules, NULL);
	before = fake_calls();
	storm(&f, "slowdown", "alice", "pw", G_N_ELEMENTS(r), FALSE, r);
	g_assert_cmpuint(fake_calls(), ==, before + G_N_ELEMENTS(r));
	for (guint i = 0; i < G_N_ELEMENTS(r); i++)
		g_assert_cmpint(r[i].verdict, ==, GH_AUTH_TEMPFAIL);
	fixture_teardown(&f);

	fixture_setup_text(&f, slow_modules, &no_negative);
	before = fake_calls();
	storm(&f, "slow", "alice", "guess", G_N_ELEMENTS(r), FALSE, r);
	g_assert_cmpuint(fake_calls(), ==, before + G_N_ELEMENTS(r));
	for (guint i = 0; i < G_N_ELEMENTS(r); i++)
		g_assert_cmpint(r[i].verdict, ==, GH_AUTH_WRONG_PASSWORD);
	fixture_teardown(&f);

	fixture_setup_text(&f, slow_modules, &off);
	before = fake_calls();
	storm(&f, "slow", "alice", "pw", G_N_ELEMENTS(r), FALSE, r);
	g_assert_cmpuint(fake_calls(), ==, before + G_N_ELEMENTS(r));
	for (guint i = 0; i < G_N_ELEMENTS(r); i++) {
		g_assert_cmpint(r[i].verdict, ==, GH_AUTH_OK);
		result_clear(&r[i]);
	}
	fixture_teardown(&f);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();
	g_test_add_func("/gatehouse/chain/rules", test_chain_rules);
	g_test_add_func("/gatehouse/chain/short-circuit", test_chain_short_circuit);
	g_test_add_func("/gatehouse/chain/cache", test_chain_cache);
	g_test_add_func("/gatehouse/chain/flush-user", test_chain_flush_user);
	g_test_add_func("/gatehouse/chain/stats", test_chain_stats);
	g_test_add_func("/gatehouse/chain/stats-pool", test_chain_stats_pool);
	g_test_add_func("/gatehouse/chain/queue-full", test_chain_queue_full);
	g_test_add_func("/gatehouse/chain/cancel", test_chain_cancel);
	g_test_add_func("/gatehouse/chain/failure-delay", test_chain_failure_delay);
	g_test_add_func("/gatehouse/chain/cancel-in-failure-delay",
			test_chain_cancel_in_failure_delay);
	g_test_add_func("/gatehouse/chain/concurrent", test_many_concurrent);
	g_test_add_func("/gatehouse/chain/flight-one-check", test_flight_one_check);
	g_test_add_func("/gatehouse/chain/flight-leader-cancelled", test_flight_leader_cancelled);
	g_test_add_func("/gatehouse/chain/flight-not-shared", test_flight_not_shared);
	g_test_add_func("/gatehouse/module/abi", test_module_abi);
	g_test_add_func("/gatehouse/module/set-problems", test_set_problems);
	return g_test_run();
}
