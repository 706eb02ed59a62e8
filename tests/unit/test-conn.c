/*
 * test-conn.c: a connection's output queue as its peer sees it: queued
 * replies go out at once, a corked batch leaves in one piece when uncorked,
 * a batch past GH_CONN_CORK_MAX goes out without waiting, and uncorking
 * leaves alone what the socket refused (the writable event's job).  And
 * the epoll records' handles: an event for a connection freed since (by a
 * callback earlier in the batch, or after a forked child kept its socket
 * open) reaches neither it nor the connection that took its slot.  A
 * listening socket's watch in the same set: called while a connection
 * waits, freed in its own callback, its record gone with it.  Consuming
 * input before it is plain leaves no copy of it behind the buffer's end.
 */
#include "gh-build.h"

#include "net/conn.h"

#include <errno.h>
#include <glib-unix.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* tcp_info with tcpi_segs_in */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
	GMainContext *context;
	GhConn *conn; /* our side of the pair */
	int peer;     /* the other side, non-blocking */
} Fixture;

static void
set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	g_assert_cmpint(flags, >=, 0);
	g_assert_cmpint(fcntl(fd, F_SETFL, flags | O_NONBLOCK), ==, 0);
}

static void
fixture_set_up(Fixture *f, gconstpointer data)
{
	int fds[2];
	(void)data;
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
	set_nonblocking(fds[0]);
	set_nonblocking(fds[1]);
	f->context = g_main_context_new();
	f->conn = gh_conn_new(fds[0], f->context, 64 * 1024, 1024 * 1024);
	f->peer = fds[1];
}

static void
fixture_tear_down(Fixture *f, gconstpointer data)
{
	(void)data;
	gh_conn_free(f->conn);
	close(f->peer);
	g_main_context_unref(f->context);
}

/* Everything the peer can read right now (no waiting). */
static GString *
peer_read_all(Fixture *f)
{
	GString *got = g_string_new(NULL);
	char buf[8192];
	for (;;) {
		ssize_t n = recv(f->peer, buf, sizeof buf, 0);
		if (n > 0) {
			g_string_append_len(got, buf, n);
			continue;
		}
		g_assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		return got;
	}
}

/* One recv(2): what a single read of the peer returns. */
static GString *
peer_read_once(Fixture *f)
{
	char buf[8192];
	ssize_t n = recv(f->peer, buf, sizeof buf, 0);
	g_assert_cmpint(n, >, 0);
	return g_string_new_len(buf, n);
}

static void
queue(Fixture *f, const char *text)
{
	g_assert_true(gh_conn_queue(f->conn, text, strlen(text)));
}

static void
test_uncorked_goes_at_once(Fixture *f, gconstpointer data)
{
	g_autoptr(GString) got = NULL;
	(void)data;
	queue(f, "250 2.0.0 OK\r\n");
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, 0);
	got = peer_read_all(f);
	g_assert_cmpstr(got->str, ==, "250 2.0.0 OK\r\n");
}

static void
test_cork_sends_one_batch(Fixture *f, gconstpointer data)
{
	static const char *lines[] = {"250-gw.example\r\n", "250-PIPELINING\r\n", "250-SIZE\r\n",
				      "250 ENHANCEDSTATUSCODES\r\n"};
	g_autoptr(GString) before = NULL;
	g_autoptr(GString) got = NULL;
	g_autoptr(GString) after = NULL;
	GString *want = g_string_new(NULL);
	(void)data;

	gh_conn_cork(f->conn);
	for (guint i = 0; i < G_N_ELEMENTS(lines); i++) {
		queue(f, lines[i]);
		g_string_append(want, lines[i]);
	}
	/* nothing on the wire while corked */
	before = peer_read_all(f);
	g_assert_cmpuint(before->len, ==, 0);
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, want->len);

	gh_conn_uncork(f->conn);
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, 0);
	/* the whole reply in a single read: it left in one write */
	got = peer_read_once(f);
	g_assert_cmpstr(got->str, ==, want->str);
	g_string_free(want, TRUE);

	/* and uncorked again afterwards */
	queue(f, "221 2.0.0 Bye\r\n");
	after = peer_read_all(f);
	g_assert_cmpstr(after->str, ==, "221 2.0.0 Bye\r\n");
}

static void
test_cork_limit_writes_through(Fixture *f, gconstpointer data)
{
	g_autoptr(GString) early = NULL;
	g_autoptr(GString) rest = NULL;
	gsize total = 0;
	(void)data;

	gh_conn_cork(f->conn);
	/* replies to many pipelined NOOPs: past GH_CONN_CORK_MAX they go out
	 * without waiting for the uncork */
	while (total < GH_CONN_CORK_MAX + 1000) {
		queue(f, "250 2.0.0 OK\r\n");
		total += strlen("250 2.0.0 OK\r\n");
	}
	early = peer_read_all(f);
	g_assert_cmpuint(early->len, >=, GH_CONN_CORK_MAX);
	gh_conn_uncork(f->conn);
	rest = peer_read_all(f);
	g_assert_cmpuint(early->len + rest->len, ==, total);
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, 0);
}

static void
test_uncork_leaves_refused_bytes(Fixture *f, gconstpointer data)
{
	char block[4096];
	g_autoptr(GString) drained = NULL;
	gsize pending;
	(void)data;

	/* fill the socket until it refuses */
	memset(block, 'x', sizeof block);
	gh_conn_cork(f->conn);
	while (gh_conn_pending(f->conn) < GH_CONN_CORK_MAX)
		g_assert_true(gh_conn_queue(f->conn, block, sizeof block));
	pending = gh_conn_pending(f->conn);
	g_assert_cmpuint(pending, >=, GH_CONN_CORK_MAX);

	/* the peer reads everything meanwhile: the socket could take more now,
	 * but the bytes it refused are the writable event's to send, so that
	 * the owner's back-pressure (stop reading while replies wait) is
	 * lifted by that event, which wakes it */
	drained = peer_read_all(f);
	g_assert_cmpuint(drained->len, >, 0);
	gh_conn_uncork(f->conn);
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, pending);

	/* and a flush sends them */
	while (!gh_conn_flush(f->conn)) {
		g_autoptr(GString) more = peer_read_all(f);
		g_assert_cmpint(f->conn->error, ==, 0);
	}
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, 0);
}

/* ------------------------------------------------------------ handles */

typedef struct {
	GMainContext *context;
	GhConn *conn[3];
	int peer[3];
	guint called[3];
	int freer; /* the connection whose callback ran first */
} Slots;

static void
slots_pair(Slots *t, int i)
{
	int fds[2];
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
	set_nonblocking(fds[0]);
	set_nonblocking(fds[1]);
	t->conn[i] = gh_conn_new(fds[0], t->context, 1024, 1024);
	t->peer[i] = fds[1];
}

static int
slots_index(Slots *t, GhConn *conn)
{
	for (int i = 0; i < 3; i++)
		if (t->conn[i] == conn)
			return i;
	g_assert_not_reached();
}

/* The first of A and B to run frees the other and makes C, which takes
 * the freed one's slot; the freed one's event is still in the batch. */
static void
on_first(GhConn *conn, GIOCondition cond, gpointer data)
{
	Slots *t = data;
	int i = slots_index(t, conn);
	(void)cond;
	t->called[i]++;
	if (t->freer < 0 && i < 2) {
		int other = 1 - i;
		t->freer = i;
		g_clear_pointer(&t->conn[other], gh_conn_free);
		slots_pair(t, 2);
		gh_conn_set_callback(t->conn[2], on_first, t);
		gh_conn_want(t->conn[2], G_IO_IN);
	}
	(void)gh_conn_fill(conn);
}

static void
test_freed_in_batch(void)
{
	Slots t = {.freer = -1};

	t.context = g_main_context_new();
	for (int i = 0; i < 2; i++) {
		slots_pair(&t, i);
		gh_conn_set_callback(t.conn[i], on_first, &t);
		gh_conn_want(t.conn[i], G_IO_IN);
		g_assert_cmpint(write(t.peer[i], "x", 1), ==, 1);
	}
	/* both events come in one epoll_wait: one callback runs, the other
	 * connection is gone, and its event does not reach C in its slot */
	g_assert_true(g_main_context_iteration(t.context, FALSE));
	g_assert_cmpint(t.freer, >=, 0);
	g_assert_cmpuint(t.called[t.freer], ==, 1);
	g_assert_cmpuint(t.called[1 - t.freer], ==, 0);
	g_assert_cmpuint(t.called[2], ==, 0);
	/* C's own event comes when it has one */
	g_assert_cmpint(write(t.peer[2], "y", 1), ==, 1);
	while (t.called[2] == 0)
		g_main_context_iteration(t.context, TRUE);
	g_assert_cmpuint(t.called[2], ==, 1);
	for (int i = 0; i < 3; i++) {
		gh_conn_free(t.conn[i]);
		close(t.peer[i]);
	}
	g_main_context_unref(t.context);
}

static void
on_count(GhConn *conn, GIOCondition cond, gpointer data)
{
	Slots *t = data;
	(void)cond;
	t->called[slots_index(t, conn)]++;
	(void)gh_conn_fill(conn);
}

static void
test_record_outlives_close(void)
{
	Slots t = {.freer = -1};
	int hold[2];
	pid_t child;
	int status;

	t.context = g_main_context_new();
	slots_pair(&t, 0);
	gh_conn_set_callback(t.conn[0], on_count, &t);
	gh_conn_want(t.conn[0], G_IO_IN);
	/* a child holds every descriptor, A's socket among them, until told */
	g_assert_cmpint(pipe(hold), ==, 0);
	child = fork();
	g_assert_cmpint(child, >=, 0);
	if (child == 0) {
		char c;
		close(hold[1]);
		(void)read(hold[0], &c, 1);
		_exit(0);
	}
	close(hold[0]);
	/* A goes, but its socket lives on in the child, and so does its
	 * epoll record; B takes A's slot */
	g_clear_pointer(&t.conn[0], gh_conn_free);
	slots_pair(&t, 1);
	gh_conn_set_callback(t.conn[1], on_count, &t);
	gh_conn_want(t.conn[1], G_IO_IN);
	g_assert_cmpint(write(t.peer[0], "x", 1), ==, 1);
	for (int i = 0; i < 5; i++)
		g_main_context_iteration(t.context, FALSE);
	g_assert_cmpuint(t.called[0], ==, 0);
	g_assert_cmpuint(t.called[1], ==, 0);
	/* B still gets its own events */
	g_assert_cmpint(write(t.peer[1], "y", 1), ==, 1);
	while (t.called[1] == 0)
		g_main_context_iteration(t.context, TRUE);
	close(hold[1]);
	g_assert_cmpint(waitpid(child, &status, 0), ==, child);
	gh_conn_free(t.conn[1]);
	close(t.peer[0]);
	close(t.peer[1]);
	g_main_context_unref(t.context);
}

static gboolean
on_watch(gint fd, GIOCondition cond, gpointer data)
{
	(void)fd;
	(void)cond;
	(void)data;
	return G_SOURCE_CONTINUE;
}

/* A descriptor the loop watched, closed (watch gone) while a copy of it
 * lives on: its epoll record cannot be removed any more.  The loop says
 * so, once, instead of waking for it in silence. */
static void
test_stale_watch_is_reported(void)
{
	GMainContext *context = g_main_context_new();
	GhConn *conn;
	int fds[2], peer[2], copy;
	GSource *watch;

	g_main_context_push_thread_default(context);
	/* a connection gives the context its epoll set and poll function */
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, peer), ==, 0);
	set_nonblocking(peer[0]);
	conn = gh_conn_new(peer[0], context, 1024, 1024);
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
	watch = g_unix_fd_source_new(fds[0], G_IO_IN);
	g_source_set_callback(watch, G_SOURCE_FUNC(on_watch), NULL, NULL);
	g_source_attach(watch, context);
	(void)g_main_context_iteration(context, FALSE); /* the record is made */
	copy = dup(fds[0]);
	g_assert_cmpint(copy, >=, 0);
	g_source_destroy(watch);
	g_source_unref(watch);
	close(fds[0]); /* before the loop could take the record out */
	g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*was closed while the loop watched it and a copy of it lives on*");
	for (int i = 0; i < 3; i++)
		(void)g_main_context_iteration(context, FALSE);
	g_test_assert_expected_messages();
	close(copy); /* the record goes with the file */
	close(fds[1]);
	gh_conn_free(conn);
	close(peer[1]);
	g_main_context_pop_thread_default(context);
	g_main_context_unref(context);
}

/* ---- the last bytes and the FIN, over TCP on loopback ---- */

/* A connected TCP pair on 127.0.0.1: *ours non-blocking, *peer blocking. */
static void
tcp_pair(int *ours, int *peer)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	g_assert_cmpint(lfd, >=, 0);
	g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	g_assert_cmpint(listen(lfd, 1), ==, 0);
	g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sa, &len), ==, 0);
	*peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	g_assert_cmpint(connect(*peer, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	*ours = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	g_assert_cmpint(*ours, >=, 0);
	close(lfd);
}

/* TCP segments the socket has received so far. */
static guint
segments_in(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	g_assert_cmpint(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), ==, 0);
	return ti.tcpi_segs_in;
}

/* What the (blocking) peer reads until the end of the stream, waiting at
 * most 10 s for each piece. */
static GString *
read_to_end(int fd)
{
	GString *got = g_string_new(NULL);
	char buf[4096];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;
		g_assert_cmpint(poll(&p, 1, 10000), ==, 1);
		n = recv(fd, buf, sizeof buf, 0);
		g_assert_cmpint(n, >=, 0);
		if (n == 0)
			return got;
		g_string_append_len(got, buf, n);
	}
}

/* A connection over TCP, and the segments its peer had received when the
 * test began. */
typedef struct {
	GMainContext *context;
	GhConn *conn;
	int peer; /* blocking */
	guint segments;
} TcpFixture;

static void
tcp_set_up(TcpFixture *f, gconstpointer data)
{
	int ours;
	(void)data;
	tcp_pair(&ours, &f->peer);
	f->context = g_main_context_new();
	f->conn = gh_conn_new(ours, f->context, 1024, 1024);
	f->segments = segments_in(f->peer);
}

static void
tcp_tear_down(TcpFixture *f, gconstpointer data)
{
	(void)data;
	gh_conn_free(f->conn);
	close(f->peer);
	g_main_context_unref(f->context);
}

/* The peer reads `want` and then the end, which took `segments` segments. */
static void
peer_gets(TcpFixture *f, const char *want, guint segments)
{
	g_autoptr(GString) got = read_to_end(f->peer);
	g_assert_cmpstr(got->str, ==, want);
	g_assert_cmpuint(segments_in(f->peer) - f->segments, ==, segments);
}

static const char bye[] = "221 2.0.0 Bye\r\n";

/* What this counts: a reply written, then the end, is two segments. */
static void
test_write_then_shutdown_is_two_segments(TcpFixture *f, gconstpointer data)
{
	(void)data;
	gh_conn_write(f->conn, bye, strlen(bye));
	g_assert_cmpint(shutdown(f->conn->fd, SHUT_WR), ==, 0);
	peer_gets(f, bye, 2);
}

static void
test_last_bytes_carry_the_fin(TcpFixture *f, gconstpointer data)
{
	(void)data;
	g_assert_true(gh_conn_write_last(f->conn, bye, strlen(bye)));
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, 0);
	peer_gets(f, bye, 1);
}

/* Corked replies and the end: one segment, whole and in order. */
static void
test_shut_sends_corked_replies_with_the_fin(TcpFixture *f, gconstpointer data)
{
	(void)data;
	gh_conn_cork(f->conn);
	g_assert_true(gh_conn_queue(f->conn, "* BYE Logging out\r\n", 19));
	g_assert_true(gh_conn_queue(f->conn, "a1 OK Logout completed.\r\n", 26));
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, 45);
	g_assert_true(gh_conn_shut(f->conn));
	g_assert_cmpuint(gh_conn_pending(f->conn), ==, 0);
	peer_gets(f, "* BYE Logging out\r\na1 OK Logout completed.\r\n", 1);
}

/* Nothing queued: just the end. */
static void
test_shut_with_nothing_queued(TcpFixture *f, gconstpointer data)
{
	(void)data;
	g_assert_true(gh_conn_shut(f->conn));
	peer_gets(f, "", 1);
}

/* With bytes already queued, the last ones queue behind them: nothing is
 * shut down, nothing overtakes. */
static void
test_write_last_behind_queued_bytes(Fixture *f, gconstpointer data)
{
	g_autoptr(GString) got = NULL;
	(void)data;
	gh_conn_cork(f->conn);
	queue(f, "250 2.0.0 Ok\r\n");
	g_assert_false(gh_conn_write_last(f->conn, "221 Bye\r\n", 9));
	got = peer_read_all(f);
	g_assert_cmpstr(got->str, ==, "250 2.0.0 Ok\r\n221 Bye\r\n");
	/* the stream goes on: the peer sees no end */
	g_assert_cmpint(send(f->peer, "x", 1, 0), ==, 1);
	g_assert_cmpuint(gh_conn_fill(f->conn), ==, 1);
	g_assert_false(f->conn->eof);
}

/* ---- a listening socket in the epoll set (GhWatch) ---- */

typedef struct {
	GhWatch *watch;
	guint called;
	int accepted[4];
	guint n_accepted;
	gboolean free_in_callback;
} Listening;

/* Takes one connection per call: a second waiting one must bring the
 * callback again (level-triggered). */
static void
on_listening(int fd, gpointer data)
{
	Listening *l = data;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	l->called++;
	if (c >= 0) {
		g_assert_cmpuint(l->n_accepted, <, G_N_ELEMENTS(l->accepted));
		l->accepted[l->n_accepted++] = c;
	}
	if (l->free_in_callback)
		g_clear_pointer(&l->watch, gh_watch_free);
}

/* A blocking client connected to the listening socket lfd. */
static int
dial(int lfd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sa, &len), ==, 0);
	g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	return fd;
}

static void
test_watch_listening_socket(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	GMainContext *context = g_main_context_new();
	Listening l = {0};
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int clients[4];

	g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	g_assert_cmpint(listen(lfd, 8), ==, 0);
	l.watch = gh_watch_new(lfd, context, TRUE, on_listening, &l);
	g_assert_nonnull(l.watch);
	/* nothing waiting: no call */
	(void)g_main_context_iteration(context, FALSE);
	g_assert_cmpuint(l.called, ==, 0);
	/* two connections waiting, one taken per call: two calls */
	clients[0] = dial(lfd);
	clients[1] = dial(lfd);
	while (l.n_accepted < 2)
		(void)g_main_context_iteration(context, TRUE);
	g_assert_cmpuint(l.called, ==, 2);
	/* freed in its own callback: the connection that woke it is taken,
	 * and the next one wakes nothing */
	l.free_in_callback = TRUE;
	clients[2] = dial(lfd);
	while (l.n_accepted < 3)
		(void)g_main_context_iteration(context, TRUE);
	g_assert_null(l.watch);
	clients[3] = dial(lfd);
	for (int i = 0; i < 5; i++)
		(void)g_main_context_iteration(context, FALSE);
	g_assert_cmpuint(l.called, ==, 3);
	/* the socket is still the caller's, and out of the set: a new watch on
	 * it (EPOLL_CTL_ADD would fail on a record left behind) takes the
	 * connection that waited */
	l.free_in_callback = FALSE;
	l.watch = gh_watch_new(lfd, context, TRUE, on_listening, &l);
	g_assert_nonnull(l.watch);
	while (l.n_accepted < 4)
		(void)g_main_context_iteration(context, TRUE);
	g_assert_cmpuint(l.called, ==, 4);
	gh_watch_free(l.watch);
	gh_watch_free(NULL);
	for (guint i = 0; i < 4; i++) {
		close(l.accepted[i]);
		close(clients[i]);
	}
	close(lfd);
	g_main_context_unref(context);
}

/* Consuming a command before a session's data is plain wipes it and the
 * old copy of what followed, which the move to the front leaves behind the
 * new end; once plain, nothing is wiped. */
static void
test_consume_wipes_the_moved_copy(Fixture *f, gconstpointer data)
{
	const char *first = "a ID (\"name\" \"a client with a long name\")\r\n";
	const char *login = "b LOGIN alice secret-pw\r\n";
	g_autofree char *both = g_strconcat(first, login, NULL);
	gsize n = strlen(first), m = strlen(login);
	gboolean gc_friendly = g_mem_gc_friendly;
	(void)data;

	/* as in production: with G_DEBUG=gc-friendly (make check sets it)
	 * GLib would zero what an array drops by itself */
	g_mem_gc_friendly = FALSE;
	g_assert_cmpint(send(f->peer, both, n + m, 0), ==, (ssize_t)(n + m));
	g_assert_cmpuint(gh_conn_fill(f->conn), ==, n + m);
	gh_conn_consume(f->conn, n);
	g_assert_cmpmem(f->conn->in->data, f->conn->in->len, login, m);
	/* behind the end, where the old copy of the LOGIN line was: zeros */
	for (gsize i = m; i < n + m; i++)
		g_assert_cmpint(f->conn->in->data[i], ==, 0);
	gh_conn_consume(f->conn, m);
	g_assert_cmpuint(f->conn->in->len, ==, 0);
	for (gsize i = 0; i < m; i++)
		g_assert_cmpint(f->conn->in->data[i], ==, 0);

	/* relayed data is not wiped: the cost is a session's own */
	f->conn->plain_data = TRUE;
	g_assert_cmpint(send(f->peer, both, n + m, 0), ==, (ssize_t)(n + m));
	g_assert_cmpuint(gh_conn_fill(f->conn), ==, n + m);
	gh_conn_consume(f->conn, n);
	g_assert_cmpmem(f->conn->in->data, f->conn->in->len, login, m);
	g_assert_cmpmem(f->conn->in->data + n, m, login, m);
	g_mem_gc_friendly = gc_friendly;
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add("/conn/uncorked-goes-at-once", Fixture, NULL, fixture_set_up,
		   test_uncorked_goes_at_once, fixture_tear_down);
	g_test_add("/conn/cork-sends-one-batch", Fixture, NULL, fixture_set_up,
		   test_cork_sends_one_batch, fixture_tear_down);
	g_test_add("/conn/cork-limit-writes-through", Fixture, NULL, fixture_set_up,
		   test_cork_limit_writes_through, fixture_tear_down);
	g_test_add("/conn/uncork-leaves-refused-bytes", Fixture, NULL, fixture_set_up,
		   test_uncork_leaves_refused_bytes, fixture_tear_down);
	g_test_add_func("/conn/freed-in-batch", test_freed_in_batch);
	g_test_add_func("/conn/record-outlives-close", test_record_outlives_close);
	g_test_add_func("/conn/stale-watch-is-reported", test_stale_watch_is_reported);
	g_test_add_func("/conn/watch-listening-socket", test_watch_listening_socket);
	g_test_add("/conn/write-then-shutdown-is-two-segments", TcpFixture, NULL, tcp_set_up,
		   test_write_then_shutdown_is_two_segments, tcp_tear_down);
	g_test_add("/conn/last-bytes-carry-the-fin", TcpFixture, NULL, tcp_set_up,
		   test_last_bytes_carry_the_fin, tcp_tear_down);
	g_test_add("/conn/shut-sends-corked-replies-with-the-fin", TcpFixture, NULL, tcp_set_up,
		   test_shut_sends_corked_replies_with_the_fin, tcp_tear_down);
	g_test_add("/conn/shut-with-nothing-queued", TcpFixture, NULL, tcp_set_up,
		   test_shut_with_nothing_queued, tcp_tear_down);
	g_test_add("/conn/write-last-behind-queued-bytes", Fixture, NULL, fixture_set_up,
		   test_write_last_behind_queued_bytes, fixture_tear_down);
	g_test_add("/conn/consume-wipes-the-moved-copy", Fixture, NULL, fixture_set_up,
		   test_consume_wipes_the_moved_copy, fixture_tear_down);
	return g_test_run();
}
