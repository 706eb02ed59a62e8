/*
 * fuzz-common.c: what fuzz.h declares for every libFuzzer target of
 * tests/fuzz/ and is too big for a header: the one LLVMFuzzerInitialize,
 * which makes GLib's criticals fatal (a g_return_if_fail is a bug found;
 * the input that did it is written like any crash's),
 * keeps the log quiet and calls the target's fuzz_setup if it has one, and
 * the scratch folder of fuzz_scratch_file, removed at exit.
 */
#include "gh-build.h"

#include "fuzz.h"

#include <glib/gstdio.h>

/* Weak: NULL in a target that has nothing to set up. */
void fuzz_setup(void) __attribute__((weak));

static char *scratch_dir;
static GPtrArray *scratch_files;

static void
fuzz_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
	(void)data;
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) {
		fprintf(stderr, "%s: %s\n", domain != NULL ? domain : "glib", message);
		/* abort() here rather than GLib's own G_BREAKPOINT: libFuzzer
		 * catches SIGABRT and writes the input that did it, SIGTRAP it
		 * does not */
		abort();
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* errors, criticals and warnings are printed and abort; messages,
	 * info and debug are dropped */
	g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_ERROR);
	g_log_set_default_handler(fuzz_log, NULL);
	if (fuzz_setup != NULL)
		fuzz_setup();
	return 0;
}

static void
scratch_cleanup(void)
{
	for (guint i = 0; i < scratch_files->len; i++)
		(void)g_unlink(g_ptr_array_index(scratch_files, i));
	(void)g_rmdir(scratch_dir);
}

char *
fuzz_scratch_file(const char *name, const char *contents)
{
	char *path;

	if (scratch_dir == NULL) {
		scratch_dir = g_dir_make_tmp("gh-fuzz-XXXXXX", NULL);
		FUZZ_CHECK(scratch_dir != NULL);
		scratch_files = g_ptr_array_new_with_free_func(g_free);
		atexit(scratch_cleanup);
	}
	path = g_build_filename(scratch_dir, name, NULL);
	FUZZ_CHECK(g_file_set_contents(path, contents, -1, NULL));
	g_ptr_array_add(scratch_files, g_strdup(path));
	return path;
}
