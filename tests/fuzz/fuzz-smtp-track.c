/*
 * fuzz-smtp-track.c: the libFuzzer target of the SMTP session tracker
 * (daemon/smtp/smtp-track.c): what a client and its backend send each
 * other through a relay that may keep the backend connection.
 *
 * Input: records, each a tag byte then a chunk: bit 7 of the tag says
 * whose bytes they are (0 the client's, 1 the server's), bits 0..6 its
 * length less one (1..128 octets; the last chunk takes what is left).
 * The chunks are fed in order, each in one call.
 *
 * Asserted: gh_smtp_track_state is what the last call returned; once LOST
 * or QUIT, every later call is LOST; the server's calls never return QUIT;
 * QUIT comes only from a client chunk that is "QUIT" CRLF in any case;
 * counts are sane (junk at most the client's LFs, errors at most the
 * server's, accepted never taken back and only after an LF "." CRLF from
 * the client); the same chunks fed again a byte per call, but for the
 * client "QUIT" CRLF chunks, which stay whole, leave the same state and
 * counts after every chunk (where calls are cut matters to the QUIT rule
 * alone).
 */
#include "gh-build.h"

#include "fuzz.h"
#include "smtp/smtp-track.h"

#include <string.h>

typedef struct {
	gboolean server;
	const guint8 *p;
	gsize n;
} Chunk;

typedef struct {
	guint junk;
	guint errors;
	gboolean accepted;
} Counts;

static Counts
counts_of(const GhSmtpTrack *t)
{
	Counts c;

	gh_smtp_track_counts(t, &c.junk, &c.errors, &c.accepted);
	return c;
}

static gboolean
is_quit_line(const Chunk *c)
{
	return !c->server && c->n == 6 &&
	       g_ascii_strncasecmp((const char *)c->p, "QUIT\r\n", 6) == 0;
}

static gsize
count_lf(const guint8 *p, gsize n)
{
	gsize lf = 0;

	for (gsize i = 0; i < n; i++)
		lf += p[i] == '\n';
	return lf;
}

/* One call with an exact heap copy of the bytes. */
static GhSmtpTrackState
feed(GhSmtpTrack *t, gboolean server, const guint8 *p, gsize n)
{
	guint8 *copy = (guint8 *)fuzz_copy(p, n);
	GhSmtpTrackState st =
	    server ? gh_smtp_track_server(t, copy, n) : gh_smtp_track_client(t, copy, n);

	g_free(copy);
	FUZZ_CHECK(gh_smtp_track_state(t) == st);
	return st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzBytes b = {data, size};
	GArray *chunks = g_array_new(FALSE, FALSE, sizeof(Chunk));
	GhSmtpTrack *whole = gh_smtp_track_new();
	GhSmtpTrack *bytes = gh_smtp_track_new();
	GhSmtpTrackState last = GH_SMTP_TRACK_GOING;
	gsize client_lf = 0, server_lf = 0;
	guint32 window = 0; /* the client's last 4 bytes */
	gboolean body_end_seen = FALSE;
	gboolean accepted = FALSE;

	while (b.n > 0) {
		guint8 tag = fuzz_take_u8(&b);
		Chunk c = {(tag & 0x80) != 0, b.p, MIN((gsize)(tag & 0x7f) + 1, b.n)};

		if (c.n == 0)
			break; /* a tag with nothing after it */
		b.p += c.n;
		b.n -= c.n;
		g_array_append_val(chunks, c);
	}

	FUZZ_CHECK(gh_smtp_track_state(whole) == GH_SMTP_TRACK_GOING);
	for (guint i = 0; i < chunks->len; i++) {
		const Chunk *c = &g_array_index(chunks, Chunk, i);
		Counts n0 = counts_of(whole);
		GhSmtpTrackState st = feed(whole, c->server, c->p, c->n);
		GhSmtpTrackState st2 = GH_SMTP_TRACK_GOING;
		Counts n1, n2;

		/* the first pass: each chunk whole */
		if (last != GH_SMTP_TRACK_GOING)
			FUZZ_CHECK(st == GH_SMTP_TRACK_LOST);
		if (st == GH_SMTP_TRACK_QUIT)
			FUZZ_CHECK(is_quit_line(c) && last == GH_SMTP_TRACK_GOING);
		if (c->server) {
			server_lf += count_lf(c->p, c->n);
		} else {
			client_lf += count_lf(c->p, c->n);
			/* a body's end follows the LF of DATA or of a body line */
			for (gsize k = 0; k < c->n; k++) {
				window = window << 8 | c->p[k];
				if (window == 0x0a2e0d0a) /* LF "." CR LF */
					body_end_seen = TRUE;
			}
		}
		last = st;
		n1 = counts_of(whole);
		if (st == GH_SMTP_TRACK_QUIT) /* a QUIT changes no count */
			FUZZ_CHECK(n1.junk == n0.junk && n1.errors == n0.errors);
		FUZZ_CHECK(n1.junk <= client_lf);
		FUZZ_CHECK(n1.errors <= server_lf);
		FUZZ_CHECK(!accepted || n1.accepted);
		FUZZ_CHECK(!n1.accepted || (body_end_seen && server_lf >= 2 && client_lf >= 2));
		accepted = n1.accepted;

		/* the second pass: a byte per call, a QUIT line whole */
		if (is_quit_line(c)) {
			st2 = feed(bytes, FALSE, c->p, c->n);
		} else {
			for (gsize k = 0; k < c->n; k++) {
				GhSmtpTrackState before = gh_smtp_track_state(bytes);

				st2 = feed(bytes, c->server, c->p + k, 1);
				FUZZ_CHECK(st2 != GH_SMTP_TRACK_QUIT);
				if (before != GH_SMTP_TRACK_GOING)
					FUZZ_CHECK(st2 == GH_SMTP_TRACK_LOST);
			}
		}
		FUZZ_CHECK(st2 == st);
		n2 = counts_of(bytes);
		FUZZ_CHECK(n1.junk == n2.junk && n1.errors == n2.errors &&
			   n1.accepted == n2.accepted);
	}
	gh_smtp_track_free(whole);
	gh_smtp_track_free(bytes);
	g_array_free(chunks, TRUE);
	return 0;
}
