/*
 * timer.h: the one timer type of gatehoused: a one-shot timeout on a given
 * GMainContext, in milliseconds (a seconds source may fire up to a second
 * early), that its owner embeds, restarts and stops.
 *
 * Invariants: at most one source is pending per GhTimer; when it fires the
 * timer is stopped before `func` runs, so `func` may restart the timer or
 * free the struct that embeds it.  Use from the context's own thread only.
 * Includes only <glib.h>.
 */
#pragma once

#include <glib.h>

typedef void (*GhTimerFunc)(gpointer data);

typedef struct {
	GSource *source;
	GhTimerFunc func;
	gpointer data;
} GhTimer;

/* Run func(data) once, `ms` from now, on `context` (NULL: the default
 * context), replacing what the timer was set to.  ms = 0 stops it. */
void gh_timer_start(GhTimer *t, GMainContext *context, guint ms, GhTimerFunc func, gpointer data);
/* Stop it (no effect when it is not running). */
void gh_timer_stop(GhTimer *t);
gboolean gh_timer_running(const GhTimer *t);
