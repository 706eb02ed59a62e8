/*
 * test-proxy-header.c: the PROXY protocol codec of daemon/net/proxy-header.c,
 * byte by byte: every form of v1 and v2 it takes (v2 from bytes written out
 * here, TLVs included), every way it refuses one and after how many bytes,
 * every prefix of every valid header (NEED_MORE, never INVALID), the client's
 * bytes after a header left alone, and the builder's exact bytes and round
 * trips through the reader.
 *
 * Every call gets a heap copy of exactly the bytes it may read, so valgrind
 * reports any read past `len`; the bytes after a whole header sit on a page
 * that cannot be read at all.
 */
#include "gh-build.h"

#include "net/proxy-header.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* A table string that may hold NUL bytes: its bytes and its length. */
#define BYTES(s) s, sizeof(s) - 1
/* The length of a string literal: "the first N bytes are these". */
#define AT(s) (sizeof(s) - 1)

/* The v2 signature, then headers by parts.  Every byte is written out as
 * an escape that ends where the next literal begins. */
#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
#define V2_LOCAL "\x20"
#define V2_PROXY "\x21"
#define V2_TCP4 "\x11"
#define V2_TCP6 "\x21"
#define V2_UNSPEC "\x00"
/* 192.0.2.1 -> 198.51.100.2, 56324 -> 25 */
#define V4_BLOCK                                                                                   \
	"\xC0\x00\x02\x01"                                                                         \
	"\xC6\x33\x64\x02"                                                                         \
	"\xDC\x04"                                                                                 \
	"\x00\x19"
/* 2001:db8::1 -> 2001:db8::2, 56324 -> 993 */
#define V6_BLOCK                                                                                   \
	"\x20\x01\x0D\xB8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"                         \
	"\x20\x01\x0D\xB8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"                         \
	"\xDC\x04"                                                                                 \
	"\x03\xE1"
/* ::ffff:192.0.2.1 -> 2001:db8::2, 0 -> 65535 */
#define V6_MAPPED_BLOCK                                                                            \
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xFF\xFF\xC0\x00\x02\x01"                         \
	"\x20\x01\x0D\xB8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"                         \
	"\x00\x00"                                                                                 \
	"\xFF\xFF"
/* TLVs: NOOP (0x04) of 3 bytes, ALPN (0x01) "h2", AUTHORITY (0x02) "mx" */
#define TLVS                                                                                       \
	"\x04\x00\x03"                                                                             \
	"abc"                                                                                      \
	"\x01\x00\x02"                                                                             \
	"h2"                                                                                       \
	"\x02\x00\x02"                                                                             \
	"mx"

typedef struct {
	const char *bytes;
	gsize len;
	gboolean local;
	int family;
	const char *src;
	guint16 src_port;
	const char *dst;
	guint16 dst_port;
	int version;
} Valid;

typedef struct {
	const char *bytes;
	gsize len;
	const char *error;
	gsize at; /* the fewest bytes that are INVALID: every shorter prefix is NEED_MORE */
} Invalid;

typedef struct {
	GhProxyStatus st;
	GhProxyHeader h;
	gsize consumed;
	const char *error;
} Result;

static const GhProxyHeader poison_header = {
    .local = 7, .family = 77, .src_addr = "poison", .src_port = 7, .version = 7};

/* Parse an exact-size heap copy of buf[0..len); every out parameter starts
 * poisoned. */
static Result
parse(const char *buf, gsize len)
{
	g_autofree guint8 *copy = g_memdup2(buf, len);
	Result r = {GH_PROXY_OK, poison_header, 12345, "poison"};

	r.st = gh_proxy_header_parse(copy, len, &r.h, &r.consumed, &r.error);
	return r;
}

static void
assert_need_more(Result r)
{
	g_assert_cmpint(r.st, ==, GH_PROXY_NEED_MORE);
	g_assert_cmpuint(r.consumed, ==, 0);
	g_assert_null(r.error);
	g_assert_cmpmem(&r.h, sizeof(r.h), &poison_header, sizeof(poison_header));
}

static void
assert_invalid(Result r, const char *error)
{
	g_assert_cmpint(r.st, ==, GH_PROXY_INVALID);
	g_assert_cmpuint(r.consumed, ==, 0);
	g_assert_cmpstr(r.error, ==, error);
	g_assert_cmpmem(&r.h, sizeof(r.h), &poison_header, sizeof(poison_header));
}

static void
assert_header(Result r, const Valid *v)
{
	g_assert_cmpint(r.st, ==, GH_PROXY_OK);
	g_assert_null(r.error);
	g_assert_cmpuint(r.consumed, ==, v->len);
	g_assert_cmpint(r.h.local, ==, v->local);
	g_assert_cmpint(r.h.family, ==, v->family);
	g_assert_cmpstr(r.h.src_addr, ==, v->src);
	g_assert_cmpuint(r.h.src_port, ==, v->src_port);
	g_assert_cmpstr(r.h.dst_addr, ==, v->dst);
	g_assert_cmpuint(r.h.dst_port, ==, v->dst_port);
	g_assert_cmpint(r.h.version, ==, v->version);
}

/* The client's bytes after the header: read from a page that faults if
 * touched, so the parser must stop at the header's end. */
static void
check_untouched(const Valid *v)
{
	gsize page = (gsize)sysconf(_SC_PAGESIZE);
	guint8 *map =
	    mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	guint8 *start;
	Result r = {GH_PROXY_OK, poison_header, 12345, "poison"};

	g_assert_true(map != MAP_FAILED);
	g_assert_cmpuint(v->len, <=, page);
	start = map + page - v->len;
	memcpy(start, v->bytes, v->len);
	memset(map + page, 0xFF, page);
	g_assert_cmpint(mprotect(map + page, page, PROT_NONE), ==, 0);
	r.st = gh_proxy_header_parse(start, v->len + page, &r.h, &r.consumed, &r.error);
	assert_header(r, v);
	g_assert_cmpint(munmap(map, 2 * page), ==, 0);
}

/* Whole, followed by client bytes, and every prefix. */
static void
check_valid(const Valid *v)
{
	static const struct {
		const char *bytes;
		gsize len;
	} after[] = {
	    {BYTES("EHLO client.example\r\n")},
	    {BYTES("\xFF")},
	    {BYTES("\0")},
	    {BYTES("\r\n")},
	    {BYTES("\n")},
	    {BYTES("PROXY TCP4 ")},
	    {BYTES(SIG)},
	};

	assert_header(parse(v->bytes, v->len), v);
	for (gsize i = 0; i < G_N_ELEMENTS(after); i++) {
		g_autoptr(GString) s = g_string_new_len(v->bytes, (gssize)v->len);

		g_string_append_len(s, after[i].bytes, (gssize)after[i].len);
		assert_header(parse(s->str, s->len), v);
	}
	check_untouched(v);
	for (gsize k = 0; k < v->len; k++) {
		Result r = parse(v->bytes, k);

		if (r.st != GH_PROXY_NEED_MORE)
			g_test_message("prefix %zu of %zu: %s", k, v->len, r.error);
		assert_need_more(r);
	}
}

/* NEED_MORE up to `at` bytes, INVALID with the same reason from there on. */
static void
check_invalid(const Invalid *c)
{
	g_assert_cmpuint(c->at, >=, 1);
	g_assert_cmpuint(c->at, <=, c->len);
	for (gsize k = 0; k <= c->len; k++) {
		Result r = parse(c->bytes, k);
		const char *want = k < c->at ? NULL : c->error;

		if (g_strcmp0(r.error, want) != 0)
			g_test_message("prefix %zu of %zu: %s (invalid from %zu: %s)", k, c->len,
				       r.error, c->at, c->error);
		if (want == NULL)
			assert_need_more(r);
		else
			assert_invalid(r, want);
	}
}

#define MAX6 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
#define MAPPED_MAX "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"

static void
test_v1_valid(void)
{
	static const Valid cases[] = {
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n"), FALSE, AF_INET, "192.0.2.1",
	     56324, "198.51.100.2", 25, 1},
	    {BYTES("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"), FALSE, AF_INET, "0.0.0.0", 0,
	     "255.255.255.255", 65535, 1},
	    {BYTES("PROXY TCP4 10.0.0.1 10.0.0.2 1 9\r\n"), FALSE, AF_INET, "10.0.0.1", 1,
	     "10.0.0.2", 9, 1},
	    {BYTES("PROXY TCP6 2001:db8::1 2001:db8::2 56324 993\r\n"), FALSE, AF_INET6,
	     "2001:db8::1", 56324, "2001:db8::2", 993, 1},
	    /* written out in full, in capitals: read in inet_ntop's form */
	    {BYTES("PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::1 10000 143\r\n"), FALSE,
	     AF_INET6, "2001:db8::1", 10000, "::1", 143, 1},
	    /* IPv4-mapped: stays IPv6 */
	    {BYTES("PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 1000 587\r\n"), FALSE, AF_INET6,
	     "::ffff:192.0.2.1", 1000, "::ffff:198.51.100.2", 587, 1},
	    /* the longest TCP6 line: 104 bytes */
	    {BYTES("PROXY TCP6 " MAX6 " " MAX6 " 65535 65535\r\n"), FALSE, AF_INET6, MAX6, 65535,
	     MAX6, 65535, 1},
	    {BYTES("PROXY UNKNOWN\r\n"), TRUE, AF_UNSPEC, "", 0, "", 0, 1},
	    {BYTES("PROXY UNKNOWN \r\n"), TRUE, AF_UNSPEC, "", 0, "", 0, 1},
	    {BYTES("PROXY UNKNOWN 192.0.2.1 198.51.100.2 56324 25\r\n"), TRUE, AF_UNSPEC, "", 0, "",
	     0, 1},
	    {BYTES("PROXY UNKNOWN anything\tat  all\x01\xFF\r\n"), TRUE, AF_UNSPEC, "", 0, "", 0,
	     1},
	    /* the spec's worst case: 107 bytes */
	    {BYTES("PROXY UNKNOWN " MAX6 " " MAX6 " 65535 65535\r\n"), TRUE, AF_UNSPEC, "", 0, "",
	     0, 1},
	};

	g_assert_cmpuint(cases[6].len, ==, 104);
	g_assert_cmpuint(cases[G_N_ELEMENTS(cases) - 1].len, ==, GH_PROXY_V1_MAX);
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_valid(&cases[i]);
	}
}

static void
test_v1_invalid(void)
{
	static const Invalid cases[] = {
	    /* not PROXY at all: the first byte says so */
	    {BYTES("EHLO client.example\r\n"), "not a PROXY header", 1},
	    {BYTES("a1 LOGIN user pass\r\n"), "not a PROXY header", 1},
	    {BYTES("proxy tcp4 192.0.2.1 198.51.100.2 1 2\r\n"), "not a PROXY header", 1},
	    {BYTES("\x00PROXY"), "not a PROXY header", 1},
	    {BYTES("PROXZ TCP4"), "not a PROXY header", AT("PROXZ")},
	    {BYTES("PROXY\tTCP4"), "not a PROXY header", AT("PROXY\t")},
	    {BYTES("P\r\n"), "v1: too few fields", AT("P\r\n")},
	    {BYTES("PROXY\r\n"), "v1: too few fields", AT("PROXY\r\n")},
	    {BYTES("PROXY \r\n"), "v1: bad protocol", AT("PROXY \r\n")},
	    /* the protocol */
	    {BYTES("PROXY TCP5 192.0.2.1"), "v1: bad protocol", AT("PROXY TCP5")},
	    {BYTES("PROXY tcp4 192.0.2.1"), "v1: bad protocol", AT("PROXY t")},
	    {BYTES("PROXY UDP4 192.0.2.1"), "v1: bad protocol",
	     AT("PROXY U"
		"D")},
	    {BYTES("PROXY  TCP4 192.0.2.1"), "v1: bad protocol", AT("PROXY  ")},
	    {BYTES("PROXY TCP44 192.0.2.1"), "v1: bad protocol", AT("PROXY TCP44")},
	    {BYTES("PROXY UNKNOWNX\r\n"), "v1: bad protocol", AT("PROXY UNKNOWNX")},
	    {BYTES("PROXY TCP4\r\n"), "v1: too few fields", AT("PROXY TCP4\r\n")},
	    /* addresses */
	    {BYTES("PROXY TCP4 256.0.2.1 198.51.100.2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP4 256.0.2.1 ")},
	    {BYTES("PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP4 192.0.2 ")},
	    {BYTES("PROXY TCP4 192.0.02.1 198.51.100.2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP4 192.0.02.1 ")},
	    {BYTES("PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP4 2001:")},
	    {BYTES("PROXY TCP4 1111111111111111 1.2.3.4 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP4 1111111111111111")},
	    {BYTES("PROXY TCP4 192.0\x00.2.1 198.51.100.2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP4 192.0\x00")},
	    {BYTES("PROXY TCP4 localhost 198.51.100.2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP4 l")},
	    {BYTES("PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP6 192.0.2.1 ")},
	    {BYTES("PROXY TCP6 2001:db8::1%eth0 2001:db8::2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP6 2001:db8::1%")},
	    {BYTES("PROXY TCP6 2001:db8:::1 2001:db8::2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP6 2001:db8:::1 ")},
	    {BYTES("PROXY TCP6 " MAX6 ":ffff 2001:db8::2 1 2\r\n"), "v1: bad source address",
	     AT("PROXY TCP6 " MAX6 ":ffff ")},
	    {BYTES("PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n"), "v1: bad destination address",
	     AT("PROXY TCP4 192.0.2.1  ")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.256 1 2\r\n"), "v1: bad destination address",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.256 ")},
	    {BYTES("PROXY TCP4 192.0.2.1\r\n"), "v1: too few fields",
	     AT("PROXY TCP4 192.0.2.1\r\n")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2\r\n"), "v1: too few fields",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2\r\n")},
	    /* ports */
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 +")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 -")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 025 2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 02")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 00 2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 00")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 65536")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 100000 2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 100000")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 0x19 2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 0x")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2  2\r\n"), "v1: bad source port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2  ")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n"), "v1: too few fields",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2x\r\n"), "v1: bad destination port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 1 2x")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1 99999\r\n"), "v1: bad destination port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 1 99999")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1 \r\n"), "v1: bad destination port",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 1 \r\n")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n"),
	     "v1: bytes after the destination port", AT("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 ")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n"),
	     "v1: bytes after the destination port", AT("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 ")},
	    /* the line's end */
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n"), "v1: line ends in a bare LF",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n")},
	    {BYTES("PROXY UNKNOWN\n"), "v1: line ends in a bare LF", AT("PROXY UNKNOWN\n")},
	    {BYTES("PROXY UNKNOWN x\ny\r\n"), "v1: line ends in a bare LF",
	     AT("PROXY UNKNOWN x\n")},
	    {BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r\n"), "v1: CR without LF",
	     AT("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r")},
	    {BYTES("PROXY UNKNOWN\rX\n"), "v1: CR without LF", AT("PROXY UNKNOWN\rX")},
	    /* longer than 107 bytes: refused at 106 bytes without a CR */
	    {BYTES("PROXY UNKNOWN " MAX6 " " MAX6 " 65535 655351\r\n"),
	     "v1 line longer than 107 bytes", 106},
	    {BYTES("PROXY UNKNOWN " MAX6 " " MAX6 " " MAX6 "\r\n"), "v1 line longer than 107 bytes",
	     106},
	    {BYTES("PROXY TCP6 " MAPPED_MAX " " MAPPED_MAX " 65535 65535\r\n"),
	     "v1 line longer than 107 bytes", 106},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_invalid(&cases[i]);
	}
}

static void
test_v2_valid(void)
{
	static const Valid cases[] = {
	    {BYTES(SIG V2_PROXY V2_TCP4 "\x00\x0C" V4_BLOCK), FALSE, AF_INET, "192.0.2.1", 56324,
	     "198.51.100.2", 25, 2},
	    {BYTES(SIG V2_PROXY V2_TCP6 "\x00\x24" V6_BLOCK), FALSE, AF_INET6, "2001:db8::1", 56324,
	     "2001:db8::2", 993, 2},
	    {BYTES(SIG V2_PROXY V2_TCP6 "\x00\x24" V6_MAPPED_BLOCK), FALSE, AF_INET6,
	     "::ffff:192.0.2.1", 0, "2001:db8::2", 65535, 2},
	    /* TLVs after the addresses: skipped, consumed */
	    {BYTES(SIG V2_PROXY V2_TCP4 "\x00\x1C" V4_BLOCK TLVS), FALSE, AF_INET, "192.0.2.1",
	     56324, "198.51.100.2", 25, 2},
	    {BYTES(SIG V2_PROXY V2_TCP6 "\x00\x34" V6_BLOCK TLVS), FALSE, AF_INET6, "2001:db8::1",
	     56324, "2001:db8::2", 993, 2},
	    /* bytes past the addresses that are no TLVs: not read either */
	    {BYTES(SIG V2_PROXY V2_TCP4 "\x00\x0D" V4_BLOCK "\xFF"), FALSE, AF_INET, "192.0.2.1",
	     56324, "198.51.100.2", 25, 2},
	    /* LOCAL: the family and the block are ignored, whatever they are */
	    {BYTES(SIG V2_LOCAL V2_UNSPEC "\x00\x00"), TRUE, AF_UNSPEC, "", 0, "", 0, 2},
	    {BYTES(SIG V2_LOCAL V2_TCP4 "\x00\x0C" V4_BLOCK), TRUE, AF_UNSPEC, "", 0, "", 0, 2},
	    {BYTES(SIG V2_LOCAL V2_TCP6 "\x00\x02"
					"\x01\x02"),
	     TRUE, AF_UNSPEC, "", 0, "", 0, 2},
	    {BYTES(SIG V2_LOCAL "\xFF"
				"\x00\x10" TLVS),
	     TRUE, AF_UNSPEC, "", 0, "", 0, 2},
	    /* PROXY over UNSPEC: as LOCAL */
	    {BYTES(SIG V2_PROXY V2_UNSPEC "\x00\x00"), TRUE, AF_UNSPEC, "", 0, "", 0, 2},
	    {BYTES(SIG V2_PROXY V2_UNSPEC "\x00\x10" TLVS), TRUE, AF_UNSPEC, "", 0, "", 0, 2},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_valid(&cases[i]);
	}
}

/* The longest v2 header taken, and one byte more. */
static void
test_v2_limit(void)
{
	gsize block = GH_PROXY_V2_MAX - 16;
	g_autoptr(GString) s = g_string_new_len(SIG V2_PROXY V2_TCP4, 14);
	Valid v = {NULL, 0, FALSE, AF_INET, "192.0.2.1", 56324, "198.51.100.2", 25, 2};
	Invalid c = {NULL, 0, "v2: header too long", 16};

	g_string_append_c(s, (char)(block >> 8));
	g_string_append_c(s, (char)(block & 0xFF));
	g_string_append_len(s, V4_BLOCK, 12);
	while (s->len < GH_PROXY_V2_MAX) /* one NOOP TLV over the rest */
		g_string_append_c(s, s->len == 28 ? 0x04 : 0);
	s->str[29] = (char)((GH_PROXY_V2_MAX - 31) >> 8);
	s->str[30] = (char)((GH_PROXY_V2_MAX - 31) & 0xFF);
	v.bytes = s->str;
	v.len = s->len;
	check_valid(&v);

	block++;
	s->str[14] = (char)(block >> 8);
	s->str[15] = (char)(block & 0xFF);
	g_string_append_c(s, 0);
	c.bytes = s->str;
	c.len = s->len;
	check_invalid(&c);
}

static void
test_v2_invalid(void)
{
	static const Invalid cases[] = {
	    /* the signature, checked byte by byte */
	    {BYTES("\r\nEHLO x\r\n"), "v2: bad signature", AT("\r\nE")},
	    {BYTES("\r\n\r\n"
		   "EHLO"),
	     "v2: bad signature", AT("\r\n\r\nE")},
	    {BYTES("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0B" V2_PROXY V2_TCP4
		   "\x00\x0C" V4_BLOCK),
	     "v2: bad signature", 12},
	    /* version and command */
	    {BYTES(SIG "\x11" V2_TCP4 "\x00\x0C" V4_BLOCK), "v2: unknown version", 13},
	    {BYTES(SIG "\x31" V2_TCP4 "\x00\x0C" V4_BLOCK), "v2: unknown version", 13},
	    {BYTES(SIG "\x01" V2_TCP4 "\x00\x0C" V4_BLOCK), "v2: unknown version", 13},
	    {BYTES(SIG "\x22" V2_TCP4 "\x00\x0C" V4_BLOCK), "v2: unknown command", 13},
	    {BYTES(SIG "\x2F" V2_TCP4 "\x00\x0C" V4_BLOCK), "v2: unknown command", 13},
	    /* families we do not take, and ones that do not exist */
	    {BYTES(SIG V2_PROXY "\x12"
				"\x00\x0C" V4_BLOCK),
	     "v2: unsupported family", 14},
	    {BYTES(SIG V2_PROXY "\x22"
				"\x00\x24" V6_BLOCK),
	     "v2: unsupported family", 14},
	    {BYTES(SIG V2_PROXY "\x31"
				"\x00\x00"),
	     "v2: unsupported family", 14},
	    {BYTES(SIG V2_PROXY "\x32"
				"\x00\x00"),
	     "v2: unsupported family", 14},
	    {BYTES(SIG V2_PROXY "\x01"
				"\x00\x00"),
	     "v2: unknown family", 14},
	    {BYTES(SIG V2_PROXY "\x10"
				"\x00\x0C" V4_BLOCK),
	     "v2: unknown family", 14},
	    {BYTES(SIG V2_PROXY "\x13"
				"\x00\x0C" V4_BLOCK),
	     "v2: unknown family", 14},
	    {BYTES(SIG V2_PROXY "\x41"
				"\x00\x00"),
	     "v2: unknown family", 14},
	    {BYTES(SIG V2_PROXY "\xFF"
				"\x00\x00"),
	     "v2: unknown family", 14},
	    /* the length: bounded, and room for the addresses */
	    {BYTES(SIG V2_PROXY V2_TCP4 "\xFF\xFF"), "v2: header too long", 16},
	    {BYTES(SIG V2_PROXY V2_TCP4 "\x03\xF1"), "v2: header too long", 16},
	    {BYTES(SIG V2_LOCAL V2_UNSPEC "\x04\x00"), "v2: header too long", 16},
	    {BYTES(SIG V2_PROXY V2_TCP4 "\x00\x0B" V4_BLOCK), "v2: address block too short", 16},
	    {BYTES(SIG V2_PROXY V2_TCP4 "\x00\x00"), "v2: address block too short", 16},
	    {BYTES(SIG V2_PROXY V2_TCP6 "\x00\x0C" V4_BLOCK), "v2: address block too short", 16},
	    {BYTES(SIG V2_PROXY V2_TCP6 "\x00\x23" V6_BLOCK), "v2: address block too short", 16},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_invalid(&cases[i]);
	}
}

static void
test_empty(void)
{
	assert_need_more(parse("", 0));
}

static void
assert_bytes(GByteArray *b, const char *want, gsize len)
{
	g_assert_nonnull(b);
	g_assert_cmpmem(b->data, b->len, want, len);
}

/* The builder's exact bytes, and each read back to what was built. */
static void
test_build(void)
{
	static const struct {
		int version;
		const char *src;
		guint16 src_port;
		const char *dst;
		guint16 dst_port;
		const char *bytes;
		gsize len;
		Valid back; /* bytes, len filled from the above */
	} cases[] = {
	    {1,
	     "192.0.2.1",
	     56324,
	     "198.51.100.2",
	     25,
	     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n"),
	     {NULL, 0, FALSE, AF_INET, "192.0.2.1", 56324, "198.51.100.2", 25, 1}},
	    {1,
	     "2001:db8::1",
	     56324,
	     "2001:db8::2",
	     993,
	     BYTES("PROXY TCP6 2001:db8::1 2001:db8::2 56324 993\r\n"),
	     {NULL, 0, FALSE, AF_INET6, "2001:db8::1", 56324, "2001:db8::2", 993, 1}},
	    /* written in capitals: sent in inet_ntop's form */
	    {1,
	     "2001:DB8:0:0::1",
	     0,
	     "::1",
	     65535,
	     BYTES("PROXY TCP6 2001:db8::1 ::1 0 65535\r\n"),
	     {NULL, 0, FALSE, AF_INET6, "2001:db8::1", 0, "::1", 65535, 1}},
	    /* an IPv4 client on an IPv6 listener: both IPv6 */
	    {1,
	     "192.0.2.1",
	     1,
	     "2001:db8::2",
	     2,
	     BYTES("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n"),
	     {NULL, 0, FALSE, AF_INET6, "::ffff:192.0.2.1", 1, "2001:db8::2", 2, 1}},
	    {1,
	     "2001:db8::1",
	     1,
	     "198.51.100.2",
	     2,
	     BYTES("PROXY TCP6 2001:db8::1 ::ffff:198.51.100.2 1 2\r\n"),
	     {NULL, 0, FALSE, AF_INET6, "2001:db8::1", 1, "::ffff:198.51.100.2", 2, 1}},
	    {1,
	     "::ffff:192.0.2.1",
	     1,
	     "::ffff:198.51.100.2",
	     2,
	     BYTES("PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 1 2\r\n"),
	     {NULL, 0, FALSE, AF_INET6, "::ffff:192.0.2.1", 1, "::ffff:198.51.100.2", 2, 1}},
	    /* nothing known of the client */
	    {1,
	     NULL,
	     1,
	     "198.51.100.2",
	     2,
	     BYTES("PROXY UNKNOWN\r\n"),
	     {NULL, 0, TRUE, AF_UNSPEC, "", 0, "", 0, 1}},
	    {1,
	     "192.0.2.1",
	     1,
	     NULL,
	     2,
	     BYTES("PROXY UNKNOWN\r\n"),
	     {NULL, 0, TRUE, AF_UNSPEC, "", 0, "", 0, 1}},
	    {1,
	     "client.example",
	     1,
	     "198.51.100.2",
	     2,
	     BYTES("PROXY UNKNOWN\r\n"),
	     {NULL, 0, TRUE, AF_UNSPEC, "", 0, "", 0, 1}},
	    {1,
	     "fe80::1%eth0",
	     1,
	     "fe80::2",
	     2,
	     BYTES("PROXY UNKNOWN\r\n"),
	     {NULL, 0, TRUE, AF_UNSPEC, "", 0, "", 0, 1}},
	    {1,
	     "",
	     1,
	     "",
	     2,
	     BYTES("PROXY UNKNOWN\r\n"),
	     {NULL, 0, TRUE, AF_UNSPEC, "", 0, "", 0, 1}},

	    {2,
	     "192.0.2.1",
	     56324,
	     "198.51.100.2",
	     25,
	     BYTES(SIG V2_PROXY V2_TCP4 "\x00\x0C" V4_BLOCK),
	     {NULL, 0, FALSE, AF_INET, "192.0.2.1", 56324, "198.51.100.2", 25, 2}},
	    {2,
	     "2001:db8::1",
	     56324,
	     "2001:db8::2",
	     993,
	     BYTES(SIG V2_PROXY V2_TCP6 "\x00\x24" V6_BLOCK),
	     {NULL, 0, FALSE, AF_INET6, "2001:db8::1", 56324, "2001:db8::2", 993, 2}},
	    {2,
	     "192.0.2.1",
	     0,
	     "2001:db8::2",
	     65535,
	     BYTES(SIG V2_PROXY V2_TCP6 "\x00\x24" V6_MAPPED_BLOCK),
	     {NULL, 0, FALSE, AF_INET6, "::ffff:192.0.2.1", 0, "2001:db8::2", 65535, 2}},
	    {2,
	     NULL,
	     1,
	     NULL,
	     2,
	     BYTES(SIG V2_LOCAL V2_UNSPEC "\x00\x00"),
	     {NULL, 0, TRUE, AF_UNSPEC, "", 0, "", 0, 2}},
	    {2,
	     "192.0.2.1",
	     1,
	     "not an address",
	     2,
	     BYTES(SIG V2_LOCAL V2_UNSPEC "\x00\x00"),
	     {NULL, 0, TRUE, AF_UNSPEC, "", 0, "", 0, 2}},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GByteArray) b = NULL;
		Valid back = cases[i].back;

		g_test_message("case %zu", i);
		b = gh_proxy_header_build(cases[i].version, cases[i].src, cases[i].src_port,
					  cases[i].dst, cases[i].dst_port);
		assert_bytes(b, cases[i].bytes, cases[i].len);
		back.bytes = (const char *)b->data;
		back.len = b->len;
		check_valid(&back);
	}
}

/* Many addresses and ports, both versions, built and read back. */
static void
test_round_trip(void)
{
	static const char *const v4[] = {"0.0.0.0", "127.0.0.1", "192.0.2.1", "255.255.255.255"};
	static const char *const v6[] = {"::",
					 "::1",
					 "2001:db8::1",
					 "fe80::1:2:3:4",
					 "2001:db8:1:2:3:4:5:6",
					 MAX6,
					 "::ffff:10.0.0.1"};
	static const guint16 ports[] = {0, 1, 25, 993, 65535};

	for (int version = 1; version <= 2; version++) {
		for (gsize a = 0; a < G_N_ELEMENTS(v4); a++) {
			for (gsize p = 0; p < G_N_ELEMENTS(ports); p++) {
				const char *src = v4[a], *dst = v4[G_N_ELEMENTS(v4) - 1 - a];
				guint16 sp = ports[p], dp = ports[G_N_ELEMENTS(ports) - 1 - p];
				g_autoptr(GByteArray) b =
				    gh_proxy_header_build(version, src, sp, dst, dp);
				Valid v = {(const char *)b->data,
					   b->len,
					   FALSE,
					   AF_INET,
					   src,
					   sp,
					   dst,
					   dp,
					   version};

				check_valid(&v);
			}
		}
		for (gsize a = 0; a < G_N_ELEMENTS(v6); a++) {
			for (gsize p = 0; p < G_N_ELEMENTS(ports); p++) {
				const char *src = v6[a], *dst = v6[G_N_ELEMENTS(v6) - 1 - a];
				guint16 sp = ports[p], dp = ports[G_N_ELEMENTS(ports) - 1 - p];
				g_autoptr(GByteArray) b =
				    gh_proxy_header_build(version, src, sp, dst, dp);
				Valid v = {(const char *)b->data,
					   b->len,
					   FALSE,
					   AF_INET6,
					   src,
					   sp,
					   dst,
					   dp,
					   version};

				check_valid(&v);
			}
		}
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/proxy-header/empty", test_empty);
	g_test_add_func("/gatehouse/proxy-header/v1/valid", test_v1_valid);
	g_test_add_func("/gatehouse/proxy-header/v1/invalid", test_v1_invalid);
	g_test_add_func("/gatehouse/proxy-header/v2/valid", test_v2_valid);
	g_test_add_func("/gatehouse/proxy-header/v2/invalid", test_v2_invalid);
	g_test_add_func("/gatehouse/proxy-header/v2/limit", test_v2_limit);
	g_test_add_func("/gatehouse/proxy-header/build", test_build);
	g_test_add_func("/gatehouse/proxy-header/round-trip", test_round_trip);
	return g_test_run();
}
