/*
 * badabi.c: a module that claims another ABI version; the core must refuse
 * it before calling anything in it.
 */
#include <glib.h>
#include <gmodule.h>

#include "gh-auth-module.h"

static gpointer
bad_init(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	g_error("badabi: init must never be called");
	return NULL;
}

static GhAuthVerdict
bad_verify(gpointer state, const GhAuthRequest *req, GhAuthResult *res)
{
	g_error("badabi: verify must never be called");
	return GH_AUTH_TEMPFAIL;
}

G_MODULE_EXPORT const GhAuthModule gh_auth_module = {
    .abi_version = 999,
    .struct_size = sizeof(GhAuthModule),
    .name = "badabi",
    .init = bad_init,
    .verify = bad_verify,
};
