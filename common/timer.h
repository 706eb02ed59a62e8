/*
 * timer.h: the one timer type of gatehoused: a one-shot timeout on a given
 * GMainContext, in milliseconds, that its owner embeds, restarts and stops.
 *
 * All the timers of a context live in one binary heap behind one GSource
 * of that context (common/timer.c): starting, restarting and stopping a
 * timer allocates nothing and touches no GLib source, where a GSource per
 * timer cost several allocations and a lock each time (three per login).
 *
 * Invariants: a timer is in at most one heap (running) or none; when it
 * fires it is stopped before `func` runs, so `func` may restart the timer
 * or free the struct that embeds it; it never fires before its time.  Use
 * from the context's own thread only.
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
	gint64 deadline_us;  /* monotonic */
	GhTimerFunc func;
	gpointer data;
} GhTimer;

/* Run func(data) once, `ms` from now, on `context` (NULL: the default
 * context), replacing what the timer was set to.  ms = 0 stops it. */
void gh_timer_start(GhTimer *t, GMainContext *context, guint ms, GhTimerFunc func, gpointer data);
/* Stop it (no effect when it is not running). */
void gh_timer_stop(GhTimer *t);
gboolean gh_timer_running(const GhTimer *t);
