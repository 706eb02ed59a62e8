/*
 * cache.c: the verdict cache of the authentication core (see cache.h).
 *
 * A hash table finds a node by its id; an intrusive queue orders the nodes
 * from the most recently used (head) to the least (tail), which goes first
 * when the cache is full.
 *
 * Invariants:
 *  - no password and no password-derived value other than an HMAC-SHA256
 *    under pw_key (32 random bytes drawn when the cache is made) is kept;
 *  - a node's id is two SipHash-2-4 values (128 bits), under the two
 *    halves of id_key, of the length-prefixed join of chain, service and
 *    user: unambiguous, and since the table hashes the id, a client cannot
 *    pick user names that collide in the table (g_str_hash on a plain
 *    string is easy to flood), nor two names with one id (a keyed PRF with
 *    128 bits of output); SipHash, not HMAC, because it runs on every
 *    login and the id guards no secret: the password's MAC stays an
 *    HMAC-SHA256;
 *  - a node also keeps the user of its key in plain, as the client gave it
 *    (not a secret, no more than the canonical user next to it): only
 *    gh_cache_flush_user() reads it, walking the queue, never the table;
 *  - every node is in the table and in the queue, or in neither;
 *  - a node's time to live is read from the current limits at lookup, so
 *    gh_cache_set_limits() also shortens (or disables) entries already in;
 *  - hits + misses is the number of lookups made while max_entries > 0:
 *    a lookup of a disabled cache is no lookup and counts as neither;
 *  - everything is under `lock`, except computing HMACs, which only reads
 *    keys fixed at creation.
 */
#include "gh-build.h"

#include "cache.h"
#include "common/line.h"
#include "common/random.h"
#include "common/siphash.h"

#include <errno.h>
#include <nettle/hmac.h>
#include <string.h>

#define GH_CACHE_MAC_LEN 32
#define GH_CACHE_ID_LEN 16

typedef struct {
	guint8 id[GH_CACHE_ID_LEN];
	guint8 pw_mac[GH_CACHE_MAC_LEN];
	gint64 stored_us;
	char *user; /* of the key, as the client gave it */
	GhCacheEntry entry;
	GList link; /* in GhCache.lru; link.data is the node */
} CacheNode;

struct _GhCache {
	GMutex lock;
	GHashTable *table; /* id -> CacheNode (the node owns the id) */
	GQueue lru;        /* head: most recently used */
	guint max_entries;
	guint positive_ttl_s;
	guint negative_ttl_s;
	guint64 hits;   /* lookups answered, since the cache was made */
	guint64 misses; /* lookups not answered */
	guint8 id_key[2 * GH_SIPHASH_KEY_LEN];
	guint8 pw_key[GH_CACHE_MAC_LEN];
	/* nettle's HMAC state keyed once with pw_key: each MAC starts from a
	 * copy, without hashing the key again */
	struct hmac_sha256_ctx pw_mac;
};

static void
hmac_sha256(const struct hmac_sha256_ctx *keyed, const void *data, gsize len, guint8 *out)
{
	/* on every login: nettle straight from a keyed state costs about a
	 * tenth of gnutls_hmac_fast, which allocates a context and hashes the
	 * key each time */
	struct hmac_sha256_ctx ctx = *keyed;
	G_STATIC_ASSERT(GH_CACHE_MAC_LEN == SHA256_DIGEST_SIZE);
	if (len > 0)
		hmac_sha256_update(&ctx, len, data);
	hmac_sha256_digest(&ctx, GH_CACHE_MAC_LEN, out);
	explicit_bzero(&ctx, sizeof ctx);
}

static void
make_id(const GhCache *cache, const char *chain, const char *service, const char *user, guint8 *out)
{
	/* The lengths make the join unambiguous whatever bytes the names hold:
	 * "<len>:<chain>\x1f<len>:<service>\x1f<user>"; on the stack unless
	 * the names are long */
	gsize chain_len = strlen(chain), service_len = strlen(service), user_len = strlen(user);
	gsize max = 2 * GH_LINE_U64_MAX + chain_len + service_len + user_len + 4;
	char small[512];
	g_autofree char *big = max > sizeof small ? g_malloc(max) : NULL;
	char *j = big != NULL ? big : small;
	gsize n = 0;
	guint64 h[2];

	n += gh_line_format_u64(j + n, chain_len);
	j[n++] = ':';
	memcpy(j + n, chain, chain_len);
	n += chain_len;
	j[n++] = '\x1f';
	n += gh_line_format_u64(j + n, service_len);
	j[n++] = ':';
	memcpy(j + n, service, service_len);
	n += service_len;
	j[n++] = '\x1f';
	memcpy(j + n, user, user_len);
	n += user_len;
	g_assert(n <= max);
	h[0] = gh_siphash24(cache->id_key, j, n);
	h[1] = gh_siphash24(cache->id_key + GH_SIPHASH_KEY_LEN, j, n);
	G_STATIC_ASSERT(sizeof h == GH_CACHE_ID_LEN);
	memcpy(out, h, GH_CACHE_ID_LEN);
	explicit_bzero(j, n); /* the user name, not a secret, but no copies lying about */
}

static guint
id_hash(gconstpointer p)
{
	guint h;

	/* The id is already a keyed hash: any four of its bytes will do. */
	memcpy(&h, p, sizeof h);
	return h;
}

static gboolean
id_equal(gconstpointer a, gconstpointer b)
{
	return memcmp(a, b, GH_CACHE_ID_LEN) == 0;
}

static void
entry_copy(GhCacheEntry *dst, const GhCacheEntry *src)
{
	dst->verdict = src->verdict;
	dst->module = g_strdup(src->module);
	dst->module_type = g_strdup(src->module_type);
	dst->canonical_user = g_strdup(src->canonical_user);
	dst->route = g_strdup(src->route);
	dst->reason = g_strdup(src->reason);
}

void
gh_cache_entry_clear(GhCacheEntry *entry)
{
	if (entry == NULL)
		return;
	g_clear_pointer(&entry->module, g_free);
	g_clear_pointer(&entry->module_type, g_free);
	g_clear_pointer(&entry->canonical_user, g_free);
	g_clear_pointer(&entry->route, g_free);
	g_clear_pointer(&entry->reason, g_free);
}

static void
node_free(CacheNode *node)
{
	gh_cache_entry_clear(&node->entry);
	g_free(node->user);
	g_free(node);
}

/* Unlink and free a node.  Called with the lock held. */
static void
node_remove(GhCache *cache, CacheNode *node)
{
	g_hash_table_remove(cache->table, node->id);
	g_queue_unlink(&cache->lru, &node->link);
	node_free(node);
}

/* Drop least recently used nodes until at most max remain; returns how
 * many went.  Lock held. */
static guint
trim(GhCache *cache, guint max)
{
	guint n = 0;

	while (cache->lru.length > max) {
		node_remove(cache, cache->lru.tail->data);
		n++;
	}
	return n;
}

/* The time to live of a verdict under the current limits, 0 = not cached.
 * Lock held. */
static guint
ttl_for(const GhCache *cache, GhAuthVerdict verdict)
{
	switch (verdict) {
	case GH_AUTH_OK:
		return cache->positive_ttl_s;
	case GH_AUTH_WRONG_PASSWORD:
	case GH_AUTH_UNKNOWN_USER:
		return cache->negative_ttl_s;
	case GH_AUTH_TEMPFAIL:
		/* A back end that was down says nothing about the next try. */
		return 0;
	}
	return 0;
}

GhCache *
gh_cache_new(guint max_entries, guint positive_ttl_s, guint negative_ttl_s)
{
	GhCache *cache = g_new0(GhCache, 1);

	g_mutex_init(&cache->lock);
	cache->table = g_hash_table_new(id_hash, id_equal);
	g_queue_init(&cache->lru);
	cache->max_entries = max_entries;
	cache->positive_ttl_s = positive_ttl_s;
	cache->negative_ttl_s = negative_ttl_s;
	gh_random_fill(cache->id_key, sizeof cache->id_key);
	gh_random_fill(cache->pw_key, sizeof cache->pw_key);
	hmac_sha256_set_key(&cache->pw_mac, sizeof cache->pw_key, cache->pw_key);
	return cache;
}

void
gh_cache_free(GhCache *cache)
{
	if (cache == NULL)
		return;
	gh_cache_flush(cache);
	g_hash_table_unref(cache->table);
	g_mutex_clear(&cache->lock);
	explicit_bzero(cache->id_key, sizeof cache->id_key);
	explicit_bzero(cache->pw_key, sizeof cache->pw_key);
	explicit_bzero(&cache->pw_mac, sizeof cache->pw_mac);
	g_free(cache);
}

void
gh_cache_set_limits(GhCache *cache, guint max_entries, guint positive_ttl_s, guint negative_ttl_s)
{
	g_return_if_fail(cache != NULL);

	g_mutex_lock(&cache->lock);
	cache->max_entries = max_entries;
	cache->positive_ttl_s = positive_ttl_s;
	cache->negative_ttl_s = negative_ttl_s;
	trim(cache, max_entries);
	g_mutex_unlock(&cache->lock);
}

void
gh_cache_make_key(GhCache *cache,
		  const char *chain,
		  const char *service,
		  const char *user,
		  const char *password,
		  gsize password_len,
		  GhCacheKey *out)
{
	G_STATIC_ASSERT(sizeof out->id == GH_CACHE_ID_LEN);
	G_STATIC_ASSERT(sizeof out->pw_mac == GH_CACHE_MAC_LEN);
	g_return_if_fail(cache != NULL && out != NULL);
	g_return_if_fail(chain != NULL && service != NULL && user != NULL);
	g_return_if_fail(password != NULL || password_len == 0);
	make_id(cache, chain, service, user, out->id);
	hmac_sha256(&cache->pw_mac, password, password_len, out->pw_mac);
}

guint
gh_cache_key_hash(gconstpointer key)
{
	const GhCacheKey *k = key;
	guint h;

	/* the id is a keyed hash already */
	memcpy(&h, k->id, sizeof h);
	return h;
}

gboolean
gh_cache_key_equal(gconstpointer a, gconstpointer b)
{
	return gh_auth_secure_equal(a, sizeof(GhCacheKey), b, sizeof(GhCacheKey));
}

gboolean
gh_cache_keeps(GhCache *cache, int verdict)
{
	gboolean keeps;

	g_mutex_lock(&cache->lock);
	if (cache->max_entries == 0)
		keeps = FALSE;
	else if (verdict < 0)
		keeps = cache->positive_ttl_s > 0 || cache->negative_ttl_s > 0;
	else
		keeps = ttl_for(cache, (GhAuthVerdict)verdict) > 0;
	g_mutex_unlock(&cache->lock);
	return keeps;
}

gboolean
gh_cache_lookup(GhCache *cache, const GhCacheKey *key, gint64 now_us, GhCacheEntry *entry_out)
{
	CacheNode *node;
	gboolean hit = FALSE;

	g_return_val_if_fail(cache != NULL && key != NULL, FALSE);
	g_return_val_if_fail(entry_out != NULL, FALSE);

	memset(entry_out, 0, sizeof *entry_out);
	g_mutex_lock(&cache->lock);
	node = g_hash_table_lookup(cache->table, key->id);
	if (node != NULL) {
		gint64 ttl_us = (gint64)ttl_for(cache, node->entry.verdict) * G_USEC_PER_SEC;

		if (ttl_us == 0 || now_us - node->stored_us >= ttl_us) {
			node_remove(cache, node);
		} else if (gh_auth_secure_equal(node->pw_mac, sizeof node->pw_mac, key->pw_mac,
						sizeof key->pw_mac)) {
			/* Another password misses but keeps the node: the verdict
			 * that follows replaces it (Dovecot passdb-cache.c). */
			g_queue_unlink(&cache->lru, &node->link);
			g_queue_push_head_link(&cache->lru, &node->link);
			entry_copy(entry_out, &node->entry);
			hit = TRUE;
		}
	}
	/* A disabled cache holds nothing (set_limits emptied it), so it never
	 * hits; its misses are not counted either. */
	if (hit)
		cache->hits++;
	else if (cache->max_entries > 0)
		cache->misses++;
	g_mutex_unlock(&cache->lock);
	return hit;
}

void
gh_cache_store(GhCache *cache,
	       const GhCacheKey *key,
	       const char *user,
	       gint64 now_us,
	       const GhCacheEntry *entry)
{
	CacheNode *node;

	g_return_if_fail(cache != NULL && key != NULL && user != NULL);
	g_return_if_fail(entry != NULL);

	if (entry->verdict == GH_AUTH_TEMPFAIL)
		return;
	g_mutex_lock(&cache->lock);
	if (cache->max_entries > 0 && ttl_for(cache, entry->verdict) > 0) {
		node = g_hash_table_lookup(cache->table, key->id);
		if (node != NULL) {
			g_queue_unlink(&cache->lru, &node->link);
			gh_cache_entry_clear(&node->entry);
		} else {
			trim(cache, cache->max_entries - 1);
			node = g_new0(CacheNode, 1);
			memcpy(node->id, key->id, sizeof node->id);
			node->user = g_strdup(user);
			node->link.data = node;
			g_hash_table_insert(cache->table, node->id, node);
		}
		memcpy(node->pw_mac, key->pw_mac, sizeof node->pw_mac);
		node->stored_us = now_us;
		entry_copy(&node->entry, entry);
		g_queue_push_head_link(&cache->lru, &node->link);
	}
	g_mutex_unlock(&cache->lock);
}

guint
gh_cache_flush(GhCache *cache)
{
	guint n;

	g_return_val_if_fail(cache != NULL, 0);

	g_mutex_lock(&cache->lock);
	n = trim(cache, 0);
	g_mutex_unlock(&cache->lock);
	return n;
}

static gboolean
same_user(const char *a, const char *b)
{
	return a != NULL && g_ascii_strcasecmp(a, b) == 0;
}

guint
gh_cache_flush_user(GhCache *cache, const char *user)
{
	GList *l, *next;
	guint n = 0;

	g_return_val_if_fail(cache != NULL, 0);
	g_return_val_if_fail(user != NULL, 0);

	/* A walk of every node under the lock: an operator's command, rare
	 * next to the lookups it holds up. */
	g_mutex_lock(&cache->lock);
	for (l = cache->lru.head; l != NULL; l = next) {
		CacheNode *node = l->data;

		next = l->next;
		if (same_user(node->user, user) || same_user(node->entry.canonical_user, user)) {
			node_remove(cache, node);
			n++;
		}
	}
	g_mutex_unlock(&cache->lock);
	return n;
}

guint
gh_cache_size(GhCache *cache)
{
	guint n;

	g_return_val_if_fail(cache != NULL, 0);

	g_mutex_lock(&cache->lock);
	n = cache->lru.length;
	g_mutex_unlock(&cache->lock);
	return n;
}

void
gh_cache_counts(GhCache *cache, guint64 *hits, guint64 *misses)
{
	g_return_if_fail(cache != NULL);

	g_mutex_lock(&cache->lock);
	if (hits != NULL)
		*hits = cache->hits;
	if (misses != NULL)
		*misses = cache->misses;
	g_mutex_unlock(&cache->lock);
}
