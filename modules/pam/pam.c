/*
 * pam.c: the `pam` auth module (skeleton: being written; every request gets
 * TEMPFAIL until it is).
 */
#include "gh-build.h"

#include <glib.h>
#include <gmodule.h>

#include "gh-auth-module.h"

static gpointer
pam_init(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	(void)host;
	(void)kf;
	(void)group;
	(void)error;
	return g_new0(char, 1);
}

static GhAuthVerdict
pam_verify(gpointer state, const GhAuthRequest *req, GhAuthResult *res)
{
	(void)state;
	(void)req;
	res->reason = g_strdup("not implemented yet");
	return GH_AUTH_TEMPFAIL;
}

static void
pam_deinit(gpointer state)
{
	g_free(state);
}

static const char *const pam_keys[] = {NULL};

G_MODULE_EXPORT const GhAuthModule gh_auth_module = {
    .abi_version = GH_AUTH_MODULE_ABI,
    .struct_size = sizeof(GhAuthModule),
    .name = "pam",
    .flags = GH_AUTH_MODULE_THREAD_SAFE,
    .keys = pam_keys,
    .init = pam_init,
    .verify = pam_verify,
    .deinit = pam_deinit,
};
