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
 *
 * A link started with login_later gets the user and password it was
 * started with only when the dialogue parks (gh_backend_link_await_login),
 * as if the verdict came right then; before that nothing secret may have
 * been sent.
 *
 * It also holds what the targets of both dialogues share: the session they
 * log in for (the master login's file, written by fake-backend-link.c's
 * fuzz_setup, the passwords to choose from) and the loop that feeds the
 * servers' bytes in fuzz-chosen pieces.
 */
#pragma once

#include "fuzz.h"
#include "session/backend-link.h"

#define FAKE_LINK_SERVERS 3

/* login = master logs in as this user with this password (from a file) */
#define FAKE_LINK_MASTER_USER "master"
#define FAKE_LINK_MASTER_PASSWORD "MARKER-master-pw"

/* The client's passwords a target picks from: every one begins with
 * MARKER, which nothing else sent holds. */
extern const char *const fake_link_passwords[4];

struct _GhBackendLink {
	GhBackendParams params; /* as given; password: see below */
	GhBackendDialogue dialogue;
	gpointer d;
	GhSecret *password; /* the link's copy, until forgotten */
	GhConn conn;        /* only `in` and `tls` are used */
	int tls_dummy;      /* conn.tls points here once "TLS" is up */
	gboolean tls_pending;
	gboolean reconnect; /* failed over: connect the next server from the loop */
	/* login_later: what the verdict will bring, and whether it came */
	const char *later_user;
	GhSecret *later_password;
	gboolean parked;
	/* gh_backend_link_resume: the first connection is one kept from an
	 * earlier session (inside TLS already when tls != none): the
	 * dialogue's `resumed` step instead of `connected`, and no fail-over */
	gboolean kept;
	/* a warm link (session/backend-pool.h): the target's adoption, run
	 * once at the verdict before the login, as the pool's take does */
	void (*adopt)(GhBackendLink *l, gpointer data);
	gpointer adopt_data;
	gsize adopted_at; /* the length of sent_now then (0: not adopted) */
	/* the target's, by fake_link_connect: may this be sent before TLS
	 * (tls = starttls)? */
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

/* A dialogue target's input, as fake_link_input reads it: three bytes of
 * parameters from its front, then what the servers send. */
typedef struct {
	guint8 settings;      /* byte 1: the backend's settings, as the target says */
	guint8 choices;       /* byte 2: the client's; bits 4-5 pick its password, */
	const char *password; /* fake_link_passwords[(choices >> 4) & 3] */
	gsize chunk;          /* byte 3, bits 0-6: the size of the pieces fed (0: all at once) */
	gboolean login_later; /* byte 3, bit 7: the link starts before the verdict */
	FuzzBytes servers;    /* the rest: what the servers send */
} FakeLinkInput;

FakeLinkInput fake_link_input(const uint8_t *data, size_t size);

/* Zeroes *bc and *p, then fills what both dialogues' targets give alike:
 * the backend's name and protocol, the master login (FAKE_LINK_MASTER_USER,
 * its password's file), p->backend = bc, the client's port, our host name
 * and the session id.  The target sets the rest. */
void fake_link_params(GhBackendConfig *bc,
		      GhBackendParams *p,
		      const char *name,
		      GhProtocolKind protocol);

/* The link as gh_*_backend_connect made it through gh_backend_link_start
 * (not NULL), with the target's plaintext_ok; connected to the first
 * server. */
void fake_link_connect(GhBackendLink *l, gboolean (*plaintext_ok)(const char *text, gsize len));

/* Called after a piece that sent more on the current connection. */
typedef void (*FakeLinkSent)(GhBackendLink *l, gconstpointer data);

/* What the servers send (in->servers): fed in pieces of in->chunk bytes (0:
 * all at once), each an exact heap copy (ASan sees any read past it), until
 * the bytes are used up or the attempt is over; the dialogue reads each as
 * the real link does (input until it waits or stops).  After each piece
 * that sent more on the current connection, sent(l, data) unless sent is
 * NULL. */
void fake_link_feed_all(GhBackendLink *l,
			const FakeLinkInput *in,
			FakeLinkSent sent,
			gconstpointer data);
