/*
 * module-loader.c: finds, loads and checks auth modules.
 *
 * A module is DIR/NAME.so exporting `gh_auth_module`.  It is opened with
 * G_MODULE_BIND_LOCAL and without LAZY, so that a module with an unresolved
 * symbol fails here (and `gatehoused -t` reports it) instead of in the middle
 * of a login.  The first two fields of the descriptor (ABI version, struct
 * size) are checked before anything else is read.  A loaded module is made
 * resident and never unloaded: worker threads may be inside it at any time.
 *
 * Each path is loaded once per process; the table of loaded modules is
 * protected by a mutex, so loading from several threads is safe.
 */
#include "gh-build.h"

#include "gh-auth.h"
#include "module-loader.h"

#include <string.h>

G_DEFINE_QUARK(gh - module - error - quark, gh_module_error)

static GMutex loaded_lock;
static GHashTable *loaded; /* path -> const GhAuthModule* */

gboolean
gh_auth_module_name_valid(const char *name)
{
	gsize len = name != NULL ? strlen(name) : 0;
	if (len == 0 || len > 64)
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		char c = name[i];
		if (!(g_ascii_islower(c) || g_ascii_isdigit(c) || c == '_' || c == '-'))
			return FALSE;
	}
	return TRUE;
}

static const GhAuthModule *
check_descriptor(const char *name, const char *path, gconstpointer sym, GError **error)
{
	/* Read only the two fields that never move until they say the rest can
	 * be trusted. */
	const guint32 *head = sym;
	const GhAuthModule *mod = sym;

	if (head[0] != GH_AUTH_MODULE_ABI) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_ABI,
			    "module '%s' (%s) was built for module ABI version %u, but this "
			    "gatehouse needs ABI version %u: rebuild the module against this "
			    "version's gh-auth-module.h",
			    name, path, head[0], (guint)GH_AUTH_MODULE_ABI);
		return NULL;
	}
	if (head[1] < sizeof(GhAuthModule)) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_ABI,
			    "module '%s' (%s) has a descriptor of %u bytes, expected %u: "
			    "rebuild the module against this version's gh-auth-module.h",
			    name, path, head[1], (guint)sizeof(GhAuthModule));
		return NULL;
	}
	if (mod->name == NULL || g_strcmp0(mod->name, name) != 0) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_LOAD,
			    "module file %s calls itself '%s', expected '%s'", path,
			    mod->name != NULL ? mod->name : "(null)", name);
		return NULL;
	}
	if (mod->init == NULL || mod->verify == NULL) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_LOAD,
			    "module '%s' (%s) lacks an init or verify function", name, path);
		return NULL;
	}
	return mod;
}

const GhAuthModule *
gh_auth_module_load(const char *dir, const char *name, GError **error)
{
	g_autofree char *file = NULL;
	g_autofree char *path = NULL;
	g_autoptr(GMutexLocker) locker = NULL;
	const GhAuthModule *mod;
	GModule *gmod;
	gpointer sym = NULL;

	if (!gh_auth_module_name_valid(name)) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_NOT_FOUND,
			    "'%s' is not a module name (lower-case letters, digits, '-', '_')",
			    name != NULL ? name : "");
		return NULL;
	}
	file = g_strconcat(name, ".so", NULL);
	path = g_build_filename(dir, file, NULL);

	locker = g_mutex_locker_new(&loaded_lock);
	if (loaded == NULL)
		loaded = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	mod = g_hash_table_lookup(loaded, path);
	if (mod != NULL)
		return mod;

	if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_NOT_FOUND,
			    "module '%s' not found: no file %s (see module_dir)", name, path);
		return NULL;
	}
	gmod = g_module_open(path, G_MODULE_BIND_LOCAL);
	if (gmod == NULL) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_LOAD,
			    "cannot load module '%s': %s", name, g_module_error());
		return NULL;
	}
	if (!g_module_symbol(gmod, "gh_auth_module", &sym) || sym == NULL) {
		g_set_error(error, GH_MODULE_ERROR, GH_MODULE_ERROR_LOAD,
			    "%s is not a gatehouse auth module: it has no gh_auth_module symbol",
			    path);
		g_module_close(gmod);
		return NULL;
	}
	mod = check_descriptor(name, path, sym, error);
	if (mod == NULL) {
		g_module_close(gmod);
		return NULL;
	}
	g_module_make_resident(gmod);
	g_hash_table_insert(loaded, g_steal_pointer(&path), (gpointer)mod);
	return mod;
}
