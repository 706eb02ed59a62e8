/*
 * route.h: the one rule for a backend route, what a users file's route= or
 * an LDAP route attribute names and what the connector dials.  Directories
 * keep a mail host without a port (qmail-ldap and Sendmail `mailHost`,
 * Zimbra `zimbraMailHost`), because one value routes a user's IMAP and SMTP
 * sessions alike; the port may therefore be left out, and the backend's own
 * `port` fills it in (gatehouse.conf(5)):
 *
 *   HOST, HOST:PORT      HOST a name or an IPv4 address: letters, digits,
 *                        '.', '-' and '_', not beginning with '.' or '-'
 *   [IPV6], [IPV6]:PORT  an IPv6 address in brackets (RFC 3986 section
 *                        3.2.2); a bare IPv6 address is refused, since its
 *                        colons could not be told from the port's
 *
 * PORT is 1 to 5 digits with a value from 1 to 65535.
 *
 * Pure: includes only <glib.h>; no I/O, no logging.
 */
#pragma once

#include <glib.h>

/* TRUE when the `len` bytes at `text` (no NUL among them, no terminator
 * needed) are a route as above.  Then *host, unless host is NULL, is its
 * host without brackets (transfer full), and *port, unless port is NULL,
 * its port, or 0 when it names none.  On FALSE neither is touched. */
gboolean gh_route_parse(const char *text, gsize len, char **host, guint *port);

/* gh_route_parse without the parts. */
gboolean gh_route_valid(const char *text, gsize len);
