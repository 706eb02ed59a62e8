/*
 * route.c: see route.h.  The users file parser and the ldap module both
 * check routes with this (the modules through GhAuthHost.route_valid), so
 * that a route one of them accepts is one the other accepts too.
 *
 * Invariants: reads exactly `len` bytes and never past them; a NUL among
 * them makes the text invalid (it could not be the whole of a C string).
 */
#include "gh-build.h"

#include "common/route.h"

#include <string.h>

/* 1 to 5 digits, value 1 to 65535. */
static gboolean
port_valid(const char *p, gsize len)
{
	guint port = 0;

	if (len == 0 || len > 5)
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		if (!g_ascii_isdigit(p[i]))
			return FALSE;
		port = port * 10 + (guint)(p[i] - '0');
	}
	return port >= 1 && port <= 65535;
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
gh_route_valid(const char *text, gsize len)
{
	const char *end = text + len;

	if (len == 0 || memchr(text, '\0', len) != NULL)
		return FALSE;
	if (text[0] == '[') {
		const char *close = memchr(text, ']', len);

		if (close == NULL || close + 1 >= end || close[1] != ':')
			return FALSE;
		return ipv6_valid(text + 1, (gsize)(close - text - 1)) &&
		       port_valid(close + 2, (gsize)(end - close - 2));
	}
	/* the last colon: a name has none, so any before it make HOST invalid */
	for (gsize i = len; i > 0; i--)
		if (text[i - 1] == ':')
			return host_name_valid(text, i - 1) && port_valid(text + i, len - i);
	return FALSE;
}
