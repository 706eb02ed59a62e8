/*
 * test-penalty.c: the failed-login delay: exponential growth and its cap,
 * no escalation on a repeated password, success and the quiet window
 * clearing an address, IPv6 /48 and IPv4-mapped aggregation, the bounded
 * table, base 0, peek, the number of addresses held, and many threads at
 * once.
 */
#include "gh-build.h"

#include "penalty.h"

#include <string.h>

#define SEC ((gint64)G_USEC_PER_SEC)
#define T0 (1000 * SEC)
#define WINDOW (15 * 60 * SEC)

static guint
fail(GhPenalty *p, const char *remote, const char *pw, gint64 now)
{
	return gh_penalty_fail(p, remote, pw, strlen(pw), now);
}

static void
test_growth(void)
{
	static const struct {
		guint base;
		guint delays[7];
	} cases[] = {
	    {2, {2000, 4000, 8000, 15000, 15000, 15000, 15000}},
	    {1, {1000, 2000, 4000, 8000, 15000, 15000, 15000}},
	    {3, {3000, 6000, 12000, 15000, 15000, 15000, 15000}},
	    {15, {15000, 15000, 15000, 15000, 15000, 15000, 15000}},
	    {20, {20000, 20000, 20000, 20000, 20000, 20000, 20000}},
	    {0, {0, 0, 0, 0, 0, 0, 0}},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GhPenalty) p = gh_penalty_new(cases[i].base, 100);

		g_test_message("base %u", cases[i].base);
		for (gsize k = 0; k < G_N_ELEMENTS(cases[i].delays); k++) {
			char pw[16];

			g_snprintf(pw, sizeof pw, "guess%zu", k);
			g_assert_cmpuint(fail(p, "192.0.2.1", pw, T0 + (gint64)k * SEC), ==,
					 cases[i].delays[k]);
		}
		/* Many more failures neither overflow nor pass the cap. */
		for (int k = 0; k < 100; k++) {
			char pw[16];

			g_snprintf(pw, sizeof pw, "more%d", k);
			g_assert_cmpuint(fail(p, "192.0.2.1", pw, T0 + 10 * SEC), ==,
					 cases[i].delays[6]);
		}
	}
}

static void
test_same_password(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(2, 100);

	g_assert_cmpuint(fail(p, "192.0.2.1", "x", T0), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "x", T0 + SEC), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "x", T0 + 2 * SEC), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "y", T0 + 3 * SEC), ==, 4000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "y", T0 + 4 * SEC), ==, 4000);
	/* Only the last failed password counts as "the same". */
	g_assert_cmpuint(fail(p, "192.0.2.1", "x", T0 + 5 * SEC), ==, 8000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "", T0 + 6 * SEC), ==, 15000);
	g_assert_cmpuint(gh_penalty_fail(p, "192.0.2.1", NULL, 0, T0 + 7 * SEC), ==, 15000);
	/* A password that is a prefix of the last one is another password. */
	g_assert_cmpuint(fail(p, "192.0.2.2", "secret", T0), ==, 2000);
	g_assert_cmpuint(gh_penalty_fail(p, "192.0.2.2", "secret", 3, T0), ==, 4000);
}

static void
test_success(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(2, 100);

	fail(p, "192.0.2.1", "a", T0);
	fail(p, "192.0.2.1", "b", T0);
	fail(p, "192.0.2.2", "a", T0);
	fail(p, "192.0.2.2", "b", T0);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 8000);
	g_assert_cmpuint(gh_penalty_failures(p, "192.0.2.1", T0), ==, 2);
	gh_penalty_success(p, "192.0.2.1");
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 2000);
	g_assert_cmpuint(gh_penalty_failures(p, "192.0.2.1", T0), ==, 0);
	g_assert_cmpuint(gh_penalty_failures(p, "198.51.100.7", T0), ==, 0);
	g_assert_cmpuint(fail(p, "192.0.2.1", "c", T0), ==, 2000);
	/* Another address keeps its count. */
	g_assert_cmpuint(fail(p, "192.0.2.2", "c", T0), ==, 8000);
	/* Success for an address never seen is harmless. */
	gh_penalty_success(p, "198.51.100.7");
	gh_penalty_success(p, NULL);
}

static void
test_aggregation(void)
{
	static const struct {
		const char *first;
		const char *second;
		gboolean shared;
	} cases[] = {
	    {"2001:db8:1:2::1", "2001:db8:1:ffff::5", TRUE},
	    {"2001:db8:1::", "2001:0db8:0001:abcd:ef01:2345:6789:abcd", TRUE},
	    {"2001:db8:1::1", "2001:db8:2::1", FALSE},
	    {"2001:db8:1::1", "2001:db9:1::1", FALSE},
	    {"2001:db8:1::1", "2001:DB8:1::2", TRUE},
	    {"192.0.2.1", "192.0.2.2", FALSE},
	    {"192.0.2.1", "192.0.2.1", TRUE},
	    /* IPv4-mapped IPv6 is the IPv4 client, not a /48 of all of them. */
	    {"::ffff:192.0.2.1", "192.0.2.1", TRUE},
	    {"::ffff:192.0.2.1", "::ffff:198.51.100.1", FALSE},
	    {"::1", "::2", TRUE},
	    {"not an address", "not an address", TRUE},
	    {"not an address", "not an address either", FALSE},
	    {"2001:db8:1::/48", "2001:db8:1::1", FALSE},
	    {"4:192.0.2.1", "192.0.2.1", FALSE},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GhPenalty) p = gh_penalty_new(2, 100);

		g_test_message("%s / %s", cases[i].first, cases[i].second);
		g_assert_cmpuint(fail(p, cases[i].first, "a", T0), ==, 2000);
		g_assert_cmpuint(fail(p, cases[i].first, "b", T0), ==, 4000);
		g_assert_cmpuint(fail(p, cases[i].second, "c", T0), ==,
				 cases[i].shared ? 8000 : 2000);
		/* Success from one clears the shared counter. */
		gh_penalty_success(p, cases[i].second);
		g_assert_cmpuint(gh_penalty_peek(p, cases[i].first, T0), ==,
				 cases[i].shared ? 2000 : 8000);
	}
}

static void
test_base_zero(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(0, 100);

	for (int i = 0; i < 5; i++)
		g_assert_cmpuint(fail(p, "192.0.2.1", i % 2 ? "a" : "b", T0 + i), ==, 0);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 0);

	/* Turning it on later starts from scratch; off again gives 0. */
	gh_penalty_set_base(p, 2);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "a", T0), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "b", T0), ==, 4000);
	gh_penalty_set_base(p, 3);
	g_assert_cmpuint(fail(p, "192.0.2.1", "c", T0), ==, 12000);
	gh_penalty_set_base(p, 0);
	g_assert_cmpuint(fail(p, "192.0.2.1", "d", T0), ==, 0);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 0);
}

static void
test_window(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(2, 100);

	fail(p, "192.0.2.1", "a", T0);
	fail(p, "192.0.2.1", "b", T0);
	g_assert_cmpuint(fail(p, "192.0.2.1", "c", T0), ==, 8000);
	/* Just inside the window the count goes on from the last failure ... */
	g_assert_cmpuint(fail(p, "192.0.2.1", "d", T0 + WINDOW - 1), ==, 15000);
	/* ... which also restarts the window. */
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0 + WINDOW + SEC), ==, 15000);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0 + 2 * WINDOW - 2), ==, 15000);
	/* 15 quiet minutes since the last failure: a fresh start. */
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0 + 2 * WINDOW - 1), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "e", T0 + 2 * WINDOW + 5 * SEC), ==, 2000);

	/* The same password after the window counts as a new first failure. */
	fail(p, "192.0.2.9", "x", T0);
	g_assert_cmpuint(fail(p, "192.0.2.9", "x", T0 + WINDOW), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.9", "y", T0 + WINDOW), ==, 4000);
}

static void
test_peek(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(2, 100);

	/* What the next failure would get, without counting one. */
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 2000);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 2000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "a", T0), ==, 2000);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 4000);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 4000);
	g_assert_cmpuint(fail(p, "192.0.2.1", "b", T0), ==, 4000);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0), ==, 8000);
	g_assert_cmpuint(gh_penalty_peek(p, "2001:db8:1::1", T0), ==, 2000);
	g_assert_cmpuint(gh_penalty_peek(p, NULL, T0), ==, 2000);
	g_assert_cmpuint(gh_penalty_peek(p, "", T0), ==, 2000);
}

static void
test_bounded(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(2, 2);
	g_autoptr(GhPenalty) none = gh_penalty_new(2, 0);

	fail(p, "192.0.2.1", "a", T0);
	fail(p, "192.0.2.2", "a", T0 + 1);
	fail(p, "192.0.2.1", "b", T0 + 2);
	/* .2 failed longest ago: the third address pushes it out. */
	fail(p, "192.0.2.3", "a", T0 + 3);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.2", T0 + 4), ==, 2000);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.1", T0 + 4), ==, 8000);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.3", T0 + 4), ==, 4000);

	/* No room at all: every failure gets the base delay. */
	for (int i = 0; i < 3; i++)
		g_assert_cmpuint(fail(none, "192.0.2.1", i % 2 ? "a" : "b", T0), ==, 2000);
	g_assert_cmpuint(gh_penalty_peek(none, "192.0.2.1", T0), ==, 2000);
}

static void
test_size(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(2, 100);
	g_autoptr(GhPenalty) small = gh_penalty_new(2, 2);
	g_autoptr(GhPenalty) none = gh_penalty_new(2, 0);
	g_autoptr(GhPenalty) off = gh_penalty_new(0, 100);

	g_assert_cmpuint(gh_penalty_size(p, T0), ==, 0);
	/* one per failing address, not per failure */
	fail(p, "192.0.2.1", "a", T0);
	g_assert_cmpuint(gh_penalty_size(p, T0), ==, 1);
	fail(p, "192.0.2.1", "b", T0 + 1);
	fail(p, "192.0.2.1", "b", T0 + 2);
	g_assert_cmpuint(gh_penalty_size(p, T0 + 2), ==, 1);
	fail(p, "192.0.2.2", "a", T0 + 3);
	g_assert_cmpuint(gh_penalty_size(p, T0 + 3), ==, 2);
	/* one per /48, and a mapped IPv4 address is that address */
	fail(p, "2001:db8:1::1", "a", T0 + 4);
	fail(p, "2001:db8:1:2::1", "b", T0 + 5);
	fail(p, "::ffff:192.0.2.2", "b", T0 + 6);
	g_assert_cmpuint(gh_penalty_size(p, T0 + 6), ==, 3);
	/* a success shrinks it; one from an address never seen does not */
	gh_penalty_success(p, "192.0.2.1");
	g_assert_cmpuint(gh_penalty_size(p, T0 + 6), ==, 2);
	gh_penalty_success(p, "198.51.100.7");
	g_assert_cmpuint(gh_penalty_size(p, T0 + 6), ==, 2);
	/* an address whose window is over is no longer counted, nor kept */
	g_assert_cmpuint(gh_penalty_size(p, T0 + 5 + WINDOW - 1), ==, 2);
	g_assert_cmpuint(gh_penalty_size(p, T0 + 5 + WINDOW), ==, 1);
	g_assert_cmpuint(gh_penalty_size(p, T0 + 5 + WINDOW), ==, 1);
	g_assert_cmpuint(gh_penalty_size(p, T0 + 6 + WINDOW), ==, 0);
	g_assert_cmpuint(gh_penalty_peek(p, "192.0.2.2", T0), ==, 2000);
	fail(p, "192.0.2.2", "c", T0 + 7 + WINDOW);
	g_assert_cmpuint(gh_penalty_size(p, T0 + 7 + WINDOW), ==, 1);

	/* never more than the table holds, none without a table or a base */
	for (int i = 0; i < 5; i++) {
		char remote[32];

		g_snprintf(remote, sizeof remote, "198.51.100.%d", i);
		fail(small, remote, "a", T0 + i);
		fail(none, remote, "a", T0 + i);
		fail(off, remote, "a", T0 + i);
	}
	g_assert_cmpuint(gh_penalty_size(small, T0 + 5), ==, 2);
	g_assert_cmpuint(gh_penalty_size(none, T0 + 5), ==, 0);
	g_assert_cmpuint(gh_penalty_size(off, T0 + 5), ==, 0);
}

#define THREADS 4
#define ROUNDS 5000

static gpointer
thread_main(gpointer data)
{
	GhPenalty *p = data;
	char remote[64];
	char pw[16];
	guint bad = 0;

	for (int i = 0; i < ROUNDS; i++) {
		guint d;

		g_snprintf(remote, sizeof remote, "2001:db8:%x::%x", i % 300, i);
		g_snprintf(pw, sizeof pw, "pw%d", i);
		d = fail(p, remote, pw, T0 + i);
		if (d < 2000 || d > 15000)
			bad++;
		if (i % 7 == 0)
			gh_penalty_success(p, remote);
		if (gh_penalty_peek(p, remote, T0 + i) > 15000)
			bad++;
	}
	return GUINT_TO_POINTER(bad);
}

static void
test_threads(void)
{
	g_autoptr(GhPenalty) p = gh_penalty_new(2, 100);
	GThread *threads[THREADS];

	for (int i = 0; i < THREADS; i++)
		threads[i] = g_thread_new("penalty-test", thread_main, p);
	for (int i = 0; i < THREADS; i++)
		g_assert_cmpuint(GPOINTER_TO_UINT(g_thread_join(threads[i])), ==, 0);
	g_assert_cmpuint(gh_penalty_size(p, T0 + ROUNDS), <=, 100);
	g_assert_cmpuint(gh_penalty_size(p, T0 + ROUNDS + WINDOW), ==, 0);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();

	g_test_add_func("/gatehouse/penalty/growth", test_growth);
	g_test_add_func("/gatehouse/penalty/same-password", test_same_password);
	g_test_add_func("/gatehouse/penalty/success", test_success);
	g_test_add_func("/gatehouse/penalty/aggregation", test_aggregation);
	g_test_add_func("/gatehouse/penalty/base-zero", test_base_zero);
	g_test_add_func("/gatehouse/penalty/window", test_window);
	g_test_add_func("/gatehouse/penalty/peek", test_peek);
	g_test_add_func("/gatehouse/penalty/bounded", test_bounded);
	g_test_add_func("/gatehouse/penalty/size", test_size);
	g_test_add_func("/gatehouse/penalty/threads", test_threads);
	return g_test_run();
}
