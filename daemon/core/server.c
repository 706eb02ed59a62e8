/*
 * server.c: the running daemon (see server.h).
 *
 * Invariants:
 *  - `config`, `tls` and `auth_set` (a generation) change together, under
 *    `lock`, only on the main thread (reload); everyone else takes
 *    references through the getters, a session all three at once.
 *  - The listening sockets never change after start.
 *  - Every worker's loop is quit only after its sessions are gone (closed by
 *    the client, by the shutdown notice, or aborted at shutdown_timeout).
 */
#include "gh-build.h"

#include "core/server.h"
#include "common/timer.h"
#include "config/log.h"
#include "imap/imap-session.h"
#include "net/conn.h"
#include "pop3/pop3-session.h"
#include "session/session.h"
#include "session/backend-pool.h"
#include "smtp/smtp-session.h"

#include <errno.h>
#include <glib-unix.h>
#include <signal.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define GH_ACCEPT_BURST 64
#define GH_ACCEPT_PAUSE_MS 100

typedef struct _SnapRound SnapRound;

struct _GhServer {
	GMutex lock;
	GhConfig *config;
	GhAuthSet *auth_set;
	GhTls *tls;
	GhAuthCore *core;
	GPtrArray *listeners; /* of GhListener* */
	GPtrArray *workers;   /* of GhWorker* */
	GMainLoop *main_loop;
	char *last_status; /* the last STATUS= sent */
	gboolean stopping;
	gint64 stop_deadline;
	gint accepting; /* atomic: workers that still watch the listening sockets */
	gint64 started; /* wall clock, seconds */
	guint generation;
	guint reloads_ok, reloads_failed;
	gint64 last_emfile_log;  /* under lock: when a worker last said it cannot accept */
	SnapRound *round;        /* the snapshot being put together, or NULL */
	GPtrArray *next_waiters; /* of SnapWaiter*: for the round after it */
};

/* What a worker lends the sessions of one listener (session.h). */
typedef struct {
	GhSessionHost host; /* first: the session hands back &host as data */
	GhWorker *worker;
	GhListener *listener;
} SessionHost;

struct _GhWorker {
	guint index;
	GhServer *server;
	GThread *thread;
	GMainContext *context;
	GMainLoop *loop;
	GPtrArray *accepts;  /* of AcceptWatch*; worker thread only */
	GQueue sessions;     /* of GhSession*, worker thread only */
	gint n_sessions;     /* atomic copy of sessions.length, for status */
	gboolean stopping;   /* worker thread only */
	GhStats *stats;      /* worker thread only (stats.h) */
	SessionHost *hosts;  /* one per listener, in server->listeners order */
	GhBackendPool *pool; /* warm backend connections; worker thread only, NULL once stopping */
};

typedef struct {
	SessionHost *host; /* the worker's for this listener */
	GhListener *listener;
	const GhListenerSocket *socket; /* the one watched */
	GhWatch *watch;                 /* in the worker's epoll set */
} AcceptWatch;

static void
accept_watch_free(AcceptWatch *w)
{
	gh_watch_free(w->watch);
	g_free(w);
}

GhConfig *
gh_server_get_config(GhServer *server)
{
	GhConfig *cfg;
	g_mutex_lock(&server->lock);
	cfg = gh_config_ref(server->config);
	g_mutex_unlock(&server->lock);
	return cfg;
}

GhAuthSet *
gh_server_get_auth_set(GhServer *server)
{
	GhAuthSet *set;
	g_mutex_lock(&server->lock);
	set = gh_auth_set_ref(server->auth_set);
	g_mutex_unlock(&server->lock);
	return set;
}

void
gh_server_get_generation(GhServer *server, GhConfig **config, GhTls **tls, GhAuthSet **auth_set)
{
	g_mutex_lock(&server->lock);
	*config = gh_config_ref(server->config);
	*tls = gh_tls_ref(server->tls);
	*auth_set = gh_auth_set_ref(server->auth_set);
	g_mutex_unlock(&server->lock);
}

GhAuthCore *
gh_server_get_auth_core(GhServer *server)
{
	return server->core;
}

gint64
gh_server_started(GhServer *server)
{
	return server->started;
}

guint
gh_server_generation(GhServer *server)
{
	return server->generation;
}

void
gh_server_reloads(GhServer *server, guint *ok, guint *failed)
{
	*ok = server->reloads_ok;
	*failed = server->reloads_failed;
}

/* A session is being freed: it no longer counts. */
static void
on_session_ended(GhSession *session, gpointer data)
{
	SessionHost *h = data;
	GList *link = gh_session_host_link(session);
	/* in the list if it heads it or follows another: constant time, where
	 * searching the list cost a walk past every idle session */
	if (h->worker->sessions.head == link || link->prev != NULL) {
		g_queue_unlink(&h->worker->sessions, link);
		g_atomic_int_add(&h->worker->n_sessions, -1);
	}
	g_atomic_int_add(&h->listener->n_sessions, -1);
}

/* The protocol table: what each `protocol =` of a listener speaks. */
static const GhProtocol *const protocols[] = {
    [GH_PROTO_SMTP] = &gh_smtp_protocol,
    [GH_PROTO_IMAP] = &gh_imap_protocol,
    [GH_PROTO_POP3] = &gh_pop3_protocol,
};

/* A connection came on listener `h->listener`: make it a session of the
 * generation in force, in the protocol of its listener. */
static void
accept_session(SessionHost *h, int fd, const GhSessionAddrs *addrs)
{
	GhWorker *worker = h->worker;
	GhGeneration gen;
	const GhListenerConfig *lc;
	GhSession *session;
	guint n;

	gh_server_get_generation(worker->server, &gen.config, &gen.tls, &gen.auth_set);
	lc = gh_config_listener(gen.config, h->listener->name);
	if (lc == NULL) {
		/* the listener was removed by a reload; its socket stays until restart */
		gh_debug("listener %s is no longer configured: closing a new connection",
			 h->listener->name);
		(void)close(fd);
		gh_config_unref(gen.config);
		gh_tls_unref(gen.tls);
		gh_auth_set_unref(gen.auth_set);
		return;
	}
	session = gh_session_new(&h->host, protocols[lc->protocol], &gen, lc->name, fd, addrs);
	gh_stats_add(worker->stats, GH_STAT_CONNECTIONS, 1, gh_protocol_to_string(lc->protocol),
		     lc->name);
	g_queue_push_tail_link(&worker->sessions, gh_session_host_link(session));
	g_atomic_int_inc(&worker->n_sessions);
	n = (guint)g_atomic_int_add(&h->listener->n_sessions, 1) + 1;
	gh_session_begin(session, n);
}

static guint
server_session_count(GhServer *server)
{
	guint n = 0;
	for (guint i = 0; i < server->workers->len; i++) {
		GhWorker *w = g_ptr_array_index(server->workers, i);
		n += (guint)g_atomic_int_get(&w->n_sessions);
	}
	return n;
}

/* ------------------------------------------------------------- accepting */

static void worker_accept_start(GhWorker *worker);
static void worker_accept_stop(GhWorker *worker);

static gboolean
on_accept_resume(gpointer data)
{
	GhWorker *worker = data;
	if (!worker->stopping)
		worker_accept_start(worker);
	return G_SOURCE_REMOVE;
}

static void
pause_accepting(GhWorker *worker, int err)
{
	GhServer *server = worker->server;
	gint64 now = g_get_monotonic_time();
	gboolean say;
	GSource *t;

	/* Out of descriptors: spinning on accept would burn the CPU and starve
	 * the sessions that could free some.  Said once in 10 s for the whole
	 * daemon, whichever worker meets it. */
	g_mutex_lock(&server->lock);
	say = server->last_emfile_log == 0 || now - server->last_emfile_log > 10 * G_USEC_PER_SEC;
	if (say)
		server->last_emfile_log = now;
	g_mutex_unlock(&server->lock);
	if (say) {
		g_warning("cannot accept connections: %s; pausing for %d ms (raise "
			  "LimitNOFILE= or lower max_connections)",
			  g_strerror(err), GH_ACCEPT_PAUSE_MS);
	}
	worker_accept_stop(worker);
	t = g_timeout_source_new(GH_ACCEPT_PAUSE_MS);
	g_source_set_callback(t, on_accept_resume, worker, NULL);
	g_source_attach(t, worker->context);
	g_source_unref(t);
}

static void
on_accept(int fd, gpointer data)
{
	AcceptWatch *w = data;

	for (int i = 0; i < GH_ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* frees w */
				pause_accepting(w->host->worker, errno);
				return;
			}
			g_warning("accept on listener %s: %s", w->listener->name,
				  g_strerror(errno));
			break;
		}
		GhSessionAddrs addrs = {
		    .peer = (struct sockaddr *)&ss,
		    .local = w->socket->local_len > 0 ? (struct sockaddr *)&w->socket->local : NULL,
		    .nodelay = w->socket->nodelay,
		};
		accept_session(w->host, c, &addrs);
	}
	/* what the new sessions set for soon runs in this turn: the epoll
	 * source's dispatch calls gh_timer_run_soon() after its events */
}

static void
worker_accept_start(GhWorker *worker)
{
	GhServer *server = worker->server;
	worker_accept_stop(worker);
	for (guint i = 0; i < server->listeners->len; i++) {
		GhListener *l = g_ptr_array_index(server->listeners, i);
		for (guint j = 0; j < l->fds->len; j++) {
			AcceptWatch *w = g_new0(AcceptWatch, 1);
			int fd = g_array_index(l->fds, int, j);
			w->host = &worker->hosts[i];
			w->listener = l;
			w->socket = &g_array_index(l->sockets, GhListenerSocket, j);
			/* in the same epoll set as the sessions' connections: a
			 * loop turn walks no GLib source per listening socket */
			w->watch = gh_watch_new(fd, worker->context, TRUE, on_accept, w);
			if (w->watch == NULL) {
				g_warning("listener %s: cannot watch its socket: %s", l->name,
					  g_strerror(errno));
				g_free(w);
				continue;
			}
			g_ptr_array_add(worker->accepts, w);
		}
	}
}

static void
worker_accept_stop(GhWorker *worker)
{
	g_ptr_array_set_size(worker->accepts, 0); /* frees each (accept_watch_free) */
}

/* ---------------------------------------------------------------- workers */

static gpointer
worker_thread(gpointer data)
{
	GhWorker *worker = data;
	/* its journal entries go once per loop turn (net/conn.c's poll) */
	gh_log_hold_thread();
	g_main_context_push_thread_default(worker->context);
	g_main_loop_run(worker->loop);
	g_main_context_pop_thread_default(worker->context);
	gh_log_release_thread();
	return NULL;
}

static gboolean
worker_begin(gpointer data)
{
	worker_accept_start(data);
	return G_SOURCE_REMOVE;
}

/* Main thread, once no worker watches them any more: the sockets we bound
 * stop listening, so that a balancer or a client is refused at once and
 * goes elsewhere instead of waiting in the backlog of a daemon that will
 * never accept it (shutdown_timeout can be long).  Sockets from systemd are
 * left alone: systemd holds them, and queues for the next start. */
static gboolean
stop_listening(gpointer data)
{
	GhServer *server = data;
	for (guint i = 0; i < server->listeners->len; i++) {
		GhListener *l = g_ptr_array_index(server->listeners, i);
		if (l->from_systemd)
			continue;
		for (guint j = 0; j < l->fds->len; j++)
			(void)shutdown(g_array_index(l->fds, int, j), SHUT_RDWR);
	}
	return G_SOURCE_REMOVE;
}

/* Worker thread: the warm backend connections are told goodbye, and no
 * login uses or refills the pool again. */
static void
drop_pool(GhWorker *worker)
{
	for (guint i = 0; i < worker->server->listeners->len; i++)
		worker->hosts[i].host.pool = NULL;
	g_clear_pointer(&worker->pool, gh_backend_pool_free);
}

/* Stop accepting; sessions in login state say goodbye, proxied ones drain. */
static gboolean
worker_stop(gpointer data)
{
	GhWorker *worker = data;
	GList *copy;

	worker->stopping = TRUE;
	worker_accept_stop(worker);
	drop_pool(worker);
	if (g_atomic_int_dec_and_test(&worker->server->accepting))
		g_main_context_invoke(NULL, stop_listening, worker->server);
	copy = g_list_copy(worker->sessions.head);
	for (GList *l = copy; l != NULL; l = l->next)
		gh_session_shutdown(l->data);
	g_list_free(copy);
	return G_SOURCE_REMOVE;
}

/* The end: abort what is left and leave the loop. */
static gboolean
worker_finish(gpointer data)
{
	GhWorker *worker = data;
	worker->stopping = TRUE;
	worker_accept_stop(worker);
	while (!g_queue_is_empty(&worker->sessions))
		gh_session_abort(g_queue_peek_head(&worker->sessions));
	drop_pool(worker);
	g_main_loop_quit(worker->loop);
	return G_SOURCE_REMOVE;
}

static GhWorker *
worker_new(GhServer *server, guint index)
{
	GhWorker *w = g_new0(GhWorker, 1);
	w->index = index;
	w->server = server;
	w->context = g_main_context_new();
	w->loop = g_main_loop_new(w->context, FALSE);
	w->accepts = g_ptr_array_new_with_free_func((GDestroyNotify)accept_watch_free);
	g_queue_init(&w->sessions);
	w->stats = gh_stats_new();
	w->pool = gh_backend_pool_new(w->context, w->stats);
	w->hosts = g_new0(SessionHost, server->listeners->len);
	for (guint i = 0; i < server->listeners->len; i++) {
		w->hosts[i].host.context = w->context;
		w->hosts[i].host.ended = on_session_ended;
		w->hosts[i].host.data = &w->hosts[i];
		w->hosts[i].host.stats = w->stats;
		w->hosts[i].host.pool = w->pool;
		w->hosts[i].worker = w;
		w->hosts[i].listener = g_ptr_array_index(server->listeners, i);
	}
	return w;
}

static void
worker_free(GhWorker *w)
{
	if (w->thread != NULL)
		g_thread_join(w->thread);
	/* run what the worker left queued (idle sources from the auth pool)
	 * so that their destroy notifies free what they carry */
	while (g_main_context_iteration(w->context, FALSE))
		;
	g_clear_pointer(&w->pool, gh_backend_pool_free); /* a worker that never ran */
	g_ptr_array_unref(w->accepts);
	g_main_loop_unref(w->loop);
	g_main_context_unref(w->context);
	gh_stats_free(w->stats);
	g_free(w->hosts);
	g_free(w);
}

/* -------------------------------------------------------------- snapshots */

typedef struct {
	GhSnapshotFunc func;
	gpointer data;
	gboolean with_sessions;
} SnapWaiter;

struct _SnapRound {
	GhServer *server;
	gboolean with_sessions;
	guint pending; /* workers yet to answer */
	GhSnapshot snap;
	GPtrArray *waiters; /* of SnapWaiter* (owned) */
};

/* One worker's part of a round, made on its thread, added on the main one. */
typedef struct {
	SnapRound *round;
	GhWorker *worker;
	GhStats *stats;
	GArray *sessions;
	guint n_sessions;
} SnapPart;

static void start_round(GhServer *server);

static void
finish_round(SnapRound *r)
{
	GhServer *server = r->server;
	r->snap.now_us = g_get_monotonic_time();
	for (guint i = 0; i < r->waiters->len; i++) {
		SnapWaiter *w = g_ptr_array_index(r->waiters, i);
		w->func(&r->snap, w->data);
	}
	g_ptr_array_unref(r->waiters);
	gh_stats_free(r->snap.stats);
	if (r->snap.sessions != NULL)
		g_array_unref(r->snap.sessions);
	g_free(r);
	server->round = NULL;
	if (server->next_waiters->len > 0)
		start_round(server);
}

/* main thread */
static gboolean
snap_part_done(gpointer data)
{
	SnapPart *part = data;
	SnapRound *r = part->round;

	gh_stats_merge(r->snap.stats, part->stats);
	gh_stats_free(part->stats);
	r->snap.n_sessions += part->n_sessions;
	if (part->sessions != NULL) {
		/* the rows move; their strings are now the round's */
		g_array_append_vals(r->snap.sessions, part->sessions->data, part->sessions->len);
		g_array_set_clear_func(part->sessions, NULL);
		g_array_unref(part->sessions);
	}
	g_free(part);
	if (--r->pending == 0)
		finish_round(r);
	return G_SOURCE_REMOVE;
}

/* worker thread */
static gboolean
snap_part_collect(gpointer data)
{
	SnapPart *part = data;
	GhWorker *worker = part->worker;

	part->stats = gh_stats_copy(worker->stats);
	if (part->round->with_sessions) {
		part->sessions =
		    g_array_sized_new(FALSE, FALSE, sizeof(GhSessionInfo), worker->sessions.length);
		g_array_set_clear_func(part->sessions, (GDestroyNotify)gh_session_info_clear);
	}
	for (GList *l = worker->sessions.head; l != NULL; l = l->next) {
		gh_session_count(l->data, part->stats);
		if (part->sessions != NULL) {
			GhSessionInfo info;
			gh_session_describe(l->data, &info);
			g_array_append_val(part->sessions, info);
		}
		part->n_sessions++;
	}
	g_main_context_invoke(NULL, snap_part_done, part);
	return G_SOURCE_REMOVE;
}

static void
start_round(GhServer *server)
{
	SnapRound *r = g_new0(SnapRound, 1);
	r->server = server;
	r->waiters = g_steal_pointer(&server->next_waiters);
	server->next_waiters = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; i < r->waiters->len; i++)
		r->with_sessions |= ((SnapWaiter *)g_ptr_array_index(r->waiters, i))->with_sessions;
	r->snap.stats = gh_stats_new();
	if (r->with_sessions) {
		r->snap.sessions = g_array_new(FALSE, FALSE, sizeof(GhSessionInfo));
		g_array_set_clear_func(r->snap.sessions, (GDestroyNotify)gh_session_info_clear);
	}
	server->round = r;
	r->pending = server->workers->len;
	if (r->pending == 0) {
		finish_round(r);
		return;
	}
	for (guint i = 0; i < server->workers->len; i++) {
		SnapPart *part = g_new0(SnapPart, 1);
		part->round = r;
		part->worker = g_ptr_array_index(server->workers, i);
		g_main_context_invoke(part->worker->context, snap_part_collect, part);
	}
}

void
gh_server_snapshot(GhServer *server, gboolean with_sessions, GhSnapshotFunc func, gpointer data)
{
	SnapWaiter *w = g_new0(SnapWaiter, 1);
	w->func = func;
	w->data = data;
	w->with_sessions = with_sessions;
	g_ptr_array_add(server->next_waiters, w);
	if (server->round == NULL)
		start_round(server);
}

/* ------------------------------------------------------------------ kicks */

typedef struct {
	GhSessionMatch match;
	gpointer match_data;
	GhKickDone done;
	gpointer data;
	guint pending;
	guint kicked;
} KickJob;

typedef struct {
	KickJob *job;
	GhWorker *worker;
	guint kicked;
} KickPart;

/* main thread */
static gboolean
kick_part_done(gpointer data)
{
	KickPart *part = data;
	KickJob *job = part->job;
	job->kicked += part->kicked;
	g_free(part);
	if (--job->pending == 0) {
		job->done(job->kicked, job->data);
		g_free(job);
	}
	return G_SOURCE_REMOVE;
}

/* worker thread */
static gboolean
kick_part_run(gpointer data)
{
	KickPart *part = data;
	GhWorker *worker = part->worker;
	/* a kicked session may leave the queue at once */
	GList *copy = g_list_copy(worker->sessions.head);

	for (GList *l = copy; l != NULL; l = l->next) {
		GhSessionInfo info;
		gboolean hit;
		gh_session_describe(l->data, &info);
		hit = part->job->match(&info, part->job->match_data);
		gh_session_info_clear(&info);
		if (hit && gh_session_kick(l->data))
			part->kicked++;
	}
	g_list_free(copy);
	g_main_context_invoke(NULL, kick_part_done, part);
	return G_SOURCE_REMOVE;
}

void
gh_server_kick(
    GhServer *server, GhSessionMatch match, gpointer match_data, GhKickDone done, gpointer data)
{
	KickJob *job = g_new0(KickJob, 1);
	job->match = match;
	job->match_data = match_data;
	job->done = done;
	job->data = data;
	job->pending = server->workers->len;
	if (job->pending == 0) {
		done(0, data);
		g_free(job);
		return;
	}
	for (guint i = 0; i < server->workers->len; i++) {
		KickPart *part = g_new0(KickPart, 1);
		part->job = job;
		part->worker = g_ptr_array_index(server->workers, i);
		g_main_context_invoke(part->worker->context, kick_part_run, part);
	}
}

/* ---------------------------------------------------------------- systemd */

typedef struct {
	guint64 ok, failed;
} LoginSums;

static void
sum_logins(const char *const *labels, guint64 value, gpointer data)
{
	LoginSums *sums = data;
	if (g_strcmp0(labels[3], "ok") == 0)
		sums->ok += value;
	else
		sums->failed += value;
}

static void
sum_proxied(const char *const *labels, guint64 value, gpointer data)
{
	if (g_strcmp0(labels[2], "proxied") == 0)
		*(guint64 *)data += value;
}

char *
gh_server_summary(GhServer *server, const GhSnapshot *snap)
{
	LoginSums sums = {0, 0};
	guint64 proxied = 0;
	gh_stats_foreach(snap->stats, GH_STAT_LOGINS, sum_logins, &sums);
	gh_stats_foreach(snap->stats, GH_STAT_SESSIONS, sum_proxied, &proxied);
	return g_strdup_printf("%u session%s (%" G_GUINT64_FORMAT " proxied); logins since start: "
			       "%" G_GUINT64_FORMAT " ok, %" G_GUINT64_FORMAT
			       " not; config generation %u",
			       snap->n_sessions, snap->n_sessions == 1 ? "" : "s", proxied, sums.ok,
			       sums.failed, server->generation);
}

static void
on_status_snapshot(const GhSnapshot *snap, gpointer data)
{
	GhServer *server = data;
	g_autofree char *summary = NULL;
	if (server->stopping)
		return; /* STATUS=stopping stays */
	summary = gh_server_summary(server, snap);
	if (g_strcmp0(summary, server->last_status) == 0)
		return;
	g_free(server->last_status);
	server->last_status = g_steal_pointer(&summary);
	sd_notifyf(0, "STATUS=%s", server->last_status);
}

/* STATUS= for `systemctl status`: only under systemd, and only when it changed */
static void
notify_status(GhServer *server, gboolean force)
{
	if (g_getenv("NOTIFY_SOCKET") == NULL)
		return;
	if (force)
		g_clear_pointer(&server->last_status, g_free);
	gh_server_snapshot(server, FALSE, on_status_snapshot, server);
}

static gboolean
on_status_timer(gpointer data)
{
	notify_status(data, FALSE);
	return G_SOURCE_CONTINUE;
}

static gboolean
on_watchdog(gpointer data)
{
	sd_notify(0, "WATCHDOG=1");
	return G_SOURCE_CONTINUE;
}

static gboolean
on_refresh_timer(gpointer data)
{
	GhServer *server = data;
	g_autoptr(GhAuthSet) set = gh_server_get_auth_set(server);
	gh_auth_set_refresh(set, FALSE);
	return G_SOURCE_CONTINUE;
}

/* ----------------------------------------------------------------- reload */

static gboolean
listen_changed(const GhListenerConfig *a, const GhListenerConfig *b)
{
	if (a->listen->len != b->listen->len)
		return TRUE;
	for (guint i = 0; i < a->listen->len; i++) {
		const GhHostPort *x = &g_array_index(a->listen, GhHostPort, i);
		const GhHostPort *y = &g_array_index(b->listen, GhHostPort, i);
		if (x->port != y->port || g_strcmp0(x->host, y->host) != 0)
			return TRUE;
	}
	return FALSE;
}

static void
warn_listener_changes(GhServer *server, const GhConfig *old, const GhConfig *cfg)
{
	for (guint i = 0; i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		const GhListenerConfig *prev = gh_config_listener(old, lc->name);
		GhListener *l = gh_listeners_find(server->listeners, lc->name);
		if (l == NULL)
			g_warning(
			    "reload: new [listener %s] gets no socket until gatehoused restarts",
			    lc->name);
		else if (prev != NULL && !l->from_systemd && listen_changed(prev, lc))
			g_warning("reload: [listener %s] listen = changed; the old addresses stay "
				  "until gatehoused restarts",
				  lc->name);
	}
	for (guint i = 0; i < old->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(old->listeners, i);
		if (gh_config_listener(cfg, lc->name) == NULL)
			g_warning("reload: [listener %s] was removed; its socket refuses new "
				  "sessions until gatehoused restarts",
				  lc->name);
	}
	if (old->workers != cfg->workers)
		g_warning("reload: workers = changes only when gatehoused restarts");
	if (g_strcmp0(old->user, cfg->user) != 0 || g_strcmp0(old->group, cfg->group) != 0)
		g_warning("reload: user = and group = change only when gatehoused restarts");
}

void
gh_server_settings_from_config(const GhConfig *cfg, GhAuthSettings *out)
{
	out->workers = cfg->auth_workers;
	out->queue_max = cfg->auth_queue_max;
	out->cache_size = cfg->auth_cache_size;
	out->cache_ttl = cfg->auth_cache_ttl;
	out->cache_negative_ttl = cfg->auth_cache_negative_ttl;
	out->failure_delay = cfg->failure_delay;
}

static void
notify_reloading(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* MONOTONIC_USEC is what Type=notify-reload (systemd >= 253) wants */
	sd_notifyf(0,
		   "RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=%" G_GUINT64_FORMAT,
		   (guint64)ts.tv_sec * G_USEC_PER_SEC + (guint64)ts.tv_nsec / 1000);
}

gboolean
gh_server_reload(GhServer *server, GPtrArray *problems_out)
{
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GhConfig) old = gh_server_get_config(server);
	g_autoptr(GhConfig) cfg = NULL;
	GhAuthSet *set = NULL;
	GhAuthSet *old_set;
	GhTls *tls = NULL;
	GhTls *old_tls;
	GhAuthSettings settings;

	notify_reloading();
	g_message("reloading configuration from %s", old->path);
	cfg = gh_config_load(old->path, problems);
	if (cfg != NULL)
		set = gh_auth_set_new(server->core, cfg->kf, cfg->path, cfg->module_dir, problems);
	if (cfg != NULL)
		tls = gh_tls_new(cfg, problems); /* new certificates for new sessions */
	if (cfg == NULL || set == NULL || tls == NULL) {
		if (set != NULL)
			gh_auth_set_unref(set);
		gh_tls_unref(tls);
		for (guint i = 0; i < problems->len; i++) {
			g_warning("%s", (const char *)g_ptr_array_index(problems, i));
			if (problems_out != NULL)
				g_ptr_array_add(problems_out,
						g_strdup(g_ptr_array_index(problems, i)));
		}
		g_warning(
		    "reload failed with %u problem%s: the running configuration stays in force",
		    problems->len, problems->len == 1 ? "" : "s");
		server->reloads_failed++;
		sd_notify(0, "READY=1");
		notify_status(server, TRUE);
		return FALSE;
	}
	warn_listener_changes(server, old, cfg);
	if (g_strcmp0(old->control_socket, cfg->control_socket) != 0)
		g_warning("reload: control_socket = changes only when gatehoused restarts");
	if ((old->metrics_listen == NULL) != (cfg->metrics_listen == NULL) ||
	    (old->metrics_listen != NULL &&
	     (g_strcmp0(old->metrics_listen->host, cfg->metrics_listen->host) != 0 ||
	      old->metrics_listen->port != cfg->metrics_listen->port)))
		g_warning("reload: [metrics] listen = changes only when gatehoused restarts");
	gh_server_settings_from_config(cfg, &settings);
	g_mutex_lock(&server->lock);
	gh_config_unref(server->config);
	server->config = gh_config_ref(cfg);
	old_set = server->auth_set;
	server->auth_set = set;
	old_tls = server->tls;
	server->tls = tls;
	g_mutex_unlock(&server->lock);
	gh_auth_set_unref(old_set);
	gh_tls_unref(old_tls);
	gh_auth_core_update(server->core, &settings);
	gh_auth_core_flush_cache(server->core);
	server->generation++;
	server->reloads_ok++;
	g_message("configuration reloaded from %s: generation %u", cfg->path, server->generation);
	sd_notify(0, "READY=1");
	notify_status(server, TRUE);
	return TRUE;
}

static gboolean
on_sighup(gpointer data)
{
	GhServer *server = data;
	if (!server->stopping)
		(void)gh_server_reload(server, NULL);
	return G_SOURCE_CONTINUE;
}

/* --------------------------------------------------------------- stopping */

static gboolean
on_stop_check(gpointer data)
{
	GhServer *server = data;
	guint n = server_session_count(server);

	if (n > 0 && g_get_monotonic_time() < server->stop_deadline)
		return G_SOURCE_CONTINUE;
	if (n > 0)
		g_message("shutdown_timeout reached: closing %u session%s", n, n == 1 ? "" : "s");
	for (guint i = 0; i < server->workers->len; i++) {
		GhWorker *w = g_ptr_array_index(server->workers, i);
		g_main_context_invoke(w->context, worker_finish, w);
	}
	g_main_loop_quit(server->main_loop);
	return G_SOURCE_REMOVE;
}

static gboolean
on_stop_signal(gpointer data)
{
	GhServer *server = data;
	g_autoptr(GhConfig) cfg = NULL;

	if (server->stopping)
		return G_SOURCE_CONTINUE;
	server->stopping = TRUE;
	cfg = gh_server_get_config(server);
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	g_message("stopping: %u session%s open, waiting up to %u s for proxied sessions",
		  server_session_count(server), server_session_count(server) == 1 ? "" : "s",
		  cfg->shutdown_timeout);
	server->stop_deadline =
	    g_get_monotonic_time() + (gint64)cfg->shutdown_timeout * G_USEC_PER_SEC;
	g_atomic_int_set(&server->accepting, (gint)server->workers->len);
	for (guint i = 0; i < server->workers->len; i++) {
		GhWorker *w = g_ptr_array_index(server->workers, i);
		g_main_context_invoke(w->context, worker_stop, w);
	}
	g_timeout_add(50, on_stop_check, server);
	return G_SOURCE_CONTINUE;
}

/* ------------------------------------------------------------------ public */

GhServer *
gh_server_new(GhConfig *cfg, GhAuthCore *core, GhAuthSet *set, GhTls *tls, GPtrArray *listeners)
{
	GhServer *server = g_new0(GhServer, 1);
	g_mutex_init(&server->lock);
	server->config = gh_config_ref(cfg);
	server->auth_set = gh_auth_set_ref(set);
	server->tls = gh_tls_ref(tls);
	server->core = core;
	server->listeners = g_ptr_array_ref(listeners);
	server->workers = g_ptr_array_new();
	server->main_loop = g_main_loop_new(NULL, FALSE);
	server->started = g_get_real_time() / G_USEC_PER_SEC;
	server->generation = 1;
	server->next_waiters = g_ptr_array_new_with_free_func(g_free);
	return server;
}

int
gh_server_run(GhServer *server)
{
	g_autoptr(GhConfig) cfg = gh_server_get_config(server);
	guint64 watchdog_usec = 0;
	guint sig_ids[3];
	guint timers[3] = {0};

	signal(SIGPIPE, SIG_IGN);
	sig_ids[0] = g_unix_signal_add(SIGHUP, on_sighup, server);
	sig_ids[1] = g_unix_signal_add(SIGTERM, on_stop_signal, server);
	sig_ids[2] = g_unix_signal_add(SIGINT, on_stop_signal, server);

	for (guint i = 0; i < cfg->workers; i++) {
		GhWorker *w = worker_new(server, i);
		g_autofree char *name = g_strdup_printf("gh-io-%u", i);
		g_ptr_array_add(server->workers, w);
		g_main_context_invoke(w->context, worker_begin, w);
		w->thread = g_thread_new(name, worker_thread, w);
	}
	for (guint i = 0; i < server->listeners->len; i++) {
		GhListener *l = g_ptr_array_index(server->listeners, i);
		g_autofree char *where = g_strjoinv(" ", (char **)l->labels->pdata);
		g_message("listener %s: %s", l->name, where);
	}
	timers[0] = g_timeout_add_seconds(5, on_status_timer, server);
	timers[1] = g_timeout_add_seconds(1, on_refresh_timer, server);
	if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0)
		timers[2] = g_timeout_add(MAX(watchdog_usec / 2000, 1), on_watchdog, server);

	g_message("gatehoused %s ready: %u I/O worker%s, %u listener%s", PACKAGE_VERSION,
		  cfg->workers, cfg->workers == 1 ? "" : "s", server->listeners->len,
		  server->listeners->len == 1 ? "" : "s");
	sd_notify(0, "READY=1");
	notify_status(server, TRUE);

	g_main_loop_run(server->main_loop);

	for (guint i = 0; i < G_N_ELEMENTS(timers); i++)
		if (timers[i] != 0)
			g_source_remove(timers[i]);
	for (guint i = 0; i < G_N_ELEMENTS(sig_ids); i++)
		g_source_remove(sig_ids[i]);
	for (guint i = 0; i < server->workers->len; i++)
		worker_free(g_ptr_array_index(server->workers, i));
	g_ptr_array_set_size(server->workers, 0);
	/* what the workers answered last (snapshots, kicks) reaches its
	 * callers; a round asked for from here on has no worker to ask */
	while (g_main_context_iteration(NULL, FALSE))
		;
	g_message("stopped");
	return 0;
}

void
gh_server_free(GhServer *server)
{
	if (server == NULL)
		return;
	g_ptr_array_unref(server->workers);
	g_ptr_array_unref(server->listeners);
	g_ptr_array_unref(server->next_waiters);
	g_free(server->last_status);
	gh_auth_set_unref(server->auth_set);
	gh_tls_unref(server->tls);
	gh_config_unref(server->config);
	g_main_loop_unref(server->main_loop);
	g_mutex_clear(&server->lock);
	g_free(server);
}
