/*
 * route.h: the one rule for a backend route, the "host:port" that a users
 * file's route= or an LDAP route attribute names and that the connector
 * dials:
 *
 *   HOST:PORT    HOST a name or an IPv4 address: letters, digits, '.', '-'
 *                and '_', not beginning with '.' or '-'
 *   [IPV6]:PORT  an IPv6 address in brackets (RFC 3986 section 3.2.2:
 *                without them its colons could not be told from the port's)
 *
 * PORT is 1 to 5 digits with a value from 1 to 65535.
 *
 * Pure: includes only <glib.h>; no I/O, no logging, no allocation that
 * outlives the call.
 */
#pragma once

#include <glib.h>

/* TRUE when the `len` bytes at `text` (no NUL among them, no terminator
 * needed) are a route as above. */
gboolean gh_route_valid(const char *text, gsize len);
