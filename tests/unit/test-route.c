/*
 * test-route.c: gh_route_valid, the one HOST:PORT rule of routes: names,
 * IPv4 and bracketed IPv6 hosts, ports from 1 to 65535, and what is refused
 * (a missing, zero or too large port, bare IPv6, empty parts, a leading '.'
 * or '-', a trailing colon, a NUL).  Every case is checked on a copy of
 * exactly its bytes, with no terminator after them, so that a read past
 * `len` shows under valgrind; and byte by byte, every byte value in the
 * host and in the port.
 */
#include "gh-build.h"

#include "common/route.h"

#include <string.h>

/* gh_route_valid on a heap copy of exactly the len bytes at text. */
static gboolean
valid_bytes(const char *text, gsize len)
{
	g_autofree char *copy = len > 0 ? g_memdup2(text, len) : NULL;

	return gh_route_valid(len > 0 ? copy : "", len);
}

static gboolean
valid(const char *text)
{
	return valid_bytes(text, strlen(text));
}

static void
check_table(const char *const *texts, gsize n, gboolean want)
{
	for (gsize i = 0; i < n; i++) {
		if (valid(texts[i]) != want)
			g_test_message("'%s': want %s", texts[i], want ? "valid" : "invalid");
		g_assert_cmpint(valid(texts[i]), ==, want);
	}
}

static void
test_names(void)
{
	static const char *const good[] = {
	    "mail:143",
	    "mail.example.com:587",
	    "mail-2.example.com:993",
	    "mx_1.example.com:25",
	    "a:1",
	    "A:65535",
	    "0:25",
	    "9host:25",
	    "host.:25", /* a trailing dot: a fully qualified name */
	    "a..b:25",  /* the rule checks characters, not labels */
	    "host-:25",
	    "_srv:25",
	};
	static const char *const bad[] = {
	    ".host:25",  "-host:25",       "-:25",
	    ".:25",      "ho st:25",       "host :25",
	    " host:25",  "host: 25",       "ho/st:25",
	    "ho@st:25",  "h\303\244st:25", /* non-ASCII */
	    "host\t:25", "host",           "host.example.com",
	};

	check_table(good, G_N_ELEMENTS(good), TRUE);
	check_table(bad, G_N_ELEMENTS(bad), FALSE);
}

static void
test_ipv4(void)
{
	static const char *const good[] = {
	    "10.0.0.5:143",
	    "127.0.0.1:25",
	    "0.0.0.0:1",
	    "255.255.255.255:65535",
	    /* digits and dots are a name as well: not checked as an address */
	    "1.2.3.999:25",
	};
	static const char *const bad[] = {
	    "10.0.0.5",      "10.0.0.5:",      "10.0.0.5:0",
	    "10.0.0.5::143", "[10.0.0.5]:143", /* brackets are for IPv6 only */
	    ".10.0.0.5:143",
	};

	check_table(good, G_N_ELEMENTS(good), TRUE);
	check_table(bad, G_N_ELEMENTS(bad), FALSE);
}

static void
test_ipv6(void)
{
	static const char *const good[] = {
	    "[::1]:143",
	    "[::]:25",
	    "[2001:db8::7]:993",
	    "[fe80::1:2:3]:10143",
	    "[::ffff:10.0.0.1]:25",
	    "[2001:DB8:0:0:0:0:0:1]:1",
	};
	/* bare: its colons cannot be told from the port's */
	static const char *const bare[] = {"::1:143", "2001:db8::7:993", "::1"};
	static const char *const bad[] = {
	    "[::1]",       "[::1]:",      "[::1]143",      "[::1]::143", "[::1",       "[::1:143",
	    "[]:143",      "[zz::1]:143", "[1::2::3]:143", "[ ::1]:143", "[::1 ]:143", "[::1]]:143",
	    "[[::1]]:143", "[::1]:0",     "[::1]:65536",   "[::1]:1a",   "x[::1]:143", "[host]:143",
	};

	/* GLib alone would take ":" for an IPv6 address */
	g_assert_false(valid("[:]:143"));
	check_table(bare, G_N_ELEMENTS(bare), FALSE);
	check_table(good, G_N_ELEMENTS(good), TRUE);
	check_table(bad, G_N_ELEMENTS(bad), FALSE);
}

static void
test_ports(void)
{
	static const char *const good[] = {
	    "h:1",     "h:25",    "h:00025", /* five digits, leading zeros */
	    "h:09999", "h:65535",
	};
	static const char *const bad[] = {
	    "h:0",      "h:00000",      "h:65536", "h:99999", "h:065535", /* six digits, though the
									     value fits */
	    "h:100000", "h:4294967321", /* 2^32 + 25: would wrap to 25 in 32 bits */
	    "h:",       "h:+25",        "h:-25",   "h:25 ",   "h: 25",    "h:2 5", "h:0x19",
	    "h:25:",    "h:25:26",      "h::25",   ":25",     ":",        "h",
	};

	check_table(good, G_N_ELEMENTS(good), TRUE);
	check_table(bad, G_N_ELEMENTS(bad), FALSE);
}

static void
test_empty(void)
{
	g_assert_false(gh_route_valid("", 0));
	g_assert_false(gh_route_valid(NULL, 0));
	g_assert_false(valid_bytes("[", 1));
	g_assert_false(valid_bytes(":", 1));
	g_assert_false(valid_bytes("]", 1));
}

/* Only len bytes count: what follows them is neither needed nor read. */
static void
test_length(void)
{
	static const char text[] = "mail.example.com:587garbage";

	g_assert_true(gh_route_valid(text, strlen("mail.example.com:587")));
	g_assert_true(gh_route_valid(text, strlen("mail.example.com:5")));
	g_assert_false(gh_route_valid(text, strlen("mail.example.com:")));
	g_assert_false(gh_route_valid(text, strlen("mail.example.com")));
	g_assert_false(gh_route_valid(text, strlen(text)));
	/* a ']' past len does not close the bracket */
	g_assert_false(valid_bytes("[::1]:25", 4));
	g_assert_false(valid_bytes("[::1]:25", 6));
	g_assert_true(valid_bytes("[::1]:25", 7));
	g_assert_true(valid_bytes("[::1]:25", 8));
}

/* A NUL among the bytes makes the text invalid: it could not be the whole
 * of a C string, and the part before it must not pass for the whole. */
static void
test_nul(void)
{
	g_assert_false(valid_bytes("host\0:25", 8));
	g_assert_false(valid_bytes("host:2\0", 7));
	g_assert_false(valid_bytes("[::1\0x]:25", 10));
	g_assert_false(valid_bytes("[::1]\0:25", 9));
	g_assert_false(valid_bytes("\0", 1));
}

/* Every byte value in place of the host's middle byte and of a port digit. */
static void
test_every_byte(void)
{
	for (guint b = 0; b < 256; b++) {
		char host[] = "ab?c:25";
		char port[] = "abc:2?";
		char v6[] = "[::?]:25";
		gboolean name_char = g_ascii_isalnum(b) || b == '.' || b == '-' || b == '_';

		host[2] = (char)b;
		port[5] = (char)b;
		v6[3] = (char)b;
		g_assert_cmpint(valid_bytes(host, strlen("ab?c:25")), ==, name_char);
		g_assert_cmpint(valid_bytes(port, strlen("abc:2?")), ==, g_ascii_isdigit(b));
		/* "[::X]": a hex digit makes an address ("::a"); nothing else
		 * of one byte does (':' gives ":::", '.' gives "::.") */
		g_assert_cmpint(valid_bytes(v6, strlen("[::?]:25")), ==, g_ascii_isxdigit(b));
	}
	/* and as the first byte: '.' and '-' may not begin a host */
	for (guint b = 0; b < 256; b++) {
		char host[] = "?b:25";
		gboolean first_char = g_ascii_isalnum(b) || b == '_';

		host[0] = (char)b;
		if (b == '[')
			continue; /* the IPv6 form, refused as such: "[b:25" has no ']' */
		g_assert_cmpint(valid_bytes(host, strlen("?b:25")), ==, first_char);
	}
	g_assert_false(valid("[b:25"));
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();

	g_test_add_func("/gatehouse/route/names", test_names);
	g_test_add_func("/gatehouse/route/ipv4", test_ipv4);
	g_test_add_func("/gatehouse/route/ipv6", test_ipv6);
	g_test_add_func("/gatehouse/route/ports", test_ports);
	g_test_add_func("/gatehouse/route/empty", test_empty);
	g_test_add_func("/gatehouse/route/length", test_length);
	g_test_add_func("/gatehouse/route/nul", test_nul);
	g_test_add_func("/gatehouse/route/every-byte", test_every_byte);
	return g_test_run();
}
