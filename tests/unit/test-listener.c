/*
 * test-listener.c: what gh_listeners_open learns of a bound socket, once,
 * so that an accept needs no system call for it: its local address (an
 * address that is not a wildcard is every connection's), and TCP_NODELAY,
 * set on the listening socket and found on an accepted connection (the
 * kernel behaviour session.c relies on when it skips the setsockopt).
 */
#include "gh-build.h"

#include "core/listener.h"

#include <arpa/inet.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

static guint16
free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof a), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&a, &len), ==, 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void
test_bound_socket(void)
{
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("gh-listener-XXXXXX", NULL);
	g_autofree char *path = g_build_filename(dir, "gatehouse.conf", NULL);
	guint16 port = free_port();
	g_autofree char *text = g_strdup_printf("[gatehouse]\n"
						"hostname = gw.test\n"
						"module_dir = %s\n"
						"[listener t]\n"
						"protocol = smtp\n"
						"listen = 127.0.0.1:%u\n"
						"auth = fake\n"
						"backend = b\n"
						"[backend b]\n"
						"protocol = smtp\n"
						"servers = 127.0.0.1:1\n"
						"[auth fake]\n"
						"module = fake\n",
						g_getenv("GH_TEST_MODULE_DIR"), port);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	g_autoptr(GhConfig) cfg = gh_config_load(path, problems);
	for (guint i = 0; i < problems->len; i++)
		g_printerr("%s\n", (char *)problems->pdata[i]);
	g_assert_nonnull(cfg);

	g_autoptr(GPtrArray) listeners = gh_listeners_open(cfg, &error);
	g_assert_no_error(error);
	GhListener *l = gh_listeners_find(listeners, "t");
	g_assert_nonnull(l);
	g_assert_cmpuint(l->sockets->len, ==, 1);
	const GhListenerSocket *ls = &g_array_index(l->sockets, GhListenerSocket, 0);
	g_assert_true(ls->nodelay);
	/* 127.0.0.1 is every connection's local address */
	g_assert_cmpuint(ls->local_len, ==, sizeof(struct sockaddr_in));
	const struct sockaddr_in *in = (const struct sockaddr_in *)&ls->local;
	g_assert_cmpuint(ntohs(in->sin_port), ==, port);
	g_assert_cmpuint(ntohl(in->sin_addr.s_addr), ==, INADDR_LOOPBACK);

	/* an accepted connection has TCP_NODELAY without being told */
	int c = socket(AF_INET, SOCK_STREAM, 0);
	g_assert_cmpint(connect(c, (const struct sockaddr *)in, sizeof *in), ==, 0);
	int a = -1;
	for (int i = 0; i < 1000 && a < 0; i++) {
		a = accept(g_array_index(l->fds, int, 0), NULL, NULL);
		if (a < 0)
			g_usleep(10000);
	}
	g_assert_cmpint(a, >=, 0);
	int on = 0;
	socklen_t len = sizeof on;
	g_assert_cmpint(getsockopt(a, IPPROTO_TCP, TCP_NODELAY, &on, &len), ==, 0);
	g_assert_cmpint(on, !=, 0);
	close(a);
	close(c);
	g_unlink(path);
	g_rmdir(dir);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/listener/bound-socket", test_bound_socket);
	return g_test_run();
}
