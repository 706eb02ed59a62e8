/*
 * conn.h: one non-blocking socket of a session (the client's, or the
 * backend's) with bounded input and output buffers, watched on the session's
 * worker context.
 *
 * Invariants: a GhConn is used only on the thread of the GMainContext it was
 * created for.  `in` never holds more than in_max bytes; gh_conn_queue()
 * refuses to grow `out` past out_max (the caller then stops producing: that
 * is the back-pressure).  The fd is closed by gh_conn_free().
 *
 * The one callback says which of read/write may make progress; the owner
 * then calls gh_conn_fill() and/or gh_conn_flush() and decides what to watch
 * next with gh_conn_want().
 *
 * TLS sits below this API: once gh_conn_tls_start() has been called and the
 * handshake is done, fill and flush move plaintext through GnuTLS.  A
 * record GnuTLS has already decrypted is invisible to poll(), so fill
 * drains it even past in_max (by at most one record, 16 KiB): the bound
 * holds up to that, and no session stalls with data inside GnuTLS.
 */
#pragma once

#include <glib.h>
#include <gnutls/gnutls.h>

typedef struct _GhConn GhConn;

typedef void (*GhConnFunc)(GhConn *conn, GIOCondition condition, gpointer user_data);

struct _GhConn {
	int fd;
	GByteArray *in;  /* bytes read, not yet consumed by the owner */
	GByteArray *out; /* bytes queued, not yet written */
	gsize in_max;
	gsize out_max;
	gboolean eof;       /* the peer closed its side (read returned 0) */
	gboolean peer_shut; /* the peer's FIN is in (EPOLLRDHUP): a plaintext read
			       that comes back short has taken its last bytes */
	int error;          /* errno of the first failed read or write, or 0 */
	guint64 bytes_in;
	guint64 bytes_out;
	gnutls_session_t tls;     /* NULL: plaintext */
	gboolean tls_handshaking; /* between gh_conn_tls_start and a finished handshake */
	char *tls_error;          /* why TLS failed, for the log */
	gboolean plain_data;      /* no credentials flow any more: skip wiping buffers */
	gboolean corked;          /* gh_conn_queue only appends, until gh_conn_uncork */
	guint served;  /* a backend connection: client sessions it carried before (kept ones) */
	guint learned; /* a backend connection: what its protocol learned of the server, kept
			  with it for the next session (SMTP: the XCLIENT attributes offered) */
	/* private */
	GMainContext *context;
	gpointer epoll;          /* the context's epoll source */
	GIOCondition watching;   /* the events the owner wants */
	GIOCondition registered; /* the events the epoll set has for fd (a superset) */
	guint32 slot;            /* in the epoll source's table: the records' handle */
	GhConnFunc func;
	gpointer user_data;
	GIOCondition tls_want; /* the direction GnuTLS waits for (E_AGAIN) */
	gsize tls_send_len;    /* bytes of a record_send that returned E_AGAIN */
};

/* Take over `fd` (non-blocking).  (transfer full) */
GhConn *gh_conn_new(int fd, GMainContext *context, gsize in_max, gsize out_max);
/* Stop watching, close the fd, free the buffers.  NULL allowed. */
void gh_conn_free(GhConn *conn);

void gh_conn_set_callback(GhConn *conn, GhConnFunc func, gpointer user_data);
/* Watch for readability (G_IO_IN) and/or writability (G_IO_OUT); 0 stops
 * watching.  Hang-ups and errors are always reported while anything is
 * watched. */
void gh_conn_want(GhConn *conn, GIOCondition condition);

/* Read what the socket has, up to in_max in all.  Returns the number of
 * bytes added (0 when none were available, or `in` is full); sets conn->eof
 * or conn->error as they happen. */
gsize gh_conn_fill(GhConn *conn);
/* Read at most len bytes straight into buf, bypassing the input buffer;
 * returns 0 when nothing came (would block, EOF or error: see eof/error). */
gsize gh_conn_recv(GhConn *conn, void *buf, gsize len);
/* Write data now as far as the socket takes it and queue the rest, with no
 * out_max check: the caller bounds what it passes (the relay: one read). */
void gh_conn_write(GhConn *conn, const void *data, gsize len);
/* As gh_conn_write, for the last bytes this side will send: when the
 * socket takes them whole, they leave with our FIN in one segment (the
 * write side is shut down, and TRUE returned).  Plaintext with nothing
 * queued only; otherwise exactly gh_conn_write, and FALSE. */
gboolean gh_conn_write_last(GhConn *conn, const void *data, gsize len);
/* Give the buffers' memory back while they are empty (idle sessions). */
void gh_conn_trim(GhConn *conn);
/* Drop the first n bytes of `in`. */
void gh_conn_consume(GhConn *conn, gsize n);

/* Write at once (unless corked), behind what `out` holds; what the socket
 * does not take is appended to `out`.  Returns FALSE (and writes and
 * queues nothing) when `out` could pass out_max. */
gboolean gh_conn_queue(GhConn *conn, const void *data, gsize len);
gboolean gh_conn_queue_printf(GhConn *conn, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Write as much of `out` as the socket takes.  Returns TRUE when `out` is
 * empty afterwards; sets conn->error on failure. */
gboolean gh_conn_flush(GhConn *conn);
/* While corked, gh_conn_queue only appends, up to GH_CONN_CORK_MAX bytes:
 * the replies to a batch of pipelined commands (or the lines of one
 * multi-line reply) leave in one send(2), that is one TCP segment and one
 * wake-up of the peer, instead of one per line.  Past GH_CONN_CORK_MAX it
 * writes as uncorked, so that what stays queued is only what the socket
 * refused (the sessions' back-pressure rule).  Uncorking writes what was
 * queued.  gh_conn_flush still writes at once (STARTTLS needs its "go
 * ahead" out before the handshake). */
#define GH_CONN_CORK_MAX 4096
void gh_conn_cork(GhConn *conn);
void gh_conn_uncork(GhConn *conn);
/* Write what is queued, corked or not, and end our side: the last bytes
 * leave with our FIN in one segment, where a send and then a shutdown
 * would be two.  TRUE once all went and the write side is shut down;
 * FALSE while the socket refuses some (call again when writable) or on
 * error (conn->error). */
gboolean gh_conn_shut(GhConn *conn);
/* Bytes of `out` still to write. */
gsize gh_conn_pending(GhConn *conn);

/* Put TLS on the connection (session: transfer full, transport already set
 * to the fd).  Bytes still in `in` are plaintext that came before: the
 * caller must have dropped them (STARTTLS command injection). */
void gh_conn_tls_start(GhConn *conn, gnutls_session_t session);
/* Drive the handshake.  1: done; 0: call again when the connection is
 * ready (gh_conn_want adds the direction GnuTLS waits for); -1: failed,
 * conn->tls_error says why. */
int gh_conn_tls_handshake(GhConn *conn);

/*
 * A listening socket read in the same epoll set as the connections (so an
 * I/O thread's loop turn walks no GLib source per listener).  func runs on
 * the context's thread each turn the socket is readable (level-triggered);
 * it may free the watch.  exclusive: EPOLLEXCLUSIVE, so that a new
 * connection wakes one of the threads watching the socket.  The fd stays the
 * caller's: gh_watch_free() takes it out of the set and does not close it.
 */
typedef struct _GhWatch GhWatch;
typedef void (*GhWatchFunc)(int fd, gpointer user_data);

/* NULL, with errno set, when epoll refuses the descriptor. */
GhWatch *gh_watch_new(
    int fd, GMainContext *context, gboolean exclusive, GhWatchFunc func, gpointer user_data);
/* NULL allowed. */
void gh_watch_free(GhWatch *watch);
