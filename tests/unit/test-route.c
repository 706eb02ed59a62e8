/*
 * test-route.c: gh_route_parse and gh_route_valid, the one rule of routes:
 * HOST, HOST:PORT, [IPV6] and [IPV6]:PORT, HOST a name or an IPv4 address;
 * what each splits into (the host without brackets, the port or 0); and
 * what is refused (an empty part, a colon with no port after it, a zero or
 * too large port, a bare IPv6 address, a leading '.' or '-', a blank, a
 * NUL).  Every case is checked on a copy of exactly its bytes, with no
 * terminator after them, so that a read past `len` shows under valgrind;
 * and byte by byte: every byte value in the host and in the port, every
 * prefix of every good route.
 */
#include "gh-build.h"

#include "common/route.h"

#include <string.h>

/* A route and the parts it must split into (port 0: none named). */
typedef struct {
	const char *text;
	const char *host;
	guint port;
} Good;

/* gh_route_parse on a heap copy of exactly the len bytes at text. */
static gboolean
parse_bytes(const char *text, gsize len, char **host, guint *port)
{
	g_autofree char *copy = len > 0 ? g_memdup2(text, len) : NULL;

	return gh_route_parse(len > 0 ? copy : "", len, host, port);
}

static gboolean
valid_bytes(const char *text, gsize len)
{
	g_autofree char *copy = len > 0 ? g_memdup2(text, len) : NULL;
	gboolean v = gh_route_valid(len > 0 ? copy : "", len);

	/* the two never disagree */
	g_assert_cmpint(parse_bytes(text, len, NULL, NULL), ==, v);
	return v;
}

static gboolean
valid(const char *text)
{
	return valid_bytes(text, strlen(text));
}

static void
check_good(const Good *cases, gsize n)
{
	for (gsize i = 0; i < n; i++) {
		g_autofree char *host = NULL;
		guint port = 12345;

		if (!parse_bytes(cases[i].text, strlen(cases[i].text), &host, &port))
			g_test_message("'%s': want valid", cases[i].text);
		g_assert_true(valid(cases[i].text));
		g_assert_cmpstr(host, ==, cases[i].host);
		g_assert_cmpuint(port, ==, cases[i].port);
	}
}

/* Refused, and the out parameters left as they were. */
static void
check_bad(const char *const *texts, gsize n)
{
	for (gsize i = 0; i < n; i++) {
		char *host = (char *)"untouched";
		guint port = 12345;

		if (valid(texts[i]))
			g_test_message("'%s': want invalid", texts[i]);
		g_assert_false(parse_bytes(texts[i], strlen(texts[i]), &host, &port));
		g_assert_cmpstr(host, ==, "untouched");
		g_assert_cmpuint(port, ==, 12345);
	}
}

static void
test_names(void)
{
	static const Good good[] = {
	    {"mail:143", "mail", 143},
	    {"mail.example.com:587", "mail.example.com", 587},
	    {"mail-2.example.com:993", "mail-2.example.com", 993},
	    {"mx_1.example.com:25", "mx_1.example.com", 25},
	    {"a:1", "a", 1},
	    {"A:65535", "A", 65535},
	    {"0:25", "0", 25},
	    {"9host:25", "9host", 25},
	    {"host.:25", "host.", 25}, /* a trailing dot: a fully qualified name */
	    {"a..b:25", "a..b", 25},   /* the rule checks characters, not labels */
	    {"host-:25", "host-", 25},
	    {"_srv:25", "_srv", 25},
	    /* without a port: as directories keep a mail host */
	    {"host", "host", 0},
	    {"imap2.example.test", "imap2.example.test", 0},
	    {"localhost", "localhost", 0},
	    {"a", "a", 0},
	    {"host.", "host.", 0},
	};
	static const char *const bad[] = {
	    ".host:25",  "-host:25", "-:25",     ".:25",     "ho st:25",    "host :25",
	    " host:25",  "host: 25", "ho/st:25", "ho@st:25", "h\303\244st", /* non-ASCII */
	    "host\t:25", "-host",    ".host",    "-",        ".",           "a b",
	    " host",     "host ",    "host\n",   "host\r",   "ho%st",       "host/",
	    "host:",     "host::25", "a:b:25",   "host:25:", "*",           "ho*st",
	};

	check_good(good, G_N_ELEMENTS(good));
	check_bad(bad, G_N_ELEMENTS(bad));
}

static void
test_ipv4(void)
{
	static const Good good[] = {
	    {"10.0.0.5:143", "10.0.0.5", 143},
	    {"127.0.0.1:25", "127.0.0.1", 25},
	    {"0.0.0.0:1", "0.0.0.0", 1},
	    {"255.255.255.255:65535", "255.255.255.255", 65535},
	    {"10.0.0.5", "10.0.0.5", 0},
	    {"127.0.0.1", "127.0.0.1", 0},
	    /* digits and dots are a name as well: not checked as an address */
	    {"1.2.3.999:25", "1.2.3.999", 25},
	    {"1.2.3.999", "1.2.3.999", 0},
	};
	static const char *const bad[] = {
	    "10.0.0.5:",      "10.0.0.5:0", "10.0.0.5::143",
	    "[10.0.0.5]:143", "[10.0.0.5]", /* brackets are for IPv6 only */
	    ".10.0.0.5:143",  ".10.0.0.5",  "10.0.0.5 ",
	};

	check_good(good, G_N_ELEMENTS(good));
	check_bad(bad, G_N_ELEMENTS(bad));
}

static void
test_ipv6(void)
{
	static const Good good[] = {
	    {"[::1]:143", "::1", 143},
	    {"[::]:25", "::", 25},
	    {"[2001:db8::7]:993", "2001:db8::7", 993},
	    {"[fe80::1:2:3]:10143", "fe80::1:2:3", 10143},
	    {"[::ffff:10.0.0.1]:25", "::ffff:10.0.0.1", 25},
	    {"[2001:DB8:0:0:0:0:0:1]:1", "2001:DB8:0:0:0:0:0:1", 1},
	    {"[::1]", "::1", 0},
	    {"[::]", "::", 0},
	    {"[2001:db8::7]", "2001:db8::7", 0},
	};
	/* bare: its colons cannot be told from the port's */
	static const char *const bare[] = {"::1:143", "2001:db8::7:993", "::1",
					   "::",      "2001:db8::7",     "fe80::1:2:3"};
	static const char *const bad[] = {
	    "[::1]:",      "[::1]143",    "[::1]::143",    "[::1",       "[::1:143",   "[]:143",
	    "[]",          "[zz::1]:143", "[1::2::3]:143", "[ ::1]:143", "[::1 ]:143", "[::1]]:143",
	    "[[::1]]:143", "[::1]:0",     "[::1]:65536",   "[::1]:1a",   "x[::1]:143", "[host]:143",
	    "[host]",      "[::1]x",      "[::1] ",        "[::1]]",     "[",          "[:]",
	};

	/* GLib alone would take ":" for an IPv6 address */
	g_assert_false(valid("[:]:143"));
	check_bad(bare, G_N_ELEMENTS(bare));
	check_good(good, G_N_ELEMENTS(good));
	check_bad(bad, G_N_ELEMENTS(bad));
}

static void
test_ports(void)
{
	static const Good good[] = {
	    {"h:1", "h", 1},        {"h:25", "h", 25},       {"h:00025", "h", 25}, /* five digits */
	    {"h:09999", "h", 9999}, {"h:65535", "h", 65535}, {"h:143", "h", 143},
	};
	static const char *const bad[] = {
	    "h:0",      "h:00000",      "h:65536", "h:99999", "h:065535", /* six digits, though the
									     value fits */
	    "h:100000", "h:4294967321", /* 2^32 + 25: would wrap to 25 in 32 bits */
	    "h:",       "h:+25",        "h:-25",   "h:25 ",   "h: 25",    "h:2 5", "h:0x19",
	    "h:25:",    "h:25:26",      "h::25",   ":25",     ":",        ":143",  "::",
	};

	check_good(good, G_N_ELEMENTS(good));
	check_bad(bad, G_N_ELEMENTS(bad));
}

static void
test_empty(void)
{
	char *host = NULL;
	guint port = 7;

	g_assert_false(gh_route_valid("", 0));
	g_assert_false(gh_route_valid(NULL, 0));
	g_assert_false(gh_route_parse(NULL, 0, &host, &port));
	g_assert_null(host);
	g_assert_cmpuint(port, ==, 7);
	g_assert_false(valid_bytes("[", 1));
	g_assert_false(valid_bytes(":", 1));
	g_assert_false(valid_bytes("]", 1));
}

/* Either out parameter may be NULL. */
static void
test_outs_optional(void)
{
	g_autofree char *host = NULL;
	guint port = 0;

	g_assert_true(gh_route_parse("[::1]:143", 9, &host, NULL));
	g_assert_cmpstr(host, ==, "::1");
	g_assert_true(gh_route_parse("[::1]:143", 9, NULL, &port));
	g_assert_cmpuint(port, ==, 143);
	g_assert_true(gh_route_parse("[::1]", 5, NULL, NULL));
}

/* Only len bytes count: what follows them is neither needed nor read. */
static void
test_length(void)
{
	static const char text[] = "mail.example.com:587garbage";
	g_autofree char *host = NULL;
	guint port = 1;

	g_assert_true(gh_route_valid(text, strlen("mail.example.com:587")));
	g_assert_true(gh_route_valid(text, strlen("mail.example.com:5")));
	g_assert_false(gh_route_valid(text, strlen("mail.example.com:")));
	g_assert_true(gh_route_parse(text, strlen("mail.example.com"), &host, &port));
	g_assert_cmpstr(host, ==, "mail.example.com");
	g_assert_cmpuint(port, ==, 0);
	g_assert_false(gh_route_valid(text, strlen(text)));
	/* a ']' past len does not close the bracket */
	g_assert_false(valid_bytes("[::1]:25", 4));
	g_assert_true(valid_bytes("[::1]:25", 5));
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
	g_assert_false(valid_bytes("host\0", 5));
	g_assert_false(valid_bytes("ho\0st", 5));
	g_assert_false(valid_bytes("[::1\0x]:25", 10));
	g_assert_false(valid_bytes("[::1]\0:25", 9));
	g_assert_false(valid_bytes("[::1]\0", 6));
	g_assert_false(valid_bytes("\0", 1));
}

/* Every prefix of a good route is valid or not as the rule says: a prefix
 * that ends in ':' or inside the brackets is not, the others are, with
 * the parts of the prefix. */
static void
test_prefixes(void)
{
	static const char *const routes[] = {"mail.example.com:10143", "10.0.0.5:143",
					     "[2001:db8::7]:993"};

	for (gsize r = 0; r < G_N_ELEMENTS(routes); r++) {
		const char *t = routes[r];
		const char *close = strchr(t, ']');
		const char *colon = strrchr(t, ':');

		for (gsize n = 1; n <= strlen(t); n++) {
			g_autofree char *host = NULL;
			guint port = 0;
			gboolean inside = close != NULL && n <= (gsize)(close - t);
			gboolean want = !inside && t[n - 1] != ':';
			gboolean got = parse_bytes(t, n, &host, &port);

			if (got != want)
				g_test_message("'%.*s': want %s", (int)n, t,
					       want ? "valid" : "invalid");
			g_assert_cmpint(got, ==, want);
			if (!got)
				continue;
			if (n <= (gsize)(colon - t)) {
				g_assert_cmpuint(port, ==, 0);
			} else {
				g_autofree char *digits =
				    g_strndup(colon + 1, n - (gsize)(colon - t) - 1);
				g_assert_cmpuint(port, ==,
						 (guint)g_ascii_strtoull(digits, NULL, 10));
			}
		}
	}
}

/* Every byte value in place of the host's middle byte and of a port digit,
 * with and without a port. */
static void
test_every_byte(void)
{
	for (guint b = 0; b < 256; b++) {
		char host[] = "ab?c:25";
		char bare[] = "ab?c";
		char port[] = "abc:2?";
		char v6[] = "[::?]:25";
		char v6bare[] = "[::?]";
		gboolean name_char = g_ascii_isalnum(b) || b == '.' || b == '-' || b == '_';

		host[2] = (char)b;
		bare[2] = (char)b;
		port[5] = (char)b;
		v6[3] = (char)b;
		v6bare[3] = (char)b;
		g_assert_cmpint(valid_bytes(host, strlen("ab?c:25")), ==, name_char);
		g_assert_cmpint(valid_bytes(bare, strlen("ab?c")), ==, name_char);
		g_assert_cmpint(valid_bytes(port, strlen("abc:2?")), ==, g_ascii_isdigit(b));
		/* "[::X]": a hex digit makes an address ("::a"); nothing else
		 * of one byte does (':' gives ":::", '.' gives "::.") */
		g_assert_cmpint(valid_bytes(v6, strlen("[::?]:25")), ==, g_ascii_isxdigit(b));
		g_assert_cmpint(valid_bytes(v6bare, strlen("[::?]")), ==, g_ascii_isxdigit(b));
	}
	/* and as the first byte: '.' and '-' may not begin a host */
	for (guint b = 0; b < 256; b++) {
		char host[] = "?b:25";
		char bare[] = "?b";
		gboolean first_char = g_ascii_isalnum(b) || b == '_';

		host[0] = (char)b;
		bare[0] = (char)b;
		if (b == '[')
			continue; /* the IPv6 form, refused as such: "[b:25" has no ']' */
		g_assert_cmpint(valid_bytes(host, strlen("?b:25")), ==, first_char);
		g_assert_cmpint(valid_bytes(bare, strlen("?b")), ==, first_char);
	}
	g_assert_false(valid("[b:25"));
	g_assert_false(valid("[b"));
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
	g_test_add_func("/gatehouse/route/outs-optional", test_outs_optional);
	g_test_add_func("/gatehouse/route/length", test_length);
	g_test_add_func("/gatehouse/route/nul", test_nul);
	g_test_add_func("/gatehouse/route/prefixes", test_prefixes);
	g_test_add_func("/gatehouse/route/every-byte", test_every_byte);
	return g_test_run();
}
