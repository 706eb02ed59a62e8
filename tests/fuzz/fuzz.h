/*
 * fuzz.h: what every libFuzzer target of tests/fuzz/ shares: the entry
 * points' prototypes, FUZZ_CHECK for the invariants a target asserts (a
 * broken one prints where and aborts, which libFuzzer reports as a crash and
 * keeps the input), a reader for the few bytes of parameters some targets
 * take from the front of their input, and a GLib set-up that makes
 * criticals fatal (a g_return_if_fail is a bug found) and keeps the log quiet.
 */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Parameters taken from the front of the input: a byte, or 0 once the
 * input is used up. */
typedef struct {
	const uint8_t *p;
	size_t n;
} FuzzBytes;

static inline guint8
fuzz_take_u8(FuzzBytes *b)
{
	guint8 v;

	if (b->n == 0)
		return 0;
	v = b->p[0];
	b->p++;
	b->n--;
	return v;
}

static inline void
fuzz_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
	(void)data;
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
		fprintf(stderr, "%s: %s\n", domain != NULL ? domain : "glib", message);
}

/* Errors, criticals and warnings are printed and abort; messages, info and
 * debug are dropped. */
static inline void
fuzz_glib_setup(void)
{
	g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_ERROR);
	g_log_set_default_handler(fuzz_log, NULL);
}
