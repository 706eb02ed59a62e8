/*
 * test-pam-proto.c: the frames between the pam module and its helper
 * (modules/pam/pam-proto.c), byte by byte, and the blocking I/O over a
 * socket pair: EOF, a bad header, a deadline.
 */
#include "gh-build.h"

#include "modules/pam/pam-proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const GhPamRequest sample = {
    .service = "gatehouse",
    .account = TRUE,
    .user = "alice",
    .password = "s3cr\xc3\xa9t",
    .rhost = "192.0.2.7",
    .tty = "gatehouse/imap",
    .session_id = "a1b2",
    .limit = 30,
};

#define SAMPLE_PAYLOAD                                                                             \
	"gatehouse-pam 1\0gatehouse\0"                                                             \
	"1\0alice\0s3cr\xc3\xa9t\0"                                                                \
	"192.0.2.7\0gatehouse/imap\0"                                                              \
	"a1b2\0"                                                                                   \
	"30"

static void
test_request_bytes(void)
{
	static const char payload[] = SAMPLE_PAYLOAD; /* with its final NUL */
	guint8 buf[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	gsize n = gh_pam_request_encode(&sample, buf, sizeof buf);

	g_assert_cmpuint(n, ==, GH_PAM_HEADER + sizeof payload);
	g_assert_cmpuint(buf[0], ==, 0);
	g_assert_cmpuint(buf[1], ==, 0);
	g_assert_cmpuint(buf[2], ==, 0);
	g_assert_cmpuint(buf[3], ==, sizeof payload);
	g_assert_cmpmem(buf + GH_PAM_HEADER, n - GH_PAM_HEADER, payload, sizeof payload);
	g_assert_cmpuint(gh_pam_frame_length(buf), ==, sizeof payload);
}

static void
test_request_round_trip(void)
{
	guint8 buf[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	gsize n = gh_pam_request_encode(&sample, buf, sizeof buf);
	GhPamRequest r;
	const char *why = NULL;

	g_assert_true(
	    gh_pam_request_decode((char *)buf + GH_PAM_HEADER, n - GH_PAM_HEADER, &r, &why));
	g_assert_cmpstr(r.service, ==, "gatehouse");
	g_assert_true(r.account);
	g_assert_cmpstr(r.user, ==, "alice");
	g_assert_cmpstr(r.password, ==, "s3cr\xc3\xa9t");
	g_assert_cmpstr(r.rhost, ==, "192.0.2.7");
	g_assert_cmpstr(r.tty, ==, "gatehouse/imap");
	g_assert_cmpstr(r.session_id, ==, "a1b2");
	g_assert_cmpuint(r.limit, ==, 30);
}

static void
test_request_refused_encodings(void)
{
	guint8 buf[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	GhPamRequest r = sample;
	g_autofree char *big = g_strnfill(GH_PAM_FRAME_MAX, 'x');

	/* no room */
	g_assert_cmpuint(gh_pam_request_encode(&sample, buf, 20), ==, 0);
	/* a limit out of range */
	r.limit = 0;
	g_assert_cmpuint(gh_pam_request_encode(&r, buf, sizeof buf), ==, 0);
	r.limit = GH_PAM_MAX_LIMIT + 1;
	g_assert_cmpuint(gh_pam_request_encode(&r, buf, sizeof buf), ==, 0);
	/* more than a frame */
	r = sample;
	r.password = big;
	g_assert_cmpuint(gh_pam_request_encode(&r, buf, sizeof buf), ==, 0);
	/* NULL strings go as empty fields */
	r = sample;
	r.rhost = NULL;
	g_assert_cmpuint(gh_pam_request_encode(&r, buf, sizeof buf), ==,
			 GH_PAM_HEADER + sizeof(SAMPLE_PAYLOAD) - strlen("192.0.2.7"));
}

static void
test_request_decode_errors(void)
{
	static const struct {
		const char *payload;
		gsize len;
		const char *why;
	} cases[] = {
#define C(s, w) {s, sizeof s, w}
	    C("gatehouse-pam 2\0gatehouse\0"
	      "1\0u\0p\0\0\0id\0"
	      "5",
	      "not a gatehouse-pam 1 request"),
	    C("gatehouse-pam 1\0gatehouse\0"
	      "1\0u\0p\0\0\0id",
	      "wrong number of fields"),
	    C("gatehouse-pam 1\0gatehouse\0"
	      "1\0u\0p\0\0\0id\0"
	      "5\0x",
	      "not a gatehouse-pam 1 request"),
	    C("gatehouse-pam 1\0\0"
	      "1\0u\0p\0\0\0id\0"
	      "5",
	      "empty service or user"),
	    C("gatehouse-pam 1\0s\0"
	      "1\0\0p\0\0\0id\0"
	      "5",
	      "empty service or user"),
	    C("gatehouse-pam 1\0s\0yes\0u\0p\0\0\0id\0"
	      "5",
	      "bad account flag"),
	    C("gatehouse-pam 1\0s\0"
	      "1\0u\0p\0\0\0id\0"
	      "0",
	      "bad time limit"),
	    C("gatehouse-pam 1\0s\0"
	      "1\0u\0p\0\0\0id\0"
	      "05",
	      "bad time limit"),
	    C("gatehouse-pam 1\0s\0"
	      "1\0u\0p\0\0\0id\0"
	      "3601",
	      "bad time limit"),
	    C("gatehouse-pam 1\0s\0"
	      "1\0u\0p\0\0\0id\0"
	      "5x",
	      "bad time limit"),
	    C("gatehouse-pam 1\0s\0"
	      "1\0u\0p\0\0\0id\0"
	      "",
	      "bad time limit"),
#undef C
	};
	GhPamRequest r;

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		const char *why = NULL;
		g_test_message("case %u", i);
		g_assert_false(gh_pam_request_decode(cases[i].payload, cases[i].len, &r, &why));
		g_assert_cmpstr(why, ==, cases[i].why);
	}
	{
		/* not ending in a NUL */
		const char *why = NULL;
		static const char p[] = "gatehouse-pam 1\0s\0"
					"1\0u\0p\0\0\0id\0"
					"5";
		g_assert_false(gh_pam_request_decode(p, sizeof p - 1, &r, &why));
		g_assert_cmpstr(why, ==, "not a gatehouse-pam 1 request");
		g_assert_false(gh_pam_request_decode(p, 0, &r, &why));
	}
}

static void
test_response(void)
{
	static const char payload[] = "gatehouse-pam 1\0"
				      "1\0wrong password (pam_authenticate: "
				      "Authentication failure)\0line one\0line two";
	guint8 buf[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	GhPamResponse res = {.verdict = 1,
			     .reason = "wrong password (pam_authenticate: Authentication failure)",
			     .lines = {"line one", "line two"},
			     .n_lines = 2};
	GhPamResponse back;
	const char *why = NULL;
	gsize n = gh_pam_response_encode(&res, buf, sizeof buf);

	g_assert_cmpmem(buf + GH_PAM_HEADER, n - GH_PAM_HEADER, payload, sizeof payload);
	g_assert_true(
	    gh_pam_response_decode((char *)buf + GH_PAM_HEADER, n - GH_PAM_HEADER, &back, &why));
	g_assert_cmpuint(back.verdict, ==, 1);
	g_assert_cmpstr(back.reason, ==, res.reason);
	g_assert_cmpuint(back.n_lines, ==, 2);
	g_assert_cmpstr(back.lines[1], ==, "line two");

	/* a verdict out of range is not encoded; bad ones do not decode */
	res.verdict = 4;
	g_assert_cmpuint(gh_pam_response_encode(&res, buf, sizeof buf), ==, 0);
	g_assert_false(gh_pam_response_decode("gatehouse-pam 1\0"
					      "4\0r",
					      20, &back, &why));
	g_assert_cmpstr(why, ==, "bad verdict");
	g_assert_false(gh_pam_response_decode("gatehouse-pam 1\0"
					      "10\0r",
					      21, &back, &why));
	g_assert_cmpstr(why, ==, "bad verdict");
	g_assert_false(gh_pam_response_decode("gatehouse-pam 1\0"
					      "0",
					      18, &back, &why));
	g_assert_cmpstr(why, ==, "wrong number of fields");
}

static void
test_response_lines_bounded(void)
{
	guint8 buf[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	g_autofree char *long_line = g_strnfill(GH_PAM_MAX_LINE + 50, 'y');
	GhPamResponse res = {.verdict = 0, .reason = "", .n_lines = GH_PAM_MAX_LINES};
	GhPamResponse back;
	const char *why = NULL;
	gsize n;

	for (guint i = 0; i < GH_PAM_MAX_LINES; i++)
		res.lines[i] = long_line;
	n = gh_pam_response_encode(&res, buf, sizeof buf);
	g_assert_cmpuint(n, >, 0);
	g_assert_true(
	    gh_pam_response_decode((char *)buf + GH_PAM_HEADER, n - GH_PAM_HEADER, &back, &why));
	g_assert_cmpuint(back.n_lines, ==, GH_PAM_MAX_LINES);
	g_assert_cmpuint(strlen(back.lines[0]), ==, GH_PAM_MAX_LINE);

	/* one field more than a response may have */
	{
		GString *p = g_string_new_len("gatehouse-pam 1\0"
					      "0\0",
					      18);
		for (guint i = 0; i < GH_PAM_MAX_LINES + 2; i++)
			g_string_append_len(p, "l\0", 2);
		g_assert_false(gh_pam_response_decode(p->str, p->len, &back, &why));
		g_assert_cmpstr(why, ==, "not a gatehouse-pam 1 response");
		g_string_free(p, TRUE);
	}
}

static void
test_frame_length(void)
{
	const guint8 zero[4] = {0, 0, 0, 0};
	const guint8 max[4] = {0, 0, 0x40, 0x00};
	const guint8 over[4] = {0, 0, 0x40, 0x01};
	const guint8 huge[4] = {0xff, 0, 0, 1};

	g_assert_cmpuint(gh_pam_frame_length(zero), ==, 0);
	g_assert_cmpuint(gh_pam_frame_length(max), ==, GH_PAM_FRAME_MAX);
	g_assert_cmpuint(gh_pam_frame_length(over), ==, 0);
	g_assert_cmpuint(gh_pam_frame_length(huge), ==, 0);
}

static void
test_io(void)
{
	guint8 out[GH_PAM_HEADER + GH_PAM_FRAME_MAX];
	guint8 in[GH_PAM_FRAME_MAX];
	gsize n = gh_pam_request_encode(&sample, out, sizeof out);
	gsize len = 0;
	int sv[2];

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	/* a whole frame, written in two pieces */
	g_assert_cmpint(write(sv[0], out, 3), ==, 3);
	g_assert_cmpint(write(sv[0], out + 3, n - 3), ==, (gssize)(n - 3));
	g_assert_cmpint(gh_pam_read_frame(sv[1], in, &len, 0), ==, GH_PAM_IO_OK);
	g_assert_cmpmem(in, len, out + GH_PAM_HEADER, n - GH_PAM_HEADER);
	/* nothing comes: the deadline */
	g_assert_cmpint(gh_pam_read_frame(sv[1], in, &len, g_get_monotonic_time() + 20000), ==,
			GH_PAM_IO_TIMEOUT);
	/* half a header, then EOF: an error, not a clean EOF */
	g_assert_cmpint(gh_pam_write_all(sv[0], out, 2, 0), ==, GH_PAM_IO_OK);
	close(sv[0]);
	errno = 0;
	g_assert_cmpint(gh_pam_read_frame(sv[1], in, &len, 0), ==, GH_PAM_IO_ERROR);
	g_assert_cmpint(errno, ==, EPROTO);
	close(sv[1]);

	/* EOF before a frame */
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	close(sv[0]);
	g_assert_cmpint(gh_pam_read_frame(sv[1], in, &len, 0), ==, GH_PAM_IO_EOF);
	/* writing to a closed peer: an error, no SIGPIPE */
	g_assert_cmpint(gh_pam_write_all(sv[1], out, n, 0), ==, GH_PAM_IO_ERROR);
	close(sv[1]);

	/* a header out of range */
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	g_assert_cmpint(write(sv[0], "\0\0\0\0", 4), ==, 4);
	errno = 0;
	g_assert_cmpint(gh_pam_read_frame(sv[1], in, &len, 0), ==, GH_PAM_IO_ERROR);
	g_assert_cmpint(errno, ==, EPROTO);
	close(sv[0]);
	close(sv[1]);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/pam-proto/request/bytes", test_request_bytes);
	g_test_add_func("/pam-proto/request/round-trip", test_request_round_trip);
	g_test_add_func("/pam-proto/request/refused", test_request_refused_encodings);
	g_test_add_func("/pam-proto/request/decode-errors", test_request_decode_errors);
	g_test_add_func("/pam-proto/response", test_response);
	g_test_add_func("/pam-proto/response/lines-bounded", test_response_lines_bounded);
	g_test_add_func("/pam-proto/frame-length", test_frame_length);
	g_test_add_func("/pam-proto/io", test_io);
	return g_test_run();
}
