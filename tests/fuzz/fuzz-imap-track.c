/*
 * fuzz-imap-track.c: the libFuzzer target of the IMAP line tracker
 * (daemon/imap/imap-track.c): what a relayed server sends its client.
 *
 * Input: the first byte sets where the input is cut into reads (a read of
 * 1 + (byte & 63) octets, the last one taking what is left); the rest is
 * the server's output.
 *
 * Asserted, after every read: at rest only right after an LF (or before
 * any byte); LOST stays LOST and is never at rest; a literal still to
 * come is never at rest.  And the same bytes fed a byte at a time leave
 * the same state after every read: where reads are cut does not matter.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "imap/imap-track.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	GhImapTrack whole, bytes;
	gsize step, at = 1;
	gboolean was_lost = FALSE;

	if (size < 1)
		return 0;
	step = 1 + (data[0] & 63);
	gh_imap_track_init(&whole);
	gh_imap_track_init(&bytes);
	FUZZ_CHECK(gh_imap_track_at_rest(&whole));
	while (at < size) {
		gsize n = MIN(step, size - at);
		gboolean rest;

		gh_imap_track_down(&whole, data + at, n);
		for (gsize i = 0; i < n; i++)
			gh_imap_track_down(&bytes, data + at + i, 1);
		at += n;
		rest = gh_imap_track_at_rest(&whole);
		FUZZ_CHECK(!rest || data[at - 1] == '\n');
		FUZZ_CHECK(!was_lost || gh_imap_track_lost(&whole));
		FUZZ_CHECK(!gh_imap_track_lost(&whole) || !rest);
		FUZZ_CHECK(whole.literal == 0 || !rest);
		FUZZ_CHECK(rest == gh_imap_track_at_rest(&bytes));
		FUZZ_CHECK(gh_imap_track_lost(&whole) == gh_imap_track_lost(&bytes));
		FUZZ_CHECK(whole.literal == bytes.literal && whole.mid_line == bytes.mid_line);
		was_lost = gh_imap_track_lost(&whole);
	}
	return 0;
}
