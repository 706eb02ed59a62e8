/*
 * proxy-header.c: reading and building PROXY protocol headers (see
 * proxy-header.h).
 *
 * Reading: the first byte picks the version ('P' v1, CR v2).  Both readers
 * look at the bytes in order and answer INVALID at the first byte that no
 * valid header could have there, NEED_MORE while every byte so far fits;
 * so any prefix of a valid header is NEED_MORE, never INVALID, and feeding
 * a header in pieces gives the same answer as feeding it whole.
 *
 * v1 is checked field by field over the line as far as it is in: a field
 * that the end of the input cuts short is held to what its beginning can be
 * (its characters, its length, a port's value), a whole one to what it
 * must be (inet_pton for addresses).  v2 is checked as soon as each fixed
 * byte is in: signature, version and command, family, length.
 *
 * Invariants: no byte at or after `len` is read, nor any byte after the
 * header once it is whole; nothing is written to *out unless the answer is
 * OK; no state between calls.
 */
#include "gh-build.h"

#include "net/proxy-header.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static const guint8 v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V2_FIXED 16      /* signature, version and command, family, length */
#define V2_CMD_LOCAL 0x0 /* the balancer's own connection */
#define V2_CMD_PROXY 0x1 /* a client's connection, forwarded */
#define V2_TCP4 0x11     /* AF_INET, SOCK_STREAM */
#define V2_TCP6 0x21     /* AF_INET6, SOCK_STREAM */
#define V2_TCP4_BLOCK 12 /* two IPv4 addresses, two ports */
#define V2_TCP6_BLOCK 36 /* two IPv6 addresses, two ports */
#define V1_IPV4_TEXT 15  /* "255.255.255.255" */
#define V1_IPV6_TEXT 45  /* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" */

static GhProxyStatus
invalid(const char **error, const char *why)
{
	*error = why;
	return GH_PROXY_INVALID;
}

static void
set_local(GhProxyHeader *out, int version)
{
	memset(out, 0, sizeof(*out));
	out->local = TRUE;
	out->family = AF_UNSPEC;
	out->version = version;
}

/* ---- v1: "PROXY TCP4 192.0.2.1 198.51.100.2 50000 25\r\n" ---- */

/* The line without its terminator, as far as it is in. */
typedef struct {
	const guint8 *p;
	gsize n;
	gsize pos;
	gboolean whole; /* the line ends at p[n]: nothing more will come */
} Line;

/* One field: the bytes from pos to the next space, or to the end of what is
 * in.  `spaced`: a space ends it.  Neither spaced nor whole: the input cuts it,
 * and its next bytes are still to come. */
typedef struct {
	const guint8 *s;
	gsize len;
	gboolean spaced;
} Field;

static Field
next_field(Line *l)
{
	Field f = {l->p + l->pos, 0, FALSE};

	while (l->pos < l->n && l->p[l->pos] != ' ') {
		l->pos++;
		f.len++;
	}
	if (l->pos < l->n) {
		f.spaced = TRUE;
		l->pos++;
	}
	return f;
}

static gboolean
field_is(Field f, const char *word)
{
	return f.len == strlen(word) && memcmp(f.s, word, f.len) == 0;
}

static gboolean
field_begins(Field f, const char *word)
{
	return f.len <= strlen(word) && memcmp(f.s, word, f.len) == 0;
}

/* An address field of `family`, written to out in inet_ntop's form. */
static GhProxyStatus
v1_address(Line *l, int family, char *out, const char *bad, const char **error)
{
	Field f = next_field(l);
	const char *chars = family == AF_INET ? "0123456789." : "0123456789abcdefABCDEF:.";
	gsize max = family == AF_INET ? V1_IPV4_TEXT : V1_IPV6_TEXT;
	char text[V1_IPV6_TEXT + 1];
	guint8 bin[16];

	if (f.len > max)
		return invalid(error, bad);
	for (gsize i = 0; i < f.len; i++) {
		if (f.s[i] == '\0' || strchr(chars, f.s[i]) == NULL)
			return invalid(error, bad);
	}
	if (!f.spaced)
		return l->whole ? invalid(error, "v1: too few fields") : GH_PROXY_NEED_MORE;
	memcpy(text, f.s, f.len);
	text[f.len] = '\0';
	if (inet_pton(family, text, bin) != 1)
		return invalid(error, bad);
	if (inet_ntop(family, bin, out, INET6_ADDRSTRLEN) == NULL)
		return invalid(error, bad);
	return GH_PROXY_OK;
}

/* A port field: decimal 0..65535, no sign, no leading zero.  The last one
 * ends the line. */
static GhProxyStatus
v1_port(Line *l, gboolean last, guint16 *out, const char *bad, const char **error)
{
	Field f = next_field(l);
	guint value = 0;

	if (f.len > 5)
		return invalid(error, bad);
	for (gsize i = 0; i < f.len; i++) {
		if (f.s[i] < '0' || f.s[i] > '9' || (i == 1 && f.s[0] == '0'))
			return invalid(error, bad);
		value = value * 10 + (f.s[i] - '0');
	}
	if (value > G_MAXUINT16)
		return invalid(error, bad);
	if (!last && !f.spaced)
		return l->whole ? invalid(error, "v1: too few fields") : GH_PROXY_NEED_MORE;
	if (last && f.spaced)
		return invalid(error, "v1: bytes after the destination port");
	if (last && !l->whole)
		return GH_PROXY_NEED_MORE;
	if (f.len == 0)
		return invalid(error, bad);
	*out = (guint16)value;
	return GH_PROXY_OK;
}

/* The fields of the line; h is filled as they are read (the caller copies
 * it out only on OK). */
static GhProxyStatus
v1_fields(Line *l, GhProxyHeader *h, const char **error)
{
	static const char prefix[] = "PROXY ";
	gsize have = MIN(l->n, sizeof(prefix) - 1);
	GhProxyStatus st;
	Field f;

	if (memcmp(l->p, prefix, have) != 0)
		return invalid(error, "not a PROXY header");
	if (have < sizeof(prefix) - 1)
		return l->whole ? invalid(error, "v1: too few fields") : GH_PROXY_NEED_MORE;
	l->pos = have;

	f = next_field(l);
	if (!f.spaced && !l->whole) {
		if (field_begins(f, "TCP4") || field_begins(f, "TCP6") ||
		    field_begins(f, "UNKNOWN"))
			return GH_PROXY_NEED_MORE;
		return invalid(error, "v1: bad protocol");
	}
	if (field_is(f, "UNKNOWN")) {
		/* whatever follows, up to the CRLF, is the sender's business */
		set_local(h, 1);
		return l->whole ? GH_PROXY_OK : GH_PROXY_NEED_MORE;
	}
	memset(h, 0, sizeof(*h));
	h->version = 1;
	if (field_is(f, "TCP4"))
		h->family = AF_INET;
	else if (field_is(f, "TCP6"))
		h->family = AF_INET6;
	else
		return invalid(error, "v1: bad protocol");
	if (!f.spaced)
		return invalid(error, "v1: too few fields");

	st = v1_address(l, h->family, h->src_addr, "v1: bad source address", error);
	if (st != GH_PROXY_OK)
		return st;
	st = v1_address(l, h->family, h->dst_addr, "v1: bad destination address", error);
	if (st != GH_PROXY_OK)
		return st;
	st = v1_port(l, FALSE, &h->src_port, "v1: bad source port", error);
	if (st != GH_PROXY_OK)
		return st;
	return v1_port(l, TRUE, &h->dst_port, "v1: bad destination port", error);
}

static GhProxyStatus
parse_v1(const guint8 *buf, gsize len, GhProxyHeader *out, gsize *consumed, const char **error)
{
	/* the CR of a line of GH_PROXY_V1_MAX bytes is at GH_PROXY_V1_MAX - 2 */
	gsize scan = MIN(len, GH_PROXY_V1_MAX - 1);
	gsize end = 0;
	const char *bad_end = NULL;
	GhProxyHeader h = {0};
	GhProxyStatus st;
	Line l;

	while (end < scan && buf[end] != '\r' && buf[end] != '\n')
		end++;
	l = (Line){buf, end, 0, FALSE};
	if (end < scan) {
		if (buf[end] == '\n') {
			l.whole = TRUE;
			bad_end = "v1: line ends in a bare LF";
		} else if (end + 1 < len) {
			l.whole = TRUE;
			if (buf[end + 1] != '\n')
				bad_end = "v1: CR without LF";
		}
		/* else a CR is the last byte in: its LF may come */
	}

	/* a bad field is the better reason, so it comes first */
	st = v1_fields(&l, &h, error);
	if (st == GH_PROXY_INVALID)
		return st;
	if (bad_end != NULL)
		return invalid(error, bad_end);
	if (st == GH_PROXY_NEED_MORE && end == GH_PROXY_V1_MAX - 1)
		return invalid(error, "v1 line longer than 107 bytes");
	if (st == GH_PROXY_NEED_MORE)
		return st;
	*out = h;
	*consumed = end + 2;
	return GH_PROXY_OK;
}

/* ---- v2: signature, ver_cmd, fam, len (network order), addresses, TLVs ---- */

static GhProxyStatus
parse_v2(const guint8 *buf, gsize len, GhProxyHeader *out, gsize *consumed, const char **error)
{
	gsize have = MIN(len, sizeof(v2_signature));
	guint command;
	gsize block;
	gsize need = 0;
	int family = AF_UNSPEC;
	const guint8 *a;

	if (memcmp(buf, v2_signature, have) != 0)
		return invalid(error, "v2: bad signature");
	if (len < 13)
		return GH_PROXY_NEED_MORE;
	if (buf[12] >> 4 != 2)
		return invalid(error, "v2: unknown version");
	command = buf[12] & 0x0F;
	if (command != V2_CMD_LOCAL && command != V2_CMD_PROXY)
		return invalid(error, "v2: unknown command");

	if (len < 14)
		return GH_PROXY_NEED_MORE;
	/* LOCAL: the family and the addresses are ignored, whatever they are */
	if (command == V2_CMD_PROXY) {
		switch (buf[13]) {
		case 0x00: /* UNSPEC: as LOCAL */
			break;
		case V2_TCP4:
			family = AF_INET;
			need = V2_TCP4_BLOCK;
			break;
		case V2_TCP6:
			family = AF_INET6;
			need = V2_TCP6_BLOCK;
			break;
		case 0x12: /* UDP over IPv4 */
		case 0x22: /* UDP over IPv6 */
		case 0x31: /* AF_UNIX stream */
		case 0x32: /* AF_UNIX datagram */
			return invalid(error, "v2: unsupported family");
		default:
			return invalid(error, "v2: unknown family");
		}
	}

	if (len < V2_FIXED)
		return GH_PROXY_NEED_MORE;
	block = (gsize)buf[14] << 8 | buf[15];
	if (block > GH_PROXY_V2_MAX - V2_FIXED)
		return invalid(error, "v2: header too long");
	if (block < need)
		return invalid(error, "v2: address block too short");
	if (len < V2_FIXED + block)
		return GH_PROXY_NEED_MORE;

	set_local(out, 2);
	*consumed = V2_FIXED + block;
	if (family == AF_UNSPEC)
		return GH_PROXY_OK;
	/* what follows the addresses (TLVs) is skipped */
	a = buf + V2_FIXED;
	out->local = FALSE;
	out->family = family;
	if (family == AF_INET) {
		inet_ntop(AF_INET, a, out->src_addr, sizeof(out->src_addr));
		inet_ntop(AF_INET, a + 4, out->dst_addr, sizeof(out->dst_addr));
		a += 8;
	} else {
		inet_ntop(AF_INET6, a, out->src_addr, sizeof(out->src_addr));
		inet_ntop(AF_INET6, a + 16, out->dst_addr, sizeof(out->dst_addr));
		a += 32;
	}
	out->src_port = (guint16)(a[0] << 8 | a[1]);
	out->dst_port = (guint16)(a[2] << 8 | a[3]);
	return GH_PROXY_OK;
}

GhProxyStatus
gh_proxy_header_parse(
    const guint8 *buf, gsize len, GhProxyHeader *out, gsize *consumed, const char **error)
{
	*consumed = 0;
	*error = NULL;
	if (len == 0)
		return GH_PROXY_NEED_MORE;
	if (buf[0] == 'P')
		return parse_v1(buf, len, out, consumed, error);
	if (buf[0] == v2_signature[0])
		return parse_v2(buf, len, out, consumed, error);
	return invalid(error, "not a PROXY header");
}

/* ---- building ---- */

typedef struct {
	int family;
	guint8 bin[16];
} Address;

static gboolean
address_parse(const char *text, Address *a)
{
	if (text == NULL)
		return FALSE;
	if (inet_pton(AF_INET, text, a->bin) == 1) {
		a->family = AF_INET;
		return TRUE;
	}
	if (inet_pton(AF_INET6, text, a->bin) == 1) {
		a->family = AF_INET6;
		return TRUE;
	}
	return FALSE;
}

/* a.b.c.d becomes ::ffff:a.b.c.d (RFC 4291 2.5.5.2) */
static void
address_map_v6(Address *a)
{
	guint8 v4[4];

	if (a->family != AF_INET)
		return;
	memcpy(v4, a->bin, 4);
	memset(a->bin, 0, 10);
	a->bin[10] = 0xFF;
	a->bin[11] = 0xFF;
	memcpy(a->bin + 12, v4, 4);
	a->family = AF_INET6;
}

static void
append_port(GByteArray *b, guint16 port)
{
	guint8 be[2] = {port >> 8, port & 0xFF};

	g_byte_array_append(b, be, 2);
}

GByteArray *
gh_proxy_header_build(
    int version, const char *src_addr, guint16 src_port, const char *dst_addr, guint16 dst_port)
{
	GByteArray *b;
	Address src, dst;
	gboolean known;

	g_return_val_if_fail(version == 1 || version == 2, NULL);

	known = address_parse(src_addr, &src) && address_parse(dst_addr, &dst);
	if (known && src.family != dst.family) {
		address_map_v6(&src);
		address_map_v6(&dst);
	}

	b = g_byte_array_sized_new(GH_PROXY_V1_MAX);
	if (version == 1) {
		char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
		char line[GH_PROXY_V1_MAX + 1];
		int n;

		if (!known) {
			g_byte_array_append(b, (const guint8 *)"PROXY UNKNOWN\r\n", 15);
			return b;
		}
		inet_ntop(src.family, src.bin, s, sizeof(s));
		inet_ntop(dst.family, dst.bin, d, sizeof(d));
		n = g_snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
			       src.family == AF_INET ? "TCP4" : "TCP6", s, d, (guint)src_port,
			       (guint)dst_port);
		g_byte_array_append(b, (const guint8 *)line, (guint)n);
		return b;
	}

	g_byte_array_append(b, v2_signature, sizeof(v2_signature));
	if (!known) {
		const guint8 local[4] = {0x20 | V2_CMD_LOCAL, 0x00, 0, 0};

		g_byte_array_append(b, local, sizeof(local));
		return b;
	}
	if (src.family == AF_INET) {
		const guint8 head[4] = {0x20 | V2_CMD_PROXY, V2_TCP4, 0, V2_TCP4_BLOCK};

		g_byte_array_append(b, head, sizeof(head));
		g_byte_array_append(b, src.bin, 4);
		g_byte_array_append(b, dst.bin, 4);
	} else {
		const guint8 head[4] = {0x20 | V2_CMD_PROXY, V2_TCP6, 0, V2_TCP6_BLOCK};

		g_byte_array_append(b, head, sizeof(head));
		g_byte_array_append(b, src.bin, 16);
		g_byte_array_append(b, dst.bin, 16);
	}
	append_port(b, src_port);
	append_port(b, dst_port);
	return b;
}
