/*
 * gatehousectl.c: the admin tool.
 *
 *   gatehousectl [-c FILE] [-s SOCKET] [-v] [-d] COMMAND ...
 *
 * auth-test runs a listener's auth chain through the same auth core and
 * modules as gatehoused (no cache, no failure delay) and prints the verdict;
 * exit 0 ok, 1 failed, 2 temporary failure, 64 usage, 78 configuration.
 * hash-password prints a crypt(3) hash.
 *
 * stats, sessions, kick, flush-cache, reload and metrics are requests to the
 * running daemon over its control socket (daemon/core/control.h has the
 * protocol): the answer goes to standard output (to standard error when the
 * daemon says "error"); exit 0 ok, 1 refused, 64 usage, 69 no daemon to talk
 * to, 77 not allowed to use the socket.
 *
 * Passwords are read from the terminal without echo, or as one line from
 * standard input, held in wiped buffers, and never printed.
 */
#include "gh-build.h"

#include "common/keyfile.h"
#include "config/config.h"
#include "gh-auth.h"
#include "config/log.h"
#include "secret.h"

#include <crypt.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 69
#define EXIT_SOFTWARE 70
#define EXIT_NOPERM 77
#define EXIT_CONFIG 78
#define GH_DEFAULT_CONTROL_SOCKET "/run/gatehouse/control"
/* a reload may load modules that connect to a directory: be patient */
#define GH_CTL_TIMEOUT_MS (120 * 1000)
#define GH_MAX_PASSWORD 4096

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: gatehousectl [-c FILE] [-s SOCKET] [-v] [-d] COMMAND ...\n"
		"\n"
		"commands that ask the running gatehoused (over its control socket):\n"
		"  stats [--json]                   counters since start, sessions now\n"
		"  sessions [--user U] [--remote ADDR[/BITS]] [--json]\n"
		"                                   one line per session\n"
		"  kick USER | --session ID | --remote ADDR[/BITS] [--json]\n"
		"                                   close matching sessions (IMAP BYE, SMTP 421)\n"
		"  flush-cache [USER] [--json]      forget cached verdicts (all, or USER's)\n"
		"  reload [--json]                  reload the configuration; exit 1 and the\n"
		"                                   problems when it is refused\n"
		"  metrics [--openmetrics]          the metrics endpoint's text\n"
		"\n"
		"commands that work without the daemon:\n"
		"  auth-test USER [--service smtp|imap|pop3] [--remote IP] [--listener NAME]\n"
		"      check USER's password (from the terminal or stdin) against the auth\n"
		"      chain of a listener; exit 0 ok, 1 failed, 2 temporary failure\n"
		"  hash-password [--scheme yescrypt|sha512|bcrypt]\n"
		"      print a crypt(3) hash of a password for a users file\n"
		"\n"
		"options:\n"
		"  -c FILE     configuration file (default %s)\n"
		"  -s SOCKET   control socket (default: control_socket of the configuration)\n"
		"  -v          also print log lines (auth-test)\n"
		"  -d          debug logging (implies -v)\n",
		GH_CONFIG_FILE);
}

/* Read one password: from the terminal with echo off (prompting on it), or
 * one line from stdin.  Returns NULL on EOF or error.  (transfer full) */
static GhSecret *
read_password(const char *prompt)
{
	char *buf = g_malloc0(GH_MAX_PASSWORD + 2);
	gboolean tty = isatty(STDIN_FILENO);
	struct termios old, noecho;
	gboolean restored = TRUE;
	gsize len;

	if (tty) {
		fprintf(stderr, "%s", prompt);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) == 0) {
			noecho = old;
			noecho.c_lflag &= ~(tcflag_t)ECHO;
			restored = tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) != 0;
		}
	}
	if (fgets(buf, GH_MAX_PASSWORD + 2, stdin) == NULL) {
		if (!restored)
			(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		if (tty)
			fprintf(stderr, "\n");
		gh_secret_wipe_free(buf, GH_MAX_PASSWORD + 2);
		return NULL;
	}
	if (tty) {
		if (!restored)
			(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	if (len > GH_MAX_PASSWORD) {
		fprintf(stderr, "gatehousectl: password longer than %d bytes\n", GH_MAX_PASSWORD);
		gh_secret_wipe_free(buf, GH_MAX_PASSWORD + 2);
		return NULL;
	}
	{
		GhSecret *s = gh_secret_new(buf, len);
		gh_secret_wipe_free(buf, GH_MAX_PASSWORD + 2);
		return s;
	}
}

/* ------------------------------------------------------------ auth-test */

typedef struct {
	GMainLoop *loop;
	int exit_code;
	const char *user;
	const GhListenerConfig *lc;
	const char *remote;
	const char *service;
} AuthTest;

static void
on_auth_done(const GhAuthOutcome *o, gpointer data)
{
	AuthTest *t = data;
	GhLoginLog log = {
	    .session_id = "auth-test",
	    .protocol = t->service,
	    .listener = t->lc->name,
	    .remote = t->remote,
	    .user = t->user,
	    .mechanism = "auth-test",
	    .tls = "no",
	    .instance = o->instance,
	    .module = o->module,
	    .verdict = gh_auth_verdict_to_string(o->verdict),
	    .reason = o->reason,
	    .cached = o->cached,
	    .elapsed_us = o->elapsed_us,
	};
	g_autofree char *user = gh_log_escape(o->canonical_user, strlen(o->canonical_user), 256);

	gh_log_login(&log);
	printf("verdict:  %s\n", gh_auth_verdict_to_string(o->verdict));
	if (o->instance != NULL)
		printf("module:   %s (%s)\n", o->instance, o->module);
	else
		printf("module:   -\n");
	printf("user:     %s\n", o->verdict == GH_AUTH_OK ? user : "-");
	printf("route:    %s\n", o->route != NULL ? o->route : "-");
	printf("reason:   %s\n", o->reason);
	printf("time:     %.1f ms\n", o->elapsed_us / 1000.0);
	fflush(stdout);
	switch (o->verdict) {
	case GH_AUTH_OK:
		t->exit_code = 0;
		break;
	case GH_AUTH_WRONG_PASSWORD:
	case GH_AUTH_UNKNOWN_USER:
		t->exit_code = 1;
		break;
	default:
		t->exit_code = 2;
	}
	g_main_loop_quit(t->loop);
}

static const GhListenerConfig *
pick_listener(const GhConfig *cfg, const char *name, const char *service)
{
	if (name != NULL)
		return gh_config_listener(cfg, name);
	for (guint i = 0; i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		if (service == NULL || g_strcmp0(gh_protocol_to_string(lc->protocol), service) == 0)
			return lc;
	}
	return NULL;
}

static int
cmd_auth_test(const char *config_path, int argc, char **argv)
{
	g_autofree char *service = NULL;
	g_autofree char *remote = NULL;
	g_autofree char *listener = NULL;
	GOptionEntry entries[] = {
	    {"service", 's', 0, G_OPTION_ARG_STRING, &service, "smtp, imap or pop3", "SERVICE"},
	    {"remote", 'r', 0, G_OPTION_ARG_STRING, &remote, "Client address to test as", "IP"},
	    {"listener", 'l', 0, G_OPTION_ARG_STRING, &listener, "Listener whose chain to use",
	     "NAME"},
	    {NULL}};
	g_autoptr(GOptionContext) octx = g_option_context_new("USER");
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GhConfig) cfg = NULL;
	g_autoptr(GhSecret) password = NULL;
	g_autoptr(GMainLoop) loop = NULL;
	const GhListenerConfig *lc;
	GhAuthSettings settings = {.workers = 1, .queue_max = 16};
	GhAuthCore *core;
	GhAuthSet *set;
	AuthTest t = {0};
	GhAuthRequest req = {0};
	gsize pw_len;

	g_option_context_add_main_entries(octx, entries, NULL);
	if (!g_option_context_parse(octx, &argc, &argv, &error)) {
		fprintf(stderr, "gatehousectl auth-test: %s\n", error->message);
		return EXIT_USAGE;
	}
	if (argc != 2 || *argv[1] == '\0') {
		fprintf(stderr, "usage: gatehousectl auth-test USER [--service smtp|imap|pop3] "
				"[--remote IP] [--listener NAME]\n");
		return EXIT_USAGE;
	}
	if (service != NULL && g_strcmp0(service, "smtp") != 0 && g_strcmp0(service, "imap") != 0 &&
	    g_strcmp0(service, "pop3") != 0) {
		fprintf(stderr, "gatehousectl auth-test: --service is smtp, imap or pop3\n");
		return EXIT_USAGE;
	}
	if (remote != NULL && !g_hostname_is_ip_address(remote)) {
		fprintf(stderr, "gatehousectl auth-test: --remote wants an IP address\n");
		return EXIT_USAGE;
	}
	cfg = gh_config_load(config_path, problems);
	if (cfg == NULL) {
		for (guint i = 0; i < problems->len; i++)
			fprintf(stderr, "%s\n", (char *)g_ptr_array_index(problems, i));
		return EXIT_CONFIG;
	}
	lc = pick_listener(cfg, listener, service);
	if (lc == NULL) {
		fprintf(stderr, "gatehousectl auth-test: %s has no %s%s listener\n", config_path,
			listener != NULL  ? "such"
			: service != NULL ? service
					  : "",
			listener != NULL ? "" : "");
		return EXIT_CONFIG;
	}
	core = gh_auth_core_new(&settings);
	set = gh_auth_set_new(core, cfg->kf, cfg->path, cfg->module_dir, problems);
	if (set == NULL) {
		for (guint i = 0; i < problems->len; i++)
			fprintf(stderr, "%s\n", (char *)g_ptr_array_index(problems, i));
		gh_auth_core_free(core);
		return EXIT_CONFIG;
	}
	password = read_password("Password: ");
	if (password == NULL) {
		fprintf(stderr, "gatehousectl auth-test: no password given\n");
		gh_auth_set_unref(set);
		gh_auth_core_free(core);
		return EXIT_USAGE;
	}

	loop = g_main_loop_new(NULL, FALSE);
	t.loop = loop;
	t.exit_code = 2;
	t.user = argv[1];
	t.lc = lc;
	t.remote = remote != NULL ? remote : "127.0.0.1";
	t.service = service != NULL ? service : gh_protocol_to_string(lc->protocol);
	req.user = argv[1];
	req.password = gh_secret_get(password, &pw_len);
	req.password_len = pw_len;
	req.service = t.service;
	req.listener = lc->name;
	req.remote_addr = t.remote;
	req.local_addr = "127.0.0.1";
	req.session_id = "auth-test";
	gh_auth_verify_async(set, (const char *const *)lc->auth, &req,
			     GH_AUTH_VERIFY_NO_CACHE | GH_AUTH_VERIFY_NO_DELAY, NULL, on_auth_done,
			     &t);
	g_main_loop_run(loop);
	gh_auth_set_unref(set);
	gh_auth_core_free(core);
	return t.exit_code;
}

/* -------------------------------------------------------- hash-password */

static int
cmd_hash_password(int argc, char **argv)
{
	g_autofree char *scheme = NULL;
	GOptionEntry entries[] = {{"scheme", 's', 0, G_OPTION_ARG_STRING, &scheme,
				   "yescrypt (default), sha512 or bcrypt", "SCHEME"},
				  {NULL}};
	g_autoptr(GOptionContext) octx = g_option_context_new("");
	g_autoptr(GError) error = NULL;
	g_autoptr(GhSecret) password = NULL;
	const char *prefix;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data;
	const char *hash;
	int rc = 0;

	g_option_context_add_main_entries(octx, entries, NULL);
	if (!g_option_context_parse(octx, &argc, &argv, &error) || argc != 1) {
		fprintf(stderr,
			"usage: gatehousectl hash-password [--scheme yescrypt|sha512|bcrypt]%s%s\n",
			error != NULL ? "\n" : "", error != NULL ? error->message : "");
		return EXIT_USAGE;
	}
	if (scheme == NULL || g_strcmp0(scheme, "yescrypt") == 0)
		prefix = "$y$";
	else if (g_strcmp0(scheme, "sha512") == 0)
		prefix = "$6$";
	else if (g_strcmp0(scheme, "bcrypt") == 0)
		prefix = "$2b$";
	else {
		fprintf(stderr, "gatehousectl hash-password: unknown scheme '%s'\n", scheme);
		return EXIT_USAGE;
	}
	password = read_password("Password: ");
	if (password == NULL) {
		fprintf(stderr, "gatehousectl hash-password: no password given\n");
		return EXIT_USAGE;
	}
	if (isatty(STDIN_FILENO)) {
		g_autoptr(GhSecret) again = read_password("Again: ");
		gsize a, b;
		const char *pa = gh_secret_get(password, &a);
		const char *pb = again != NULL ? gh_secret_get(again, &b) : NULL;
		if (pb == NULL || !gh_auth_secure_equal(pa, a, pb, b)) {
			fprintf(stderr, "gatehousectl hash-password: the passwords differ\n");
			return 1;
		}
	}
	if (gh_secret_len(password) == 0) {
		fprintf(stderr, "gatehousectl hash-password: refusing an empty password\n");
		return 1;
	}
	if (crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof salt) == NULL) {
		fprintf(stderr, "gatehousectl hash-password: crypt_gensalt: %s\n",
			g_strerror(errno));
		return 1;
	}
	data = g_malloc0(sizeof *data);
	hash = crypt_rn(gh_secret_get(password, NULL), salt, data, sizeof *data);
	if (hash == NULL || hash[0] == '*') {
		fprintf(stderr, "gatehousectl hash-password: crypt failed: %s\n",
			g_strerror(errno));
		rc = 1;
	} else {
		printf("%s\n", hash);
	}
	gh_secret_wipe_free(data, sizeof *data);
	return rc;
}

/* -------------------------------------------------------- control socket */

/* The socket the configuration names.  Read loosely: `reload` must work
 * when the file is broken, and a member of the daemon's group may not be
 * able to read it at all (then the default). */
static char *
control_socket_path(const char *config_path)
{
	/* line by line: a file with a typo elsewhere (the very thing a
	 * reload should report) still names its socket */
	char *path = gh_key_file_peek(config_path, "gatehouse", "control_socket");
	return path != NULL ? path : g_strdup(GH_DEFAULT_CONTROL_SOCKET);
}

/* Why connect(2) failed, as an admin needs it. */
static int
connect_failed(const char *path, int err)
{
	struct stat st;
	if (err == EACCES || err == EPERM) {
		struct group *gr = stat(path, &st) == 0 ? getgrgid(st.st_gid) : NULL;
		if (gr != NULL)
			fprintf(stderr,
				"gatehousectl: %s: permission denied: only root and members of "
				"group %s may use the control socket\n",
				path, gr->gr_name);
		else
			fprintf(stderr,
				"gatehousectl: %s: permission denied: only root and members of "
				"the daemon's group may use the control socket\n",
				path);
		return EXIT_NOPERM;
	}
	if (err == ENOENT)
		fprintf(stderr, "gatehousectl: %s: no such socket: is gatehoused running?\n", path);
	else if (err == ECONNREFUSED)
		fprintf(stderr, "gatehousectl: %s: nothing answers: gatehoused is not running\n",
			path);
	else
		fprintf(stderr, "gatehousectl: %s: %s\n", path, g_strerror(err));
	return EXIT_UNAVAILABLE;
}

/* A send or a read failed (errno): say so, close, the exit status. */
static int
io_failed(const char *path, int fd)
{
	fprintf(stderr, "gatehousectl: %s: %s\n", path, g_strerror(errno));
	close(fd);
	return EXIT_UNAVAILABLE;
}

/* Send one request line, print the answer (a refusal on standard error,
 * unless the caller asked for JSON: scripts read one stream); the exit
 * status. */
static int
control_request(const char *path, const char *request, gboolean json)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	g_autoptr(GString) got = g_string_new(NULL);
	gsize sent = 0, len = strlen(request);
	const char *body;
	gboolean ok;
	int fd;

	if (strlen(path) >= sizeof sun.sun_path) {
		fprintf(stderr, "gatehousectl: %s: path too long for a unix socket\n", path);
		return EXIT_USAGE;
	}
	g_strlcpy(sun.sun_path, path, sizeof sun.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return connect_failed(path, err);
	}
	while (sent < len) {
		ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return io_failed(path, fd);
		sent += (gsize)n;
	}
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		char buf[65536];
		ssize_t n;
		int rc = poll(&pfd, 1, GH_CTL_TIMEOUT_MS);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0) {
			fprintf(stderr, "gatehousectl: %s: no answer within %d s\n", path,
				GH_CTL_TIMEOUT_MS / 1000);
			close(fd);
			return EXIT_UNAVAILABLE;
		}
		n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return io_failed(path, fd);
		if (n == 0)
			break;
		g_string_append_len(got, buf, n);
	}
	close(fd);
	if (g_str_has_prefix(got->str, "ok\n"))
		ok = TRUE;
	else if (g_str_has_prefix(got->str, "error\n"))
		ok = FALSE;
	else {
		fprintf(stderr, "gatehousectl: %s: %s\n", path,
			got->len == 0 ? "the daemon closed without an answer"
				      : "not an answer of gatehoused");
		return EXIT_SOFTWARE;
	}
	body = strchr(got->str, '\n') + 1;
	fputs(body, ok || json ? stdout : stderr);
	fflush(stdout);
	return ok ? 0 : 1;
}

/* A value going into a request: the protocol separates with tabs and ends
 * with a line feed. */
static gboolean
request_value_ok(const char *what, const char *v)
{
	for (const char *p = v; *p != '\0'; p++)
		if ((guchar)*p < 0x20) {
			fprintf(stderr, "gatehousectl: %s: control characters are not allowed\n",
				what);
			return FALSE;
		}
	if (*v == '\0') {
		fprintf(stderr, "gatehousectl: %s: empty\n", what);
		return FALSE;
	}
	return TRUE;
}

static gboolean
add_arg(GString *req, const char *key, const char *value)
{
	if (value == NULL)
		return TRUE;
	if (!request_value_ok(key, value))
		return FALSE;
	g_string_append_printf(req, "\t%s=%s", key, value);
	return TRUE;
}

static int
cmd_control(const char *socket_path, int argc, char **argv)
{
	const char *command = argv[0];
	gboolean json = FALSE, openmetrics = FALSE;
	g_autofree char *user = NULL, *remote = NULL, *session = NULL;
	GOptionEntry json_entry[] = {
	    {"json", 'j', 0, G_OPTION_ARG_NONE, &json, "Answer in JSON", NULL}, {NULL}};
	GOptionEntry sessions_entries[] = {
	    {"user", 'u', 0, G_OPTION_ARG_STRING, &user, "Only this user's sessions", "USER"},
	    {"remote", 'r', 0, G_OPTION_ARG_STRING, &remote,
	     "Only sessions from this address or network", "ADDR[/BITS]"},
	    {"session", 0, 0, G_OPTION_ARG_STRING, &session, "Only this session", "ID"},
	    {NULL}};
	GOptionEntry metrics_entries[] = {{"openmetrics", 0, 0, G_OPTION_ARG_NONE, &openmetrics,
					   "OpenMetrics 1.0 instead of Prometheus text 0.0.4",
					   NULL},
					  {NULL}};
	g_autoptr(GOptionContext) octx = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GString) req = g_string_new(command);
	const char *positional = NULL;
	gboolean kick = strcmp(command, "kick") == 0;
	gboolean flush = strcmp(command, "flush-cache") == 0;

	if (kick || flush)
		octx = g_option_context_new(kick ? "USER" : "[USER]");
	else
		octx = g_option_context_new("");
	if (strcmp(command, "metrics") == 0)
		g_option_context_add_main_entries(octx, metrics_entries, NULL);
	else
		g_option_context_add_main_entries(octx, json_entry, NULL);
	if (strcmp(command, "sessions") == 0 || kick)
		g_option_context_add_main_entries(octx, sessions_entries, NULL);
	if (!g_option_context_parse(octx, &argc, &argv, &error)) {
		fprintf(stderr, "gatehousectl %s: %s\n", command, error->message);
		return EXIT_USAGE;
	}
	if ((kick || flush) && argc == 2)
		positional = argv[1];
	else if (argc != 1) {
		fprintf(stderr, "gatehousectl %s: unexpected argument '%s'\n", command, argv[1]);
		return EXIT_USAGE;
	}
	if (positional != NULL && user != NULL) {
		fprintf(stderr, "gatehousectl %s: give the user once\n", command);
		return EXIT_USAGE;
	}
	if (positional != NULL)
		user = g_strdup(positional);
	if (kick && user == NULL && session == NULL && remote == NULL) {
		fprintf(stderr, "usage: gatehousectl kick USER | --session ID | --remote "
				"ADDR[/BITS]\n");
		return EXIT_USAGE;
	}
	if (json)
		g_string_append(req, "\tjson");
	if (openmetrics)
		g_string_append(req, "\topenmetrics");
	if (!add_arg(req, "user", user) || !add_arg(req, "remote", remote) ||
	    !add_arg(req, "session", session))
		return EXIT_USAGE;
	g_string_append_c(req, '\n');
	return control_request(socket_path, req->str, json);
}

int
main(int argc, char **argv)
{
	const char *config_path = GH_CONFIG_FILE;
	const char *socket_path = NULL;
	gboolean debug = FALSE, verbose = FALSE;
	int i = 1;

	/* global options come before the command; each command parses its own */
	while (i < argc && argv[i][0] == '-') {
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
		    i + 1 < argc) {
			config_path = argv[i + 1];
			i += 2;
		} else if (g_str_has_prefix(argv[i], "--config=")) {
			config_path = argv[i] + strlen("--config=");
			i++;
		} else if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0) &&
			   i + 1 < argc) {
			socket_path = argv[i + 1];
			i += 2;
		} else if (g_str_has_prefix(argv[i], "--socket=")) {
			socket_path = argv[i] + strlen("--socket=");
			i++;
		} else if (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--debug") == 0) {
			debug = TRUE;
			i++;
		} else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
			verbose = TRUE;
			i++;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("gatehousectl %s\n", PACKAGE_VERSION);
			return 0;
		} else {
			fprintf(stderr, "gatehousectl: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	gh_log_init("gatehousectl", debug);
	gh_log_set_quiet(!verbose && !debug);
	if (strcmp(argv[i], "auth-test") == 0)
		return cmd_auth_test(config_path, argc - i, argv + i);
	if (strcmp(argv[i], "hash-password") == 0)
		return cmd_hash_password(argc - i, argv + i);
	if (strcmp(argv[i], "stats") == 0 || strcmp(argv[i], "sessions") == 0 ||
	    strcmp(argv[i], "kick") == 0 || strcmp(argv[i], "flush-cache") == 0 ||
	    strcmp(argv[i], "reload") == 0 || strcmp(argv[i], "metrics") == 0) {
		g_autofree char *path =
		    socket_path != NULL ? g_strdup(socket_path) : control_socket_path(config_path);
		if (*path == '\0') {
			fprintf(
			    stderr,
			    "gatehousectl: %s has no control socket (control_socket is empty)\n",
			    config_path);
			return EXIT_UNAVAILABLE;
		}
		return cmd_control(path, argc - i, argv + i);
	}
	fprintf(stderr, "gatehousectl: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return EXIT_USAGE;
}
