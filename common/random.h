/*
 * random.h: bytes from the kernel's random source, for keys that must not be
 * guessed (the verdict cache's and the penalty table's HMAC keys).
 *
 * Includes only <glib.h>; no logging.
 */
#pragma once

#include <glib.h>

/* Fill buf[0..len) from getrandom(2).  Should the kernel refuse (it does not
 * on any supported system), the rest comes from GLib's generator, so the
 * caller never sees a zero key. */
void gh_random_fill(guint8 *buf, gsize len);
