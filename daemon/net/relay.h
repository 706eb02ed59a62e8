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
 * "client: Connection reset by peer", ...).  Both connections are still
 * open (gh_relay_free closes them).  Bytes are counted from the start of
 * the relay. */
typedef void (*GhRelayDone)(GhRelay *relay,
			    const char *why,
			    guint64 client_to_backend,
			    guint64 backend_to_client,
			    gpointer user_data);

/* Start relaying between `client` and `backend` (transfer full: both are
 * closed by gh_relay_free). */
GhRelay *gh_relay_start(GhConn *client, GhConn *backend, GhRelayDone done, gpointer user_data);
/* Stop (if still running) and close both sides.  NULL allowed. */
void gh_relay_free(GhRelay *relay);

/* Bytes relayed so far, counted as `done` counts them. */
void gh_relay_counts(GhRelay *relay, guint64 *client_to_backend, guint64 *backend_to_client);
/* Stop without `done`, close the backend side, free the relay and give the
 * client's connection back (unwatched, with what is still queued for it).
 * *at_line_start says whether what the client has been sent ends a line
 * (then a last line of our own reads as one); FALSE in the middle of a
 * line, or when the last bytes went by splice and were not seen. */
GhConn *gh_relay_release_client(GhRelay *relay, gboolean *at_line_start);
