/*
 * fake.c: an auth module for the core's unit tests, with verdicts the test
 * sets through its configuration keys:
 *   users = NAME:PASSWORD[:ROUTE] ...   known users
 *   tempfail = yes                      every request gets TEMPFAIL
 *   delay_ms = N                        sleep in verify (it runs on a worker)
 *   canonical = PREFIX                  canonical user = PREFIX + user on OK
 *   fail_init = yes                     init fails through host->config_error
 * Exports gh_fake_calls() so tests can count how often verify ran.
 */
#include <glib.h>
#include <gmodule.h>
#include <string.h>

#include "gh-auth-module.h"

typedef struct {
	GHashTable *users; /* name -> "password\0route" */
	gboolean tempfail;
	guint delay_ms;
	char *canonical;
} Fake;

static gint calls;

/* the daemon's config accepts yes/no as well as GKeyFile's true/false */
static gboolean
flag(GKeyFile *kf, const char *group, const char *key)
{
	g_autofree char *v = g_key_file_get_string(kf, group, key, NULL);
	return v != NULL && (g_ascii_strcasecmp(v, "yes") == 0 ||
			     g_ascii_strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

G_MODULE_EXPORT guint gh_fake_calls(void);

guint
gh_fake_calls(void)
{
	return (guint)g_atomic_int_get(&calls);
}

static gpointer
fake_init(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	Fake *f;
	g_auto(GStrv) users = NULL;
	g_autofree char *list = g_key_file_get_string(kf, group, "users", NULL);

	if (flag(kf, group, "fail_init")) {
		host->config_error(host, error, group, "fail_init", "asked to fail");
		return NULL;
	}
	f = g_new0(Fake, 1);
	f->users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	f->tempfail = flag(kf, group, "tempfail");
	f->delay_ms = (guint)g_key_file_get_integer(kf, group, "delay_ms", NULL);
	f->canonical = g_key_file_get_string(kf, group, "canonical", NULL);
	users = g_strsplit(list != NULL ? list : "", " ", -1);
	for (guint i = 0; users[i] != NULL; i++) {
		g_auto(GStrv) parts = g_strsplit(users[i], ":", 3);
		if (parts[0] == NULL || parts[1] == NULL)
			continue;
		g_hash_table_insert(
		    f->users, g_strdup(parts[0]),
		    g_strdup_printf("%s%c%s", parts[1], 0, parts[2] ? parts[2] : ""));
	}
	return f;
}

static GhAuthVerdict
fake_verify(gpointer state, const GhAuthRequest *req, GhAuthResult *res)
{
	Fake *f = state;
	const char *entry;

	g_atomic_int_inc(&calls);
	if (f->delay_ms > 0)
		g_usleep(f->delay_ms * 1000);
	if (f->tempfail) {
		res->reason = g_strdup("fake back end down");
		return GH_AUTH_TEMPFAIL;
	}
	entry = g_hash_table_lookup(f->users, req->user);
	if (entry == NULL) {
		res->reason = g_strdup("unknown user");
		return GH_AUTH_UNKNOWN_USER;
	}
	if (!gh_auth_secure_equal(entry, strlen(entry), req->password, req->password_len)) {
		res->reason = g_strdup("wrong password");
		return GH_AUTH_WRONG_PASSWORD;
	}
	if (entry[strlen(entry) + 1] != '\0')
		res->route = g_strdup(entry + strlen(entry) + 1);
	if (f->canonical != NULL)
		res->canonical_user = g_strconcat(f->canonical, req->user, NULL);
	return GH_AUTH_OK;
}

static void
fake_deinit(gpointer state)
{
	Fake *f = state;
	g_hash_table_unref(f->users);
	g_free(f->canonical);
	g_free(f);
}

static const char *const fake_keys[] = {"users",     "tempfail",  "delay_ms",
					"canonical", "fail_init", NULL};

G_MODULE_EXPORT const GhAuthModule gh_auth_module = {
    .abi_version = GH_AUTH_MODULE_ABI,
    .struct_size = sizeof(GhAuthModule),
    .name = "fake",
    .flags = GH_AUTH_MODULE_THREAD_SAFE,
    .keys = fake_keys,
    .init = fake_init,
    .verify = fake_verify,
    .deinit = fake_deinit,
};
