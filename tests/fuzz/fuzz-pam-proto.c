/*
 * fuzz-pam-proto.c: the libFuzzer target of the frames between the pam
 * module and its helper (modules/pam/pam-proto.c): what a helper reads
 * from gatehoused, and what gatehoused reads from a helper that may be
 * broken or stuck half-way through an answer.
 *
 * Input: the first byte picks request (even) or response (odd); the rest
 * is a frame's payload.
 *
 * Asserted: a payload decodes only when it ends in a NUL; a decoded
 * request has a non-empty service and user, an account flag and a limit
 * in range, and encodes back to exactly the input; a decoded response has
 * a verdict 0 to 3 and at most GH_PAM_MAX_LINES lines, and encodes back to
 * the input when no line is longer than GH_PAM_MAX_LINE; every refusal
 * says why; a frame header says 0 (refused) or the payload length.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "modules/pam/pam-proto.h"

#include <string.h>

static guint8 frame[GH_PAM_HEADER + GH_PAM_FRAME_MAX];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	char *payload;
	gsize len;
	gsize n;

	if (size < 1 || size - 1 > GH_PAM_FRAME_MAX)
		return 0;
	len = size - 1;
	payload = fuzz_copy(data + 1, len);
	if (data[0] % 2 == 0) {
		GhPamRequest r;
		if (gh_pam_request_decode(payload, len, &r, &why)) {
			FUZZ_CHECK(payload[len - 1] == '\0');
			FUZZ_CHECK(r.service[0] != '\0' && r.user[0] != '\0');
			FUZZ_CHECK(r.limit >= 1 && r.limit <= GH_PAM_MAX_LIMIT);
			n = gh_pam_request_encode(&r, frame, sizeof frame);
			/* "0123" limits come back without their zeros: refused
			 * before, so a decoded one encodes back byte for byte */
			FUZZ_CHECK(n == GH_PAM_HEADER + len);
			FUZZ_CHECK(memcmp(frame + GH_PAM_HEADER, payload, len) == 0);
			FUZZ_CHECK(gh_pam_frame_length(frame) == len);
		} else {
			FUZZ_CHECK(why != NULL);
		}
	} else {
		GhPamResponse r;
		if (gh_pam_response_decode(payload, len, &r, &why)) {
			gboolean short_lines = TRUE;
			FUZZ_CHECK(payload[len - 1] == '\0');
			FUZZ_CHECK(r.verdict <= 3);
			FUZZ_CHECK(r.n_lines <= GH_PAM_MAX_LINES);
			for (guint i = 0; i < r.n_lines; i++)
				short_lines = short_lines && strlen(r.lines[i]) <= GH_PAM_MAX_LINE;
			n = gh_pam_response_encode(&r, frame, sizeof frame);
			FUZZ_CHECK(n > 0);
			if (short_lines)
				FUZZ_CHECK(n == GH_PAM_HEADER + len &&
					   memcmp(frame + GH_PAM_HEADER, payload, len) == 0);
		} else {
			FUZZ_CHECK(why != NULL);
		}
	}
	g_free(payload);
	return 0;
}
