/*
 * proxy-header.h: the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2) that a load balancer puts in front of a client's bytes to
 * say whom it forwards: reading one (from a balancer in front of us) and
 * building one (for a backend behind us).
 *
 * Pure but for inet_pton/inet_ntop: no socket, no I/O, no log, no clock, no
 * state.  It includes <arpa/inet.h> for those two, so it is not on the
 * "pure parsers" list of tests/check-includes.sh.  Any thread.  Tested byte
 * by byte in tests/unit/test-proxy-header.c.
 *
 * What we accept is TCP only: v1 TCP4, TCP6 and UNKNOWN; v2 LOCAL, and PROXY
 * over TCP/IPv4, TCP/IPv6 or UNSPEC.  v2 UDP and AF_UNIX are refused: the
 * spec would let a receiver fall back to UNSPEC for them, but we proxy TCP
 * clients only, and a balancer that says otherwise is not set up for us.
 * v2 TLVs are skipped, never read.
 */
#pragma once

#include <glib.h>
#include <netinet/in.h>

/* The longest v1 line, CRLF included (the spec's bound). */
#define GH_PROXY_V1_MAX 107
/* The longest v2 header we take: the 16 fixed bytes, the addresses (36 for
 * IPv6) and TLVs.  Longer ones are refused once their length field is in. */
#define GH_PROXY_V2_MAX 1024

typedef enum {
	GH_PROXY_NEED_MORE, /* what there is could still begin a header: wait for more */
	GH_PROXY_OK,        /* a whole header */
	GH_PROXY_INVALID,   /* not a header, and no more bytes will make it one */
} GhProxyStatus;

typedef struct {
	/* LOCAL (v2) or UNKNOWN (v1), or v2 PROXY over UNSPEC: the connection
	 * is the balancer's own (a health check); the addresses are empty, the
	 * ports 0, and the socket's own endpoints are the ones to use. */
	gboolean local;
	int family; /* AF_INET or AF_INET6; AF_UNSPEC when local */
	/* inet_ntop's form: "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (an
	 * IPv4-mapped IPv6 address is kept as the balancer sent it) */
	char src_addr[INET6_ADDRSTRLEN];
	guint16 src_port;
	char dst_addr[INET6_ADDRSTRLEN];
	guint16 dst_port;
	int version; /* 1 or 2: the form the balancer sent */
} GhProxyHeader;

/* Read a header at the start of buf[0..len), which may be only its first
 * bytes (call again with more).  A first byte that is neither 'P' (v1) nor
 * CR (the v2 signature) is INVALID at once; so is a v1 line with no CRLF in
 * its first GH_PROXY_V1_MAX bytes, and everything else as soon as the bytes
 * in show it.
 *
 * OK: *out is filled and *consumed is the header's length; the bytes after
 * it are the client's and are not looked at.  NEED_MORE and INVALID:
 * *consumed is 0 and *out untouched.  *error is a short static English
 * reason for the log ("not a PROXY header", "v2: bad signature", ...) on
 * INVALID, NULL otherwise. */
GhProxyStatus gh_proxy_header_parse(
    const guint8 *buf, gsize len, GhProxyHeader *out, gsize *consumed, const char **error);

/* Build the header that tells a backend the client is src_addr:src_port and
 * it reached us at dst_addr:dst_port.  version is 1 (text) or 2 (binary).
 * The addresses are text, IPv4 or IPv6; when one is IPv4 and the other IPv6
 * (an IPv4 client on an IPv6 listener), the IPv4 one is sent IPv4-mapped
 * (::ffff:a.b.c.d) so that both are IPv6.  When an address is NULL or does
 * not parse, the header says nothing of the client: v1 is "PROXY
 * UNKNOWN\r\n", v2 a LOCAL header.  (transfer full) */
GByteArray *gh_proxy_header_build(
    int version, const char *src_addr, guint16 src_port, const char *dst_addr, guint16 dst_port);
