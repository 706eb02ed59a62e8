/*
 * timer.c: see timer.h.
 */
#include "gh-build.h"

#include "common/timer.h"

static gboolean
on_fire(gpointer user_data)
{
	GhTimer *t = user_data;
	GhTimerFunc func = t->func;
	gpointer data = t->data;

	/* stopped first: func may restart the timer or free its owner */
	g_source_unref(t->source);
	t->source = NULL;
	func(data);
	return G_SOURCE_REMOVE;
}

void
gh_timer_stop(GhTimer *t)
{
	if (t->source == NULL)
		return;
	g_source_destroy(t->source);
	g_source_unref(t->source);
	t->source = NULL;
}

void
gh_timer_start(GhTimer *t, GMainContext *context, guint ms, GhTimerFunc func, gpointer data)
{
	gh_timer_stop(t);
	if (ms == 0)
		return;
	t->func = func;
	t->data = data;
	t->source = g_timeout_source_new(ms);
	g_source_set_callback(t->source, on_fire, t, NULL);
	g_source_attach(t->source, context);
}

gboolean
gh_timer_running(const GhTimer *t)
{
	return t->source != NULL;
}
