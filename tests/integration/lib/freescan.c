/*
 * freescan.c: an LD_PRELOAD shim for the integration tests that looks into
 * every heap block gatehoused gives back, for a secret it should have wiped.
 *
 * FREESCAN_SECRETS: strings separated by '|' (a password, its base64
 * forms) that no freed block may hold.  FREESCAN_CONTROL: one string that
 * freed blocks do hold (a user name the daemon copies), to show that the
 * shim saw the daemon's frees at all.  FREESCAN_LOG: a file that gets one
 * line per freed block holding a secret ("secret N freed by OBJECT in a
 * block of SIZE, at OFFSET: context", OBJECT being the file name of the
 * first code on the stack, below the C library and GLib, that freed it;
 * the secret itself masked) and one line "control" the first time the
 * control string is seen.
 *
 * glibc routes its own allocations through an interposed malloc family
 * (its "Replacing malloc" rules), so the frees and the reallocations made
 * inside printf and stdio are seen too.  realloc always moves the block
 * here, so that the old one is scanned as it goes.  Not for a sanitized or
 * valgrind run, which bring their own allocator.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void __libc_free(void *p);
extern void *__libc_malloc(size_t n);

#define MAX_SECRETS 8

static char spec[2048];
static const char *secrets[MAX_SECRETS];
static size_t secret_len[MAX_SECRETS];
static int n_secrets;
static const char *control;
static size_t control_len;
static int control_seen;
static int log_fd = -2;

/* backtrace() loads its unwinder on first use, allocating: do that now,
 * not inside a free */
__attribute__((constructor)) static void
warm_up(void)
{
	void *frame;
	(void)backtrace(&frame, 1);
}

static void
init(void)
{
	const char *s, *c, *path;

	if (log_fd != -2)
		return;
	log_fd = -1;
	s = getenv("FREESCAN_SECRETS");
	c = getenv("FREESCAN_CONTROL");
	path = getenv("FREESCAN_LOG");
	if (s == NULL || path == NULL || strlen(s) >= sizeof spec)
		return;
	memcpy(spec, s, strlen(s) + 1);
	for (char *save = NULL, *t = strtok_r(spec, "|", &save);
	     t != NULL && n_secrets < MAX_SECRETS; t = strtok_r(NULL, "|", &save)) {
		secrets[n_secrets] = t;
		secret_len[n_secrets++] = strlen(t);
	}
	control = c;
	control_len = c != NULL ? strlen(c) : 0;
	log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

static void
say(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(log_fd, line, len);
		if (n <= 0)
			return;
		line += n;
		len -= (size_t)n;
	}
}

/* The file name (last path component) of the object code at `pc` is in. */
static const char *
object_of(const void *pc)
{
	Dl_info info;
	const char *slash;

	if (pc == NULL || dladdr(pc, &info) == 0 || info.dli_fname == NULL)
		return "?";
	slash = strrchr(info.dli_fname, '/');
	return slash != NULL ? slash + 1 : info.dli_fname;
}

static int
generic(const char *object)
{
	return strncmp(object, "libc.so", 7) == 0 || strncmp(object, "libglib-2.0.so", 14) == 0 ||
	       strstr(object, "freescan") != NULL;
}

/* Who freed the block, for telling our frees from a library's: the first
 * object on the stack that is neither this shim nor the C library nor
 * GLib (which only free on someone's behalf: fclose for PAM's file
 * reading, g_free for ours); `ra`'s own object if there is none. */
static const char *
caller_object(const void *ra)
{
	void *frames[16];
	int n = backtrace(frames, 16);

	for (int i = 0; i < n; i++) {
		const char *o = object_of(frames[i]);
		if (!generic(o))
			return o;
	}
	return object_of(ra);
}

static void
scan(const unsigned char *p, size_t n, const void *ra)
{
	char line[320];

	init();
	if (log_fd < 0 || p == NULL)
		return;
	for (int i = 0; i < n_secrets; i++) {
		const unsigned char *hit = memmem(p, n, secrets[i], secret_len[i]);
		size_t off, from, to;
		int k;

		if (hit == NULL)
			continue;
		off = (size_t)(hit - p);
		from = off > 32 ? off - 32 : 0;
		to = off + secret_len[i] + 32 < n ? off + secret_len[i] + 32 : n;
		k = snprintf(line, sizeof line,
			     "secret %d freed by %s in a block of %zu, at %zu: ", i,
			     caller_object(ra), n, off);
		for (size_t j = from; j < to && k < (int)sizeof line - 2; j++) {
			unsigned char ch = p[j];
			if (j >= off && j < off + secret_len[i])
				ch = '#';
			line[k++] = ch >= 32 && ch < 127 ? (char)ch : '.';
		}
		line[k++] = '\n';
		say(line, (size_t)k);
	}
	if (!control_seen && control_len > 0 && memmem(p, n, control, control_len) != NULL) {
		control_seen = 1;
		say("control\n", 8);
	}
}

static void
scan_free(void *p, const void *ra)
{
	if (p != NULL)
		scan(p, malloc_usable_size(p), ra);
	__libc_free(p);
}

void
free(void *p)
{
	scan_free(p, __builtin_return_address(0));
}

void *
realloc(void *p, size_t n)
{
	size_t have;
	void *q;

	if (p == NULL)
		return __libc_malloc(n);
	if (n == 0) {
		scan_free(p, __builtin_return_address(0));
		return NULL;
	}
	q = __libc_malloc(n);
	if (q == NULL)
		return NULL;
	have = malloc_usable_size(p);
	memcpy(q, p, have < n ? have : n);
	scan_free(p, __builtin_return_address(0));
	return q;
}
