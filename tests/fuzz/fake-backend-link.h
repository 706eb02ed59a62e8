/*
 * fake-backend-link.h: a backend link without sockets, for fuzzing the
 * backend dialogues (daemon/smtp/smtp-backend.c, daemon/imap/imap-backend.c)
 * with a server's bytes taken from the fuzz input.
 *
 * fake-backend-link.c defines the gh_backend_link_* functions of
 * session/backend-link.h that a dialogue calls (a fuzz target links it
 * instead of the real backend-link.c), records what the dialogue sends and
 * how it ends, and checks on the way what the real link relies on: nothing
 * is sent, started or ended after the attempt is over, a STARTTLS is asked
 * for once per connection, and every error text for the log is printable
 * ASCII (server text goes through gh_log_escape first).
 *
 * A failure another server may not have (retry) moves on, as the real link
 * does, to a new connection: the dialogue is reset and connected again, and
 * the input fed from then on is that server's; up to FAKE_LINK_SERVERS
 * servers, then the attempt is over.
 */
#pragma once

#include "session/backend-link.h"

#define FAKE_LINK_SERVERS 3

struct _GhBackendLink {
	GhBackendParams params; /* as given; password: see below */
	GhBackendDialogue dialogue;
	gpointer d;
	GhSecret *password; /* the link's copy, until forgotten */
	GhConn conn;        /* only `in` and `tls` are used */
	int tls_dummy;      /* conn.tls points here once "TLS" is up */
	gboolean tls_pending;
	gboolean reconnect; /* failed over: connect the next server from the loop */
	/* set by the target: may this be sent before TLS (tls = starttls)? */
	gboolean (*plaintext_ok)(const char *text, gsize len);

	guint server;      /* 0, 1, ...: the connection being fed */
	GString *sent;     /* everything sent, all connections */
	GString *sent_now; /* what was sent on the current connection */
	GString *fed_now;  /* what the current server sent */
	gsize sent_clear;  /* bytes of sent_now before TLS was up */
	gboolean over;
	GhBackendResult result;
	GBytes *reply;
	char *error;
	guint fails;
};

/* The link as gh_*_backend_connect made it through gh_backend_link_start;
 * connected to the first server. */
void fake_link_connect(GhBackendLink *l);
/* The current server sends these bytes; the dialogue reads them as the real
 * link does (input until it waits or stops).  Nothing happens once over. */
void fake_link_feed(GhBackendLink *l, const char *bytes, gsize len);
