/*
 * penalty.h: how long to wait before telling a client its login failed.
 *
 * Per remote address (IPv4 /32, IPv6 /48), the delay grows with each failure:
 * base, 2*base, 4*base ... capped at max(base, 15 s).  Retrying the password
 * that just failed again does not escalate (a misconfigured client retrying
 * is not an attack), a success clears the address, and an address with no
 * failure for 15 minutes is forgotten.  base = 0 turns penalties off.  The
 * table is bounded; the oldest address goes first.
 *
 * The caller runs the delay as a timer on its main context, never as a sleep.
 * Thread-safe.
 */
#pragma once

#include <glib.h>

typedef struct _GhPenalty GhPenalty;

GhPenalty *gh_penalty_new(guint base_delay_s, guint max_addresses);
void gh_penalty_free(GhPenalty *penalty);
void gh_penalty_set_base(GhPenalty *penalty, guint base_delay_s);

/* Record a failed login from `remote` (textual IPv4 or IPv6 address; anything
 * else is treated as one opaque key) with the given password and return the
 * delay to apply, in milliseconds.  now_us is g_get_monotonic_time(). */
guint gh_penalty_fail(GhPenalty *penalty,
		      const char *remote,
		      const char *password,
		      gsize password_len,
		      gint64 now_us);
/* A login from `remote` succeeded: forget its failures. */
void gh_penalty_success(GhPenalty *penalty, const char *remote);
/* The delay the next failure from `remote` would get now, in ms (for tests and stats). */
guint gh_penalty_peek(GhPenalty *penalty, const char *remote, gint64 now_us);
/* The failures counted for `remote` now (0: none within the quiet window). */
guint gh_penalty_failures(GhPenalty *penalty, const char *remote, gint64 now_us);
/* How many addresses have a failure within the quiet window at now_us (for
 * stats); forgets those whose window is over. */
guint gh_penalty_size(GhPenalty *penalty, gint64 now_us);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhPenalty, gh_penalty_free)
