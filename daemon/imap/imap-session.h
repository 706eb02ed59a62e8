/*
 * imap-session.h: the IMAP client dialogue (gatehoused(8), CLIENT REPLIES):
 * IMAP's entry in the protocol table.  The session core (session/protocol.h)
 * runs the life cycle; this file words it in IMAP and reads IMAP commands.
 */
#pragma once

#include "session/protocol.h"

extern const GhProtocol gh_imap_protocol;

/* Limits before login (RFC 9051 leaves them to the server): a command line
 * (without literal contents) and one literal. */
#define GH_IMAP_MAX_LINE 8192
#define GH_IMAP_MAX_LITERAL 8192
/* BAD replies one connection may cause before it is closed. */
#define GH_IMAP_MAX_BAD 10
