/*
 * conn.c: a non-blocking socket with bounded buffers (see conn.h).
 *
 * Reads are bounded by in_max so a peer can never make us hold more than
 * that; writes go straight to the socket when it takes them and are queued
 * only for the part it does not.
 */
#include "gh-build.h"

#include "conn.h"

#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

GhConn *
gh_conn_new(int fd, GMainContext *context, gsize in_max, gsize out_max)
{
	GhConn *c = g_new0(GhConn, 1);
	c->fd = fd;
	c->context = context;
	c->in_max = in_max;
	c->out_max = out_max;
	c->in = g_byte_array_sized_new(MIN(in_max, 4096));
	c->out = g_byte_array_new();
	return c;
}

static void
conn_unwatch(GhConn *c)
{
	if (c->source != NULL) {
		g_source_destroy(c->source);
		g_source_unref(c->source);
		c->source = NULL;
	}
	c->watching = 0;
}

void
gh_conn_free(GhConn *c)
{
	if (c == NULL)
		return;
	conn_unwatch(c);
	if (c->fd >= 0)
		close(c->fd);
	/* buffers may hold credentials on their way to a backend */
	if (c->in->len > 0)
		explicit_bzero(c->in->data, c->in->len);
	if (c->out->len > 0)
		explicit_bzero(c->out->data, c->out->len);
	g_byte_array_unref(c->in);
	g_byte_array_unref(c->out);
	g_free(c);
}

void
gh_conn_set_callback(GhConn *c, GhConnFunc func, gpointer user_data)
{
	c->func = func;
	c->user_data = user_data;
}

static gboolean
on_fd(gint fd, GIOCondition condition, gpointer data)
{
	GhConn *c = data;
	(void)fd;
	if (c->func != NULL)
		c->func(c, condition, c->user_data);
	/* the callback may have freed c or replaced its source: the source keeps
	 * itself alive until destroyed, and conn_unwatch destroys it */
	return G_SOURCE_CONTINUE;
}

void
gh_conn_want(GhConn *c, GIOCondition condition)
{
	if (condition == c->watching && c->source != NULL)
		return;
	if (condition == 0) {
		conn_unwatch(c);
		return;
	}
	if (c->source == NULL) {
		c->source = g_unix_fd_source_new(c->fd, condition);
		g_source_set_callback(c->source, G_SOURCE_FUNC(on_fd), c, NULL);
		g_source_attach(c->source, c->context);
	} else {
		/* g_unix_fd_source has one fixed fd; changing the condition means a
		 * new source (cheap: a poll record) */
		conn_unwatch(c);
		gh_conn_want(c, condition);
		return;
	}
	c->watching = condition;
}

gsize
gh_conn_fill(GhConn *c)
{
	gsize added = 0;
	while (c->in->len < c->in_max && !c->eof && c->error == 0) {
		guint8 buf[16384];
		gsize room = MIN(sizeof buf, c->in_max - c->in->len);
		ssize_t n = recv(c->fd, buf, room, 0);
		if (n > 0) {
			g_byte_array_append(c->in, buf, (guint)n);
			added += (gsize)n;
			c->bytes_in += (guint64)n;
			explicit_bzero(buf, (gsize)n);
			if ((gsize)n < room)
				break;
		} else if (n == 0) {
			c->eof = TRUE;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			c->error = errno;
		}
	}
	return added;
}

void
gh_conn_consume(GhConn *c, gsize n)
{
	n = MIN(n, c->in->len);
	if (n == 0)
		return;
	explicit_bzero(c->in->data, n);
	g_byte_array_remove_range(c->in, 0, (guint)n);
}

gboolean
gh_conn_flush(GhConn *c)
{
	gsize off = 0;
	while (off < c->out->len && c->error == 0) {
		ssize_t n = send(c->fd, c->out->data + off, c->out->len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (gsize)n;
			c->bytes_out += (guint64)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			c->error = n < 0 ? errno : EPIPE;
		}
	}
	if (off > 0) {
		explicit_bzero(c->out->data, off);
		g_byte_array_remove_range(c->out, 0, (guint)off);
	}
	return c->out->len == 0;
}

gboolean
gh_conn_queue(GhConn *c, const void *data, gsize len)
{
	if (c->out->len + len > c->out_max)
		return FALSE;
	g_byte_array_append(c->out, data, (guint)len);
	(void)gh_conn_flush(c);
	return TRUE;
}

gboolean
gh_conn_queue_printf(GhConn *c, const char *format, ...)
{
	va_list ap;
	g_autofree char *text = NULL;
	va_start(ap, format);
	text = g_strdup_vprintf(format, ap);
	va_end(ap);
	return gh_conn_queue(c, text, strlen(text));
}

gsize
gh_conn_pending(GhConn *c)
{
	return c->out->len;
}
