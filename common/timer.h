/*
 * timer.h: the one timer type of gatehoused: a one-shot timeout on a given
 * GMainContext, in milliseconds, that its owner embeds, restarts and stops.
 *
 * All the timers of a context live in one binary heap behind one GSource
 * of that context (common/timer.c): starting, restarting and stopping a
 * timer allocates nothing and touches no GLib source, where a GSource per
 * timer cost several allocations and a lock each time (three per login).
 *
 * A timer can also be set to run "soon": from the loop, once the callback
 * now running has returned, before the thread sleeps again.  That is what
 * a GLib idle source would give, one loop turn later and with a GSource
 * made and destroyed each time.  The dispatch functions of the I/O
 * threads' own sources call gh_timer_run_soon() as they return, so such a
 * timer fires in the same loop turn, and one set soon by a timer's func
 * fires in that turn too (a chain of steps costs no wake-up); from
 * anywhere else it fires at the next turn, through the queue's source.
 * A timer set to "yield" fires at the next turn, after the loop has polled
 * again: for work that must let the other connections go first.
 *
 * Invariants: a timer is in at most one heap (running) or none; when it
 * fires it is stopped before `func` runs, so `func` may restart the timer
 * or free the struct that embeds it; it never fires before its time, and
 * a timer set "soon" never fires inside the call that set it.  Use from
 * the context's own thread only.
 * Includes only <glib.h>.
 */
#pragma once

#include <glib.h>

typedef void (*GhTimerFunc)(gpointer data);

typedef struct _GhTimerQueue GhTimerQueue;

/* Embedded by its owner; zeroed is stopped.  The fields are timer.c's. */
typedef struct {
	GhTimerQueue *queue; /* the heap it is in, or NULL: stopped */
	guint index;         /* its place in that heap */
	guint yield_turn;    /* set to yield: the first loop turn it may fire in; else 0 */
	gint64 deadline_us;  /* monotonic */
	GhTimerFunc func;
	gpointer data;
} GhTimer;

/* Run func(data) once, `ms` from now, on `context` (NULL: the default
 * context), replacing what the timer was set to.  ms = 0 stops it. */
void gh_timer_start(GhTimer *t, GMainContext *context, guint ms, GhTimerFunc func, gpointer data);
/* Run func(data) once, from `context`'s loop, as soon as the callback now
 * running has returned (never inside this call), replacing what the timer
 * was set to.  The caller's thread must be the one that runs `context`. */
void gh_timer_soon(GhTimer *t, GMainContext *context, GhTimerFunc func, gpointer data);
/* Run func(data) once, at `context`'s next loop turn, after its poll: the
 * other ready sources and sockets go first.  A func must use this, not
 * gh_timer_soon(), to set its own timer again, or it never lets go. */
void gh_timer_yield(GhTimer *t, GMainContext *context, GhTimerFunc func, gpointer data);
/* Fire the timers that gh_timer_soon() set on this thread, and any other
 * timer of their context that is due, now.  For a GSource's dispatch to
 * call last, when none of its callbacks is on the stack any more. */
void gh_timer_run_soon(void);
/* Stop it (no effect when it is not running). */
void gh_timer_stop(GhTimer *t);
gboolean gh_timer_running(const GhTimer *t);
