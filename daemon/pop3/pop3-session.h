/*
 * pop3-session.h: the POP3 client dialogue (gatehoused(8), CLIENT REPLIES):
 * POP3's entry in the protocol table.  The session core (session/protocol.h)
 * runs the life cycle; this file words it in POP3 (RFC 1939, RFC 2449 CAPA
 * and response codes, RFC 2595 STLS, RFC 5034 AUTH, RFC 3206 [AUTH] and
 * [SYS/TEMP]) and reads POP3 commands in the AUTHORIZATION state.
 */
#pragma once

#include "session/protocol.h"

extern const GhProtocol gh_pop3_protocol;

/* Errors (unknown commands, bad syntax) one connection may cause before it
 * is closed. */
#define GH_POP3_MAX_ERRORS 10
