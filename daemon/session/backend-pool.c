/*
 * backend-pool.c: warm backend connections (see backend-pool.h).
 *
 * A pool is a list of pairs (a backend of one configuration, one of its
 * servers), each with its warm links, parked or still on their way.  One
 * timer per pool, running while it has pairs, sweeps them every quarter of
 * the shortest warm_lifetime: it closes links past their lifetime, refills
 * pairs asked for lately, and drops pairs that were not.
 *
 * Invariants: a Warm is in its pair's `links` exactly as long as the pool
 * owns its link: a take removes it before the session adopts the link, and
 * the link's done callback (a warm link ends only when it fails or loses
 * its server) removes it before the link frees itself; no pair is freed
 * while a link of it is pending, as links are cancelled first.
 */
#include "gh-build.h"

#include "session/backend-pool.h"
#include "session/session-internal.h"
#include "common/timer.h"
#include "net/connector.h"

#define BACKOFF_MIN_US G_USEC_PER_SEC
#define BACKOFF_MAX_US (60 * G_USEC_PER_SEC)

typedef struct _Pair Pair;

typedef struct {
	Pair *pair;
	GhBackendLink *link;
	gint64 born_us;
} Warm;

struct _Pair {
	GhBackendPool *pool;
	GhConfig *config; /* a reference: `bc` lives in it */
	const GhBackendConfig *bc;
	guint server; /* its index in bc->servers: the first choice of `key` */
	char *key;    /* the first key that asked: the warm links' hash key */
	GhTls *tls;   /* the credentials of that session's generation */
	const GhProtocol *protocol;
	char *server_text; /* bc->servers[server] as the connector names it */
	GPtrArray *links;  /* of Warm *, owned */
	gint64 asked_us;   /* last take, hit or miss */
	gint64 retry_us;   /* no new warm link before then (after a failure) */
	gint64 backoff_us;
};

struct _GhBackendPool {
	GMainContext *context;
	GhStats *stats;
	GPtrArray *pairs; /* of Pair *, owned */
	GhTimer sweep;
	GhTimer refill; /* never inside a take: not before the taker's login is out */
};

static void warm_done(GhBackendResult result,
		      GhConn *conn,
		      GBytes *reply,
		      const char *server,
		      const char *error,
		      gpointer data);

static void
warm_free(Warm *w)
{
	g_clear_pointer(&w->link, gh_backend_link_cancel);
	g_free(w);
}

static void
pair_free(Pair *p)
{
	g_ptr_array_unref(p->links); /* cancels every link */
	gh_config_unref(p->config);
	if (p->tls != NULL)
		gh_tls_unref(p->tls);
	g_free(p->key);
	g_free(p->server_text);
	g_free(p);
}

/* What a warm link of the pair is started with: nothing names a client. */
static GhBackendParams
warm_params(const Pair *p)
{
	return (GhBackendParams){
	    .backend = p->bc,
	    .hash_key = p->key,
	    .client_addr = "",
	    .local_addr = "",
	    .hostname = p->config->hostname,
	    .session_id = "warm",
	    .tls = p->tls,
	    .stats = p->pool->stats,
	    .login_later = TRUE,
	};
}

/* Start one warm link of the pair. */
static void
warm_start(Pair *p)
{
	Warm *w = g_new0(Warm, 1);
	GhBackendParams params = warm_params(p);
	w->pair = p;
	w->born_us = g_get_monotonic_time();
	g_ptr_array_add(p->links, w);
	w->link = p->protocol->backend_warm(&params, p->pool->context, warm_done, w);
}

static void
pair_fill(Pair *p, gint64 now)
{
	if (now < p->retry_us)
		return;
	while (p->links->len < p->bc->warm_connections)
		warm_start(p);
}

/* Has a login asked for the pair within warm_lifetime?  Only such a pair
 * is refilled (an idle gateway, or an old configuration's pair after a
 * reload, lets its links go). */
static gboolean
pair_wanted(const Pair *p, gint64 now)
{
	return now - p->asked_us < (gint64)p->bc->warm_lifetime * G_USEC_PER_SEC;
}

static void sweep(gpointer data);

static void
arm_sweep(GhBackendPool *pool)
{
	guint ms = G_MAXUINT;
	if (pool->pairs->len == 0) {
		gh_timer_stop(&pool->sweep);
		return;
	}
	if (gh_timer_running(&pool->sweep))
		return;
	for (guint i = 0; i < pool->pairs->len; i++) {
		const Pair *p = g_ptr_array_index(pool->pairs, i);
		ms = MIN(ms, p->bc->warm_lifetime * 250);
	}
	gh_timer_start(&pool->sweep, pool->context, MAX(ms, 250), sweep, pool);
}

static void
sweep(gpointer data)
{
	GhBackendPool *pool = data;
	gint64 now = g_get_monotonic_time();

	for (guint i = 0; i < pool->pairs->len;) {
		Pair *p = g_ptr_array_index(pool->pairs, i);
		gint64 lifetime = (gint64)p->bc->warm_lifetime * G_USEC_PER_SEC;
		gboolean wanted = pair_wanted(p, now);

		for (guint j = 0; j < p->links->len;) {
			Warm *w = g_ptr_array_index(p->links, j);
			/* one still on its way is left to its connect_timeout */
			if (now - w->born_us >= lifetime && gh_backend_link_parked(w->link))
				g_ptr_array_remove_index_fast(p->links, j); /* goodbye, close */
			else
				j++;
		}
		if (!wanted && p->links->len == 0) {
			g_ptr_array_remove_index_fast(pool->pairs, i);
			continue;
		}
		if (wanted)
			pair_fill(p, now);
		i++;
	}
	arm_sweep(pool);
}

/* A warm link ended while the pool had it: its server failed it or went
 * away.  The link frees itself after this. */
static void
warm_done(GhBackendResult result,
	  GhConn *conn,
	  GBytes *reply,
	  const char *server,
	  const char *error,
	  gpointer data)
{
	Warm *w = data;
	Pair *p = w->pair;
	(void)reply, (void)server, (void)error;

	gh_conn_free(conn);
	w->link = NULL; /* it is ending: not to be cancelled */
	if (result == GH_BACKEND_FAILED) {
		gint64 now = g_get_monotonic_time();
		p->backoff_us =
		    p->backoff_us == 0 ? BACKOFF_MIN_US : MIN(p->backoff_us * 2, BACKOFF_MAX_US);
		p->retry_us = now + p->backoff_us;
	}
	g_ptr_array_remove_fast(p->links, w);
}

/* Is the pair short of links that a refill would start now?  (With
 * reuse_connections the taker brings its link back: a refill would only
 * make a connection that is let go then.) */
static gboolean
pair_short(const Pair *p, gint64 now)
{
	return !p->bc->reuse_connections && pair_wanted(p, now) && now >= p->retry_us &&
	       p->links->len < p->bc->warm_connections;
}

/* Refill what the takes of the last loop turns left short.  Not in the
 * take itself: a connect there would delay the very login that took a
 * warm link. */
static void
refill(gpointer data)
{
	GhBackendPool *pool = data;
	gint64 now = g_get_monotonic_time();
	for (guint i = 0; i < pool->pairs->len; i++) {
		Pair *p = g_ptr_array_index(pool->pairs, i);
		if (pair_short(p, now))
			pair_fill(p, now);
	}
}

GhBackendPool *
gh_backend_pool_new(GMainContext *context, GhStats *stats)
{
	GhBackendPool *pool = g_new0(GhBackendPool, 1);
	pool->context = context;
	pool->stats = stats;
	pool->pairs = g_ptr_array_new_with_free_func((GDestroyNotify)pair_free);
	return pool;
}

void
gh_backend_pool_free(GhBackendPool *pool)
{
	if (pool == NULL)
		return;
	gh_timer_stop(&pool->sweep);
	gh_timer_stop(&pool->refill);
	g_ptr_array_unref(pool->pairs);
	g_free(pool);
}

static Pair *
find_pair(GhBackendPool *pool, const GhBackendConfig *bc, guint server)
{
	for (guint i = 0; i < pool->pairs->len; i++) {
		Pair *p = g_ptr_array_index(pool->pairs, i);
		if (p->bc == bc && p->server == server)
			return p;
	}
	return NULL;
}

GhBackendLink *
gh_backend_pool_take(GhBackendPool *pool,
		     GhSession *s,
		     const char *key,
		     const GhBackendParams *params,
		     GhBackendDone done,
		     gpointer user_data)
{
	const GhBackendConfig *bc = params->backend;
	gint64 now = g_get_monotonic_time();
	GhBackendLink *link = NULL;
	guint server;
	Pair *p;

	if (pool == NULL || bc->warm_connections == 0 || s->protocol->backend_warm == NULL ||
	    bc->servers->len == 0 || key == NULL)
		return NULL;
	server = gh_backend_first_server(key, bc->servers->len);
	p = find_pair(pool, bc, server);
	if (p == NULL) {
		p = g_new0(Pair, 1);
		p->pool = pool;
		p->config = gh_config_ref(s->config);
		p->bc = bc;
		p->server = server;
		p->key = g_strdup(key);
		p->tls = s->tls != NULL ? gh_tls_ref(s->tls) : NULL;
		p->protocol = s->protocol;
		p->server_text = gh_backend_server_text(bc, server);
		p->links = g_ptr_array_new_with_free_func((GDestroyNotify)warm_free);
		g_ptr_array_add(pool->pairs, p);
	}
	p->asked_us = now;
	for (guint i = 0; i < p->links->len; i++) {
		Warm *w = g_ptr_array_index(p->links, i);
		if (!gh_backend_link_parked(w->link))
			continue;
		link = g_steal_pointer(&w->link);
		g_ptr_array_remove_index_fast(p->links, i);
		/* a server that answered once is up: no back-off */
		p->backoff_us = 0;
		s->protocol->backend_adopt(s, link);
		gh_backend_link_adopt(link, params, done, user_data);
		break;
	}
	gh_stats_add(pool->stats, GH_STAT_WARM_TAKES, 1, bc->name, link != NULL ? "hit" : "miss");
	/* A pair left empty is refilled at the next loop turn: this one
	 * sends the taker's login first (its steps are set soon), and the
	 * thread need not wake up again for it.  A pair with a link left
	 * waits for gh_backend_pool_refill: until the backend has answered
	 * the taker's login, a new connection would compete with it. */
	if (p->links->len == 0 && !gh_timer_running(&pool->refill))
		gh_timer_yield(&pool->refill, pool->context, refill, pool);
	arm_sweep(pool);
	return link;
}

void
gh_backend_pool_refill(GhBackendPool *pool)
{
	gint64 now;

	if (pool == NULL || gh_timer_running(&pool->refill))
		return;
	now = g_get_monotonic_time();
	for (guint i = 0; i < pool->pairs->len; i++) {
		if (pair_short(g_ptr_array_index(pool->pairs, i), now)) {
			gh_timer_soon(&pool->refill, pool->context, refill, pool);
			return;
		}
	}
}

/* The pair a session's key picks for its backend, if the pool has it. */
static Pair *
session_pair(GhBackendPool *pool, GhSession *s, const char *key)
{
	const GhBackendConfig *bc = gh_config_backend(s->config, s->lc->backend);

	if (pool == NULL || bc == NULL || !bc->reuse_connections || bc->servers->len == 0 ||
	    key == NULL || s->protocol->backend_resume == NULL)
		return NULL;
	return find_pair(pool, bc, gh_backend_first_server(key, bc->servers->len));
}

gboolean
gh_backend_pool_can_keep(
    GhBackendPool *pool, GhSession *s, const char *key, const char *server, guint served)
{
	Pair *p = session_pair(pool, s, key);

	return p != NULL && served + 1 < GH_BACKEND_KEEP_SESSIONS && server != NULL &&
	       strcmp(server, p->server_text) == 0 && p->links->len < p->bc->warm_connections &&
	       g_get_monotonic_time() - p->asked_us < (gint64)p->bc->warm_lifetime * G_USEC_PER_SEC;
}

void
gh_backend_pool_keep(
    GhBackendPool *pool, GhSession *s, const char *key, GhConn *conn, const char *server)
{
	Pair *p = session_pair(pool, s, key);
	GhBackendParams params;
	Warm *w;

	if (p == NULL) {
		gh_conn_free(conn);
		return;
	}
	params = warm_params(p);
	conn->served++;
	w = g_new0(Warm, 1);
	w->pair = p;
	w->born_us = g_get_monotonic_time();
	g_ptr_array_add(p->links, w);
	w->link = p->protocol->backend_resume(&params, pool->context, conn, server, warm_done, w);
	if (w->link == NULL)
		g_ptr_array_remove_fast(p->links, w);
	gh_stats_add(pool->stats, GH_STAT_WARM_KEPT, 1, p->bc->name);
	arm_sweep(pool);
}
