/*
 * route.c: see route.h.  The users file parser and the ldap module check
 * routes with this (the modules through GhAuthHost.route_valid), and the
 * connector splits them with it, so that a route one of them accepts is one
 * the others accept and read the same way.
 *
 * Invariants: reads exactly `len` bytes and never past them; a NUL among
 * them makes the text invalid (it could not be the whole of a C string); the
 * out parameters are set only when the whole text is valid.
 */
#include "gh-build.h"

#include "common/route.h"

#include <string.h>

/* 1 to 5 digits, value 1 to 65535, into *port. */
static gboolean
port_parse(const char *p, gsize len, guint *port)
{
	guint v = 0;

	if (len == 0 || len > 5)
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		if (!g_ascii_isdigit(p[i]))
			return FALSE;
		v = v * 10 + (guint)(p[i] - '0');
	}
	if (v < 1 || v > 65535)
		return FALSE;
	*port = v;
	return TRUE;
}

/* A name or an IPv4 address: letters, digits, '.', '-', '_', not beginning
 * with '.' or '-'. */
static gboolean
host_name_valid(const char *p, gsize len)
{
	if (len == 0 || p[0] == '-' || p[0] == '.')
		return FALSE;
	for (gsize i = 0; i < len; i++)
		if (!(g_ascii_isalnum(p[i]) || p[i] == '.' || p[i] == '-' || p[i] == '_'))
			return FALSE;
	return TRUE;
}

/* An IPv6 address (it has a colon: "[10.0.0.1]" is not one).  The shortest
 * is "::"; g_hostname_is_ip_address() takes a lone ":" for one (GLib 2.74). */
static gboolean
ipv6_valid(const char *p, gsize len)
{
	g_autofree char *host = NULL;

	if (len < 2 || memchr(p, ':', len) == NULL)
		return FALSE;
	host = g_strndup(p, len);
	return g_hostname_is_ip_address(host);
}

gboolean
gh_route_parse(const char *text, gsize len, char **host_out, guint *port_out)
{
	const char *end = text + len;
	const char *host = text, *port_text = NULL;
	gsize host_len = len;
	guint port = 0;

	if (len == 0 || memchr(text, '\0', len) != NULL)
		return FALSE;
	if (text[0] == '[') {
		const char *close = memchr(text, ']', len);

		if (close == NULL)
			return FALSE;
		host = text + 1;
		host_len = (gsize)(close - host);
		if (!ipv6_valid(host, host_len))
			return FALSE;
		if (close + 1 < end) {
			if (close[1] != ':')
				return FALSE;
			port_text = close + 2;
		}
	} else {
		/* the last colon: a name has none, so any before it make HOST
		 * invalid (a bare IPv6 address among them) */
		for (gsize i = len; i > 0; i--) {
			if (text[i - 1] == ':') {
				host_len = i - 1;
				port_text = text + i;
				break;
			}
		}
		if (!host_name_valid(host, host_len))
			return FALSE;
	}
	/* "HOST:" and "[IPV6]:" name no port: they are mistakes, not HOST */
	if (port_text != NULL && !port_parse(port_text, (gsize)(end - port_text), &port))
		return FALSE;
	if (host_out != NULL)
		*host_out = g_strndup(host, host_len);
	if (port_out != NULL)
		*port_out = port;
	return TRUE;
}

gboolean
gh_route_valid(const char *text, gsize len)
{
	return gh_route_parse(text, len, NULL, NULL);
}
