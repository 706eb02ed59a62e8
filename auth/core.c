/*
 * core.c: the authentication core: module instances, the auth chain, the
 * verification pool, and the hand-back of verdicts to the session's context.
 *
 * Invariants:
 *  - Module code (verify, refresh) runs only on the pool's threads, never on
 *    a session's main context; a module without GH_AUTH_MODULE_THREAD_SAFE
 *    runs under its instance's mutex.
 *  - A pending request is reference counted.  One reference belongs to the
 *    requester until the callback has run or the request was cancelled
 *    ("owner"); each job or GSource carrying the request holds another, and
 *    so does the timer while it runs (a hand-back on the requester's own
 *    thread, then the failure delay): taken when it starts, dropped by its
 *    function or by gh_auth_pending_cancel() that stops it.
 *    `finished` (read and written on the requester's context only) says the
 *    owner reference is gone, so callback and cancel cannot both release it.
 *  - The password is copied into a GhSecret when the request is made and
 *    wiped as soon as the chain, the cache and the penalty have used it, on
 *    the worker thread, before the verdict travels back.
 *  - A request that joins an identical one in flight (a Flight: the same
 *    cache key) holds a reference in the flight until the leader's job
 *    ends it, right after the leader's verdict, and then answers with that
 *    verdict or is checked itself; a leader others wait for is checked
 *    even when its own session has gone.
 *  - The callback never runs inside gh_auth_verify_async(): even a cache hit
 *    goes through the loop (a timer set soon), so callers need not be
 *    reentrant.
 */
#include "gh-build.h"

#include "gh-auth.h"
#include "cache.h"
#include "common/keyfile.h"
#include "common/route.h"
#include "common/timer.h"
#include "helper.h"
#include "module-loader.h"
#include "penalty.h"
#include "secret.h"

#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct _GhAuthCore {
	GThreadPool *pool;
	GhCache *cache;
	GhPenalty *penalty;
	GMutex lock; /* settings */
	GhAuthSettings settings;
	gint busy;     /* atomic: jobs queued or running */
	gint stopping; /* atomic: drop verifications, the core is going away */
	GMutex flights_lock;
	GHashTable *flights; /* GhCacheKey * -> Flight *: identical requests in flight */
};

/* Requests with one GhCacheKey (the same user, password, service and chain)
 * while the first of them is being checked: its job checks for all, and
 * the others wait for that verdict instead of checking again.  A storm of
 * one account (a client's parallel connections, every client after a
 * restart or once the cache entry expired) then costs one check. */
typedef struct {
	GhCacheKey key;       /* the table's key */
	GPtrArray *followers; /* of GhAuthPending *, each holding a reference */
} Flight;

typedef struct {
	char *name; /* NAME of [auth NAME] */
	const GhAuthModule *module;
	gpointer state;
	GMutex serial;   /* for modules that are not thread-safe; also orders refresh */
	gint refreshing; /* atomic: a refresh job is queued or running */
	GhAuthHost host;
	GhAuthSet *set; /* back pointer, not a reference */
} GhAuthInstance;

struct _GhAuthSet {
	gint ref_count;
	GhAuthCore *core;
	char *config_path;
	char *module_dir;     /* where the modules and their helpers are */
	GPtrArray *instances; /* of GhAuthInstance*, file order */
	char *cache_prefix;   /* "SERIAL ": cache keys of this set only */
};

static gint set_serial; /* numbers the sets, for their cache keys */

struct _GhAuthPending {
	gint ref_count;
	GhAuthSet *set;
	char **chain;
	char *chain_key;
	GhCacheKey key; /* the cache's, unless GH_AUTH_VERIFY_NO_CACHE; wiped at the verdict */
	guint flags;

	/* the request, copied */
	char *user, *service, *listener, *remote_addr, *local_addr, *session_id;
	guint16 remote_port, local_port;
	gboolean tls;
	GhSecret *password;

	GMainContext *context;
	GhAuthDone callback;
	gpointer user_data;
	gint cancelled;    /* atomic; set on the context's thread */
	gboolean finished; /* context thread only: owner reference released */
	GhTimer timer;     /* context thread only: the hand-back set soon, then the
			    * failure delay; holds a reference while running */

	/* the outcome, written by the worker (or on a cache hit) before the
	 * hand-back, read on the context afterwards */
	GhAuthVerdict verdict;
	char *instance, *module, *canonical_user, *route, *reason;
	gboolean cached;
	gboolean decided; /* concluded inside gh_auth_verify_async: no job */
	gboolean shared;  /* the verdict is the check of an identical request */
	Flight *flight;   /* the flight it leads (its job checks for all), or NULL */
	gint64 start_us, elapsed_us;
	guint delay_ms;
};

typedef enum { JOB_VERIFY, JOB_REFRESH } JobKind;

typedef struct {
	JobKind kind;
	GhAuthPending *pending; /* JOB_VERIFY: holds a reference */
	GhAuthSet *set;         /* JOB_REFRESH: holds a reference */
	GhAuthInstance *inst;   /* JOB_REFRESH */
	gboolean force;
} Job;

const char *
gh_auth_verdict_to_string(GhAuthVerdict verdict)
{
	switch (verdict) {
	case GH_AUTH_OK:
		return "ok";
	case GH_AUTH_WRONG_PASSWORD:
		return "wrong-password";
	case GH_AUTH_UNKNOWN_USER:
		return "unknown-user";
	case GH_AUTH_TEMPFAIL:
		return "tempfail";
	}
	return "invalid";
}

/* ------------------------------------------------------------------ pending */

static GhAuthPending *
pending_ref(GhAuthPending *p)
{
	g_atomic_int_inc(&p->ref_count);
	return p;
}

static void
pending_unref(gpointer data)
{
	GhAuthPending *p = data;
	if (!g_atomic_int_dec_and_test(&p->ref_count))
		return;
	g_strfreev(p->chain);
	g_free(p->chain_key);
	g_free(p->user);
	g_free(p->service);
	g_free(p->listener);
	g_free(p->remote_addr);
	g_free(p->local_addr);
	g_free(p->session_id);
	gh_secret_free(p->password);
	explicit_bzero(&p->key, sizeof p->key);
	g_free(p->instance);
	g_free(p->module);
	g_free(p->canonical_user);
	g_free(p->route);
	g_free(p->reason);
	/* p->timer is stopped: while it runs it holds a reference */
	g_main_context_unref(p->context);
	gh_auth_set_unref(p->set);
	g_free(p);
}

static void
pending_set_outcome(GhAuthPending *p,
		    GhAuthVerdict verdict,
		    const GhAuthInstance *inst,
		    char *canonical_user,
		    char *route,
		    char *reason)
{
	p->verdict = verdict;
	g_free(p->instance);
	g_free(p->module);
	p->instance = inst != NULL ? g_strdup(inst->name) : NULL;
	p->module = inst != NULL ? g_strdup(inst->module->name) : NULL;
	g_free(p->canonical_user);
	g_free(p->route);
	g_free(p->reason);
	p->canonical_user = canonical_user;
	p->route = route;
	p->reason = reason;
}

/* Runs on the requester's context: the final step. */
static gboolean
pending_deliver(gpointer data)
{
	GhAuthPending *p = data;
	GhAuthOutcome out = {0};

	if (p->finished || g_atomic_int_get(&p->cancelled))
		return G_SOURCE_REMOVE;
	out.verdict = p->verdict;
	out.instance = p->instance;
	out.module = p->module;
	out.canonical_user = p->canonical_user != NULL ? p->canonical_user : p->user;
	out.route = p->route;
	out.reason = p->reason != NULL ? p->reason : gh_auth_verdict_to_string(p->verdict);
	out.cached = p->cached;
	out.elapsed_us = p->elapsed_us;
	out.delay_ms = p->delay_ms;
	p->finished = TRUE;
	p->callback(&out, p->user_data);
	pending_unref(p); /* the owner reference */
	return G_SOURCE_REMOVE;
}

/* The failure delay is over: deliver, then drop the timer's reference. */
static void
pending_delay_over(gpointer data)
{
	GhAuthPending *p = data;

	pending_deliver(p);
	pending_unref(p);
}

/* Runs on the requester's context once the verdict is known: apply the
 * failure delay as a timer of that context, never as a sleep. */
static gboolean
pending_arrived(gpointer data)
{
	GhAuthPending *p = data;
	if (p->finished || g_atomic_int_get(&p->cancelled))
		return G_SOURCE_REMOVE;
	if (p->delay_ms > 0) {
		gh_timer_start(&p->timer, p->context, p->delay_ms, pending_delay_over,
			       pending_ref(p));
		return G_SOURCE_REMOVE;
	}
	return pending_deliver(p);
}

/* The idle source's dispatch: what the callback set for soon (the
 * session's next step) runs in this loop turn too. */
static gboolean
pending_arrived_idle(gpointer data)
{
	gboolean again = pending_arrived(data);
	gh_timer_run_soon();
	return again;
}

/* On the requester's own thread: the timer, set soon, carries the
 * reference (gh_auth_pending_cancel stops it and drops that). */
static void
pending_arrived_soon(gpointer data)
{
	GhAuthPending *p = data;

	pending_arrived(p);
	pending_unref(p);
}

/* Hand the pending back to its context (from any thread); takes over one
 * reference of the caller's.  A cache hit, on the thread that runs the
 * context, needs no GSource and no wake-up of its own. */
static void
pending_hand_back(GhAuthPending *p)
{
	g_autoptr(GSource) idle = NULL;

	if (g_main_context_is_owner(p->context)) {
		gh_timer_soon(&p->timer, p->context, pending_arrived_soon, p);
		return;
	}
	idle = g_idle_source_new();
	g_source_set_priority(idle, G_PRIORITY_DEFAULT);
	g_source_set_callback(idle, pending_arrived_idle, p, pending_unref);
	g_source_attach(idle, p->context);
}

/* The verdict is final: store it in the cache, compute the failure delay,
 * and wipe the password.  Any thread. */
static void
pending_conclude(GhAuthPending *p)
{
	GhAuthCore *core = p->set->core;
	gsize pw_len = 0;
	const char *pw = gh_secret_get(p->password, &pw_len);

	p->elapsed_us = g_get_monotonic_time() - p->start_us;
	if (!p->cached && !p->shared && !(p->flags & GH_AUTH_VERIFY_NO_CACHE) &&
	    p->verdict != GH_AUTH_TEMPFAIL) {
		GhCacheEntry e = {
		    .verdict = p->verdict,
		    .module = p->instance,
		    .module_type = p->module,
		    .canonical_user = p->canonical_user,
		    .route = p->route,
		    .reason = p->reason,
		};
		gh_cache_store(core->cache, &p->key, p->user, g_get_monotonic_time(), &e);
	}
	if (p->verdict == GH_AUTH_OK) {
		gh_penalty_success(core->penalty, p->remote_addr);
	} else if (p->verdict != GH_AUTH_TEMPFAIL && !(p->flags & GH_AUTH_VERIFY_NO_DELAY)) {
		p->delay_ms = gh_penalty_fail(core->penalty, p->remote_addr, pw, pw_len,
					      g_get_monotonic_time());
	}
	g_clear_pointer(&p->password, gh_secret_free);
	explicit_bzero(&p->key, sizeof p->key);
}

/* ---------------------------------------------------------------- the chain */

static GhAuthInstance *
set_find(GhAuthSet *set, const char *name)
{
	for (guint i = 0; i < set->instances->len; i++) {
		GhAuthInstance *inst = g_ptr_array_index(set->instances, i);
		if (g_strcmp0(inst->name, name) == 0)
			return inst;
	}
	return NULL;
}

gboolean
gh_auth_set_may_route(GhAuthSet *set, const char *const *chain)
{
	for (guint i = 0; chain != NULL && chain[i] != NULL; i++) {
		GhAuthInstance *inst = set_find(set, chain[i]);
		const GhAuthModule *m = inst != NULL ? inst->module : NULL;

		if (m == NULL ||
		    m->struct_size <
			G_STRUCT_OFFSET(GhAuthModule, may_route) + sizeof(m->may_route) ||
		    m->may_route == NULL || m->may_route(inst->state))
			return TRUE;
	}
	return FALSE;
}

/* Run the chain on a worker thread. */
static void
run_chain(GhAuthPending *p)
{
	gsize pw_len = 0;
	const char *pw = gh_secret_get(p->password, &pw_len);
	GhAuthRequest req = {
	    .user = p->user,
	    .password = pw,
	    .password_len = pw_len,
	    .service = p->service,
	    .listener = p->listener,
	    .remote_addr = p->remote_addr,
	    .remote_port = p->remote_port,
	    .local_addr = p->local_addr,
	    .local_port = p->local_port,
	    .tls = p->tls,
	    .session_id = p->session_id,
	};
	GhAuthInstance *last = NULL;

	for (guint i = 0; p->chain[i] != NULL; i++) {
		GhAuthInstance *inst = set_find(p->set, p->chain[i]);
		GhAuthResult res = {0};
		GhAuthVerdict v;
		gboolean serial;

		if (inst == NULL) {
			/* the config check makes this impossible; stay safe anyway */
			pending_set_outcome(
			    p, GH_AUTH_TEMPFAIL, NULL, NULL, NULL,
			    g_strdup_printf("auth group '%s' is not configured", p->chain[i]));
			return;
		}
		serial = !(inst->module->flags & GH_AUTH_MODULE_THREAD_SAFE);
		if (serial)
			g_mutex_lock(&inst->serial);
		v = inst->module->verify(inst->state, &req, &res);
		if (serial)
			g_mutex_unlock(&inst->serial);
		last = inst;
		if (v == GH_AUTH_UNKNOWN_USER && p->chain[i + 1] != NULL) {
			g_free(res.canonical_user);
			g_free(res.route);
			g_free(res.reason);
			continue;
		}
		if (v > GH_AUTH_TEMPFAIL) {
			g_free(res.reason);
			res.reason = g_strdup_printf("module returned invalid verdict %d", (int)v);
			v = GH_AUTH_TEMPFAIL;
		}
		if (v != GH_AUTH_OK) {
			/* only a success may steer the session */
			g_clear_pointer(&res.canonical_user, g_free);
			g_clear_pointer(&res.route, g_free);
		}
		if (res.reason == NULL)
			res.reason = g_strdup(v == GH_AUTH_OK ? "password accepted"
							      : gh_auth_verdict_to_string(v));
		pending_set_outcome(p, v, inst, res.canonical_user, res.route, res.reason);
		return;
	}
	/* empty chain: config validation forbids it */
	pending_set_outcome(p, GH_AUTH_UNKNOWN_USER, last, NULL, NULL, g_strdup("no auth module"));
}

/* ---------------------------------------------------------------- flights */

static void submit(GhAuthCore *core, GhAuthPending *p, gboolean in_verify);

/* On a miss: wait for an identical request being checked (TRUE), or lead a
 * new flight that others may join (FALSE; the caller submits p's job). */
static gboolean
flight_join(GhAuthCore *core, GhAuthPending *p)
{
	Flight *f;

	g_mutex_lock(&core->flights_lock);
	f = g_hash_table_lookup(core->flights, &p->key);
	if (f != NULL) {
		g_ptr_array_add(f->followers, pending_ref(p));
	} else {
		f = g_new0(Flight, 1);
		f->key = p->key;
		f->followers = g_ptr_array_new();
		g_hash_table_insert(core->flights, &f->key, f);
		p->flight = f;
	}
	g_mutex_unlock(&core->flights_lock);
	return p->flight == NULL;
}

/* A cancelled leader: end its flight and say TRUE if no one waits for it
 * (then its check is not needed), FALSE if someone does.  Any thread. */
static gboolean
flight_end_if_alone(GhAuthCore *core, GhAuthPending *p)
{
	gboolean alone = TRUE;
	Flight *f = p->flight;

	if (f == NULL)
		return TRUE;
	g_mutex_lock(&core->flights_lock);
	if (f->followers->len == 0) {
		g_hash_table_remove(core->flights, &f->key);
		p->flight = NULL;
	} else {
		alone = FALSE;
	}
	g_mutex_unlock(&core->flights_lock);
	if (alone) {
		g_ptr_array_unref(f->followers);
		explicit_bzero(&f->key, sizeof f->key);
		g_free(f);
	}
	return alone;
}

/* p (a leader, concluded) has its verdict: end its flight, and give each
 * follower the same verdict when the cache would keep it (else, a
 * TEMPFAIL or a kind the cache does not keep, each follower is checked on
 * its own, as it would have been).  Any thread. */
static void
flight_land(GhAuthCore *core, GhAuthPending *p)
{
	Flight *f = p->flight;
	gboolean stopping = g_atomic_int_get(&core->stopping);
	gboolean share;

	if (f == NULL)
		return;
	g_mutex_lock(&core->flights_lock);
	g_hash_table_remove(core->flights, &f->key);
	g_mutex_unlock(&core->flights_lock);
	p->flight = NULL;
	share = p->verdict != GH_AUTH_TEMPFAIL && gh_cache_keeps(core->cache, p->verdict);
	for (guint i = 0; i < f->followers->len; i++) {
		GhAuthPending *q = g_ptr_array_index(f->followers, i);
		if (stopping || g_atomic_int_get(&q->cancelled)) {
			pending_unref(q);
		} else if (share) {
			q->verdict = p->verdict;
			q->instance = g_strdup(p->instance);
			q->module = g_strdup(p->module);
			q->canonical_user = g_strdup(p->canonical_user);
			q->route = g_strdup(p->route);
			q->reason = g_strdup(p->reason);
			q->shared = TRUE;
			pending_conclude(q);  /* its own penalty and failure delay */
			pending_hand_back(q); /* passes the flight's reference on */
		} else {
			submit(core, q, FALSE);
			pending_unref(q);
		}
	}
	g_ptr_array_unref(f->followers);
	explicit_bzero(&f->key, sizeof f->key);
	g_free(f);
}

/* Verification threads run at a lower CPU priority than the I/O threads:
 * a storm of logins that each burn 20 ms of yescrypt must not delay the
 * bytes of sessions already proxied.  Linux applies nice per thread. */
#define GH_AUTH_THREAD_NICE 10

static void
lower_own_priority(void)
{
	static __thread gboolean done;
	if (done)
		return;
	done = TRUE;
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid),
			  MIN(getpriority(PRIO_PROCESS, 0) + GH_AUTH_THREAD_NICE, 19));
}

static void
pool_func(gpointer data, gpointer user_data)
{
	Job *job = data;
	GhAuthCore *core = user_data;

	lower_own_priority();

	if (job->kind == JOB_VERIFY) {
		GhAuthPending *p = job->pending;
		/* a cancelled request is still checked when others wait for it */
		if (!g_atomic_int_get(&core->stopping) &&
		    (!g_atomic_int_get(&p->cancelled) || !flight_end_if_alone(core, p))) {
			run_chain(p);
			pending_conclude(p);
			flight_land(core, p);
			pending_hand_back(p); /* passes the job's reference on */
		} else {
			flight_land(core, p); /* stopping: drops the followers */
			pending_unref(p);
		}
	} else {
		GhAuthInstance *inst = job->inst;
		g_autoptr(GError) error = NULL;
		if (!g_atomic_int_get(&core->stopping)) {
			/* refresh never runs concurrently with itself; for a module
			 * that is not thread-safe, not with verify either */
			g_mutex_lock(&inst->serial);
			(void)inst->module->refresh(inst->state, job->force, &error);
			g_mutex_unlock(&inst->serial);
		}
		g_atomic_int_set(&inst->refreshing, 0);
		gh_auth_set_unref(job->set);
	}
	g_atomic_int_add(&core->busy, -1);
	g_free(job);
}

/* ----------------------------------------------------------------- the core */

GhAuthCore *
gh_auth_core_new(const GhAuthSettings *settings)
{
	GhAuthCore *core = g_new0(GhAuthCore, 1);
	g_mutex_init(&core->lock);
	core->settings = *settings;
	core->cache =
	    gh_cache_new(settings->cache_size, settings->cache_ttl, settings->cache_negative_ttl);
	core->penalty = gh_penalty_new(settings->failure_delay, 65536);
	g_mutex_init(&core->flights_lock);
	core->flights = g_hash_table_new(gh_cache_key_hash, gh_cache_key_equal);
	core->pool =
	    g_thread_pool_new(pool_func, core, (gint)MAX(settings->workers, 1), FALSE, NULL);
	return core;
}

void
gh_auth_core_update(GhAuthCore *core, const GhAuthSettings *settings)
{
	g_mutex_lock(&core->lock);
	core->settings = *settings;
	g_mutex_unlock(&core->lock);
	g_thread_pool_set_max_threads(core->pool, (gint)MAX(settings->workers, 1), NULL);
	gh_cache_set_limits(core->cache, settings->cache_size, settings->cache_ttl,
			    settings->cache_negative_ttl);
	gh_penalty_set_base(core->penalty, settings->failure_delay);
}

void
gh_auth_core_free(GhAuthCore *core)
{
	if (core == NULL)
		return;
	g_atomic_int_set(&core->stopping, 1);
	/* queued jobs still run, but only to drop their references */
	g_thread_pool_free(core->pool, FALSE, TRUE);
	/* every flight ended with its leader's job */
	g_warn_if_fail(g_hash_table_size(core->flights) == 0);
	g_hash_table_unref(core->flights);
	g_mutex_clear(&core->flights_lock);
	gh_cache_free(core->cache);
	gh_penalty_free(core->penalty);
	g_mutex_clear(&core->lock);
	g_free(core);
}

guint
gh_auth_core_flush_cache(GhAuthCore *core)
{
	return gh_cache_flush(core->cache);
}

guint
gh_auth_core_flush_user(GhAuthCore *core, const char *user)
{
	g_return_val_if_fail(user != NULL, 0);

	return gh_cache_flush_user(core->cache, user);
}

void
gh_auth_core_stats(GhAuthCore *core, GhAuthCoreStats *out)
{
	guint busy, queued;

	memset(out, 0, sizeof *out);
	g_mutex_lock(&core->lock);
	out->workers = core->settings.workers;
	out->queue_max = core->settings.queue_max;
	out->cache_max = core->settings.cache_size;
	g_mutex_unlock(&core->lock);
	/* busy counts a job from before its push until it has run, so at any
	 * instant busy >= queued.  The two are read one after the other: a job
	 * pushed in between counts as running, and jobs that ended in between
	 * can leave busy below the queue read before, hence the check. */
	queued = g_thread_pool_unprocessed(core->pool);
	busy = (guint)MAX(g_atomic_int_get(&core->busy), 0);
	out->queued = queued;
	out->running = busy > queued ? busy - queued : 0;
	out->cache_entries = gh_cache_size(core->cache);
	gh_cache_counts(core->cache, &out->cache_hits, &out->cache_misses);
	out->penalty_entries = gh_penalty_size(core->penalty, g_get_monotonic_time());
}

guint
gh_auth_set_recent_failures(GhAuthSet *set, const char *remote_addr)
{
	return gh_penalty_failures(set->core->penalty, remote_addr, g_get_monotonic_time());
}

guint
gh_auth_core_busy(GhAuthCore *core)
{
	return (guint)g_atomic_int_get(&core->busy);
}

static gboolean
core_push(GhAuthCore *core, Job *job)
{
	guint queue_max;

	g_mutex_lock(&core->lock);
	queue_max = core->settings.queue_max;
	g_mutex_unlock(&core->lock);
	/* A full queue answers at once instead of letting latency grow without
	 * bound behind a slow directory. */
	if (job->kind == JOB_VERIFY && g_thread_pool_unprocessed(core->pool) >= queue_max)
		return FALSE;
	g_atomic_int_inc(&core->busy);
	if (!g_thread_pool_push(core->pool, job, NULL)) {
		g_atomic_int_add(&core->busy, -1);
		return FALSE;
	}
	return TRUE;
}

/* Queue p's check, or answer TEMPFAIL when the queue is full (in_verify:
 * inside gh_auth_verify_async, where that makes the request decided). */
static void
submit(GhAuthCore *core, GhAuthPending *p, gboolean in_verify)
{
	Job *job = g_new0(Job, 1);

	job->kind = JOB_VERIFY;
	job->pending = pending_ref(p);
	if (core_push(core, job))
		return;
	pending_unref(p); /* the job's */
	g_free(job);
	pending_set_outcome(p, GH_AUTH_TEMPFAIL, NULL, NULL, NULL,
			    g_strdup("verification queue full"));
	p->decided = in_verify;
	pending_conclude(p);
	flight_land(core, p);
	pending_hand_back(pending_ref(p));
}

/* ------------------------------------------------------------------ the set */

static void
host_config_error(const GhAuthHost *host,
		  GError **error,
		  const char *group,
		  const char *key,
		  const char *format,
		  ...)
{
	GhAuthInstance *inst = host->priv;
	va_list ap;
	char *msg;

	va_start(ap, format);
	msg = gh_key_file_problemv(inst->set->config_path, group, key, format, ap);
	va_end(ap);
	g_set_error_literal(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, msg);
	g_free(msg);
}

static int
host_helper_connect(const GhAuthHost *host, GError **error)
{
	GhAuthInstance *inst = host->priv;

	return gh_auth_helper_connect(inst->set->module_dir, inst->module->name, error);
}

static void
host_data_changed(const GhAuthHost *host)
{
	GhAuthInstance *inst = host->priv;
	gh_cache_flush(inst->set->core->cache);
}

static void
instance_free(gpointer data)
{
	GhAuthInstance *inst = data;
	if (inst->state != NULL && inst->module->deinit != NULL)
		inst->module->deinit(inst->state);
	g_mutex_clear(&inst->serial);
	g_free(inst->name);
	g_free(inst);
}

static void
add_problem(GPtrArray *problems, char *msg)
{
	if (problems != NULL)
		g_ptr_array_add(problems, msg);
	else
		g_free(msg);
}

static gboolean
instance_check_keys(
    GhAuthSet *set, GKeyFile *kf, const char *group, const GhAuthModule *mod, GPtrArray *problems)
{
	g_auto(GStrv) keys = g_key_file_get_keys(kf, group, NULL, NULL);
	gboolean ok = TRUE;

	for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
		gboolean known = g_strcmp0(keys[i], "module") == 0;
		for (guint j = 0; !known && mod->keys != NULL && mod->keys[j] != NULL; j++)
			known = g_strcmp0(keys[i], mod->keys[j]) == 0;
		if (!known) {
			add_problem(problems,
				    gh_key_file_problem(set->config_path, group, keys[i],
							"unknown key for module '%s'", mod->name));
			ok = FALSE;
		}
	}
	return ok;
}

static GhAuthInstance *
instance_new(
    GhAuthSet *set, GKeyFile *kf, const char *group, const char *module_dir, GPtrArray *problems)
{
	g_autofree char *module_name = g_key_file_get_string(kf, group, "module", NULL);
	g_autoptr(GError) error = NULL;
	const GhAuthModule *mod;
	GhAuthInstance *inst;

	if (module_name == NULL || *module_name == '\0') {
		add_problem(problems,
			    gh_key_file_problem(set->config_path, group, NULL,
						"missing key 'module' (file, pam, ldap, ...)"));
		return NULL;
	}
	g_strstrip(module_name);
	mod = gh_auth_module_load(module_dir, module_name, &error);
	if (mod == NULL) {
		add_problem(problems, gh_key_file_problem(set->config_path, group, "module", "%s",
							  error->message));
		return NULL;
	}
	if (!instance_check_keys(set, kf, group, mod, problems))
		return NULL;

	inst = g_new0(GhAuthInstance, 1);
	inst->name = g_strdup(group + strlen("auth "));
	inst->module = mod;
	inst->set = set;
	g_mutex_init(&inst->serial);
	inst->host.struct_size = sizeof(GhAuthHost);
	inst->host.config_error = host_config_error;
	inst->host.data_changed = host_data_changed;
	inst->host.priv = inst;
	inst->host.route_valid = gh_route_valid;
	inst->host.helper_connect = host_helper_connect;
	inst->state = mod->init(&inst->host, kf, group, &error);
	if (inst->state == NULL && error != NULL) {
		/* a module that used host->config_error already says where */
		if (g_str_has_prefix(error->message, set->config_path))
			add_problem(problems, g_strdup(error->message));
		else
			add_problem(problems, gh_key_file_problem(set->config_path, group, NULL,
								  "module '%s': %s", mod->name,
								  error->message));
		instance_free(inst);
		return NULL;
	}
	return inst;
}

GhAuthSet *
gh_auth_set_new(GhAuthCore *core,
		GKeyFile *kf,
		const char *config_path,
		const char *module_dir,
		GPtrArray *problems)
{
	g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
	GhAuthSet *set = g_new0(GhAuthSet, 1);
	gboolean ok = TRUE;

	set->ref_count = 1;
	set->core = core;
	set->config_path = g_strdup(config_path);
	set->module_dir = g_strdup(module_dir);
	/* a verdict is cached for the set that gave it: a session of an older
	 * generation (accepted before a reload) never answers a newer one's */
	set->cache_prefix = g_strdup_printf("%d ", g_atomic_int_add(&set_serial, 1));
	set->instances = g_ptr_array_new_with_free_func(instance_free);
	for (guint i = 0; groups[i] != NULL; i++) {
		GhAuthInstance *inst;
		if (!g_str_has_prefix(groups[i], "auth "))
			continue;
		inst = instance_new(set, kf, groups[i], module_dir, problems);
		if (inst == NULL)
			ok = FALSE;
		else
			g_ptr_array_add(set->instances, inst);
	}
	if (!ok) {
		gh_auth_set_unref(set);
		return NULL;
	}
	return set;
}

GhAuthSet *
gh_auth_set_ref(GhAuthSet *set)
{
	g_atomic_int_inc(&set->ref_count);
	return set;
}

void
gh_auth_set_unref(GhAuthSet *set)
{
	if (set == NULL || !g_atomic_int_dec_and_test(&set->ref_count))
		return;
	g_ptr_array_unref(set->instances);
	g_free(set->config_path);
	g_free(set->module_dir);
	g_free(set->cache_prefix);
	g_free(set);
}

gboolean
gh_auth_set_has(GhAuthSet *set, const char *name)
{
	return set_find(set, name) != NULL;
}

void
gh_auth_set_refresh(GhAuthSet *set, gboolean force)
{
	for (guint i = 0; i < set->instances->len; i++) {
		GhAuthInstance *inst = g_ptr_array_index(set->instances, i);
		Job *job;
		if (inst->module->refresh == NULL)
			continue;
		if (!g_atomic_int_compare_and_exchange(&inst->refreshing, 0, 1))
			continue; /* one is queued or running already */
		job = g_new0(Job, 1);
		job->kind = JOB_REFRESH;
		job->set = gh_auth_set_ref(set);
		job->inst = inst;
		job->force = force;
		if (!core_push(set->core, job)) {
			g_atomic_int_set(&inst->refreshing, 0);
			gh_auth_set_unref(set);
			g_free(job);
		}
	}
}

/* ----------------------------------------------------------- verification */

GhAuthPending *
gh_auth_verify_async(GhAuthSet *set,
		     const char *const *chain,
		     const GhAuthRequest *request,
		     guint flags,
		     GMainContext *context,
		     GhAuthDone callback,
		     gpointer user_data)
{
	GhAuthCore *core = set->core;
	GhAuthPending *p = g_new0(GhAuthPending, 1);
	GhCacheEntry hit = {0};

	p->ref_count = 1; /* the owner's */
	p->set = gh_auth_set_ref(set);
	{
		/* "SERIAL name name ...": the chain's cache key */
		GString *key = g_string_sized_new(64);
		g_string_append(key, set->cache_prefix);
		for (guint i = 0; chain != NULL && chain[i] != NULL; i++) {
			if (i > 0)
				g_string_append_c(key, ' ');
			g_string_append(key, chain[i]);
		}
		p->chain_key = g_string_free(key, FALSE);
	}
	p->flags = flags;
	/* what a cache hit needs (the outcome's user, the penalty's address);
	 * the rest of the request is copied only for a job */
	p->user = g_strdup(request->user);
	p->service = g_strdup(request->service);
	p->remote_addr = g_strdup(request->remote_addr);
	p->remote_port = request->remote_port;
	p->local_port = request->local_port;
	p->tls = request->tls;
	p->password = gh_secret_new(request->password != NULL ? request->password : "",
				    request->password != NULL ? request->password_len : 0);
	p->context = g_main_context_ref(context != NULL ? context : g_main_context_default());
	p->callback = callback;
	p->user_data = user_data;
	p->start_us = g_get_monotonic_time();

	if (!(flags & GH_AUTH_VERIFY_NO_CACHE))
		gh_cache_make_key(core->cache, p->chain_key, p->service, p->user, request->password,
				  request->password != NULL ? request->password_len : 0, &p->key);
	if (!(flags & GH_AUTH_VERIFY_NO_CACHE) &&
	    gh_cache_lookup(core->cache, &p->key, p->start_us, &hit)) {
		p->verdict = hit.verdict;
		p->instance = g_steal_pointer(&hit.module);
		p->module = g_steal_pointer(&hit.module_type);
		p->canonical_user = g_steal_pointer(&hit.canonical_user);
		p->route = g_steal_pointer(&hit.route);
		p->reason = g_steal_pointer(&hit.reason);
		p->cached = TRUE;
		p->decided = TRUE;
		gh_cache_entry_clear(&hit);
		pending_conclude(p);
		pending_hand_back(pending_ref(p));
		return p;
	}

	p->chain = g_strdupv((char **)chain);
	p->listener = g_strdup(request->listener);
	p->local_addr = g_strdup(request->local_addr);
	p->session_id = g_strdup(request->session_id);
	/* identical requests join the one being checked, where the cache
	 * would have answered them had it come a moment later */
	if (!(flags & GH_AUTH_VERIFY_NO_CACHE) && gh_cache_keeps(core->cache, -1) &&
	    flight_join(core, p))
		return p;
	submit(core, p, TRUE);
	return p;
}

gboolean
gh_auth_pending_decided(const GhAuthPending *p)
{
	return p != NULL && p->decided;
}

void
gh_auth_pending_cancel(GhAuthPending *p)
{
	if (p == NULL || p->finished)
		return;
	g_atomic_int_set(&p->cancelled, 1);
	p->finished = TRUE;
	if (gh_timer_running(&p->timer)) {
		gh_timer_stop(&p->timer);
		pending_unref(p); /* the timer's */
	}
	pending_unref(p); /* the owner reference */
}
