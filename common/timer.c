/*
 * timer.c: see timer.h.
 *
 * One queue per GMainContext, found through a table under a lock (a
 * context's timers are started from its thread, but several threads start
 * timers on their own contexts at once).  The queue is a GSource: prepare
 * gives the loop the time until the earliest deadline (rounded up, so that
 * the loop never wakes early and spins), check says whether it is due,
 * dispatch fires every timer that is, earliest first.  The queue goes with
 * its context; timers still in it then are marked stopped.
 *
 * A timer set to yield has its deadline at the time it was set (so it is
 * due at once, and no later than the timers that were due before it) and
 * the number of the loop turn it may fire in: prepare counts the turns, so
 * the next turn's prepare finds it ready and the loop polls without
 * sleeping.  (A deadline one microsecond ahead, as it was, found prepare
 * often within that microsecond: the loop then slept a whole millisecond,
 * and a relay alone on its thread that yielded for fairness waited that
 * long at every yield.)
 */
#include "gh-build.h"

#include "common/timer.h"

struct _GhTimerQueue {
	GSource source;
	GMainContext *context; /* the key in `queues`; not a reference */
	GhTimer **heap;        /* heap[0]: the earliest deadline */
	guint len, cap;
	gint64 soon_seq; /* timers set soon: deadlines from G_MININT64 up, in order */
	guint turn;      /* the loop's turns, counted by prepare */
};

static GMutex queues_lock;
static GHashTable *queues; /* GMainContext * -> GhTimerQueue * */

/* the queue that gh_timer_soon() last put a timer in, on this thread,
 * until gh_timer_run_soon() or the queue's dispatch fires it */
static __thread GhTimerQueue *soon_queue;

/* ------------------------------------------------------------ the heap */

static inline gboolean
before(const GhTimer *a, const GhTimer *b)
{
	return a->deadline_us < b->deadline_us;
}

/* Due at `now`: its time has come and, set to yield, its turn has too (a
 * difference, so that the count may wrap). */
static inline gboolean
due(const GhTimerQueue *q, const GhTimer *t, gint64 now)
{
	return t->deadline_us <= now &&
	       (t->yield_turn == 0 || (gint)(q->turn - t->yield_turn) >= 0);
}

static inline void
place(GhTimerQueue *q, guint i, GhTimer *t)
{
	q->heap[i] = t;
	t->index = i;
}

static void
sift_up(GhTimerQueue *q, guint i)
{
	GhTimer *t = q->heap[i];

	while (i > 0 && before(t, q->heap[(i - 1) / 2])) {
		place(q, i, q->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	place(q, i, t);
}

static void
sift_down(GhTimerQueue *q, guint i)
{
	GhTimer *t = q->heap[i];

	for (;;) {
		guint c = 2 * i + 1;
		if (c >= q->len)
			break;
		if (c + 1 < q->len && before(q->heap[c + 1], q->heap[c]))
			c++;
		if (!before(q->heap[c], t))
			break;
		place(q, i, q->heap[c]);
		i = c;
	}
	place(q, i, t);
}

static void
heap_remove(GhTimerQueue *q, GhTimer *t)
{
	guint i = t->index;
	GhTimer *last = q->heap[--q->len];

	t->queue = NULL;
	if (last == t)
		return;
	place(q, i, last);
	if (i > 0 && before(last, q->heap[(i - 1) / 2]))
		sift_up(q, i);
	else
		sift_down(q, i);
}

static void
heap_add(GhTimerQueue *q, GhTimer *t)
{
	if (q->len == q->cap) {
		q->cap = MAX(16, q->cap * 2);
		q->heap = g_renew(GhTimer *, q->heap, q->cap);
	}
	t->queue = q;
	place(q, q->len++, t);
	sift_up(q, q->len - 1);
}

/* ------------------------------------------------------------ the source */

static gboolean
queue_prepare(GSource *source, gint *timeout)
{
	GhTimerQueue *q = (GhTimerQueue *)source;
	gint64 now, wait_us;

	q->turn++;
	if (q->len == 0) {
		*timeout = -1;
		return FALSE;
	}
	now = g_source_get_time(source);
	if (due(q, q->heap[0], now)) { /* a timer set soon is far before */
		*timeout = 0;
		return TRUE;
	}
	wait_us = q->heap[0]->deadline_us - now;
	*timeout = (gint)MIN((wait_us + 999) / 1000, G_MAXINT);
	return FALSE;
}

static gboolean
queue_check(GSource *source)
{
	GhTimerQueue *q = (GhTimerQueue *)source;

	return q->len > 0 && due(q, q->heap[0], g_source_get_time(source));
}

/* Fire every timer of q that is due, earliest first.  A func may start
 * others or stop them; one it sets soon fires in this loop too (its
 * deadline is before any clock reading), one it sets to yield does not
 * (its turn is the next).  A timer set to yield in this turn, at the head,
 * holds back the due timers behind it until the next turn, which then
 * does not sleep. */
static void
fire_due(GhTimerQueue *q)
{
	gint64 now = g_get_monotonic_time();

	if (soon_queue == q)
		soon_queue = NULL;
	while (q->len > 0 && due(q, q->heap[0], now)) {
		GhTimer *t = q->heap[0];
		heap_remove(q, t);
		t->func(t->data);
	}
}

static gboolean
queue_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	(void)callback;
	(void)user_data;
	fire_due((GhTimerQueue *)source);
	return G_SOURCE_CONTINUE;
}

static void
queue_finalize(GSource *source)
{
	GhTimerQueue *q = (GhTimerQueue *)source;

	g_mutex_lock(&queues_lock);
	if (queues != NULL && g_hash_table_lookup(queues, q->context) == q)
		g_hash_table_remove(queues, q->context);
	g_mutex_unlock(&queues_lock);
	if (soon_queue == q)
		soon_queue = NULL;
	for (guint i = 0; i < q->len; i++)
		q->heap[i]->queue = NULL;
	g_free(q->heap);
}

static GSourceFuncs queue_funcs = {
    .prepare = queue_prepare,
    .check = queue_check,
    .dispatch = queue_dispatch,
    .finalize = queue_finalize,
};

/* The queue of `context`, made (and attached) on first use. */
static GhTimerQueue *
queue_of(GMainContext *context)
{
	GhTimerQueue *q;

	if (context == NULL)
		context = g_main_context_default();
	g_mutex_lock(&queues_lock);
	if (queues == NULL)
		queues = g_hash_table_new(g_direct_hash, g_direct_equal);
	q = g_hash_table_lookup(queues, context);
	if (q == NULL) {
		q = (GhTimerQueue *)g_source_new(&queue_funcs, sizeof(GhTimerQueue));
		q->context = context;
		g_source_set_name(&q->source, "gh-timers");
		g_hash_table_insert(queues, context, q);
		g_source_attach(&q->source, context);
		/* the context holds it from now on; it goes with the context */
		g_source_unref(&q->source);
	}
	g_mutex_unlock(&queues_lock);
	return q;
}

/* ------------------------------------------------------------ the API */

void
gh_timer_stop(GhTimer *t)
{
	if (t->queue != NULL)
		heap_remove(t->queue, t);
}

/* Set t (stopped first) to fire func(data) at `deadline_us`, in q, and
 * not before the loop turn `yield_turn` (0: in any). */
static void
arm(GhTimer *t,
    GhTimerQueue *q,
    gint64 deadline_us,
    guint yield_turn,
    GhTimerFunc func,
    gpointer data)
{
	gh_timer_stop(t);
	t->func = func;
	t->data = data;
	t->deadline_us = deadline_us;
	t->yield_turn = yield_turn;
	heap_add(q, t);
}

void
gh_timer_start(GhTimer *t, GMainContext *context, guint ms, GhTimerFunc func, gpointer data)
{
	if (ms == 0) {
		gh_timer_stop(t);
		return;
	}
	arm(t, queue_of(context), g_get_monotonic_time() + (gint64)ms * 1000, 0, func, data);
}

void
gh_timer_soon(GhTimer *t, GMainContext *context, GhTimerFunc func, gpointer data)
{
	GhTimerQueue *q = queue_of(context);

	if (q->len == 0)
		q->soon_seq = 0; /* none set soon is waiting: start over */
	arm(t, q, G_MININT64 + q->soon_seq++, 0, func, data);
	soon_queue = q;
}

void
gh_timer_yield(GhTimer *t, GMainContext *context, GhTimerFunc func, gpointer data)
{
	GhTimerQueue *q = queue_of(context);

	/* the next turn's, after a poll; never 0, which means "any" */
	arm(t, q, g_get_monotonic_time(), q->turn + 1 != 0 ? q->turn + 1 : 1, func, data);
}

void
gh_timer_run_soon(void)
{
	if (soon_queue != NULL)
		fire_due(soon_queue);
}

gboolean
gh_timer_running(const GhTimer *t)
{
	return t->queue != NULL;
}
