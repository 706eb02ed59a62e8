/*
 * test-timer.c: GhTimer (common/timer.c): it fires once, on the context it
 * was started on, not before its time; a restart replaces what it was set
 * to, also from inside its function; a stop or a start with ms = 0 keeps it
 * from firing; its function may free the struct that embeds it; many timers
 * of one context fire each once, in deadline order.  A timer set soon never
 * fires inside the call that set it, fires in the same loop turn when the
 * dispatch that set it runs gh_timer_run_soon() (and so does one its func
 * sets soon), in the order they were set; one set to yield waits for the
 * next turn, so a func that keeps yielding never starves the loop.
 *
 * Each test iterates a GMainContext of its own and asserts what happened
 * and in which order, never how soon: "did not fire" is shown by a later
 * source of the same context that did ("the marker"), since a due timer
 * would have been dispatched no later than the marker.  The only upper
 * bound is the guard that keeps a hang from hanging the suite.
 */
#include "gh-build.h"

#include "common/timer.h"

#include <string.h>

#define GUARD_MS (60 * 1000)

/* What a timer's function saw. */
typedef struct {
	guint calls;
	gboolean done;         /* it ran and did not restart the timer */
	guint seen_running;    /* calls that found the timer running on entry */
	GMainContext *context; /* the context it last ran on */
	GhTimer *timer;        /* for seen_running and restarts; may be NULL */
	guint restarts;        /* it restarts the timer this many times more */
} Record;

static void
on_fire(gpointer data)
{
	Record *r = data;
	GSource *current = g_main_current_source();

	r->calls++;
	r->context = current != NULL ? g_source_get_context(current) : NULL;
	if (r->timer != NULL && gh_timer_running(r->timer))
		r->seen_running++;
	if (r->timer != NULL && r->restarts > 0) {
		r->restarts--;
		gh_timer_start(r->timer, r->context, 1, on_fire, r);
		g_assert_true(gh_timer_running(r->timer));
		return;
	}
	r->done = TRUE;
}

static gboolean
set_flag(gpointer data)
{
	*(gboolean *)data = TRUE;
	return G_SOURCE_REMOVE;
}

/* Iterate ctx until *done, or fail after the guard. */
static void
run_until(GMainContext *ctx, const gboolean *done)
{
	gboolean guard_hit = FALSE;
	GSource *guard = g_timeout_source_new(GUARD_MS);

	g_source_set_callback(guard, set_flag, &guard_hit, NULL);
	g_source_attach(guard, ctx);
	while (!*done && !guard_hit)
		g_main_context_iteration(ctx, TRUE);
	g_source_destroy(guard);
	g_source_unref(guard);
	g_assert_false(guard_hit);
}

/* Run ctx until a plain timeout of `ms` (the marker) has fired: any source
 * of ctx due before it has been dispatched by then. */
static void
run_past(GMainContext *ctx, guint ms)
{
	gboolean marker = FALSE;
	GSource *source = g_timeout_source_new(ms);

	g_source_set_callback(source, set_flag, &marker, NULL);
	g_source_attach(source, ctx);
	g_source_unref(source);
	run_until(ctx, &marker);
}

static void
test_fires_once(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	GhTimer t = {0};
	Record r = {0};
	gint64 start;

	r.timer = &t;
	g_assert_false(gh_timer_running(&t));
	start = g_get_monotonic_time();
	gh_timer_start(&t, ctx, 30, on_fire, &r);
	g_assert_true(gh_timer_running(&t));

	/* not on the default context: its marker comes and goes, no call */
	run_past(NULL, 50);
	g_assert_cmpuint(r.calls, ==, 0);
	g_assert_true(gh_timer_running(&t));

	run_until(ctx, &r.done);
	g_assert_cmpint(g_get_monotonic_time() - start, >=, 30 * 1000);
	g_assert_cmpuint(r.calls, ==, 1);
	g_assert_true(r.context == ctx);
	g_assert_cmpuint(r.seen_running, ==, 0); /* stopped before func runs */
	g_assert_false(gh_timer_running(&t));

	/* once: a marker well past a second period finds no second call */
	run_past(ctx, 100);
	g_assert_cmpuint(r.calls, ==, 1);
}

/* A NULL context is the default one. */
static void
test_default_context(void)
{
	GhTimer t = {0};
	Record r = {0};

	gh_timer_start(&t, NULL, 1, on_fire, &r);
	run_until(NULL, &r.done);
	g_assert_cmpuint(r.calls, ==, 1);
	g_assert_true(r.context == g_main_context_default());
	g_assert_false(gh_timer_running(&t));
}

static void
test_restart_replaces(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	GhTimer t = {0};
	Record first = {0}, second = {0};

	/* a restart before it fires: only the new time, function and data
	 * count; the first setting would have been due before the second */
	gh_timer_start(&t, ctx, 1, on_fire, &first);
	gh_timer_start(&t, ctx, 30, on_fire, &second);
	g_assert_true(gh_timer_running(&t));
	run_until(ctx, &second.done);
	g_assert_cmpuint(first.calls, ==, 0);
	g_assert_cmpuint(second.calls, ==, 1);
	run_past(ctx, 100);
	g_assert_cmpuint(first.calls, ==, 0);
	g_assert_cmpuint(second.calls, ==, 1);
}

/* func restarts its own timer: each start fires once more. */
static void
test_restart_from_func(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	GhTimer t = {0};
	Record r = {0};

	r.timer = &t;
	r.restarts = 2;
	gh_timer_start(&t, ctx, 1, on_fire, &r);
	run_until(ctx, &r.done);
	g_assert_cmpuint(r.calls, ==, 3);
	g_assert_cmpuint(r.restarts, ==, 0);
	g_assert_cmpuint(r.seen_running, ==, 0);
	g_assert_true(r.context == ctx);
	g_assert_false(gh_timer_running(&t));
	run_past(ctx, 50);
	g_assert_cmpuint(r.calls, ==, 3);
}

static void
test_stop_prevents(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	GhTimer t = {0};
	Record r = {0};

	/* stopping a timer never started, twice: no effect */
	gh_timer_stop(&t);
	gh_timer_stop(&t);
	g_assert_false(gh_timer_running(&t));

	gh_timer_start(&t, ctx, 1, on_fire, &r);
	gh_timer_stop(&t);
	g_assert_false(gh_timer_running(&t));
	gh_timer_stop(&t);
	run_past(ctx, 50);
	g_assert_cmpuint(r.calls, ==, 0);

	/* stopped, it can start again */
	gh_timer_start(&t, ctx, 1, on_fire, &r);
	run_until(ctx, &r.done);
	g_assert_cmpuint(r.calls, ==, 1);
	/* and a stop after it fired changes nothing */
	gh_timer_stop(&t);
	g_assert_cmpuint(r.calls, ==, 1);
}

/* ms = 0 stops it; on a stopped timer it does nothing (no call "at once"). */
static void
test_zero_stops(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	GhTimer t = {0};
	Record r = {0};

	gh_timer_start(&t, ctx, 1, on_fire, &r);
	gh_timer_start(&t, ctx, 0, on_fire, &r);
	g_assert_false(gh_timer_running(&t));
	run_past(ctx, 50);
	g_assert_cmpuint(r.calls, ==, 0);

	gh_timer_start(&t, ctx, 0, on_fire, &r);
	g_assert_false(gh_timer_running(&t));
	run_past(ctx, 20);
	g_assert_cmpuint(r.calls, ==, 0);
}

/* The struct that embeds the timer, freed by the timer's own function. */
typedef struct {
	GhTimer timer;
	char *name;
	gboolean *freed;
} Owner;

static void
owner_fire_and_free(gpointer data)
{
	Owner *o = data;

	g_assert_false(gh_timer_running(&o->timer));
	*o->freed = TRUE;
	g_free(o->name);
	g_free(o);
}

static void
test_func_frees_owner(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	gboolean freed = FALSE;
	Owner *o = g_new0(Owner, 1);

	o->name = g_strdup("owner");
	o->freed = &freed;
	gh_timer_start(&o->timer, ctx, 1, owner_fire_and_free, o);
	run_until(ctx, &freed);
	g_assert_true(freed);
	/* nothing of the timer is left to touch the freed struct */
	run_past(ctx, 50);
}

/* Many timers of one context (they share its queue): each fires once, in
 * the order of its deadline, and a stopped or restarted one as last set. */
typedef struct {
	GhTimer timer;
	gint64 deadline_us;
	guint calls;
	GArray *order; /* of gint64: the deadlines, as they fired */
} Many;

static void
on_many(gpointer data)
{
	Many *m = data;
	m->calls++;
	g_array_append_val(m->order, m->deadline_us);
}

static void
test_many_in_order(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	g_autoptr(GArray) order = g_array_new(FALSE, FALSE, sizeof(gint64));
	g_autoptr(GRand) rand = g_rand_new_with_seed(18);
	Many m[300];
	guint expect = 0;

	memset(m, 0, sizeof m);
	for (guint i = 0; i < G_N_ELEMENTS(m); i++) {
		guint ms = (guint)g_rand_int_range(rand, 1, 60);
		m[i].order = order;
		m[i].deadline_us = g_get_monotonic_time() + ms * 1000;
		gh_timer_start(&m[i].timer, ctx, ms, on_many, &m[i]);
	}
	/* stop every third, restart every fifth later */
	for (guint i = 0; i < G_N_ELEMENTS(m); i += 3)
		gh_timer_stop(&m[i].timer);
	for (guint i = 0; i < G_N_ELEMENTS(m); i += 5) {
		m[i].deadline_us = g_get_monotonic_time() + 70 * 1000;
		gh_timer_start(&m[i].timer, ctx, 70, on_many, &m[i]);
	}
	for (guint i = 0; i < G_N_ELEMENTS(m); i++)
		expect += gh_timer_running(&m[i].timer);
	run_past(ctx, 150);
	g_assert_cmpuint(order->len, ==, expect);
	for (guint i = 0; i < G_N_ELEMENTS(m); i++) {
		gboolean stopped = i % 3 == 0 && i % 5 != 0;
		g_assert_cmpuint(m[i].calls, ==, stopped ? 0 : 1);
		g_assert_false(gh_timer_running(&m[i].timer));
	}
	/* each deadline was read before its start: the order may differ only
	 * within the same millisecond */
	for (guint i = 1; i < order->len; i++)
		g_assert_cmpint(g_array_index(order, gint64, i), >=,
				g_array_index(order, gint64, i - 1) - 1000);
}

/* ---- soon and yield ---- */

typedef struct {
	GhTimer timer;
	GMainContext *ctx;
	GString *trace; /* the names, as they fired */
	const char *name;
	void *next;   /* a Step this one sets soon when it fires, or NULL */
	guint yields; /* it sets itself to yield this many times more */
	guint calls;
} Step;

static void
on_step(gpointer data)
{
	Step *s = data;
	Step *next = s->next;

	s->calls++;
	g_string_append(s->trace, s->name);
	if (next != NULL)
		gh_timer_soon(&next->timer, next->ctx, on_step, next);
	if (s->yields > 0) {
		s->yields--;
		gh_timer_yield(&s->timer, s->ctx, on_step, s);
	}
}

/* An idle source standing for an I/O thread's epoll source: its dispatch
 * sets the given steps soon, then drains, as conn.c's does. */
typedef struct {
	Step **steps;            /* NULL-terminated */
	guint calls_seen_inside; /* steps that had fired before the drain */
	gboolean ran;
} Dispatch;

static gboolean
dispatch_and_drain(gpointer data)
{
	Dispatch *d = data;

	for (Step **s = d->steps; *s != NULL; s++)
		gh_timer_soon(&(*s)->timer, (*s)->ctx, on_step, *s);
	for (Step **s = d->steps; *s != NULL; s++)
		d->calls_seen_inside += (*s)->calls;
	d->ran = TRUE;
	gh_timer_run_soon();
	return G_SOURCE_REMOVE;
}

/* One loop turn runs the dispatch and everything it set soon: the steps in
 * the order they were set, then the one the first step set soon. */
static void
test_soon_same_turn(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	g_autoptr(GString) trace = g_string_new(NULL);
	Step chained = {.ctx = ctx, .trace = trace, .name = "c"};
	Step a = {.ctx = ctx, .trace = trace, .name = "a", .next = &chained};
	Step b = {.ctx = ctx, .trace = trace, .name = "b"};
	Step *steps[] = {&a, &b, NULL};
	Dispatch d = {.steps = steps};
	GSource *idle = g_idle_source_new();

	g_source_set_callback(idle, dispatch_and_drain, &d, NULL);
	g_source_attach(idle, ctx);
	g_source_unref(idle);
	g_assert_true(g_main_context_iteration(ctx, FALSE));
	g_assert_true(d.ran);
	g_assert_cmpuint(d.calls_seen_inside, ==, 0); /* never inside the setting call */
	g_assert_cmpstr(trace->str, ==, "abc");
	g_assert_false(gh_timer_running(&a.timer));
	g_assert_false(gh_timer_running(&chained.timer));
	run_past(ctx, 20);
	g_assert_cmpstr(trace->str, ==, "abc"); /* each once */
}

/* Set soon outside any dispatch: the queue's own source fires it at the
 * next turn; stopped before that, it never fires. */
static void
test_soon_without_drain(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	g_autoptr(GString) trace = g_string_new(NULL);
	Step a = {.ctx = ctx, .trace = trace, .name = "a"};
	Step b = {.ctx = ctx, .trace = trace, .name = "b"};

	gh_timer_soon(&a.timer, ctx, on_step, &a);
	gh_timer_soon(&b.timer, ctx, on_step, &b);
	g_assert_cmpuint(a.calls, ==, 0);
	g_assert_true(gh_timer_running(&a.timer));
	gh_timer_stop(&b.timer);
	run_past(ctx, 20);
	g_assert_cmpstr(trace->str, ==, "a");
	/* a soon timer may be replaced by a later one, and the other way */
	gh_timer_start(&a.timer, ctx, 60 * 1000, on_step, &a);
	gh_timer_soon(&a.timer, ctx, on_step, &a);
	run_past(ctx, 20);
	g_assert_cmpstr(trace->str, ==, "aa");
	g_assert_false(gh_timer_running(&a.timer));
}

static gboolean
count_turn(gpointer data)
{
	(*(guint *)data)++;
	return G_SOURCE_CONTINUE;
}

/* A func that keeps setting itself to yield fires once per turn, and the
 * loop's other sources of the same priority (here an idle counting turns,
 * and a timeout marker) go on meanwhile. */
static void
test_yield_lets_go(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	g_autoptr(GString) trace = g_string_new(NULL);
	Step y = {.ctx = ctx, .trace = trace, .name = "y", .yields = G_MAXUINT};
	Step *steps[] = {&y, NULL};
	Dispatch d = {.steps = steps};
	GSource *idle = g_idle_source_new(), *turns = g_idle_source_new();
	guint turns_seen = 0;

	g_source_set_callback(idle, dispatch_and_drain, &d, NULL);
	g_source_attach(idle, ctx);
	g_source_unref(idle);
	g_assert_true(g_main_context_iteration(ctx, FALSE));
	g_assert_cmpuint(y.calls, ==, 1); /* the drain, then it yielded */
	g_assert_true(gh_timer_running(&y.timer));
	g_assert_true(g_main_context_iteration(ctx, FALSE));
	g_assert_cmpuint(y.calls, ==, 2); /* one more per turn, not more */

	/* as urgent as sockets (GLib runs a lower priority only when nothing
	 * above it is ready, and a yielding timer is ready at every turn) */
	g_source_set_priority(turns, G_PRIORITY_DEFAULT);
	g_source_set_callback(turns, count_turn, &turns_seen, NULL);
	g_source_attach(turns, ctx);
	run_past(ctx, 20); /* the marker fires although y never stops */
	g_assert_cmpuint(turns_seen, >, 0);
	g_assert_cmpuint(y.calls, >=, 2 + 1);
	g_source_destroy(turns);
	g_source_unref(turns);
	gh_timer_stop(&y.timer);
}

/* The timeout the context's next turn would poll with, and that turn run
 * without polling (the test's sources are not descriptors). */
static gint
next_poll_timeout(GMainContext *ctx)
{
	GPollFD fds[8];
	gint priority = 0, timeout = -1;

	g_assert_true(g_main_context_acquire(ctx));
	(void)g_main_context_prepare(ctx, &priority);
	(void)g_main_context_query(ctx, priority, &timeout, fds, G_N_ELEMENTS(fds));
	(void)g_main_context_check(ctx, priority, fds, 0);
	g_main_context_dispatch(ctx);
	g_main_context_release(ctx);
	return timeout;
}

/* A timer set to yield makes the next turn poll without sleeping, however
 * little time has passed since it was set; and that turn fires it.  (With
 * its deadline a microsecond ahead, a turn that came within the
 * microsecond slept a millisecond: a 10 MiB FETCH through TLS, alone on
 * its thread, ran at a quarter of its speed.) */
static void
test_yield_does_not_sleep(void)
{
	g_autoptr(GMainContext) ctx = g_main_context_new();
	g_autoptr(GString) trace = g_string_new(NULL);
	Step y = {.ctx = ctx, .trace = trace, .name = "y"};
	GhTimer later = {0};

	/* a timer far off, so that an empty heap is not what says "now" */
	gh_timer_start(&later, ctx, 60 * 1000, on_step, &y);
	for (guint i = 0; i < 200; i++) {
		gh_timer_yield(&y.timer, ctx, on_step, &y);
		g_assert_cmpint(next_poll_timeout(ctx), ==, 0);
		g_assert_cmpuint(y.calls, ==, i + 1);
		g_assert_false(gh_timer_running(&y.timer));
	}
	g_assert_true(gh_timer_running(&later));
	gh_timer_stop(&later);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/timer/fires-once", test_fires_once);
	g_test_add_func("/gatehouse/timer/default-context", test_default_context);
	g_test_add_func("/gatehouse/timer/restart-replaces", test_restart_replaces);
	g_test_add_func("/gatehouse/timer/restart-from-func", test_restart_from_func);
	g_test_add_func("/gatehouse/timer/stop-prevents", test_stop_prevents);
	g_test_add_func("/gatehouse/timer/zero-stops", test_zero_stops);
	g_test_add_func("/gatehouse/timer/func-frees-owner", test_func_frees_owner);
	g_test_add_func("/gatehouse/timer/many-in-order", test_many_in_order);
	g_test_add_func("/gatehouse/timer/soon-same-turn", test_soon_same_turn);
	g_test_add_func("/gatehouse/timer/soon-without-drain", test_soon_without_drain);
	g_test_add_func("/gatehouse/timer/yield-lets-go", test_yield_lets_go);
	g_test_add_func("/gatehouse/timer/yield-does-not-sleep", test_yield_does_not_sleep);
	return g_test_run();
}
