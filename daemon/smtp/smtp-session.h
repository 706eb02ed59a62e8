/*
 * smtp-session.h: the SMTP client dialogue (gatehoused(8), CLIENT REPLIES):
 * SMTP's entry in the protocol table.  The session core (session/protocol.h)
 * runs the life cycle; this file words it in SMTP and reads SMTP commands.
 */
#pragma once

#include "session/protocol.h"

extern const GhProtocol gh_smtp_protocol;

/* Errors (replies 500-504) one connection may cause before it is closed. */
#define GH_SMTP_MAX_ERRORS 10
