/*
 * relay.h: after login, bytes flow between the client and the backend
 * unchanged, in both directions, until either side closes.
 *
 * Back-pressure: a side is read only while the other side's output buffer
 * has room, so a slow reader stalls the fast writer instead of growing
 * memory; each direction holds at most in_max + out_max of its GhConns.
 * Bytes already read from the client before the relay starts (pipelined
 * commands behind AUTH or MAIL) sit in the client's `in` and are sent
 * first, in order.
 *
 * Worker thread only.
 */
#pragma once

#include <glib.h>
#include "net/conn.h"

typedef struct _GhRelay GhRelay;

/* The relay has ended: `why` says how ("client closed", "backend closed",
 * "client: Connection reset by peer", ...), or is NULL when the tap held
 * the client's last bytes (see GhRelayTap: then both sides are idle, with
 * nothing queued either way).  Both connections are still open
 * (gh_relay_free closes them, gh_relay_release hands them back).  Bytes
 * are counted from the start of the relay, the held ones not included. */
typedef void (*GhRelayDone)(GhRelay *relay,
			    const char *why,
			    guint64 client_to_backend,
			    guint64 backend_to_client,
			    gpointer user_data);

/* Start relaying between `client` and `backend` (transfer full: both are
 * closed by gh_relay_free). */
GhRelay *gh_relay_start(GhConn *client, GhConn *backend, GhRelayDone done, gpointer user_data);
/* A tap: a protocol that follows what it relays (SMTP's QUIT, for
 * `reuse_connections`) is shown every byte before it is passed on.  `up`
 * gets the client's bytes, `down` the backend's, in order.  A verdict:
 * PASS; BLIND: pass these and every later byte without showing them (the
 * tap is freed); HOLD (up only): these bytes are not passed on, and the
 * relay ends at once with `why` NULL.  A relay that turns to splice(2)
 * goes blind first: the tap never misses a byte it would have had to see.
 * HOLD is honoured only while nothing is queued or in flight in either
 * direction; otherwise the relay goes blind and passes the bytes on. */
typedef enum {
	GH_RELAY_TAP_PASS,
	GH_RELAY_TAP_BLIND,
	GH_RELAY_TAP_HOLD,
} GhRelayTapVerdict;

typedef struct {
	GhRelayTapVerdict (*up)(gpointer tap, const guint8 *buf, gsize len);
	GhRelayTapVerdict (*down)(gpointer tap, const guint8 *buf, gsize len);
	void (*free)(gpointer tap);
	/* May a line of ours reach the client between the server's lines now
	 * (gh_relay_release_client)?  NULL: a line end is enough.  Once a tap
	 * that has it is dropped (blind), the answer is no. */
	gboolean (*at_rest)(gpointer tap);
} GhRelayTap;

/* Set the tap (transfer full of `tap`) right after gh_relay_start, before
 * the loop runs it. */
void gh_relay_set_tap(GhRelay *relay, const GhRelayTap *funcs, gpointer tap);

/* Call func(data) once, at the end of the first pump that passes bytes of
 * the client's on to the backend (those read before the start included):
 * the backend then works on the client's first command after the login,
 * and this thread waits for it.  Not called if the relay ends first. */
void gh_relay_after_first_up(GhRelay *relay, void (*func)(gpointer data), gpointer data);

/* Stop (if still running) and close both sides.  NULL allowed. */
void gh_relay_free(GhRelay *relay);

/* After `done` with `why` NULL: free the relay and give back both
 * connections (unwatched, no callback). */
void gh_relay_release(GhRelay *relay, GhConn **client, GhConn **backend);
/* Bytes relayed so far, counted as `done` counts them. */
void gh_relay_counts(GhRelay *relay, guint64 *client_to_backend, guint64 *backend_to_client);
/* Stop without `done`, close the backend side, free the relay and give the
 * client's connection back (unwatched, with what is still queued for it).
 * *at_rest says whether what the client has been sent ends a line (then a
 * last line of our own reads as one) and, with a tap that follows the
 * server's lines (its at_rest), ends one between them, not inside an IMAP
 * literal; FALSE in the middle of a line, or when the last bytes went by
 * splice and were not seen. */
GhConn *gh_relay_release_client(GhRelay *relay, gboolean *at_rest);
