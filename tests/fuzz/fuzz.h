/*
 * fuzz.h: what every libFuzzer target of tests/fuzz/ shares: the entry
 * points' prototypes, FUZZ_CHECK for the invariants a target asserts (a
 * broken one prints where and aborts, which libFuzzer reports as a crash and
 * keeps the input), a reader for the few bytes of parameters some targets
 * take from the front of their input, an exact heap copy of the input, and
 * what fuzz-common.c, linked into every target, defines: the one
 * LLVMFuzzerInitialize (the GLib set-up, then the target's fuzz_setup) and
 * scratch files removed at exit.
 */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* An exact heap copy of SIZE bytes, so that ASan sees any read past them;
 * one byte when SIZE is 0, as a parser takes no NULL with a length.  To
 * g_free. */
static inline char *
fuzz_copy(const void *data, gsize size)
{
	char *copy = g_malloc(MAX(size, 1));

	memcpy(copy, data, size);
	return copy;
}

/* What a target sets up once, before the first input, if it has anything
 * to set up: LLVMFuzzerInitialize calls it after making GLib's criticals
 * and warnings fatal (they print and abort; messages, info and debug are
 * dropped).  A target without one does not define it. */
void fuzz_setup(void);

/* A file NAME holding CONTENTS, in a folder of the process's own; the
 * files and the folder are removed at exit.  Returns its path, to g_free;
 * the folder is that path's dirname. */
char *fuzz_scratch_file(const char *name, const char *contents);
