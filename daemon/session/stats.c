/*
 * stats.c: one worker's counters (see stats.h).
 *
 * A series is a hash table entry: the key is the family number as one byte
 * followed by each label value and a unit separator (0x1f), the value a
 * guint64.  Label values are names from the configuration and fixed words,
 * which hold no 0x1f (the config loader refuses control characters in
 * names), so the key splits back into its values unambiguously.
 */
#include "gh-build.h"

#include "session/stats.h"

#include <stdarg.h>
#include <string.h>

#define SEP '\x1f'
#define MAX_LABELS 4

static const guint family_labels[GH_STAT_N_FAMILIES] = {
    [GH_STAT_CONNECTIONS] = 2, [GH_STAT_LOGINS] = 4,   [GH_STAT_BACKEND_FAILURES] = 2,
    [GH_STAT_RELAY_BYTES] = 2, [GH_STAT_KICKED] = 1,   [GH_STAT_WARM_TAKES] = 2,
    [GH_STAT_WARM_KEPT] = 1,   [GH_STAT_SESSIONS] = 3,
};

/* from half a millisecond (a cache hit) to ten seconds (a directory timing out) */
const double gh_stats_auth_bounds[GH_STATS_AUTH_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
};

struct _GhStats {
	GHashTable *series;                              /* key (owned) -> guint64* (owned) */
	guint64 auth_buckets[GH_STATS_AUTH_BUCKETS + 1]; /* not cumulative; last: +Inf */
	gint64 auth_sum_us;
};

guint
gh_stats_family_labels(GhStatFamily family)
{
	g_return_val_if_fail(family < GH_STAT_N_FAMILIES, 0);
	return family_labels[family];
}

GhStats *
gh_stats_new(void)
{
	GhStats *st = g_new0(GhStats, 1);
	st->series = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	return st;
}

void
gh_stats_free(GhStats *st)
{
	if (st == NULL)
		return;
	g_hash_table_unref(st->series);
	g_free(st);
}

static void
add_key(GhStats *st, const char *key, guint64 n)
{
	guint64 *v = g_hash_table_lookup(st->series, key);
	if (v == NULL) {
		v = g_new0(guint64, 1);
		g_hash_table_insert(st->series, g_strdup(key), v);
	}
	*v += n;
}

GhStats *
gh_stats_copy(const GhStats *st)
{
	GhStats *c = gh_stats_new();
	gh_stats_merge(c, st);
	return c;
}

void
gh_stats_merge(GhStats *into, const GhStats *from)
{
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, from->series);
	while (g_hash_table_iter_next(&it, &k, &v))
		add_key(into, k, *(guint64 *)v);
	for (guint i = 0; i <= GH_STATS_AUTH_BUCKETS; i++)
		into->auth_buckets[i] += from->auth_buckets[i];
	into->auth_sum_us += from->auth_sum_us;
}

void
gh_stats_add(GhStats *st, GhStatFamily family, guint64 n, ...)
{
	char key[512];
	gsize len = 0;
	va_list ap;

	g_return_if_fail(family < GH_STAT_N_FAMILIES);
	key[len++] = (char)('A' + family);
	va_start(ap, n);
	for (guint i = 0; i < family_labels[family]; i++) {
		const char *v = va_arg(ap, const char *);
		gsize vl = v != NULL ? strlen(v) : 0;
		/* names longer than this are refused by the config loader long
		 * before; cut rather than overflow */
		vl = MIN(vl, (sizeof key - 2 - len) / (family_labels[family] - i) - 1);
		memcpy(key + len, v != NULL ? v : "", vl);
		len += vl;
		key[len++] = SEP;
	}
	va_end(ap);
	key[len] = '\0';
	add_key(st, key, n);
}

void
gh_stats_observe_auth(GhStats *st, gint64 us)
{
	double s = (double)MAX(us, 0) / G_USEC_PER_SEC;
	guint i = 0;
	while (i < GH_STATS_AUTH_BUCKETS && s > gh_stats_auth_bounds[i])
		i++;
	st->auth_buckets[i]++;
	st->auth_sum_us += MAX(us, 0);
}

static int
compare_keys(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void
gh_stats_foreach(const GhStats *st, GhStatFamily family, GhStatsFunc func, gpointer data)
{
	g_autoptr(GPtrArray) keys = g_ptr_array_new();
	GHashTableIter it;
	gpointer k, v;

	g_return_if_fail(family < GH_STAT_N_FAMILIES);
	g_hash_table_iter_init(&it, st->series);
	while (g_hash_table_iter_next(&it, &k, &v))
		if (((const char *)k)[0] == (char)('A' + family))
			g_ptr_array_add(keys, k);
	g_ptr_array_sort(keys, compare_keys);
	for (guint i = 0; i < keys->len; i++) {
		const char *key = g_ptr_array_index(keys, i);
		char copy[512];
		const char *labels[MAX_LABELS + 1] = {NULL};
		char *p = copy;
		g_strlcpy(copy, key + 1, sizeof copy);
		for (guint j = 0; j < family_labels[family] && j < MAX_LABELS; j++) {
			char *end = strchr(p, SEP);
			labels[j] = p;
			if (end == NULL)
				break;
			*end = '\0';
			p = end + 1;
		}
		func(labels, *(guint64 *)g_hash_table_lookup(st->series, key), data);
	}
}

typedef struct {
	const char *first;
	guint64 sum;
} SumData;

static void
sum_one(const char *const *labels, guint64 value, gpointer data)
{
	SumData *d = data;
	if (d->first == NULL || g_strcmp0(labels[0], d->first) == 0)
		d->sum += value;
}

guint64
gh_stats_sum(const GhStats *st, GhStatFamily family, const char *first)
{
	SumData d = {first, 0};
	gh_stats_foreach(st, family, sum_one, &d);
	return d.sum;
}

void
gh_stats_auth_histogram(const GhStats *st,
			guint64 counts[GH_STATS_AUTH_BUCKETS + 1],
			double *sum_seconds)
{
	guint64 acc = 0;
	for (guint i = 0; i <= GH_STATS_AUTH_BUCKETS; i++) {
		acc += st->auth_buckets[i];
		counts[i] = acc;
	}
	*sum_seconds = (double)st->auth_sum_us / G_USEC_PER_SEC;
}
