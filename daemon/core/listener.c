/*
 * listener.c: binds or adopts the listening sockets (see listener.h).
 */
#include "gh-build.h"

#include "core/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define GH_LISTEN_BACKLOG 1024

static GhListener *
listener_new(const char *name)
{
	GhListener *l = g_new0(GhListener, 1);
	l->name = g_strdup(name);
	l->fds = g_array_new(FALSE, FALSE, sizeof(int));
	l->sockets = g_array_new(FALSE, TRUE, sizeof(GhListenerSocket));
	l->labels = g_ptr_array_new_null_terminated(4, g_free, TRUE);
	return l;
}

void
gh_listener_free(GhListener *l)
{
	if (l == NULL)
		return;
	for (guint i = 0; i < l->fds->len; i++)
		close(g_array_index(l->fds, int, i));
	g_array_unref(l->fds);
	g_array_unref(l->sockets);
	g_ptr_array_unref(l->labels);
	g_free(l->name);
	g_free(l);
}

/* A listening socket joins `l`: set TCP_NODELAY on it for the connections
 * to inherit, and keep its address when every connection will have it. */
static void
add_socket(GhListener *l, int fd, char *label)
{
	GhListenerSocket ls = {0};
	int one = 1, on = 0;
	socklen_t len = sizeof on;
	gboolean transparent = FALSE;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
	    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0)
		ls.nodelay = on != 0;
	on = 0;
	len = sizeof on;
	if (getsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, &len) == 0 && on != 0)
		transparent = TRUE;
	on = 0;
	len = sizeof on;
	if (getsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, &len) == 0 && on != 0)
		transparent = TRUE;
	ls.local_len = sizeof ls.local;
	if (transparent || getsockname(fd, (struct sockaddr *)&ls.local, &ls.local_len) != 0)
		ls.local_len = 0;
	else if (ls.local.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ls.local;
		if (in->sin_addr.s_addr == htonl(INADDR_ANY))
			ls.local_len = 0;
	} else if (ls.local.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ls.local;
		if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr32[3] == 0))
			ls.local_len = 0;
	} else {
		ls.local_len = 0;
	}
	g_array_append_val(l->fds, fd);
	g_array_append_val(l->sockets, ls);
	g_ptr_array_add(l->labels, label);
}

GhListener *
gh_listeners_find(GPtrArray *listeners, const char *name)
{
	for (guint i = 0; listeners != NULL && i < listeners->len; i++) {
		GhListener *l = g_ptr_array_index(listeners, i);
		if (g_strcmp0(l->name, name) == 0)
			return l;
	}
	return NULL;
}

static void
set_nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	fl = fcntl(fd, F_GETFD);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

static int
bind_one(const GhHostPort *hp, GError **error)
{
	struct addrinfo hints = {0};
	struct addrinfo *ai = NULL;
	char port[8];
	const char *host = hp->host;
	int fd, rc, one = 1;

	if (g_strcmp0(host, "*") == 0)
		host = "0.0.0.0";
	g_snprintf(port, sizeof port, "%u", hp->port);
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s:%s: %s", host, port,
			    gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "socket: %s",
			    g_strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* [::]:25 and 0.0.0.0:25 may both be listed: keep IPv6 sockets v6-only */
	if (ai->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, GH_LISTEN_BACKLOG) < 0) {
		int e = errno;
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
			    "cannot listen on %s%s%s:%u: %s", ai->ai_family == AF_INET6 ? "[" : "",
			    host, ai->ai_family == AF_INET6 ? "]" : "", hp->port, g_strerror(e));
		close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static gboolean
adopt_systemd(const GhConfig *cfg, GPtrArray *listeners, GError **error)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	gboolean ok = TRUE;

	if (n < 0) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
			    "cannot take the sockets passed by systemd: %s", g_strerror(-n));
		return FALSE;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names != NULL && names[i] != NULL ? names[i] : "unknown";
		GhListener *l;

		if (!ok) {
			close(fd);
			continue;
		}
		if (gh_config_listener(cfg, name) == NULL) {
			g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
				    "systemd passed a socket named '%s' (fd %d) but %s has no "
				    "[listener %s]: set FileDescriptorName= in the .socket unit to "
				    "the name of a listener",
				    name, fd, cfg->path, name);
			close(fd);
			ok = FALSE;
			continue;
		}
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			g_set_error(
			    error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
			    "systemd passed fd %d named '%s', which is not a listening stream "
			    "socket",
			    fd, name);
			close(fd);
			ok = FALSE;
			continue;
		}
		set_nonblock_cloexec(fd);
		l = gh_listeners_find(listeners, name);
		if (l == NULL) {
			l = listener_new(name);
			l->from_systemd = TRUE;
			g_ptr_array_add(listeners, l);
		}
		add_socket(l, fd, g_strdup_printf("systemd fd %d", fd));
	}
	if (names != NULL) {
		for (int i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	return ok;
}

GPtrArray *
gh_listeners_open(const GhConfig *cfg, GError **error)
{
	g_autoptr(GPtrArray) listeners =
	    g_ptr_array_new_with_free_func((GDestroyNotify)gh_listener_free);

	if (!adopt_systemd(cfg, listeners, error))
		return NULL;
	for (guint i = 0; i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		GhListener *l = gh_listeners_find(listeners, lc->name);

		if (l != NULL)
			continue; /* systemd's sockets win over listen = */
		if (lc->listen->len == 0) {
			g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
				    "[listener %s] has no listen = addresses and systemd passed no "
				    "socket named '%s'",
				    lc->name, lc->name);
			return NULL;
		}
		l = listener_new(lc->name);
		g_ptr_array_add(listeners, l);
		for (guint j = 0; j < lc->listen->len; j++) {
			const GhHostPort *hp = &g_array_index(lc->listen, GhHostPort, j);
			g_autoptr(GError) local = NULL;
			int fd = bind_one(hp, &local);
			if (fd < 0) {
				g_set_error(error, G_IO_ERROR, local->code, "[listener %s] %s",
					    lc->name, local->message);
				return NULL;
			}
			add_socket(l, fd,
				   g_strdup_printf(strchr(hp->host, ':') ? "[%s]:%u" : "%s:%u",
						   hp->host, hp->port));
		}
	}
	return g_steal_pointer(&listeners);
}
