/*
 * penalty.c: the failed-login delay per remote address (see penalty.h).
 *
 * The shape follows Dovecot's auth-penalty: a counter per address that grows
 * with each failure and is forgotten after a quiet window, with the last
 * failed password remembered (as an HMAC) so that a client retrying the same
 * wrong password does not escalate.
 *
 * Invariants:
 *  - the key of an address is "4:a.b.c.d" for IPv4 (IPv4-mapped IPv6 counts
 *    as IPv4: a dual-stack listener must not lump every IPv4 client into
 *    ::ffff:0:0/48), "6:xxxx:xxxx:xxxx::/48" for IPv6, and "?:" followed by
 *    the text itself for anything else, so no two kinds can collide;
 *  - no password is kept, only HMAC-SHA256 under a key drawn at random when
 *    the table is made;
 *  - every node is in the table and in the queue, or in neither; the queue
 *    runs from the most recent failure (head) to the oldest (tail), which is
 *    evicted first when the table is full;
 *  - a node whose last failure is GH_PENALTY_WINDOW_US old or more counts as
 *    absent (gh_penalty_size() does not count it either); by the order of
 *    the queue such nodes gather at its tail (callers on several threads
 *    read the clock before taking the lock, so the order may be off by the
 *    microseconds between: harmless for a 15-minute window);
 *  - everything is under `lock`, except computing HMACs and keys.
 *
 * max_addresses 0 keeps no state: every failure then gets the base delay.
 */
#include "gh-build.h"

#include "penalty.h"
#include "common/random.h"
#include "gh-auth-module.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gio/gio.h>
#include <string.h>

#define GH_PENALTY_MAC_LEN 32
/* An address with no failure for this long starts afresh. */
#define GH_PENALTY_WINDOW_US ((gint64)15 * 60 * G_USEC_PER_SEC)
/* The delay never exceeds max(base, this). */
#define GH_PENALTY_CAP_S 15
/* Enough doublings to reach any cap; stops the counter from growing forever. */
#define GH_PENALTY_MAX_COUNT 32

typedef struct {
	char *key;
	guint failures;
	gint64 last_us;
	guint8 pw_mac[GH_PENALTY_MAC_LEN];
	GList link; /* in GhPenalty.order; link.data is the node */
} PenaltyNode;

struct _GhPenalty {
	GMutex lock;
	GHashTable *table; /* key -> PenaltyNode (the node owns the key) */
	GQueue order;      /* head: most recent failure */
	guint base_s;
	guint max_addresses;
	guint8 pw_key[GH_PENALTY_MAC_LEN];
};

static void
password_mac(const GhPenalty *penalty, const char *password, gsize len, guint8 *out)
{
	GHmac *hmac = g_hmac_new(G_CHECKSUM_SHA256, penalty->pw_key, sizeof penalty->pw_key);
	gsize out_len = GH_PENALTY_MAC_LEN;

	if (len > 0)
		g_hmac_update(hmac, (const guchar *)password, (gssize)len);
	g_hmac_get_digest(hmac, out, &out_len);
	g_assert(out_len == GH_PENALTY_MAC_LEN);
	g_hmac_unref(hmac);
}

static gboolean
is_ipv4_mapped(const guint8 *b)
{
	static const guint8 prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(b, prefix, sizeof prefix) == 0;
}

/* "4:a.b.c.d" for the IPv4 address in b[0..3] (transfer full): on every
 * login, so without printf */
static char *
ipv4_key(const guint8 *b)
{
	char buf[sizeof "4:255.255.255.255"];
	char *p = buf;
	*p++ = '4';
	*p++ = ':';
	for (int i = 0; i < 4; i++) {
		guint v = b[i];
		if (i > 0)
			*p++ = '.';
		if (v >= 100)
			*p++ = (char)('0' + v / 100);
		if (v >= 10)
			*p++ = (char)('0' + v / 10 % 10);
		*p++ = (char)('0' + v % 10);
	}
	return g_strndup(buf, (gsize)(p - buf));
}

/* The table key for a remote address (transfer full). */
static char *
address_key(const char *remote)
{
	g_autoptr(GInetAddress) addr = NULL;
	guint8 raw[16];
	const guint8 *b;

	if (remote == NULL)
		remote = "";
	/* the common case, a plain IPv4 address, without a GObject */
	if (inet_pton(AF_INET, remote, raw) == 1)
		return ipv4_key(raw);
	addr = g_inet_address_new_from_string(remote);
	if (addr == NULL)
		return g_strconcat("?:", remote, NULL);
	b = g_inet_address_to_bytes(addr);
	if (g_inet_address_get_family(addr) == G_SOCKET_FAMILY_IPV4)
		return ipv4_key(b);
	/* ::ffff:a.b.c.d (RFC 4291 2.5.5.2) is an IPv4 client. */
	if (is_ipv4_mapped(b))
		return ipv4_key(b + 12);
	/* A /48 is what one site usually gets: a client can hop across the
	 * /64s inside it at will, so they share one counter. */
	return g_strdup_printf("6:%02x%02x:%02x%02x:%02x%02x::/48", b[0], b[1], b[2], b[3], b[4],
			       b[5]);
}

/* base, 2*base, 4*base, ... capped at max(base, 15 s); 0 without failures. */
static guint
delay_ms(guint base_s, guint failures)
{
	guint64 cap = (guint64)MAX(base_s, GH_PENALTY_CAP_S) * 1000;
	guint64 d = (guint64)base_s * 1000;

	if (failures == 0 || base_s == 0)
		return 0;
	for (guint i = 1; i < failures && d < cap; i++)
		d *= 2;
	/* A base of millions of seconds would not fit in guint ms. */
	return (guint)MIN(MIN(d, cap), G_MAXUINT);
}

static gboolean
node_is_stale(const PenaltyNode *node, gint64 now_us)
{
	return now_us - node->last_us >= GH_PENALTY_WINDOW_US;
}

static void
node_free(PenaltyNode *node)
{
	g_free(node->key);
	g_free(node);
}

/* Unlink and free a node.  Lock held. */
static void
node_remove(GhPenalty *penalty, PenaltyNode *node)
{
	g_hash_table_remove(penalty->table, node->key);
	g_queue_unlink(&penalty->order, &node->link);
	node_free(node);
}

GhPenalty *
gh_penalty_new(guint base_delay_s, guint max_addresses)
{
	GhPenalty *penalty = g_new0(GhPenalty, 1);

	g_mutex_init(&penalty->lock);
	penalty->table = g_hash_table_new(g_str_hash, g_str_equal);
	g_queue_init(&penalty->order);
	penalty->base_s = base_delay_s;
	penalty->max_addresses = max_addresses;
	gh_random_fill(penalty->pw_key, sizeof penalty->pw_key);
	return penalty;
}

void
gh_penalty_free(GhPenalty *penalty)
{
	if (penalty == NULL)
		return;
	while (penalty->order.tail != NULL)
		node_remove(penalty, penalty->order.tail->data);
	g_hash_table_unref(penalty->table);
	g_mutex_clear(&penalty->lock);
	explicit_bzero(penalty->pw_key, sizeof penalty->pw_key);
	g_free(penalty);
}

void
gh_penalty_set_base(GhPenalty *penalty, guint base_delay_s)
{
	g_return_if_fail(penalty != NULL);

	g_mutex_lock(&penalty->lock);
	penalty->base_s = base_delay_s;
	g_mutex_unlock(&penalty->lock);
}

guint
gh_penalty_fail(
    GhPenalty *penalty, const char *remote, const char *password, gsize password_len, gint64 now_us)
{
	g_autofree char *key = NULL;
	guint8 mac[GH_PENALTY_MAC_LEN];
	PenaltyNode *node;
	guint base;
	guint delay;

	g_return_val_if_fail(penalty != NULL, 0);
	g_return_val_if_fail(password != NULL || password_len == 0, 0);

	g_mutex_lock(&penalty->lock);
	base = penalty->base_s;
	g_mutex_unlock(&penalty->lock);
	/* Penalties off (tests): nothing to remember. */
	if (base == 0)
		return 0;

	key = address_key(remote);
	password_mac(penalty, password, password_len, mac);

	g_mutex_lock(&penalty->lock);
	base = penalty->base_s;
	if (penalty->max_addresses == 0) {
		delay = delay_ms(base, 1);
		g_mutex_unlock(&penalty->lock);
		explicit_bzero(mac, sizeof mac);
		return delay;
	}
	node = g_hash_table_lookup(penalty->table, key);
	if (node != NULL && node_is_stale(node, now_us)) {
		node_remove(penalty, node);
		node = NULL;
	}
	if (node == NULL) {
		while (penalty->order.length >= penalty->max_addresses)
			node_remove(penalty, penalty->order.tail->data);
		node = g_new0(PenaltyNode, 1);
		node->key = g_steal_pointer(&key);
		node->link.data = node;
		node->failures = 1;
		g_hash_table_insert(penalty->table, node->key, node);
	} else {
		g_queue_unlink(&penalty->order, &node->link);
		/* The password that just failed, once more, is a client with a
		 * stale saved password rather than a guesser: no escalation. */
		if (!gh_auth_secure_equal(node->pw_mac, sizeof node->pw_mac, mac, sizeof mac) &&
		    node->failures < GH_PENALTY_MAX_COUNT)
			node->failures++;
	}
	memcpy(node->pw_mac, mac, sizeof node->pw_mac);
	node->last_us = now_us;
	g_queue_push_head_link(&penalty->order, &node->link);
	delay = delay_ms(base, node->failures);
	g_mutex_unlock(&penalty->lock);
	explicit_bzero(mac, sizeof mac);
	return delay;
}

void
gh_penalty_success(GhPenalty *penalty, const char *remote)
{
	g_autofree char *key = NULL;
	PenaltyNode *node;

	g_return_if_fail(penalty != NULL);

	key = address_key(remote);
	g_mutex_lock(&penalty->lock);
	node = g_hash_table_lookup(penalty->table, key);
	if (node != NULL)
		node_remove(penalty, node);
	g_mutex_unlock(&penalty->lock);
}

guint
gh_penalty_size(GhPenalty *penalty, gint64 now_us)
{
	guint n;

	g_return_val_if_fail(penalty != NULL, 0);

	g_mutex_lock(&penalty->lock);
	/* The stale nodes are the oldest: drop them from the tail, and what
	 * remains is the addresses that still have a penalty. */
	while (penalty->order.tail != NULL && node_is_stale(penalty->order.tail->data, now_us))
		node_remove(penalty, penalty->order.tail->data);
	n = penalty->order.length;
	g_mutex_unlock(&penalty->lock);
	return n;
}

/* The failures counted for `remote` within the quiet window (a stale
 * entry goes).  Under the lock. */
static guint
failures_locked(GhPenalty *penalty, const char *remote, gint64 now_us)
{
	g_autofree char *key = address_key(remote);
	PenaltyNode *node = g_hash_table_lookup(penalty->table, key);

	if (node != NULL && node_is_stale(node, now_us)) {
		node_remove(penalty, node);
		node = NULL;
	}
	return node != NULL ? node->failures : 0;
}

guint
gh_penalty_peek(GhPenalty *penalty, const char *remote, gint64 now_us)
{
	guint failures, delay;

	g_return_val_if_fail(penalty != NULL, 0);

	g_mutex_lock(&penalty->lock);
	failures = failures_locked(penalty, remote, now_us);
	/* The next failure with another password than the last one. */
	delay = delay_ms(penalty->base_s, MIN(failures + 1, GH_PENALTY_MAX_COUNT));
	g_mutex_unlock(&penalty->lock);
	return delay;
}

guint
gh_penalty_failures(GhPenalty *penalty, const char *remote, gint64 now_us)
{
	guint failures;

	g_return_val_if_fail(penalty != NULL, 0);

	g_mutex_lock(&penalty->lock);
	failures = failures_locked(penalty, remote, now_us);
	g_mutex_unlock(&penalty->lock);
	return failures;
}
