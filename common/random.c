/*
 * random.c: see random.h.
 */
#include "gh-build.h"

#include "common/random.h"

#include <errno.h>
#include <sys/random.h>

void
gh_random_fill(guint8 *buf, gsize len)
{
	gsize got = 0;

	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (gsize)n;
	}
	for (; got < len; got++)
		buf[got] = (guint8)g_random_int();
}
