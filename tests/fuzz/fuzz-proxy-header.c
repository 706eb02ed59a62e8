/*
 * fuzz-proxy-header.c: the libFuzzer target of the PROXY protocol header
 * reader (gh_proxy_header_parse in daemon/net/proxy-header.c): the first
 * bytes of a connection on a listener with proxy_protocol = yes, which come
 * from a balancer or from anyone who reaches the port.
 *
 * Input: the connection's first bytes.
 *
 * Asserted: the header is read the same from every prefix of the input (the
 * parser promises that any prefix of a valid header is NEED_MORE and that
 * pieces give the answer of the whole): once INVALID a longer prefix stays
 * INVALID with the same reason, before OK every prefix is NEED_MORE, from
 * OK on every prefix gives the same header and length; NEED_MORE and INVALID
 * consume nothing and leave *out untouched, INVALID always with a reason;
 * an OK header is within its version's bound, names a family that fits its
 * addresses (NUL-terminated, parseable by inet_pton), empty ones when local;
 * and gh_proxy_header_build of what was read reads back the same.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "net/proxy-header.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static gboolean
same_header(const GhProxyHeader *a, const GhProxyHeader *b)
{
	return a->local == b->local && a->family == b->family && a->version == b->version &&
	       a->src_port == b->src_port && a->dst_port == b->dst_port &&
	       strcmp(a->src_addr, b->src_addr) == 0 && strcmp(a->dst_addr, b->dst_addr) == 0;
}

static void
check_header(const GhProxyHeader *h, gsize consumed)
{
	guint8 bin[16];

	FUZZ_CHECK(h->version == 1 || h->version == 2);
	FUZZ_CHECK(consumed <= (h->version == 1 ? GH_PROXY_V1_MAX : GH_PROXY_V2_MAX));
	FUZZ_CHECK(memchr(h->src_addr, '\0', sizeof(h->src_addr)) != NULL);
	FUZZ_CHECK(memchr(h->dst_addr, '\0', sizeof(h->dst_addr)) != NULL);
	if (h->local) {
		FUZZ_CHECK(h->family == AF_UNSPEC);
		FUZZ_CHECK(*h->src_addr == '\0' && *h->dst_addr == '\0');
		FUZZ_CHECK(h->src_port == 0 && h->dst_port == 0);
		return;
	}
	FUZZ_CHECK(h->family == AF_INET || h->family == AF_INET6);
	FUZZ_CHECK(inet_pton(h->family, h->src_addr, bin) == 1);
	FUZZ_CHECK(inet_pton(h->family, h->dst_addr, bin) == 1);
}

/* What was read, built again and read back. */
static void
round_trip(const GhProxyHeader *h)
{
	for (int version = 1; version <= 2; version++) {
		GByteArray *b =
		    gh_proxy_header_build(version, h->local ? NULL : h->src_addr, h->src_port,
					  h->local ? NULL : h->dst_addr, h->dst_port);
		GhProxyHeader back;
		gsize used = 0;
		const char *error = NULL;

		FUZZ_CHECK(b != NULL);
		FUZZ_CHECK(gh_proxy_header_parse(b->data, b->len, &back, &used, &error) ==
			   GH_PROXY_OK);
		FUZZ_CHECK(used == b->len && error == NULL);
		FUZZ_CHECK(back.version == version && back.local == h->local);
		if (!h->local) {
			FUZZ_CHECK(back.family == h->family);
			FUZZ_CHECK(strcmp(back.src_addr, h->src_addr) == 0);
			FUZZ_CHECK(strcmp(back.dst_addr, h->dst_addr) == 0);
			FUZZ_CHECK(back.src_port == h->src_port && back.dst_port == h->dst_port);
		}
		g_byte_array_unref(b);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	GhProxyHeader whole, h;
	gsize whole_used = 7;
	const char *whole_error = NULL;
	GhProxyStatus whole_st;
	guint8 *buf;
	/* a prefix longer than the longest header answers as the whole */
	gsize upto = MIN(size, (gsize)GH_PROXY_V2_MAX + 8);
	GhProxyStatus prev = GH_PROXY_NEED_MORE;
	const char *prev_error = NULL;

	memset(&whole, 0xA5, sizeof(whole));
	buf = g_memdup2(data, size);
	whole_st = gh_proxy_header_parse(buf, size, &whole, &whole_used, &whole_error);
	if (whole_st == GH_PROXY_OK) {
		FUZZ_CHECK(whole_error == NULL && whole_used > 0 && whole_used <= size);
		check_header(&whole, whole_used);
		round_trip(&whole);
	} else {
		FUZZ_CHECK(whole_used == 0);
		FUZZ_CHECK((whole_st == GH_PROXY_INVALID) == (whole_error != NULL));
	}

	/* every prefix, each in an exact heap copy */
	for (gsize n = 0; n <= upto; n++) {
		guint8 *p = g_memdup2(data, n);
		gsize used = 7;
		const char *error = NULL;
		GhProxyStatus st;

		memset(&h, 0x5A, sizeof(h));
		st = gh_proxy_header_parse(p, n, &h, &used, &error);
		g_free(p);
		if (st != GH_PROXY_OK) {
			GhProxyHeader untouched;

			memset(&untouched, 0x5A, sizeof(untouched));
			FUZZ_CHECK(memcmp(&h, &untouched, sizeof(h)) == 0);
			FUZZ_CHECK(used == 0);
		}
		switch (prev) {
		case GH_PROXY_NEED_MORE:
			break;
		case GH_PROXY_INVALID:
			FUZZ_CHECK(st == GH_PROXY_INVALID && strcmp(error, prev_error) == 0);
			break;
		case GH_PROXY_OK:
			FUZZ_CHECK(st == GH_PROXY_OK);
			break;
		}
		if (st == GH_PROXY_INVALID)
			FUZZ_CHECK(error != NULL);
		if (whole_st == GH_PROXY_OK) {
			FUZZ_CHECK((st == GH_PROXY_OK) == (n >= whole_used));
			if (st == GH_PROXY_OK)
				FUZZ_CHECK(used == whole_used && same_header(&h, &whole));
			else
				FUZZ_CHECK(st == GH_PROXY_NEED_MORE);
		} else if (whole_st == GH_PROXY_NEED_MORE) {
			FUZZ_CHECK(st == GH_PROXY_NEED_MORE);
		} else if (n == size) {
			FUZZ_CHECK(st == GH_PROXY_INVALID && strcmp(error, whole_error) == 0);
		}
		prev = st;
		prev_error = error;
	}
	g_free(buf);
	return 0;
}
