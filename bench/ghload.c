/*
 * ghload.c: a load generator for mail proxies and mail servers (gatehouse,
 * nginx's mail proxy, perdition, Dovecot, Postfix), used by bench/run.
 *
 *   ghload MODE --port N [--host 127.0.0.1] [--clients C] [--duration S]
 *          [--warmup S] [--user U] [--password P] [--tls] [--no-auth]
 *          [--count M] [--interval-ms I] [--from ADDR] [--rcpt ADDR]
 *          [--size BYTES] [--timeout S] [--min-ops N]
 *
 * MODE is imap-login, imap-tls, imap-noop, imap-fetch, imap-idle,
 * smtp-submit or pop3-login (see usage()).  Each client is a small state
 * machine; all of them share one thread, one epoll set and non-blocking
 * sockets, so that the tool takes little CPU from the servers it measures.  At the end one JSON
 * line goes to stdout (imap-idle prints "ready OK FAILED" first).
 *
 * imap-noop measures logged-in sessions only: its warm-up starts when every
 * client has logged in (it then prints "ready N"), and the counted window
 * after the warm-up.  If they are not all logged in within the patience
 * (60 s, or 3 x --timeout if longer), it stops and reports an empty window,
 * with "logged_in" saying how many were.
 *
 * --min-ops N (all modes but imap-idle) keeps the counted window open past
 * --duration until N operations are counted in it, for at most the patience
 * more: a check that something was measured does not then depend on how
 * busy the machine is.
 *
 * Only loopback addresses are accepted: this tool must never load a machine
 * other than the one it runs on.
 */
#ifdef HAVE_CONFIG_H
#include "gh-build.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000ULL /* in ns */
#define SEC 1000000000ULL
#define PAUSE_NS (10 * MS)       /* before restarting a failed client */
#define PORTS_PAUSE_NS (50 * MS) /* ... when ephemeral ports ran out */
#define MAX_INFLIGHT 200         /* imap-idle: logins under way at once */
#define PATIENCE (60 * SEC)      /* at least, for the logins of imap-noop (and --min-ops) */
#define LINE_BUF 4096
#define FETCH_BUF (256 * 1024)
#define MAX_ERR_PRINT 5
#define MAX_EVENTS 512
#define KEY_SIGNAL 0xffffffffu /* epoll keys that are not clients */
#define KEY_STDIN 0xfffffffeu

enum mode { M_LOGIN, M_SUBMIT, M_IDLE, M_FETCH, M_TLS, M_NOOP, M_POP3, M_COUNT };

static const char *const mode_name[] = {
    [M_LOGIN] = "imap-login", [M_SUBMIT] = "smtp-submit", [M_IDLE] = "imap-idle",
    [M_FETCH] = "imap-fetch", [M_TLS] = "imap-tls",       [M_NOOP] = "imap-noop",
    [M_POP3] = "pop3-login",
};

enum state {
	S_IDLE,      /* no socket, nothing scheduled (window over) */
	S_PAUSE,     /* no socket, restart at the deadline */
	S_CONNECT,   /* non-blocking connect under way */
	S_HANDSHAKE, /* TLS handshake */
	S_GREETING,
	S_LOGIN,
	S_NOOP1,
	S_LOGOUT,
	S_SELECT,
	S_FETCH, /* IMAP, tags a b c s f */
	S_HOLD,  /* imap-idle: logged in, just staying */
	S_WAIT,  /* imap-noop: the interval between NOOPs */
	S_NOOP,  /* imap-noop: NOOP sent, tag n */
	S_EHLO,
	S_AUTH1, /* AUTH LOGIN sent, 334 expected */
	S_AUTH2, /* 334 expected, then the last response */
	S_AUTH,
	S_MAIL,
	S_RCPT,
	S_DATA,
	S_BODY,
	S_QUIT, /* SMTP, POP3 */
	S_USER, /* POP3 */
	S_PASS,
	S_STAT,
	S_DEAD, /* imap-idle: this slot is finished */
};

static const char *const state_name[] = {
    [S_IDLE] = "idle",         [S_PAUSE] = "pause",
    [S_CONNECT] = "connect",   [S_HANDSHAKE] = "TLS handshake",
    [S_GREETING] = "greeting", [S_LOGIN] = "LOGIN",
    [S_NOOP1] = "NOOP",        [S_LOGOUT] = "LOGOUT",
    [S_SELECT] = "SELECT",     [S_FETCH] = "FETCH",
    [S_HOLD] = "hold",         [S_WAIT] = "interval",
    [S_NOOP] = "NOOP",         [S_EHLO] = "EHLO",
    [S_AUTH1] = "AUTH",        [S_AUTH2] = "AUTH response",
    [S_AUTH] = "AUTH",         [S_MAIL] = "MAIL",
    [S_RCPT] = "RCPT",         [S_DATA] = "DATA",
    [S_BODY] = "end of data",  [S_QUIT] = "QUIT",
    [S_USER] = "USER",         [S_PASS] = "PASS",
    [S_STAT] = "STAT",         [S_DEAD] = "closed",
};

/* IMAP: the tag each state waits for; SMTP: the reply code */
static const char imap_tag[S_DEAD + 1] = {
    [S_LOGIN] = 'a',  [S_NOOP1] = 'b', [S_LOGOUT] = 'c',
    [S_SELECT] = 's', [S_FETCH] = 'f', [S_NOOP] = 'n',
};

static const short smtp_code[S_DEAD + 1] = {
    [S_GREETING] = 220, [S_EHLO] = 250, [S_AUTH1] = 334, [S_AUTH2] = 334, [S_AUTH] = 235,
    [S_MAIL] = 250,     [S_RCPT] = 250, [S_DATA] = 354,  [S_BODY] = 250,  [S_QUIT] = 221,
};

struct str {
	char *p;
	size_t n;
};

#define STR(s)                                                                                     \
	{                                                                                          \
		(char *)(s), sizeof(s) - 1                                                         \
	}

struct conn {
	uint32_t idx;
	uint32_t gen; /* bumped on close: stale epoll events are dropped */
	int fd;
	enum state st;
	uint32_t ev; /* events registered with epoll, 0 = not added */
	gnutls_session_t tls;
	char *in; /* input, in_len bytes not parsed yet */
	size_t in_len;
	const char *out; /* output not sent yet (inside a struct str) */
	size_t out_len;
	uint64_t deadline;   /* ns; 0 = none */
	uint64_t op_start;   /* connect started */
	uint64_t step_start; /* last command sent */
	uint64_t lit_left;   /* IMAP literal bytes still to skip */
	bool cont;           /* next line continues one that carried a literal */
	bool got_body;       /* imap-fetch: this FETCH returned a literal */
	bool logged_in;      /* imap-noop: LOGIN done on this connection */
};

static struct {
	enum mode mode;
	struct sockaddr_in addr;
	int clients, count, interval_ms, min_ops;
	double duration, warmup, timeout;
	const char *user, *password, *from, *rcpt;
	long size;
	bool tls, no_auth, pipelining;
	enum { AUTH_PLAIN_IR, AUTH_PLAIN, AUTH_LOGIN } auth;
} opt = {
    .clients = 10,
    .count = 100,
    .interval_ms = 10,
    .duration = 10,
    .warmup = 1,
    .timeout = 10,
    .user = "",
    .password = "",
    .from = "bench@example.com",
    .rcpt = "test@example.com",
    .size = 1024,
};

/* requests: the fixed ones, and those built from the options */
static struct str cmd_noop1 = STR("b NOOP\r\n"), cmd_logout = STR("c LOGOUT\r\n"),
		  cmd_select = STR("s SELECT INBOX\r\n"), cmd_noop = STR("n NOOP\r\n"),
		  cmd_fetch = STR("f FETCH 1 BODY.PEEK[]\r\n"),
		  cmd_ehlo = STR("EHLO bench.test\r\n"), cmd_data = STR("DATA\r\n"),
		  cmd_quit = STR("QUIT\r\n"), cmd_stat = STR("STAT\r\n");
static struct str cmd_login, cmd_auth, cmd_mail, cmd_rcpt, cmd_body, cmd_user, cmd_pass;
/* --auth plain / login: the first line, the user (login), the last response;
 * --pipelining: MAIL, RCPT and DATA in one write */
static struct str cmd_auth_start, cmd_auth_user, cmd_auth_last, cmd_envelope;

static struct conn *conns;
static uint32_t nconns;
static size_t in_cap;
static int epfd = -1;
static gnutls_certificate_credentials_t xcred;

static uint64_t now, t_start, t_warm, t_end, timeout_ns;
static uint64_t patience_ns;           /* max(PATIENCE, 3 x --timeout) */
static uint64_t t_ready_limit;         /* imap-noop: give up waiting for the logins */
static bool extended;                  /* --min-ops kept the window open past t_end */
static uint64_t next_due = UINT64_MAX; /* no deadline is earlier than this */

/* results */
static uint64_t ops, errors, all_errors, bytes, connects, dropped;
static uint32_t *lat; /* microseconds */
static size_t nlat, lat_cap;

/* imap-idle */
static uint32_t idle_started, pending, logged, failed;

/* imap-noop: connections logged in now, and when the loop ended; whether
 * all of them were, once */
static uint32_t noop_in, noop_in_at_end;
static bool noop_ready;

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static void *
oom(void *p)
{
	if (!p) {
		fprintf(stderr, "ghload: out of memory\n");
		exit(1);
	}
	return p;
}

static struct str str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static struct str
str_printf(const char *fmt, ...)
{
	struct str s;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s.p, fmt, ap);
	va_end(ap);
	oom(n < 0 ? NULL : s.p);
	s.n = (size_t)n;
	return s;
}

/* ---------------------------------------------------------------- results */

/* Whether the counted window (or, before it, the warm-up) is still on:
 * until t_end, and past it while fewer than --min-ops operations were
 * counted, for at most the patience.  Not for imap-idle. */
static bool
window_open(void)
{
	if (now < t_end)
		return true;
	if (ops >= (uint64_t)opt.min_ops || t_end == UINT64_MAX || now - t_end >= patience_ns)
		return false;
	extended = true;
	return true;
}

/* Whether something that happens now is counted: imap-idle counts
 * everything, the other modes only the window after the warm-up. */
static bool
counting(void)
{
	return opt.mode == M_IDLE || (now >= t_warm && window_open());
}

static void
op_done(uint64_t start)
{
	if (!counting())
		return;
	ops++;
	if (nlat == lat_cap) {
		lat_cap = lat_cap ? lat_cap * 2 : 65536;
		lat = oom(realloc(lat, lat_cap * sizeof(*lat)));
	}
	lat[nlat++] = (uint32_t)((now - start) / 1000);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted samples, in ms. */
static double
pct(double p)
{
	size_t k = (size_t)ceil(p * (double)nlat);

	if (!nlat)
		return 0;
	k = k < 1 ? 1 : k > nlat ? nlat : k;
	return lat[k - 1] / 1000.0;
}

/* ---------------------------------------------------------- connections */

static void
set_deadline(struct conn *c, uint64_t t)
{
	c->deadline = t;
	if (t && t < next_due)
		next_due = t;
}

static void
set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e = {.events = ev};

	if (c->ev == ev)
		return;
	e.data.u64 = (uint64_t)c->gen << 32 | c->idx;
	if (epoll_ctl(epfd, c->ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) < 0) {
		perror("ghload: epoll_ctl");
		exit(1);
	}
	c->ev = ev;
}

static void
conn_close(struct conn *c)
{
	if (c->tls) {
		gnutls_deinit(c->tls);
		c->tls = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd); /* also leaves the epoll set */
		c->fd = -1;
	}
	if (c->logged_in) {
		c->logged_in = false;
		noop_in--;
	}
	c->gen++;
	c->ev = 0;
	c->in_len = 0;
	c->out_len = 0;
	c->lit_left = 0;
	c->cont = false;
	c->deadline = 0;
}

static void conn_start(struct conn *c);

/* A failed operation: count it, say what it was (the first few times), close
 * and restart after a pause.  Returns -1: the caller must leave c alone. */
static int conn_fail(struct conn *c, uint64_t pause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
conn_fail(struct conn *c, uint64_t pause, const char *fmt, ...)
{
	va_list ap;

	if (opt.mode == M_IDLE && c->st == S_HOLD) {
		/* the login was good: the server just let go */
		dropped++;
		conn_close(c);
		c->st = S_DEAD;
		return -1;
	}
	if (counting())
		errors++;
	if (all_errors++ < MAX_ERR_PRINT) {
		fprintf(stderr, "client %u: ", c->idx);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	conn_close(c);
	if (opt.mode == M_IDLE) {
		c->st = S_DEAD;
		failed++;
		pending--;
	} else {
		c->st = S_PAUSE;
		set_deadline(c, now + pause);
	}
	return -1;
}

static int
conn_fail_errno(struct conn *c, int err, const char *what)
{
	return conn_fail(c, err == EADDRNOTAVAIL ? PORTS_PAUSE_NS : PAUSE_NS, "%s: %s", what,
			 strerror(err));
}

/* A cycle is over: a new connection at once (for the cycle modes). */
static int
cycle_restart(struct conn *c)
{
	conn_close(c);
	conn_start(c);
	return -1;
}

/* The server closed (or reset) the connection. */
static int
conn_lost(struct conn *c, const char *why)
{
	if (c->st == S_LOGOUT || (opt.mode == M_POP3 && c->st == S_QUIT)) {
		/* LOGOUT (POP3: QUIT) is done when the server hangs up, OK
		 * or not */
		op_done(c->op_start);
		return cycle_restart(c);
	}
	if (opt.mode != M_IDLE && counting())
		dropped++; /* imap-idle: conn_fail() counts drops */
	return conn_fail(c, PAUSE_NS, "%s in state %s", why, state_name[c->st]);
}

/* ----------------------------------------------------------------- I/O */

enum { IO_AGAIN = -1, IO_ERR = -2, IO_EOF = -3 };

/* Bytes read, or IO_AGAIN, IO_EOF (also for a reset), IO_ERR with *why.
 * With skip (plain TCP only) the bytes are dropped, not copied to buf.
 * SIGINT and SIGTERM are blocked: no EINTR on these non-blocking sockets. */
static ssize_t
io_recv(struct conn *c, char *buf, size_t n, bool skip, const char **why)
{
	ssize_t r;

	if (!c->tls) {
		r = recv(c->fd, buf, n, skip ? MSG_TRUNC : 0);
		if (r > 0)
			return r;
		if (r == 0)
			return IO_EOF;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return IO_AGAIN;
		*why = strerror(errno);
		return errno == ECONNRESET ? IO_EOF : IO_ERR;
	}
	for (;;) {
		r = gnutls_record_recv(c->tls, buf, n);
		if (r > 0)
			return r;
		if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION)
			return IO_EOF; /* many servers close without close_notify */
		if (r == GNUTLS_E_AGAIN)
			return IO_AGAIN;
		if (r != GNUTLS_E_INTERRUPTED && gnutls_error_is_fatal((int)r)) {
			*why = gnutls_strerror((int)r);
			return IO_ERR;
		}
		/* a warning alert, a TLS 1.3 ticket: read on */
	}
}

/* Bytes sent, IO_AGAIN or IO_ERR.  After IO_AGAIN under TLS the caller
 * retries with the same buffer and length, as GnuTLS requires. */
static ssize_t
io_send(struct conn *c, const char *buf, size_t n, const char **why)
{
	ssize_t r;

	if (!c->tls) {
		r = send(c->fd, buf, n, MSG_NOSIGNAL);
		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return IO_AGAIN;
		*why = strerror(errno);
		return IO_ERR;
	}
	do
		r = gnutls_record_send(c->tls, buf, n);
	while (r == GNUTLS_E_INTERRUPTED);
	if (r >= 0)
		return r;
	if (r == GNUTLS_E_AGAIN)
		return IO_AGAIN;
	*why = gnutls_strerror((int)r);
	return IO_ERR;
}

/* Sends what is pending; waits for EPOLLOUT if the socket is full. */
static int
flush(struct conn *c)
{
	const char *why = "";
	ssize_t r;

	while (c->out_len) {
		r = io_send(c, c->out, c->out_len, &why);
		if (r == IO_AGAIN) {
			set_events(c, EPOLLIN | EPOLLOUT);
			return 0;
		}
		if (r < 0)
			return conn_fail(c, PAUSE_NS, "send in state %s: %s", state_name[c->st],
					 why);
		c->out += r;
		c->out_len -= (size_t)r;
	}
	set_events(c, EPOLLIN);
	return 0;
}

/* One request: the next state, a fresh step timeout, and send it. */
static int
send_cmd(struct conn *c, const struct str *s, enum state next)
{
	c->st = next;
	c->out = s->p;
	c->out_len = s->n;
	c->step_start = now;
	c->got_body = false;
	set_deadline(c, now + timeout_ns);
	return flush(c);
}

/* ---------------------------------------------------------------- IMAP */

/* A line ending in {N} or {N+} announces N bytes of literal data. */
static void
imap_literal(struct conn *c, const char *l, size_t len)
{
	const char *end = l + len - 1; /* at the '}' */
	const char *p;

	if (end > l && end[-1] == '+')
		end--;
	for (p = end; p > l && p[-1] >= '0' && p[-1] <= '9'; p--)
		;
	if (p == end || p == l || p[-1] != '{')
		return;
	c->lit_left = strtoull(p, NULL, 10);
	c->cont = true;
	c->got_body = true;
}

/* The tagged OK of the command c->st waited for: the next step. */
static int
imap_ok(struct conn *c)
{
	switch (c->st) {
	case S_LOGIN:
		if (opt.mode == M_LOGIN)
			return send_cmd(c, &cmd_noop1, S_NOOP1);
		if (opt.mode == M_FETCH)
			return send_cmd(c, &cmd_select, S_SELECT);
		if (opt.mode == M_NOOP) {
			c->logged_in = true;
			noop_in++;
			return send_cmd(c, &cmd_noop, S_NOOP);
		}
		c->st = S_HOLD; /* imap-idle */
		c->deadline = 0;
		logged++;
		pending--;
		op_done(c->op_start);
		return 0;
	case S_NOOP1:
		return send_cmd(c, &cmd_logout, S_LOGOUT);
	case S_SELECT:
		return send_cmd(c, &cmd_fetch, S_FETCH);
	case S_LOGOUT:
		op_done(c->op_start);
		return cycle_restart(c);
	case S_FETCH:
		if (!c->got_body)
			return conn_fail(c, PAUSE_NS, "FETCH returned no literal (empty INBOX?)");
		op_done(c->step_start);
		return send_cmd(c, &cmd_fetch, S_FETCH);
	case S_NOOP:
		op_done(c->step_start);
		if (opt.interval_ms <= 0)
			return send_cmd(c, &cmd_noop, S_NOOP);
		c->st = S_WAIT;
		set_deadline(c, now + (uint64_t)opt.interval_ms * MS);
		/* fall through */
	default:
		return 0;
	}
}

static int
imap_line(struct conn *c, char *l, size_t len)
{
	bool cont = c->cont;
	char tag;

	c->cont = false;
	if (len >= 3 && l[len - 1] == '}' && c->st != S_GREETING)
		imap_literal(c, l, len);
	if (cont)
		return 0; /* the rest of a line that carried a literal */
	if (c->st == S_GREETING) {
		if (strncmp(l, "* OK", 4) || (l[4] != ' ' && l[4] != '\0'))
			return conn_fail(c, PAUSE_NS, "unexpected greeting \"%.100s\"", l);
		if (opt.mode == M_TLS)
			return send_cmd(c, &cmd_logout, S_LOGOUT);
		return send_cmd(c, &cmd_login, S_LOGIN);
	}
	tag = imap_tag[c->st];
	if (l[0] == '*' || !tag)
		return 0; /* untagged, or holding/waiting: nothing expected */
	if (l[0] != tag || l[1] != ' ' || strncmp(l + 2, "OK", 2) || (l[4] != ' ' && l[4] != '\0'))
		return conn_fail(c, PAUSE_NS, "unexpected reply to %s: \"%.100s\"",
				 state_name[c->st], l);
	return imap_ok(c);
}

/* ---------------------------------------------------------------- SMTP */

static int
smtp_line(struct conn *c, char *l, size_t len)
{
	int code;

	if (len < 3 || l[0] < '1' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
	    l[2] > '9' || (len > 3 && l[3] != ' ' && l[3] != '-'))
		return conn_fail(c, PAUSE_NS, "malformed reply in state %s: \"%.100s\"",
				 state_name[c->st], l);
	if (len > 3 && l[3] == '-')
		return 0; /* the final line of the reply decides */
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	/* smtp-sink offers AUTH and answers it, like most commands, with 250 */
	if (code != smtp_code[c->st] && !(c->st == S_AUTH && code == 250))
		return conn_fail(c, PAUSE_NS, "unexpected reply to %s: \"%.100s\"",
				 state_name[c->st], l);
	switch (c->st) {
	case S_GREETING:
		return send_cmd(c, &cmd_ehlo, S_EHLO);
	case S_EHLO:
		if (cmd_auth.n && opt.auth == AUTH_PLAIN_IR)
			return send_cmd(c, &cmd_auth, S_AUTH);
		if (cmd_auth.n)
			return send_cmd(c, &cmd_auth_start,
					opt.auth == AUTH_LOGIN ? S_AUTH1 : S_AUTH2);
		/* no AUTH */
		__attribute__((fallthrough));
	case S_AUTH:
		if (opt.pipelining)
			return send_cmd(c, &cmd_envelope, S_MAIL);
		return send_cmd(c, &cmd_mail, S_MAIL);
	case S_AUTH1:
		return send_cmd(c, &cmd_auth_user, S_AUTH2);
	case S_AUTH2:
		return send_cmd(c, &cmd_auth_last, S_AUTH);
	case S_MAIL:
		if (opt.pipelining) {
			c->st = S_RCPT; /* its reply is next */
			return 0;
		}
		return send_cmd(c, &cmd_rcpt, S_RCPT);
	case S_RCPT:
		if (opt.pipelining) {
			c->st = S_DATA;
			return 0;
		}
		return send_cmd(c, &cmd_data, S_DATA);
	case S_DATA:
		return send_cmd(c, &cmd_body, S_BODY);
	case S_BODY:
		return send_cmd(c, &cmd_quit, S_QUIT);
	default: /* S_QUIT: one message done */
		op_done(c->op_start);
		return cycle_restart(c);
	}
}

/* ---------------------------------------------------------------- POP3 */

/* pop3-login, step by step as imap-login: greeting, USER, PASS, STAT, QUIT.
 * Only +OK moves on; PASS's +OK is the login, and STAT (which a server
 * answers only once logged in, in the TRANSACTION state) checks it. */
static int
pop3_line(struct conn *c, char *l, size_t len)
{
	(void)len;
	if (strncmp(l, "+OK", 3) || (l[3] != ' ' && l[3] != '\0'))
		return conn_fail(c, PAUSE_NS, "unexpected reply to %s: \"%.100s\"",
				 state_name[c->st], l);
	switch (c->st) {
	case S_GREETING:
		return send_cmd(c, &cmd_user, S_USER);
	case S_USER:
		return send_cmd(c, &cmd_pass, S_PASS);
	case S_PASS:
		return send_cmd(c, &cmd_stat, S_STAT);
	case S_STAT:
		return send_cmd(c, &cmd_quit, S_QUIT);
	case S_QUIT:
		op_done(c->op_start);
		return cycle_restart(c);
	default:
		return conn_fail(c, PAUSE_NS, "unexpected line in state %s: \"%.100s\"",
				 state_name[c->st], l);
	}
}

/* ------------------------------------------------------------ the loop */

/* One complete reply line, to the mode's protocol. */
static int
proto_line(struct conn *c, char *l, size_t len)
{
	if (opt.mode == M_SUBMIT)
		return smtp_line(c, l, len);
	if (opt.mode == M_POP3)
		return pop3_line(c, l, len);
	return imap_line(c, l, len);
}

/* Parses what is in the input buffer: literal bytes are skipped (and
 * counted), complete lines go to the protocol. */
static int
parse_input(struct conn *c)
{
	size_t pos = 0, len, take;
	char *l, *nl;

	while (pos < c->in_len) {
		if (c->lit_left) {
			take = c->in_len - pos;
			if (take > c->lit_left)
				take = (size_t)c->lit_left;
			pos += take;
			c->lit_left -= take;
			if (counting())
				bytes += take;
			continue;
		}
		l = c->in + pos;
		nl = memchr(l, '\n', c->in_len - pos);
		if (!nl)
			break;
		pos = (size_t)(nl - c->in) + 1;
		len = (size_t)(nl - l);
		if (len && l[len - 1] == '\r')
			len--;
		l[len] = '\0'; /* over the CR or LF: lines are C strings */
		if (proto_line(c, l, len) < 0)
			return -1;
	}
	if (pos) {
		c->in_len -= pos;
		memmove(c->in, c->in + pos, c->in_len);
	}
	return 0;
}

static int
do_read(struct conn *c)
{
	const char *why = "";
	size_t room;
	ssize_t r;
	bool skip;

	for (;;) {
		/* literal bytes are only counted: over plain TCP the kernel
		 * drops them (MSG_TRUNC) instead of copying them out */
		skip = c->lit_left && !c->in_len && !c->tls;
		room = in_cap - c->in_len;
		if (skip && c->lit_left < room)
			room = (size_t)c->lit_left;
		if (!room)
			return conn_fail(c, PAUSE_NS,
					 "reply line longer than %zu bytes in state %s", in_cap,
					 state_name[c->st]);
		r = io_recv(c, c->in + c->in_len, room, skip, &why);
		if (r == IO_AGAIN)
			return 0;
		if (r == IO_EOF)
			return conn_lost(c, *why ? why : "connection closed by server");
		if (r < 0)
			return conn_fail(c, PAUSE_NS, "receive in state %s: %s", state_name[c->st],
					 why);
		if (skip) {
			c->lit_left -= (uint64_t)r;
			if (counting())
				bytes += (uint64_t)r;
		} else {
			c->in_len += (size_t)r;
			if (parse_input(c) < 0)
				return -1;
		}
		/* a short plain read drained the socket.  GnuTLS may hold
		 * records epoll cannot see (gnutls_record_check_pending() and
		 * more): reading until E_AGAIN drains them all */
		if (!c->tls && (size_t)r < room)
			return 0;
	}
}

static int
handshake(struct conn *c)
{
	int r;

	do
		r = gnutls_handshake(c->tls);
	while (r < 0 && (r == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal(r)) &&
	       r != GNUTLS_E_AGAIN);
	if (r == GNUTLS_E_AGAIN) {
		set_events(c, gnutls_record_get_direction(c->tls) ? EPOLLOUT : EPOLLIN);
		return 0;
	}
	if (r < 0)
		return conn_fail(c, PAUSE_NS, "TLS handshake: %s", gnutls_strerror(r));
	c->st = S_GREETING;
	set_events(c, EPOLLIN);
	/* the greeting may have come in with the last handshake record */
	return do_read(c);
}

static int
connected(struct conn *c)
{
	int r;

	if (!opt.tls) {
		c->st = S_GREETING;
		set_events(c, EPOLLIN);
		return 0;
	}
	/* no session data is kept: every handshake is a full one */
	r = gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
	if (r == 0)
		r = gnutls_set_default_priority(c->tls);
	if (r == 0)
		r = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, xcred);
	if (r < 0)
		return conn_fail(c, PAUSE_NS, "TLS setup: %s", gnutls_strerror(r));
	/* no verification: test servers have self-signed certificates */
	gnutls_transport_set_int(c->tls, c->fd);
	gnutls_handshake_set_timeout(c->tls, 0); /* ours covers it */
	c->st = S_HANDSHAKE;
	return handshake(c);
}

/* A new connection for c (unless the window is over). */
static void
conn_start(struct conn *c)
{
	int one = 1, r;

	if (opt.mode != M_IDLE && !window_open()) {
		c->st = S_IDLE;
		return;
	}
	if (!c->in)
		c->in = oom(malloc(in_cap));
	c->st = S_CONNECT;
	c->op_start = now;
	set_deadline(c, now + timeout_ns);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail_errno(c, errno, "socket");
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (counting())
		connects++;
	r = connect(c->fd, (struct sockaddr *)&opt.addr, sizeof(opt.addr));
	if (r == 0)
		connected(c);
	else if (errno == EINPROGRESS)
		set_events(c, EPOLLOUT);
	else
		conn_fail_errno(c, errno, "connect");
}

static void
conn_event(struct conn *c, uint32_t ev)
{
	socklen_t el = sizeof(int);
	int err = 0;

	if (c->st == S_CONNECT) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err)
			conn_fail_errno(c, err, "connect");
		else
			connected(c);
	} else if (c->st == S_HANDSHAKE) {
		handshake(c);
	} else if (!(ev & EPOLLOUT) || !c->out_len || flush(c) == 0) {
		if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
			do_read(c);
	}
}

/* A deadline passed: a pause or an interval ended, or a step timed out. */
static void
conn_timer(struct conn *c)
{
	if (c->st == S_PAUSE)
		conn_start(c);
	else if (c->st == S_WAIT)
		send_cmd(c, &cmd_noop, S_NOOP);
	else if (c->st != S_IDLE && c->st != S_HOLD && c->st != S_DEAD)
		conn_fail(c, PAUSE_NS, "timeout (%.1f s) in state %s", opt.timeout,
			  state_name[c->st]);
}

/* A linear scan, but only when the earliest deadline is due; deadlines that
 * moved later leave next_due early, which costs one extra scan. */
static void
run_timers(void)
{
	struct conn *c;

	next_due = UINT64_MAX;
	for (c = conns; c < conns + nconns; c++) {
		if (c->deadline && c->deadline <= now) {
			c->deadline = 0;
			conn_timer(c);
		} else if (c->deadline && c->deadline < next_due) {
			next_due = c->deadline;
		}
	}
}

static void
idle_ramp(void)
{
	while (idle_started < nconns && pending < MAX_INFLIGHT) {
		pending++;
		conn_start(&conns[idle_started++]);
	}
}

/* Until the window ends (imap-idle: until stdin's EOF), or a signal. */
static void
run(void)
{
	struct epoll_event evs[MAX_EVENTS], e = {.events = EPOLLIN};
	bool ready = false, stop = false;
	uint64_t wake, key;
	uint32_t idx, i;
	char buf[256];
	ssize_t rd;
	int n, k, tmo;

	now = mono_ns();
	for (i = 0; opt.mode != M_IDLE && i < nconns; i++)
		conn_start(&conns[i]);
	while (!stop) {
		if (opt.mode == M_IDLE) {
			idle_ramp();
			if (!ready && idle_started == nconns && pending == 0) {
				ready = true;
				t_end = now;
				printf("ready %u %u\n", logged, failed);
				fflush(stdout);
				/* a regular file or /dev/null cannot be
				 * polled: its EOF is as good as here */
				e.data.u64 = KEY_STDIN;
				if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &e) < 0)
					break;
			}
		} else if (opt.mode == M_NOOP && !noop_ready) {
			if (noop_in == nconns) {
				/* every NOOP session is in: warm-up, then the window */
				noop_ready = true;
				t_warm = now + (uint64_t)(opt.warmup * SEC);
				t_end = t_warm + (uint64_t)(opt.duration * SEC);
				printf("ready %u\n", nconns);
				fflush(stdout);
			} else if (now >= t_ready_limit) {
				fprintf(stderr,
					"ghload: only %u of %u clients logged in after %.0f s: "
					"no window counted\n",
					noop_in, nconns, (double)patience_ns / 1e9);
				break;
			}
		} else if (!window_open()) {
			if (ops < (uint64_t)opt.min_ops)
				fprintf(stderr,
					"ghload: %" PRIu64 " of --min-ops %d operations counted "
					"%.0f s after the window's nominal end: stopping\n",
					ops, opt.min_ops, (double)patience_ns / 1e9);
			break;
		}
		wake = opt.mode != M_IDLE && t_end < next_due ? t_end : next_due;
		if (opt.mode != M_IDLE && now >= t_end && t_end + patience_ns < wake)
			wake = t_end + patience_ns; /* --min-ops: the longest extension */
		if (opt.mode == M_NOOP && !noop_ready && t_ready_limit < wake)
			wake = t_ready_limit;
		if (wake == UINT64_MAX)
			tmo = -1;
		else /* rounded up: waking early only spins */
			tmo = wake <= now ? 0
			      : (wake - now + MS - 1) / MS > 60000
				  ? 60000
				  : (int)((wake - now + MS - 1) / MS);
		n = epoll_wait(epfd, evs, MAX_EVENTS, tmo);
		if (n < 0 && errno != EINTR) {
			perror("ghload: epoll_wait");
			exit(1);
		}
		for (k = 0; k < n; k++) {
			now = mono_ns();
			key = evs[k].data.u64;
			idx = (uint32_t)key;
			if (idx == KEY_SIGNAL) {
				stop = true;
			} else if (idx == KEY_STDIN) {
				rd = read(0, buf, sizeof(buf));
				if (rd == 0 || (rd < 0 && errno != EAGAIN && errno != EINTR))
					stop = true;
			} else if (idx < nconns && conns[idx].gen == (uint32_t)(key >> 32)) {
				conn_event(&conns[idx], evs[k].events);
			}
		}
		now = mono_ns();
		if (now >= next_due)
			run_timers();
	}
	noop_in_at_end = noop_in;
	if (opt.mode == M_NOOP && !noop_ready)
		t_warm = t_end = now; /* never ready: an empty window */
	else if ((opt.mode == M_IDLE && !ready) || (opt.mode != M_IDLE && now < t_end))
		t_end = now; /* stopped early */
	else if (extended)
		t_end = now; /* --min-ops made it longer */
}

/* ------------------------------------------------------------ setting up */

static void
usage(FILE *f)
{
	fprintf(f, "usage: ghload MODE --port N [--host 127.0.0.1] [--clients C] [--duration S]\n"
		   "              [--warmup S] [--user U] [--password P] [--tls] [--no-auth]\n"
		   "              [--count M] [--interval-ms I] [--from ADDR] [--rcpt ADDR]\n"
		   "              [--size BYTES] [--timeout S] [--min-ops N]\n"
		   "modes (C clients each, M connections for imap-idle):\n"
		   "  imap-login   connect, greeting, LOGIN, NOOP, LOGOUT, close; again\n"
		   "  imap-tls     implicit TLS: connect, handshake, greeting, LOGOUT; again\n"
		   "  pop3-login   connect, greeting, USER, PASS, STAT, QUIT, close; again\n"
		   "               (one command at a time, as imap-login)\n"
		   "  imap-noop    LOGIN once, then NOOP every --interval-ms (default 10);\n"
		   "               prints 'ready C' once all C are logged in; the warm-up\n"
		   "               starts then (all must be in within the patience, or the\n"
		   "               window is empty)\n"
		   "  imap-fetch   LOGIN, SELECT INBOX, then FETCH 1 BODY.PEEK[] over and over\n"
		   "  imap-idle    M (--count, default 100) logged-in sessions; prints\n"
		   "               'ready OK FAILED', holds them until stdin's EOF or SIGTERM\n"
		   "  smtp-submit  EHLO, AUTH PLAIN (unless --no-auth or no --user), MAIL, RCPT,\n"
		   "               DATA of --size bytes (default 1024), QUIT; again\n"
		   "               --auth plain-ir (default): AUTH PLAIN with the initial\n"
		   "               response; plain: without it (334, then the response);\n"
		   "               login: AUTH LOGIN (334 user, 334 password)\n"
		   "               --pipelining: MAIL, RCPT and DATA in one write\n"
		   "--min-ops N: the window goes on past --duration until N operations are\n"
		   "  counted (not imap-idle), for at most the patience more\n"
		   "patience: max(60, 3 x --timeout) seconds\n"
		   "defaults: --clients 10 --duration 10 --warmup 1 --timeout 10 --min-ops 0\n"
		   "          --from bench@example.com --rcpt test@example.com\n"
		   "Only 127.0.0.0/8 hosts are accepted.  One JSON line on stdout at the end.\n");
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ghload: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	usage(stderr);
	exit(64);
}

static const char *arg_name; /* the option num_arg() is parsing */

/* A number in [min, max]; whole unless seconds. */
static double
num_arg(const char *s, double min, double max, bool seconds)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max) || (!seconds && v != floor(v)))
		die_usage("bad value for --%s", arg_name);
	return v;
}

/* An IMAP quoted string: "..." with \ before " and \. */
static char *
imap_quote(const char *s)
{
	char *q = oom(malloc(2 * strlen(s) + 3)), *p = q;

	*p++ = '"';
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p++ = '"';
	*p = '\0';
	return q;
}

/* The message: a few headers, then lines of 70 x's up to --size bytes,
 * then the final dot. */
static void
build_body(void)
{
	struct str h =
	    str_printf("From: <%s>\r\nTo: <%s>\r\nSubject: bench\r\n\r\n", opt.from, opt.rcpt);
	size_t size = (size_t)opt.size, len = h.n, line;
	char *b = oom(malloc((size > len ? size : len) + 80));

	memcpy(b, h.p, h.n);
	free(h.p);
	while (len < size) {
		line = size - len >= 72 ? 70 : size - len > 2 ? size - len - 2 : 1;
		memset(b + len, 'x', line);
		memcpy(b + len + line, "\r\n", 2);
		len += line + 2;
	}
	memcpy(b + len, ".\r\n", 3);
	cmd_body.p = b;
	cmd_body.n = len + 3;
}

/* The base64 of n bytes, as a line. */
static struct str
base64_line(const char *text, size_t n)
{
	gnutls_datum_t in = {(unsigned char *)text, (unsigned)n}, b64;
	struct str line;

	if (gnutls_base64_encode2(&in, &b64) < 0)
		oom(NULL);
	line = str_printf("%.*s\r\n", (int)b64.size, b64.data);
	gnutls_free(b64.data);
	return line;
}

static void
build_commands(void)
{
	char *qu = imap_quote(opt.user), *qp = imap_quote(opt.password);
	size_t ul = strlen(opt.user), pl = strlen(opt.password);
	gnutls_datum_t plain, b64;

	cmd_login = str_printf("a LOGIN %s %s\r\n", qu, qp);
	cmd_user = str_printf("USER %s\r\n", opt.user);
	cmd_pass = str_printf("PASS %s\r\n", opt.password);
	free(qu);
	free(qp);
	if (!opt.no_auth && ul) {
		/* AUTH PLAIN: authzid (empty) NUL user NUL password */
		plain.size = (unsigned)(ul + pl + 2);
		plain.data = oom(calloc(1, plain.size));
		memcpy(plain.data + 1, opt.user, ul);
		memcpy(plain.data + ul + 2, opt.password, pl);
		if (gnutls_base64_encode2(&plain, &b64) < 0)
			oom(NULL);
		cmd_auth = str_printf("AUTH PLAIN %.*s\r\n", (int)b64.size, b64.data);
		cmd_auth_last = str_printf("%.*s\r\n", (int)b64.size, b64.data);
		cmd_auth_start =
		    str_printf("AUTH %s\r\n", opt.auth == AUTH_LOGIN ? "LOGIN" : "PLAIN");
		gnutls_free(b64.data);
		free(plain.data);
		if (opt.auth == AUTH_LOGIN) {
			free(cmd_auth_last.p);
			cmd_auth_user = base64_line(opt.user, ul);
			cmd_auth_last = base64_line(opt.password, pl);
		}
	}
	cmd_mail = str_printf("MAIL FROM:<%s>\r\n", opt.from);
	cmd_rcpt = str_printf("RCPT TO:<%s>\r\n", opt.rcpt);
	cmd_envelope = str_printf("%s%sDATA\r\n", cmd_mail.p, cmd_rcpt.p);
	build_body();
}

static void
parse_args(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"port", 1, NULL, 'p'},     {"host", 1, NULL, 'H'},
	    {"clients", 1, NULL, 'c'},  {"duration", 1, NULL, 'd'},
	    {"warmup", 1, NULL, 'w'},   {"user", 1, NULL, 'u'},
	    {"password", 1, NULL, 'P'}, {"users-count", 1, NULL, 'K'},
	    {"tls", 0, NULL, 't'},      {"no-auth", 0, NULL, 'A'},
	    {"count", 1, NULL, 'm'},    {"interval-ms", 1, NULL, 'i'},
	    {"from", 1, NULL, 'f'},     {"rcpt", 1, NULL, 'r'},
	    {"size", 1, NULL, 's'},     {"timeout", 1, NULL, 'T'},
	    {"min-ops", 1, NULL, 'o'},  {"help", 0, NULL, 'h'},
	    {"auth", 1, NULL, 'a'},     {"pipelining", 0, NULL, 'L'},
	    {NULL, 0, NULL, 0},
	};
	const char *host = "127.0.0.1", *mode;
	long port = 0;
	int ch, m, li = 0;

	while ((ch = getopt_long(argc, argv, "h", lopts, &li)) != -1) {
		arg_name = lopts[li].name;
		switch (ch) {
		case 'p':
			port = (long)num_arg(optarg, 1, 65535, false);
			break;
		case 'H':
			host = optarg;
			break;
		case 'c':
			opt.clients = (int)num_arg(optarg, 1, 100000, false);
			break;
		case 'd':
			opt.duration = num_arg(optarg, 0.001, 1e6, true);
			break;
		case 'w':
			opt.warmup = num_arg(optarg, 0, 1e6, true);
			break;
		case 'u':
			opt.user = optarg;
			break;
		case 'P':
			opt.password = optarg;
			break;
		case 'K':
			num_arg(optarg, 0, INT_MAX, false);
			break; /* ignored */
		case 't':
			opt.tls = true;
			break;
		case 'A':
			opt.no_auth = true;
			break;
		case 'a':
			if (!strcmp(optarg, "plain-ir"))
				opt.auth = AUTH_PLAIN_IR;
			else if (!strcmp(optarg, "plain"))
				opt.auth = AUTH_PLAIN;
			else if (!strcmp(optarg, "login"))
				opt.auth = AUTH_LOGIN;
			else
				die_usage("--auth: plain-ir, plain or login, not %s", optarg);
			break;
		case 'L':
			opt.pipelining = true;
			break;
		case 'm':
			opt.count = (int)num_arg(optarg, 1, 1000000, false);
			break;
		case 'i':
			opt.interval_ms = (int)num_arg(optarg, 0, 3600000, false);
			break;
		case 'f':
			opt.from = optarg;
			break;
		case 'r':
			opt.rcpt = optarg;
			break;
		case 's':
			opt.size = (long)num_arg(optarg, 0, 1 << 30, false);
			break;
		case 'T':
			opt.timeout = num_arg(optarg, 0.001, 1e6, true);
			break;
		case 'o':
			opt.min_ops = (int)num_arg(optarg, 0, INT_MAX, false);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(64);
		}
	}
	if (optind != argc - 1)
		die_usage("%s", optind < argc ? "one MODE, please" : "no MODE given");
	mode = argv[optind];
	for (m = 0; m < M_COUNT && strcmp(mode, mode_name[m]); m++)
		;
	if (m == M_COUNT)
		die_usage("unknown mode %s", mode);
	opt.mode = (enum mode)m;
	if (!port)
		die_usage("%s", "--port is required");
	opt.addr.sin_family = AF_INET;
	opt.addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &opt.addr.sin_addr) != 1)
		die_usage("--host %s: a numeric IPv4 address, please", host);
	if ((ntohl(opt.addr.sin_addr.s_addr) >> 24) != 127)
		die_usage("--host %s: refusing a host outside 127.0.0.0/8", host);
	if (strpbrk(opt.user, "\r\n") || strpbrk(opt.password, "\r\n") ||
	    strpbrk(opt.from, "\r\n<>") || strpbrk(opt.rcpt, "\r\n<>"))
		die_usage("%s", "no CR or LF in the login, no CR, LF, < or > in addresses");
	if (!*opt.user && opt.mode != M_SUBMIT && opt.mode != M_TLS)
		die_usage("%s needs --user", mode);
	if (opt.mode == M_TLS)
		opt.tls = true;
}

/* Many idle sessions need many descriptors; 0-2 must be open so that no
 * socket lands on stdin. */
static void
setup_fds(void)
{
	struct rlimit rl;
	struct stat st;
	int fd;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (fd = 0; fd < 3; fd++)
		if (fstat(fd, &st) < 0 && open("/dev/null", O_RDWR) < 0)
			exit(1);
	if (opt.mode == M_IDLE && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)opt.count + 16)
		fprintf(stderr, "ghload: warning: only %lu descriptors for %d sessions\n",
			(unsigned long)rl.rlim_cur, opt.count);
}

/* SIGTERM and SIGINT through epoll: no race with the wait.  (A shell starts
 * background jobs with SIGINT ignored, which would discard it.) */
static int
setup_signals(void)
{
	struct epoll_event e = {.events = EPOLLIN, .data.u64 = KEY_SIGNAL};
	sigset_t sigs;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		perror("ghload: signalfd");
		exit(1);
	}
	return fd;
}

static void
report(void)
{
	double window = t_end > t_warm ? (double)(t_end - t_warm) / 1e9 : 0;

	if (nlat)
		qsort(lat, nlat, sizeof(*lat), cmp_u32);
	if (all_errors > MAX_ERR_PRINT)
		fprintf(stderr,
			"ghload: %" PRIu64 " errors in all, %" PRIu64 " in the counted window\n",
			all_errors, errors);
	printf("{\"mode\":\"%s\",\"clients\":%u,\"window_s\":%.2f,\"ops\":%" PRIu64
	       ",\"errors\":%" PRIu64 ",\"rate\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f"
	       ",\"p99_ms\":%.3f,\"max_ms\":%.3f,\"bytes\":%" PRIu64 ",\"mb_s\":%.2f"
	       ",\"connects\":%" PRIu64 ",\"dropped\":%" PRIu64,
	       mode_name[opt.mode], nconns, window, ops, errors,
	       window > 0 ? (double)ops / window : 0.0, pct(0.50), pct(0.90), pct(0.99),
	       nlat ? lat[nlat - 1] / 1000.0 : 0.0, bytes,
	       window > 0 ? (double)bytes / 1e6 / window : 0.0, connects, dropped);
	if (opt.mode == M_NOOP)
		printf(",\"logged_in\":%u,\"ready\":%s", noop_ready ? nconns : noop_in_at_end,
		       noop_ready ? "true" : "false");
	printf("}\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	struct str *built[] = {&cmd_login, &cmd_auth, &cmd_mail, &cmd_rcpt,
			       &cmd_body,  &cmd_user, &cmd_pass};
	int sigfd, r;
	uint32_t i;

	parse_args(argc, argv);
	setup_fds();
	build_commands();
	timeout_ns = (uint64_t)(opt.timeout * SEC);
	patience_ns = 3 * timeout_ns > PATIENCE ? 3 * timeout_ns : PATIENCE;
	in_cap = opt.mode == M_FETCH ? FETCH_BUF : LINE_BUF;
	if (opt.tls) {
		r = gnutls_global_init();
		if (r == 0)
			r = gnutls_certificate_allocate_credentials(&xcred);
		if (r < 0) {
			fprintf(stderr, "ghload: GnuTLS: %s\n", gnutls_strerror(r));
			return 1;
		}
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("ghload: epoll_create1");
		return 1;
	}
	sigfd = setup_signals();

	nconns = (uint32_t)(opt.mode == M_IDLE ? opt.count : opt.clients);
	conns = oom(calloc(nconns, sizeof(*conns)));
	for (i = 0; i < nconns; i++) {
		conns[i].idx = i;
		conns[i].fd = -1;
	}
	t_start = mono_ns();
	t_warm = opt.mode == M_IDLE ? t_start : t_start + (uint64_t)(opt.warmup * SEC);
	t_end = t_warm + (uint64_t)(opt.duration * SEC);
	if (opt.mode == M_NOOP) {
		/* the window is set when every client is logged in */
		t_warm = t_end = UINT64_MAX;
		t_ready_limit = t_start + patience_ns;
	}

	run();

	for (i = 0; i < nconns; i++) {
		conn_close(&conns[i]);
		free(conns[i].in);
	}
	report();

	free(lat);
	free(conns);
	for (i = 0; i < sizeof(built) / sizeof(built[0]); i++)
		free(built[i]->p);
	close(epfd);
	close(sigfd);
	if (opt.tls) {
		gnutls_certificate_free_credentials(xcred);
		gnutls_global_deinit();
	}
	return 0;
}
