/*
 * pam-proto.h: what the `pam` module (inside gatehoused) and its helper
 * process (gatehouse's pam-helper) say to each other over one stream
 * socket: one request, one response, then the next request on the same
 * socket, for as long as both ends keep it open.
 *
 * A frame is 4 bytes of length, big-endian, then that many bytes (1 to
 * GH_PAM_FRAME_MAX) of fields, each ending in a NUL byte:
 *
 *   request:  "gatehouse-pam 1" SERVICE ACCOUNT USER PASSWORD RHOST TTY
 *             SESSION-ID LIMIT
 *   response: "gatehouse-pam 1" VERDICT REASON [LOG-LINE]...
 *
 * ACCOUNT is "1" (run pam_acct_mgmt too) or "0"; LIMIT is the number of
 * seconds (1 to 3600) after which the helper gives up on the request by
 * dying, so a PAM module stuck in a call cannot hold it forever; VERDICT
 * is a GhAuthVerdict as one digit ("0" OK to "3" TEMPFAIL); REASON is for
 * gatehoused's log ("" for OK); the LOG-LINEs (at most GH_PAM_MAX_LINES)
 * are what the conversation said, for gatehoused's debug log, since the
 * helper writes no log of its own.  RHOST and TTY may be empty (not set).
 *
 * Owns nothing: the encoders write into the caller's buffer, the decoders
 * point into the caller's payload.  Pure but for the I/O section at the
 * end, which blocks (with a deadline) and is what both ends use to move
 * frames.
 *
 * Invariants:
 *  - No field holds a NUL (the encoders refuse one), so a decoded field is
 *    exactly what was encoded.
 *  - A payload decodes only when it has the exact version, the exact
 *    number of request fields, or 3 to 3 + GH_PAM_MAX_LINES response
 *    fields, and ends with a NUL: nothing is guessed.
 *  - A buffer that held a password is wiped by whoever owns it
 *    (explicit_bzero), never by this file, which does not know how long
 *    the caller keeps it.
 */
#pragma once

#include <glib.h>

#define GH_PAM_PROTO_VERSION "gatehouse-pam 1"
#define GH_PAM_FRAME_MAX 16384
#define GH_PAM_HEADER 4
#define GH_PAM_MAX_LINES 16
#define GH_PAM_MAX_LINE 256
#define GH_PAM_MAX_LIMIT 3600

typedef struct {
	const char *service;
	gboolean account;
	const char *user;
	const char *password;
	const char *rhost;      /* "" when unknown */
	const char *tty;        /* "" when none */
	const char *session_id; /* for the log lines the helper sends back */
	guint limit;            /* seconds, 1..GH_PAM_MAX_LIMIT */
} GhPamRequest;

typedef struct {
	guint verdict;      /* GhAuthVerdict */
	const char *reason; /* "" for OK */
	const char *lines[GH_PAM_MAX_LINES];
	guint n_lines;
} GhPamResponse;

/* Write the whole frame (header and payload) of `req` into buf; its length,
 * or 0 when it does not fit in `size` or GH_PAM_FRAME_MAX, or a field
 * holds a NUL where it should not (the password is taken to its NUL). */
gsize gh_pam_request_encode(const GhPamRequest *req, guint8 *buf, gsize size);

/* The frame of `res`; lines longer than GH_PAM_MAX_LINE are cut, lines
 * beyond GH_PAM_MAX_LINES dropped.  0 when it does not fit. */
gsize gh_pam_response_encode(const GhPamResponse *res, guint8 *buf, gsize size);

/* The payload's length from a frame header, or 0 when it is out of range
 * (0 or over GH_PAM_FRAME_MAX). */
gsize gh_pam_frame_length(const guint8 header[GH_PAM_HEADER]);

/* Decode a payload (without its header) of `len` bytes; the fields point
 * into `payload`.  FALSE with *why (a static string) when it is not a
 * well-formed request or response. */
gboolean gh_pam_request_decode(const char *payload, gsize len, GhPamRequest *req, const char **why);
gboolean
gh_pam_response_decode(const char *payload, gsize len, GhPamResponse *res, const char **why);

/* ------------------------------------------------------------ I/O */

typedef enum {
	GH_PAM_IO_OK,
	GH_PAM_IO_EOF,     /* the other end closed before a byte of the frame */
	GH_PAM_IO_TIMEOUT, /* the deadline passed */
	GH_PAM_IO_ERROR,   /* errno says why, or a bad header (errno EPROTO) */
} GhPamIo;

/* Write all `len` bytes to the blocking or non-blocking stream `fd`,
 * giving up at `deadline` (g_get_monotonic_time() scale; 0: never).
 * Never raises SIGPIPE. */
GhPamIo gh_pam_write_all(int fd, const guint8 *buf, gsize len, gint64 deadline);

/* Read one frame's payload into buf (at least GH_PAM_FRAME_MAX bytes),
 * its length in *len. */
GhPamIo gh_pam_read_frame(int fd, guint8 *buf, gsize *len, gint64 deadline);
