/*
 * test-metrics.c: the metrics of gatehoused (daemon/core/metrics.c) and the
 * [metrics] group of gatehouse.conf.
 *
 *  - render: counters built by hand (gh_stats_add, gh_stats_observe_auth)
 *    and a config of two listeners, rendered in both formats; exact lines:
 *    HELP and TYPE (and UNIT) of every family, a zero for every listener and
 *    session state, the histogram cumulative with its +Inf, _sum and _count,
 *    label values with a quote, a backslash and a line feed escaped, the
 *    final "# EOF" of OpenMetrics; the text is then checked by Prometheus's
 *    own tools when the machine has them: `promtool check metrics` (no lint
 *    output either) and python3's prometheus_client parsers.
 *  - accept: content negotiation from the Accept header.
 *  - endpoint: the SoupServer answering a real HTTP client (SoupSession) on
 *    127.0.0.1: 200 with the Content-Type of each format, HEAD, 404, 405; a
 *    scrape whose client goes away, and an endpoint freed, while the scrape
 *    waits for its snapshot; an address already in use.  server.c's getters
 *    are stubbed below: the snapshot is the test's own, answered later from
 *    the loop (as the workers do) or held until the test lets it go.
 *  - config: [metrics] listen read like a listener's listen, with every
 *    problem as "FILE:LINE: [metrics] listen: ...".
 */
#include "gh-build.h"

#include "core/metrics.h"

#include <glib/gstdio.h>
#include <libsoup/soup.h>
#include <locale.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

#define CONFIG_HEAD                                                                                \
	"[gatehouse]\n"                                                                            \
	"workers = 1\n"                                                                            \
	"[listener submission]\n"                                                                  \
	"protocol = smtp\n"                                                                        \
	"listen = 127.0.0.1:2587\n"                                                                \
	"auth = users\n"                                                                           \
	"backend = mx\n"                                                                           \
	"[listener imap]\n"                                                                        \
	"protocol = imap\n"                                                                        \
	"listen = 127.0.0.1:2143\n"                                                                \
	"auth = users\n"                                                                           \
	"backend = dc\n"                                                                           \
	"[auth users]\n"                                                                           \
	"module = file\n"                                                                          \
	"[backend mx]\n"                                                                           \
	"protocol = smtp\n"                                                                        \
	"servers = 127.0.0.1:25\n"                                                                 \
	"[backend dc]\n"                                                                           \
	"protocol = imap\n"                                                                        \
	"servers = 127.0.0.1:143\n"
#define CONFIG_HEAD_LINES 20

typedef struct {
	char *dir;
	char *path;
	GPtrArray *problems;
} ConfFile;

static void
conf_init(ConfFile *cf)
{
	g_autoptr(GError) error = NULL;

	cf->dir = g_dir_make_tmp("gh-metrics-XXXXXX", &error);
	g_assert_no_error(error);
	cf->path = g_build_filename(cf->dir, "gatehouse.conf", NULL);
	cf->problems = g_ptr_array_new_with_free_func(g_free);
}

static void
conf_clear(ConfFile *cf)
{
	g_unlink(cf->path);
	g_rmdir(cf->dir);
	g_free(cf->path);
	g_free(cf->dir);
	g_ptr_array_unref(cf->problems);
}

static GhConfig *
conf_load(ConfFile *cf, const char *text)
{
	g_autoptr(GError) error = NULL;

	g_file_set_contents(cf->path, text, -1, &error);
	g_assert_no_error(error);
	g_ptr_array_set_size(cf->problems, 0);
	return gh_config_load(cf->path, cf->problems);
}

static GhConfig *
load_config(const char *extra)
{
	ConfFile cf;
	g_autofree char *text = g_strconcat(CONFIG_HEAD, extra, NULL);
	GhConfig *cfg;

	conf_init(&cf);
	cfg = conf_load(&cf, text);
	for (guint i = 0; i < cf.problems->len; i++)
		g_test_message("problem: %s", (const char *)g_ptr_array_index(cf.problems, i));
	g_assert_nonnull(cfg);
	conf_clear(&cf);
	return cfg;
}

/* TRUE when `line` is one whole line of `text`. */
static gboolean
has_line(const char *text, const char *line)
{
	gsize n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return TRUE;
	}
	return FALSE;
}

#define assert_line(text, line)                                                                    \
	do {                                                                                       \
		if (!has_line((text), (line)))                                                     \
			g_error("no line '%s' in:\n%s", (line), (text));                           \
	} while (0)

#define assert_no_line(text, line)                                                                 \
	do {                                                                                       \
		if (has_line((text), (line)))                                                      \
			g_error("unexpected line '%s' in:\n%s", (line), (text));                   \
	} while (0)

/* The line after the one that is `line` (transfer full). */
static char *
line_after(const char *text, const char *line)
{
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

	for (guint i = 0; lines[i] != NULL && lines[i + 1] != NULL; i++) {
		if (strcmp(lines[i], line) == 0)
			return g_strdup(lines[i + 1]);
	}
	return NULL;
}

/* ------------------------------------------------------------ the input */

static GhStats *
make_stats(void)
{
	GhStats *st = gh_stats_new();

	gh_stats_add(st, GH_STAT_CONNECTIONS, 3, "imap", "imap");
	gh_stats_add(st, GH_STAT_CONNECTIONS, 1, "smtp", "submission");
	/* a listener a reload removed: its counters stay */
	gh_stats_add(st, GH_STAT_CONNECTIONS, 5, "smtp", "old");
	gh_stats_add(st, GH_STAT_SESSIONS, 1, "imap", "imap", "proxied");
	gh_stats_add(st, GH_STAT_SESSIONS, 2, "smtp", "submission", "pre-login");
	gh_stats_add(st, GH_STAT_SESSIONS, 1, "smtp", "old", "proxied");
	gh_stats_add(st, GH_STAT_LOGINS, 2, "imap", "imap", "file", "ok");
	gh_stats_add(st, GH_STAT_LOGINS, 1, "imap", "imap", "file", "wrong-password");
	gh_stats_add(st, GH_STAT_RELAY_BYTES, 1234, "imap", "to_backend");
	gh_stats_add(st, GH_STAT_RELAY_BYTES, 56789, "imap", "to_client");
	gh_stats_add(st, GH_STAT_BACKEND_FAILURES, 2, "dc", "127.0.0.1:143");
	/* no configuration can hold this; the renderer must escape it anyway */
	gh_stats_add(st, GH_STAT_BACKEND_FAILURES, 1, "mx", "we\"ird\\host\nx:25");
	gh_stats_add(st, GH_STAT_KICKED, 4, "imap");
	/* one in each of 0.0005, 0.0025, 0.025, 10 and +Inf */
	gh_stats_observe_auth(st, 300);
	gh_stats_observe_auth(st, 2000);
	gh_stats_observe_auth(st, 20000);
	gh_stats_observe_auth(st, 2000000);
	gh_stats_observe_auth(st, 20000000);
	return st;
}

static const GhAuthCoreStats test_auth = {
    .workers = 8,
    .running = 1,
    .queued = 2,
    .queue_max = 1024,
    .cache_entries = 5,
    .cache_max = 10000,
    .cache_hits = 7,
    .cache_misses = 3,
    .penalty_entries = 1,
};

static char *
render(const GhConfig *cfg, GhStats *st, gboolean om)
{
	GhSnapshot snap = {.stats = st, .n_sessions = 4};
	GhMetricsInput in = {
	    .config = cfg,
	    .snap = &snap,
	    .auth = &test_auth,
	    .started = 1700000000,
	    .generation = 3,
	    .reloads_ok = 2,
	    .reloads_failed = 1,
	    .version = "0.2.0",
	};
	return gh_metrics_render(&in, om);
}

/* Each family: its name in the text format's metadata, in OpenMetrics',
 * its type and its unit (OpenMetrics). */
static const struct {
	const char *text_name, *om_name, *type, *unit;
} families[] = {
    {"gatehouse_build_info", "gatehouse_build_info", "gauge", NULL},
    {"gatehouse_start_time_seconds", "gatehouse_start_time_seconds", "gauge", "seconds"},
    {"gatehouse_config_generation", "gatehouse_config_generation", "gauge", NULL},
    {"gatehouse_config_reloads_total", "gatehouse_config_reloads", "counter", NULL},
    {"gatehouse_connections_total", "gatehouse_connections", "counter", NULL},
    {"gatehouse_sessions", "gatehouse_sessions", "gauge", NULL},
    {"gatehouse_sessions_kicked_total", "gatehouse_sessions_kicked", "counter", NULL},
    {"gatehouse_logins_total", "gatehouse_logins", "counter", NULL},
    {"gatehouse_auth_duration_seconds", "gatehouse_auth_duration_seconds", "histogram", "seconds"},
    {"gatehouse_auth_workers", "gatehouse_auth_workers", "gauge", NULL},
    {"gatehouse_auth_workers_busy", "gatehouse_auth_workers_busy", "gauge", NULL},
    {"gatehouse_auth_queue_length", "gatehouse_auth_queue_length", "gauge", NULL},
    {"gatehouse_auth_cache_entries", "gatehouse_auth_cache_entries", "gauge", NULL},
    {"gatehouse_auth_cache_lookups_total", "gatehouse_auth_cache_lookups", "counter", NULL},
    {"gatehouse_auth_penalty_addresses", "gatehouse_auth_penalty_addresses", "gauge", NULL},
    {"gatehouse_relay_bytes_total", "gatehouse_relay_bytes", "counter", "bytes"},
    {"gatehouse_backend_failures_total", "gatehouse_backend_failures", "counter", NULL},
    {"gatehouse_backend_warm_takes_total", "gatehouse_backend_warm_takes", "counter", NULL},
    {"gatehouse_backend_kept_total", "gatehouse_backend_kept", "counter", NULL},
};

static void
assert_families(const char *text, gboolean om)
{
	guint helps = 0;

	for (const char *p = text; (p = strstr(p, "# HELP ")) != NULL; p++)
		helps++;
	g_assert_cmpuint(helps, ==, G_N_ELEMENTS(families));
	for (guint i = 0; i < G_N_ELEMENTS(families); i++) {
		const char *name = om ? families[i].om_name : families[i].text_name;
		g_autofree char *help_prefix = g_strdup_printf("# HELP %s ", name);
		g_autofree char *type = g_strdup_printf("# TYPE %s %s", name, families[i].type);
		g_autofree char *unit = g_strdup_printf("# UNIT %s %s", name, families[i].unit);
		const char *help = strstr(text, help_prefix);
		g_autofree char *help_line = NULL;
		g_autofree char *after_help = NULL;
		g_autofree char *after_type = NULL;

		g_assert_nonnull(help);
		g_assert_true(help == text || help[-1] == '\n');
		help_line = g_strndup(help, strchr(help, '\n') - help);
		g_assert_cmpuint(strlen(help_line), >, strlen(help_prefix) + 10);
		/* HELP, then TYPE, then (OpenMetrics) UNIT */
		after_help = line_after(text, help_line);
		g_assert_cmpstr(after_help, ==, type);
		after_type = line_after(text, type);
		if (om && families[i].unit != NULL)
			g_assert_cmpstr(after_type, ==, unit);
		else
			g_assert_false(g_str_has_prefix(after_type, "# UNIT "));
	}
	if (!om)
		g_assert_null(strstr(text, "# UNIT"));
}

/* The lines both formats have in common (sample names are the same). */
static void
assert_samples(const char *text, gboolean om)
{
	/* the process */
	assert_line(text, "gatehouse_build_info{version=\"0.2.0\"} 1");
	assert_line(text, "gatehouse_start_time_seconds 1700000000");
	assert_line(text, "gatehouse_config_generation 3");
	assert_line(text, "gatehouse_config_reloads_total{result=\"ok\"} 2");
	assert_line(text, "gatehouse_config_reloads_total{result=\"failed\"} 1");

	/* every configured listener, in file order, then the others */
	assert_line(text,
		    "gatehouse_connections_total{protocol=\"smtp\",listener=\"submission\"} 1");
	assert_line(text, "gatehouse_connections_total{protocol=\"imap\",listener=\"imap\"} 3");
	assert_line(text, "gatehouse_connections_total{protocol=\"smtp\",listener=\"old\"} 5");
	g_assert_true(
	    strstr(text, "gatehouse_connections_total{protocol=\"smtp\",listener=\"submission\"}") <
	    strstr(text, "gatehouse_connections_total{protocol=\"imap\",listener=\"imap\"}"));

	/* listener x state, zeros included */
	assert_line(text, "gatehouse_sessions{protocol=\"smtp\",listener=\"submission\","
			  "state=\"pre-login\"} 2");
	assert_line(text, "gatehouse_sessions{protocol=\"smtp\",listener=\"submission\","
			  "state=\"logging-in\"} 0");
	assert_line(text, "gatehouse_sessions{protocol=\"smtp\",listener=\"submission\","
			  "state=\"proxied\"} 0");
	assert_line(
	    text, "gatehouse_sessions{protocol=\"imap\",listener=\"imap\",state=\"pre-login\"} 0");
	assert_line(
	    text, "gatehouse_sessions{protocol=\"imap\",listener=\"imap\",state=\"logging-in\"} 0");
	assert_line(text,
		    "gatehouse_sessions{protocol=\"imap\",listener=\"imap\",state=\"proxied\"} 1");
	assert_line(text,
		    "gatehouse_sessions{protocol=\"smtp\",listener=\"old\",state=\"proxied\"} 1");
	assert_no_line(
	    text, "gatehouse_sessions{protocol=\"smtp\",listener=\"old\",state=\"pre-login\"} 0");
	assert_line(text, "gatehouse_sessions_kicked_total{protocol=\"smtp\"} 0");
	assert_line(text, "gatehouse_sessions_kicked_total{protocol=\"imap\"} 4");

	assert_line(text, "gatehouse_logins_total{protocol=\"imap\",listener=\"imap\","
			  "module=\"file\",verdict=\"ok\"} 2");
	assert_line(text, "gatehouse_logins_total{protocol=\"imap\",listener=\"imap\","
			  "module=\"file\",verdict=\"wrong-password\"} 1");

	/* the histogram: cumulative, bounds in order, +Inf = _count */
	{
		static const char *const text_le[] = {"0.0005", "0.001", "0.0025", "0.005",
						      "0.01",   "0.025", "0.05",   "0.1",
						      "0.25",   "0.5",   "1",      "10"};
		static const char *const om_le[] = {"0.0005", "0.001", "0.0025", "0.005",
						    "0.01",   "0.025", "0.05",   "0.1",
						    "0.25",   "0.5",   "1.0",    "10.0"};
		static const guint counts[] = {1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4};
		const char *prev = text;

		G_STATIC_ASSERT(G_N_ELEMENTS(counts) == GH_STATS_AUTH_BUCKETS);
		for (guint i = 0; i < GH_STATS_AUTH_BUCKETS; i++) {
			g_autofree char *line =
			    g_strdup_printf("gatehouse_auth_duration_seconds_bucket{le=\"%s\"} %u",
					    om ? om_le[i] : text_le[i], counts[i]);
			const char *at = strstr(text, line);
			assert_line(text, line);
			g_assert_true(at > prev);
			prev = at;
		}
		assert_line(text, "gatehouse_auth_duration_seconds_bucket{le=\"+Inf\"} 5");
		g_assert_true(strstr(text, "{le=\"+Inf\"}") > prev);
		assert_line(text, "gatehouse_auth_duration_seconds_sum 22.0223");
		assert_line(text, "gatehouse_auth_duration_seconds_count 5");
	}

	assert_line(text, "gatehouse_auth_workers 8");
	assert_line(text, "gatehouse_auth_workers_busy 1");
	assert_line(text, "gatehouse_auth_queue_length 2");
	assert_line(text, "gatehouse_auth_cache_entries 5");
	assert_line(text, "gatehouse_auth_cache_lookups_total{result=\"hit\"} 7");
	assert_line(text, "gatehouse_auth_cache_lookups_total{result=\"miss\"} 3");
	assert_line(text, "gatehouse_auth_penalty_addresses 1");

	assert_line(text,
		    "gatehouse_relay_bytes_total{protocol=\"smtp\",direction=\"to_backend\"} 0");
	assert_line(text,
		    "gatehouse_relay_bytes_total{protocol=\"smtp\",direction=\"to_client\"} 0");
	assert_line(text,
		    "gatehouse_relay_bytes_total{protocol=\"imap\",direction=\"to_backend\"} 1234");
	assert_line(text,
		    "gatehouse_relay_bytes_total{protocol=\"imap\",direction=\"to_client\"} 56789");

	assert_line(text,
		    "gatehouse_backend_failures_total{backend=\"dc\",server=\"127.0.0.1:143\"} 2");
	/* escaped: \" for the quote, \\ for the backslash, \n for the line feed */
	assert_line(text, "gatehouse_backend_failures_total{backend=\"mx\","
			  "server=\"we\\\"ird\\\\host\\nx:25\"} 1");
}

/* ------------------------------------------------------------ checkers */

static char *
write_temp(const char *text)
{
	g_autoptr(GError) error = NULL;
	char *path = NULL;
	int fd = g_file_open_tmp("gh-metrics-XXXXXX.txt", &path, &error);

	g_assert_no_error(error);
	close(fd);
	g_file_set_contents(path, text, -1, &error);
	g_assert_no_error(error);
	return path;
}

/* Run argv with `input_path` as its standard input; its exit status, and
 * stdout and stderr together in *output. */
static int
run_with_input(const char *const *argv, const char *input_path, char **output)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(
	    G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE);
	g_autoptr(GSubprocess) proc = NULL;

	g_subprocess_launcher_set_stdin_file_path(launcher, input_path);
	proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
	g_assert_no_error(error);
	g_subprocess_communicate_utf8(proc, NULL, NULL, output, NULL, &error);
	g_assert_no_error(error);
	g_assert_true(g_subprocess_get_if_exited(proc));
	return g_subprocess_get_exit_status(proc);
}

static gboolean
python_has_prometheus_client(void)
{
	const char *argv[] = {"/usr/bin/python3", "-c", "import prometheus_client", NULL};
	int status = 1;

	if (!g_file_test("/usr/bin/python3", G_FILE_TEST_IS_EXECUTABLE))
		return FALSE;
	if (!g_spawn_sync(NULL, (char **)argv, NULL,
			  G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL,
			  NULL, &status, NULL))
		return FALSE;
	return g_spawn_check_wait_status(status, NULL);
}

/* promtool's check: exit 0 and nothing to say (a lint problem is printed
 * with exit 1 or, for some, exit 0). */
static void
check_promtool(const char *text)
{
	const char *argv[] = {"/usr/bin/promtool", "check", "metrics", NULL};
	g_autofree char *path = NULL;
	g_autofree char *out = NULL;
	int status;

	if (!g_file_test(argv[0], G_FILE_TEST_IS_EXECUTABLE)) {
		g_test_skip("no /usr/bin/promtool (Debian package prometheus)");
		return;
	}
	path = write_temp(text);
	status = run_with_input(argv, path, &out);
	g_test_message("promtool: %s", out);
	g_assert_cmpint(status, ==, 0);
	g_assert_cmpstr(out, ==, "");
	g_unlink(path);
}

/* prometheus_client's parser of the format: every family parsed, with the
 * types and (OpenMetrics) units written. */
static void
check_python(const char *text, gboolean om, gboolean full)
{
	g_autofree char *code =
	    g_strconcat("import sys\n"
			"from prometheus_client.",
			om ? "openmetrics.parser" : "parser",
			" import text_string_to_metric_families as parse\n"
			"for f in parse(sys.stdin.read()):\n"
			"    print(f.name, f.type, f.unit or '-', len(f.samples))\n",
			NULL);
	const char *argv[] = {"/usr/bin/python3", "-c", code, NULL};
	g_autofree char *path = NULL;
	g_autofree char *out = NULL;
	int status;

	if (!python_has_prometheus_client()) {
		g_test_skip(
		    "no prometheus_client for /usr/bin/python3 (python3-prometheus-client)");
		return;
	}
	path = write_temp(text);
	status = run_with_input(argv, path, &out);
	g_test_message("prometheus_client: %s", out);
	g_assert_cmpint(status, ==, 0);
	{
		g_auto(GStrv) lines = g_strsplit(g_strstrip(out), "\n", -1);
		g_assert_cmpuint(g_strv_length(lines), ==, G_N_ELEMENTS(families));
	}
	if (!full) {
		assert_line(out, "gatehouse_logins counter - 0");
		g_unlink(path);
		return;
	}
	/* family names as the client library spells them: without _total */
	if (om) {
		assert_line(out, "gatehouse_relay_bytes counter bytes 4");
		assert_line(out, "gatehouse_auth_duration_seconds histogram seconds 15");
		assert_line(out, "gatehouse_start_time_seconds gauge seconds 1");
	} else {
		assert_line(out, "gatehouse_relay_bytes counter - 4");
		assert_line(out, "gatehouse_auth_duration_seconds histogram - 15");
	}
	assert_line(out, "gatehouse_sessions gauge - 7");
	assert_line(out, "gatehouse_logins counter - 2");
	assert_line(out, "gatehouse_backend_failures counter - 2");
	g_unlink(path);
}

/* ------------------------------------------------------------ render tests */

static void
test_render_text(void)
{
	g_autoptr(GhConfig) cfg = load_config("");
	g_autoptr(GhStats) st = make_stats();
	g_autofree char *text = render(cfg, st, FALSE);

	g_test_message("%s", text);
	assert_families(text, FALSE);
	assert_samples(text, FALSE);
	g_assert_null(strstr(text, "# EOF"));
	g_assert_true(g_str_has_suffix(text, "\n"));
	g_assert_true(g_utf8_validate(text, -1, NULL));
	check_promtool(text);
}

static void
test_render_openmetrics(void)
{
	g_autoptr(GhConfig) cfg = load_config("");
	g_autoptr(GhStats) st = make_stats();
	g_autofree char *text = render(cfg, st, TRUE);
	const char *eof;

	g_test_message("%s", text);
	assert_families(text, TRUE);
	assert_samples(text, TRUE);
	/* "# EOF" ends the text, once */
	eof = strstr(text, "# EOF\n");
	g_assert_nonnull(eof);
	g_assert_cmpstr(eof, ==, "# EOF\n");
	g_assert_true(eof == text || eof[-1] == '\n');
	check_python(text, TRUE, TRUE);
}

static void
test_render_text_python(void)
{
	g_autoptr(GhConfig) cfg = load_config("");
	g_autoptr(GhStats) st = make_stats();
	g_autofree char *text = render(cfg, st, FALSE);

	check_python(text, FALSE, TRUE);
}

/* Nothing counted yet: every family is there, with zeros. */
static void
test_render_empty(void)
{
	g_autoptr(GhConfig) cfg = load_config("");
	g_autoptr(GhStats) st = gh_stats_new();

	for (int om = 0; om <= 1; om++) {
		g_autofree char *text = render(cfg, st, om);
		assert_families(text, om);
		assert_line(text,
			    "gatehouse_connections_total{protocol=\"imap\",listener=\"imap\"} 0");
		assert_line(
		    text,
		    "gatehouse_sessions{protocol=\"imap\",listener=\"imap\",state=\"proxied\"} 0");
		assert_line(text, "gatehouse_auth_duration_seconds_bucket{le=\"+Inf\"} 0");
		assert_line(text, om ? "gatehouse_auth_duration_seconds_sum 0.0"
				     : "gatehouse_auth_duration_seconds_sum 0");
		assert_line(text, "gatehouse_auth_duration_seconds_count 0");
		assert_line(
		    text,
		    "gatehouse_relay_bytes_total{protocol=\"smtp\",direction=\"to_client\"} 0");
		g_assert_null(strstr(text, "gatehouse_logins_total{"));
		g_assert_null(strstr(text, "gatehouse_backend_failures_total{"));
		if (!om)
			check_promtool(text);
		else
			check_python(text, TRUE, FALSE);
	}
}

/* A GhMetricsInput without auth stats leaves those families out; a label
 * value that is not UTF-8 is repaired. */
static void
test_render_no_auth_bad_utf8(void)
{
	g_autoptr(GhConfig) cfg = load_config("");
	g_autoptr(GhStats) st = gh_stats_new();
	GhSnapshot snap = {.stats = st};
	GhMetricsInput in = {.config = cfg, .snap = &snap, .version = "x\xff"};
	g_autofree char *text = NULL;

	gh_stats_add(st, GH_STAT_BACKEND_FAILURES, 1, "dc", "h\xc3\x28:1");
	text = gh_metrics_render(&in, FALSE);
	g_assert_true(g_utf8_validate(text, -1, NULL));
	g_assert_null(strstr(text, "gatehouse_auth_workers"));
	g_assert_null(strstr(text, "gatehouse_auth_cache"));
	assert_line(text, "gatehouse_build_info{version=\"x\xef\xbf\xbd\"} 1");
	check_promtool(text);
}

/* Numbers never take the locale's decimal comma.  Only where such a locale
 * is installed (Debian's default has none; not a skip, which ./quickstart
 * check counts as a failure). */
static void
test_render_locale(void)
{
	static const char *const locales[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "fr_FR", NULL};
	g_autoptr(GhConfig) cfg = load_config("");
	g_autoptr(GhStats) st = make_stats();
	g_autofree char *saved = g_strdup(setlocale(LC_NUMERIC, NULL));
	const char *got = NULL;

	for (guint i = 0; locales[i] != NULL && got == NULL; i++)
		got = setlocale(LC_NUMERIC, locales[i]);
	if (got == NULL) {
		g_test_message("no locale with a decimal comma on this machine: not checked");
		return;
	}
	{
		g_autofree char *text = render(cfg, st, TRUE);
		assert_line(text, "gatehouse_auth_duration_seconds_bucket{le=\"0.0005\"} 1");
		assert_line(text, "gatehouse_auth_duration_seconds_sum 22.0223");
	}
	setlocale(LC_NUMERIC, saved);
}

/* ------------------------------------------------------------ negotiation */

static void
test_accept(void)
{
	static const struct {
		const char *accept;
		gboolean om;
	} cases[] = {
	    {NULL, FALSE},
	    {"", FALSE},
	    {"*/*", FALSE},
	    {"text/plain", FALSE},
	    {"application/openmetrics-text", TRUE},
	    {"Application/OpenMetrics-Text; version=1.0.0", TRUE},
	    /* what Prometheus 2.42 sends */
	    {"application/openmetrics-text;version=1.0.0,application/"
	     "openmetrics-text;version=0.0.1;"
	     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
	     TRUE},
	    {"text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5", FALSE},
	    {"application/openmetrics-text;q=0", FALSE},
	    {"application/openmetrics-text;q=bogus", FALSE},
	    {"application/openmetrics-text; q=0.5, */*; q=0.5", TRUE},
	    {"application/json", FALSE},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("Accept: %s", cases[i].accept ? cases[i].accept : "(none)");
		g_assert_cmpint(gh_metrics_accept_openmetrics(cases[i].accept), ==, cases[i].om);
	}
}

/* ------------------------------------------------------------ server.c stubs */

/* The endpoint's GhServer: what the stubs below answer.  `hold` keeps
 * snapshot requests until release_snapshots(); otherwise they are answered
 * from an idle source, never inside the call (as the workers answer). */
typedef struct {
	GhConfig *config;
	GhStats *stats;
	GhAuthCore *core; /* a real one, idle: 3 workers, nothing else */
	gboolean hold;
	GPtrArray *held; /* of Pending */
	guint asked;
} FakeServer;

typedef struct {
	GhSnapshotFunc func;
	gpointer data;
} Pending;

static FakeServer fake;

GhConfig *
gh_server_get_config(GhServer *server)
{
	g_assert_true((gpointer)server == (gpointer)&fake);
	return gh_config_ref(fake.config);
}

GhAuthCore *
gh_server_get_auth_core(GhServer *server)
{
	return fake.core;
}

gint64
gh_server_started(GhServer *server)
{
	return 1700000000;
}

guint
gh_server_generation(GhServer *server)
{
	return 1;
}

void
gh_server_reloads(GhServer *server, guint *ok, guint *failed)
{
	*ok = 0;
	*failed = 0;
}

static void
answer_pending(Pending *p)
{
	GhSnapshot snap = {.stats = fake.stats, .now_us = g_get_monotonic_time()};
	p->func(&snap, p->data);
	g_free(p);
}

static gboolean
answer_idle(gpointer data)
{
	answer_pending(data);
	return G_SOURCE_REMOVE;
}

void
gh_server_snapshot(GhServer *server, gboolean with_sessions, GhSnapshotFunc func, gpointer data)
{
	Pending *p = g_new0(Pending, 1);

	g_assert_false(with_sessions);
	p->func = func;
	p->data = data;
	fake.asked++;
	if (fake.hold)
		g_ptr_array_add(fake.held, p);
	else
		g_idle_add(answer_idle, p);
}

static void
release_snapshots(void)
{
	g_autoptr(GPtrArray) held = g_steal_pointer(&fake.held);

	fake.held = g_ptr_array_new();
	fake.hold = FALSE;
	for (guint i = 0; i < held->len; i++)
		answer_pending(g_ptr_array_index(held, i));
}

static void
fake_setup(void)
{
	GhAuthSettings settings = {.workers = 3, .queue_max = 16, .cache_size = 100};

	fake.core = gh_auth_core_new(&settings);
	fake.config = load_config("");
	fake.stats = make_stats();
	fake.hold = FALSE;
	fake.held = g_ptr_array_new();
	fake.asked = 0;
}

static void
fake_teardown(void)
{
	g_assert_cmpuint(fake.held->len, ==, 0);
	g_clear_pointer(&fake.held, g_ptr_array_unref);
	g_clear_pointer(&fake.stats, gh_stats_free);
	g_clear_pointer(&fake.config, gh_config_unref);
	g_clear_pointer(&fake.core, gh_auth_core_free);
}

/* ------------------------------------------------------------ endpoint tests */

static GhMetricsServer *
start_endpoint(void)
{
	g_autoptr(GError) error = NULL;
	GhHostPort hp = {(char *)"127.0.0.1", 0};
	GhMetricsServer *ms = gh_metrics_server_new((GhServer *)&fake, &hp, &error);

	g_assert_no_error(error);
	g_assert_nonnull(ms);
	g_assert_cmpuint(gh_metrics_server_port(ms), >, 0);
	return ms;
}

typedef struct {
	guint status;
	char *content_type;
	char *allow;
	GBytes *body;
	gboolean done;
} Reply;

static void
reply_clear(Reply *r)
{
	g_free(r->content_type);
	g_free(r->allow);
	g_clear_pointer(&r->body, g_bytes_unref);
}

static void
on_sent(GObject *source, GAsyncResult *res, gpointer data)
{
	Reply *r = data;
	g_autoptr(GError) error = NULL;

	r->body = soup_session_send_and_read_finish(SOUP_SESSION(source), res, &error);
	g_assert_no_error(error);
	r->done = TRUE;
}

/* One request with a real HTTP client, on this thread's loop. */
static void
request(GhMetricsServer *ms, const char *method, const char *path, const char *accept, Reply *r)
{
	g_autoptr(SoupSession) session = soup_session_new();
	g_autofree char *uri =
	    g_strdup_printf("http://127.0.0.1:%u%s", gh_metrics_server_port(ms), path);
	g_autoptr(SoupMessage) msg = soup_message_new(method, uri);
	SoupMessageHeaders *rh;

	memset(r, 0, sizeof *r);
	if (accept != NULL)
		soup_message_headers_replace(soup_message_get_request_headers(msg), "Accept",
					     accept);
	soup_session_send_and_read_async(session, msg, G_PRIORITY_DEFAULT, NULL, on_sent, r);
	while (!r->done)
		g_main_context_iteration(NULL, TRUE);
	r->status = soup_message_get_status(msg);
	rh = soup_message_get_response_headers(msg);
	r->content_type = g_strdup(soup_message_headers_get_one(rh, "Content-Type"));
	r->allow = g_strdup(soup_message_headers_get_one(rh, "Allow"));
}

static char *
body_text(const Reply *r)
{
	gsize n = 0;
	const char *data = g_bytes_get_data(r->body, &n);
	return g_strndup(data, n);
}

static void
test_endpoint_get(void)
{
	g_autoptr(GhMetricsServer) ms = NULL;
	Reply r;

	fake_setup();
	ms = start_endpoint();

	request(ms, "GET", "/metrics", NULL, &r);
	g_assert_cmpuint(r.status, ==, 200);
	g_assert_cmpstr(r.content_type, ==, "text/plain; version=0.0.4; charset=utf-8");
	{
		g_autofree char *text = body_text(&r);
		assert_line(text, "gatehouse_start_time_seconds 1700000000");
		assert_line(text, "gatehouse_config_generation 1");
		assert_line(text, "gatehouse_build_info{version=\"" PACKAGE_VERSION "\"} 1");
		assert_line(
		    text,
		    "gatehouse_sessions{protocol=\"imap\",listener=\"imap\",state=\"proxied\"} 1");
		/* the auth core's own numbers */
		assert_line(text, "gatehouse_auth_workers 3");
		assert_line(text, "gatehouse_auth_workers_busy 0");
		assert_line(text, "gatehouse_auth_cache_entries 0");
		g_assert_null(strstr(text, "# EOF"));
		check_promtool(text);
	}
	reply_clear(&r);

	request(ms, "GET", "/metrics", "application/openmetrics-text; version=1.0.0", &r);
	g_assert_cmpuint(r.status, ==, 200);
	g_assert_cmpstr(r.content_type, ==,
			"application/openmetrics-text; version=1.0.0; charset=utf-8");
	{
		g_autofree char *text = body_text(&r);
		g_assert_true(g_str_has_suffix(text, "\n# EOF\n"));
		assert_line(text, "# TYPE gatehouse_logins counter");
	}
	reply_clear(&r);

	/* HEAD: the headers of a GET, no body */
	request(ms, "HEAD", "/metrics", NULL, &r);
	g_assert_cmpuint(r.status, ==, 200);
	g_assert_cmpstr(r.content_type, ==, "text/plain; version=0.0.4; charset=utf-8");
	g_assert_cmpuint(g_bytes_get_size(r.body), ==, 0);
	reply_clear(&r);

	g_assert_cmpuint(fake.asked, ==, 3);

	request(ms, "GET", "/other", NULL, &r);
	g_assert_cmpuint(r.status, ==, 404);
	reply_clear(&r);
	request(ms, "GET", "/", NULL, &r);
	g_assert_cmpuint(r.status, ==, 404);
	reply_clear(&r);
	request(ms, "GET", "/metrics/x", NULL, &r);
	g_assert_cmpuint(r.status, ==, 404);
	reply_clear(&r);

	request(ms, "POST", "/metrics", NULL, &r);
	g_assert_cmpuint(r.status, ==, 405);
	g_assert_cmpstr(r.allow, ==, "GET, HEAD");
	reply_clear(&r);
	request(ms, "DELETE", "/metrics", NULL, &r);
	g_assert_cmpuint(r.status, ==, 405);
	reply_clear(&r);

	/* neither 404 nor 405 asked the workers */
	g_assert_cmpuint(fake.asked, ==, 3);
	g_clear_pointer(&ms, gh_metrics_server_free);
	fake_teardown();
}

/* A raw connection that sends a GET of /metrics: the client that goes
 * away. */
static GSocketConnection *
raw_get(GhMetricsServer *ms)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GSocketClient) client = g_socket_client_new();
	GSocketConnection *conn = g_socket_client_connect_to_host(
	    client, "127.0.0.1", gh_metrics_server_port(ms), NULL, &error);
	const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

	g_assert_no_error(error);
	g_output_stream_write_all(g_io_stream_get_output_stream(G_IO_STREAM(conn)), req,
				  sizeof req - 1, NULL, NULL, &error);
	g_assert_no_error(error);
	return conn;
}

static void
iterate_until_asked(guint n)
{
	while (fake.asked < n)
		g_main_context_iteration(NULL, TRUE);
}

static void
iterate_a_while(void)
{
	/* let libsoup see what there is to see (no timing assertion: this
	 * only gives it turns of the loop) */
	for (guint i = 0; i < 50; i++) {
		g_main_context_iteration(NULL, FALSE);
		g_usleep(1000);
	}
}

/* The client closes while its scrape waits for the snapshot: the answer,
 * when it comes, goes nowhere, without a critical (G_DEBUG makes those
 * fatal here), and the endpoint still serves the next client. */
static void
test_endpoint_client_gone(void)
{
	g_autoptr(GhMetricsServer) ms = NULL;
	g_autoptr(GSocketConnection) conn = NULL;
	Reply r;

	fake_setup();
	ms = start_endpoint();
	fake.hold = TRUE;
	conn = raw_get(ms);
	iterate_until_asked(1);
	g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
	g_clear_object(&conn);
	iterate_a_while();
	release_snapshots();
	iterate_a_while();

	request(ms, "GET", "/metrics", NULL, &r);
	g_assert_cmpuint(r.status, ==, 200);
	reply_clear(&r);
	g_clear_pointer(&ms, gh_metrics_server_free);
	fake_teardown();
}

/* The endpoint is freed (gatehoused stops) while scrapes wait: their
 * answers, when they come, touch neither the endpoint nor the connection. */
static void
test_endpoint_freed_while_waiting(void)
{
	GhMetricsServer *ms;
	g_autoptr(GSocketConnection) a = NULL;
	g_autoptr(GSocketConnection) b = NULL;
	char buf[64];
	gssize n;

	fake_setup();
	ms = start_endpoint();
	fake.hold = TRUE;
	a = raw_get(ms);
	b = raw_get(ms);
	iterate_until_asked(2);
	gh_metrics_server_free(ms);
	iterate_a_while();
	release_snapshots();
	iterate_a_while();
	/* the clients got no answer, only the end of the connection */
	n = g_input_stream_read(g_io_stream_get_input_stream(G_IO_STREAM(a)), buf, sizeof buf, NULL,
				NULL);
	g_assert_cmpint(n, <=, 0);
	fake_teardown();
}

static void
on_connected(GObject *source, GAsyncResult *res, gpointer data)
{
	GSocketConnection **conn = data;
	g_autoptr(GError) error = NULL;

	*conn = g_socket_client_connect_finish(G_SOCKET_CLIENT(source), res, &error);
	g_assert_no_error(error);
}

/* A connection made while the loop turns, so that the endpoint accepts it
 * now and not from a full backlog later. */
static GSocketConnection *
raw_connect(GhMetricsServer *ms)
{
	g_autoptr(GSocketClient) client = g_socket_client_new();
	g_autoptr(GSocketConnectable) addr =
	    g_network_address_new("127.0.0.1", gh_metrics_server_port(ms));
	GSocketConnection *conn = NULL;

	g_socket_client_connect_async(client, addr, NULL, on_connected, &conn);
	while (conn == NULL)
		g_main_context_iteration(NULL, TRUE);
	g_socket_set_blocking(g_socket_connection_get_socket(conn), FALSE);
	return conn;
}

/* Everything the server sends on `conn` until it closes, turning this
 * thread's loop (the endpoint's) meanwhile. */
static char *
read_to_eof(GSocketConnection *conn)
{
	GString *got = g_string_new(NULL);
	GSocket *sock = g_socket_connection_get_socket(conn);

	for (;;) {
		g_autoptr(GError) error = NULL;
		char buf[4096];
		gssize n;

		g_main_context_iteration(NULL, FALSE);
		n = g_socket_receive(sock, buf, sizeof buf, NULL, &error);
		if (n == 0)
			break;
		if (n > 0) {
			g_string_append_len(got, buf, n);
			continue;
		}
		if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED))
			break;
		g_assert_error(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
		g_usleep(1000);
	}
	return g_string_free(got, FALSE);
}

/* At most 64 connections at a time: one more is closed at once, the ones
 * open are still served, and once they close the endpoint takes new ones. */
static void
test_endpoint_connection_cap(void)
{
	g_autoptr(GhMetricsServer) ms = NULL;
	g_autoptr(GPtrArray) idle = g_ptr_array_new_with_free_func(g_object_unref);
	g_autoptr(GSocketConnection) extra = NULL;
	g_autofree char *refused = NULL;
	g_autofree char *answer = NULL;
	const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	Reply r;

	fake_setup();
	ms = start_endpoint();
	/* accepted in the order they connect: the 65th is the one refused */
	for (guint i = 0; i < 64; i++)
		g_ptr_array_add(idle, raw_connect(ms));
	g_test_expect_message("gh-daemon", G_LOG_LEVEL_WARNING,
			      "metrics: 64 connections open, refusing more until one closes");
	extra = raw_connect(ms);
	refused = read_to_eof(extra);
	g_assert_cmpstr(refused, ==, "");
	g_test_assert_expected_messages();

	g_assert_cmpint(g_socket_send(g_socket_connection_get_socket(idle->pdata[0]), req,
				      sizeof req - 1, NULL, NULL),
			==, sizeof req - 1);
	answer = read_to_eof(idle->pdata[0]);
	g_assert_true(g_str_has_prefix(answer, "HTTP/1.1 200 OK\r\n"));
	g_assert_nonnull(strstr(answer, "\r\n\r\n# HELP gatehouse_build_info "));

	for (guint i = 0; i < idle->len; i++)
		g_io_stream_close(idle->pdata[i], NULL, NULL);
	g_ptr_array_set_size(idle, 0);
	iterate_a_while();
	request(ms, "GET", "/metrics", NULL, &r);
	g_assert_cmpuint(r.status, ==, 200);
	reply_clear(&r);
	g_clear_pointer(&ms, gh_metrics_server_free);
	fake_teardown();
}

/* "*" is 0.0.0.0 (as for the listeners); an IPv6 address is bound as
 * given (where this machine has IPv6 loopback). */
static void
test_endpoint_addresses(void)
{
	g_autoptr(GError) error = NULL;
	GhHostPort any = {(char *)"*", 0};
	GhHostPort v6 = {(char *)"::1", 0};
	GhMetricsServer *ms;
	Reply r;

	fake_setup();
	ms = gh_metrics_server_new((GhServer *)&fake, &any, &error);
	g_assert_no_error(error);
	request(ms, "GET", "/metrics", NULL, &r);
	g_assert_cmpuint(r.status, ==, 200);
	reply_clear(&r);
	gh_metrics_server_free(ms);

	ms = gh_metrics_server_new((GhServer *)&fake, &v6, &error);
	if (ms == NULL) {
		g_test_message("no IPv6 loopback here (%s): [::1] not checked", error->message);
	} else {
		g_autoptr(SoupSession) session = soup_session_new();
		g_autofree char *uri =
		    g_strdup_printf("http://[::1]:%u/metrics", gh_metrics_server_port(ms));
		g_autoptr(SoupMessage) msg = soup_message_new("GET", uri);
		memset(&r, 0, sizeof r);
		soup_session_send_and_read_async(session, msg, G_PRIORITY_DEFAULT, NULL, on_sent,
						 &r);
		while (!r.done)
			g_main_context_iteration(NULL, TRUE);
		g_assert_cmpuint(soup_message_get_status(msg), ==, 200);
		reply_clear(&r);
		gh_metrics_server_free(ms);
	}
	fake_teardown();
}

static void
test_endpoint_address_in_use(void)
{
	g_autoptr(GhMetricsServer) ms = NULL;
	g_autoptr(GError) error = NULL;
	GhHostPort hp = {(char *)"127.0.0.1", 0};
	GhMetricsServer *second;
	g_autofree char *want = NULL;

	fake_setup();
	ms = start_endpoint();
	hp.port = gh_metrics_server_port(ms);
	second = gh_metrics_server_new((GhServer *)&fake, &hp, &error);
	g_assert_null(second);
	g_assert_nonnull(error);
	want = g_strdup_printf("metrics endpoint: cannot listen on 127.0.0.1:%u: ", hp.port);
	g_test_message("%s", error->message);
	g_assert_true(g_str_has_prefix(error->message, want));
	g_assert_nonnull(strstr(error->message, "in use"));
	g_clear_pointer(&ms, gh_metrics_server_free);
	fake_teardown();
}

/* ------------------------------------------------------------ [metrics] */

static void
test_config_good(void)
{
	static const struct {
		const char *text;
		const char *host;
		guint port;
	} cases[] = {
	    {"", NULL, 0},
	    {"[metrics]\n", NULL, 0},
	    {"[metrics]\nlisten = 127.0.0.1:9154\n", "127.0.0.1", 9154},
	    {"[metrics]\nlisten = [::1]:9154\n", "::1", 9154},
	    {"[metrics]\nlisten = *:9154\n", "*", 9154},
	    {"[metrics]\nlisten = 0.0.0.0:80\n", "0.0.0.0", 80},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GhConfig) cfg = load_config(cases[i].text);
		if (cases[i].host == NULL) {
			g_assert_null(cfg->metrics_listen);
			continue;
		}
		g_assert_nonnull(cfg->metrics_listen);
		g_assert_cmpstr(cfg->metrics_listen->host, ==, cases[i].host);
		g_assert_cmpuint(cfg->metrics_listen->port, ==, cases[i].port);
	}
}

static void
test_config_bad(void)
{
	static const struct {
		const char *text;
		guint line; /* from the first line of text */
		const char *want;
	} cases[] = {
	    {"[metrics]\nlisten = 9154\n", 2,
	     "[metrics] listen: bad listen address '9154': missing port"},
	    {"[metrics]\nlisten = 127.0.0.1\n", 2,
	     "[metrics] listen: bad listen address '127.0.0.1': missing port"},
	    {"[metrics]\nlisten = 127.0.0.1:0\n", 2,
	     "[metrics] listen: bad listen address '127.0.0.1:0': bad port"},
	    {"[metrics]\nlisten = 127.0.0.1:65536\n", 2,
	     "[metrics] listen: bad listen address '127.0.0.1:65536': bad port"},
	    {"[metrics]\nlisten = localhost:9154\n", 2,
	     "[metrics] listen: bad listen address 'localhost:9154': an IP address or '*' is "
	     "needed, not a host name"},
	    {"[metrics]\nlisten = ::1:9154\n", 2,
	     "[metrics] listen: bad listen address '::1:9154': IPv6 address needs [brackets]"},
	    {"[metrics]\nlisten = [::1]\n", 2,
	     "[metrics] listen: bad listen address '[::1]': missing port"},
	    {"[metrics]\nlisten = 300.1.1.1:9154\n", 2,
	     "[metrics] listen: bad listen address '300.1.1.1:9154': bad address"},
	    {"[metrics]\nlisten = 127.0.0.1:9154 [::1]:9154\n", 2,
	     "[metrics] listen: '127.0.0.1:9154 [::1]:9154': one address only"},
	    {"[metrics]\nlisten =\n", 2, "[metrics] listen: empty value"},
	    {"[metrics]\nlisten = 127.0.0.1:9154\nport = 9154\n", 3,
	     "[metrics] port: unknown key (known here: listen)"},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		ConfFile cf;
		g_autofree char *text = g_strconcat(CONFIG_HEAD, cases[i].text, NULL);
		g_autofree char *want = NULL;
		GhConfig *cfg;

		conf_init(&cf);
		cfg = conf_load(&cf, text);
		want = g_strdup_printf("%s:%u: %s", cf.path, CONFIG_HEAD_LINES + cases[i].line,
				       cases[i].want);
		for (guint j = 0; j < cf.problems->len; j++)
			g_test_message("problem: %s",
				       (const char *)g_ptr_array_index(cf.problems, j));
		g_assert_null(cfg);
		g_assert_cmpuint(cf.problems->len, ==, 1);
		g_assert_true(g_str_has_prefix(g_ptr_array_index(cf.problems, 0), want));
		conf_clear(&cf);
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/metrics/render-text", test_render_text);
	g_test_add_func("/gatehouse/metrics/render-text-python", test_render_text_python);
	g_test_add_func("/gatehouse/metrics/render-openmetrics", test_render_openmetrics);
	g_test_add_func("/gatehouse/metrics/render-empty", test_render_empty);
	g_test_add_func("/gatehouse/metrics/render-no-auth-bad-utf8", test_render_no_auth_bad_utf8);
	g_test_add_func("/gatehouse/metrics/render-locale", test_render_locale);
	g_test_add_func("/gatehouse/metrics/accept", test_accept);
	g_test_add_func("/gatehouse/metrics/endpoint-get", test_endpoint_get);
	g_test_add_func("/gatehouse/metrics/endpoint-client-gone", test_endpoint_client_gone);
	g_test_add_func("/gatehouse/metrics/endpoint-freed-while-waiting",
			test_endpoint_freed_while_waiting);
	g_test_add_func("/gatehouse/metrics/endpoint-connection-cap", test_endpoint_connection_cap);
	g_test_add_func("/gatehouse/metrics/endpoint-addresses", test_endpoint_addresses);
	g_test_add_func("/gatehouse/metrics/endpoint-address-in-use", test_endpoint_address_in_use);
	g_test_add_func("/gatehouse/metrics/config-good", test_config_good);
	g_test_add_func("/gatehouse/metrics/config-bad", test_config_bad);
	return g_test_run();
}
