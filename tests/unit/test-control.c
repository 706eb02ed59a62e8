/*
 * test-control.c: the pure half of the control socket
 * (daemon/core/control-format.c): request lines byte by byte, session
 * filters, and the answers' exact text and JSON.
 */
#include "gh-build.h"

#include "core/control-format.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

/* ------------------------------------------------------------ requests */

static char *
parse_error(const char *line)
{
	GhControlRequest req;
	char *why = NULL;
	g_assert_false(gh_control_parse_request(line, &req, &why));
	g_assert_nonnull(why);
	g_assert_null(req.command);
	return why;
}

static void
test_parse_good(void)
{
	GhControlRequest req;
	char *why = NULL;

	g_assert_true(gh_control_parse_request("stats", &req, &why));
	g_assert_cmpstr(req.command, ==, "stats");
	g_assert_false(req.json);
	g_assert_cmpstr(req.filter.text, ==, "");
	gh_control_request_clear(&req);

	/* a CR before the LF is a telnet user's; allowed */
	g_assert_true(gh_control_parse_request("stats\tjson\r", &req, &why));
	g_assert_true(req.json);
	gh_control_request_clear(&req);

	g_assert_true(
	    gh_control_parse_request("sessions\tuser=Alice\tremote=10.0.0.0/8\tjson", &req, &why));
	g_assert_cmpstr(req.command, ==, "sessions");
	g_assert_cmpstr(req.filter.user, ==, "Alice");
	g_assert_cmpstr(req.filter.user_shown, ==, "Alice");
	g_assert_nonnull(req.filter.remote);
	g_assert_null(req.filter.session);
	g_assert_cmpstr(req.filter.text, ==, "user=Alice remote=10.0.0.0/8");
	gh_control_request_clear(&req);

	g_assert_true(gh_control_parse_request("kick\tsession=abc123", &req, &why));
	g_assert_cmpstr(req.filter.session, ==, "abc123");
	gh_control_request_clear(&req);

	/* a user name with a quote: what is shown (and matched against the
	 * sessions' escaped names) is escaped, what is flushed is not */
	g_assert_true(gh_control_parse_request("flush-cache\tuser=a\"b", &req, &why));
	g_assert_cmpstr(req.filter.user, ==, "a\"b");
	g_assert_cmpstr(req.filter.user_shown, ==, "a\\x22b");
	gh_control_request_clear(&req);

	g_assert_true(gh_control_parse_request("metrics\topenmetrics", &req, &why));
	g_assert_true(req.openmetrics);
	gh_control_request_clear(&req);

	g_assert_true(gh_control_parse_request("reload", &req, &why));
	gh_control_request_clear(&req);
	g_assert_null(why);
}

static void
test_parse_bad(void)
{
	static const struct {
		const char *line;
		const char *why;
	} cases[] = {
	    {"", "empty request"},
	    {"\tjson", "empty request"},
	    {"bogus", "unknown command 'bogus'"},
	    {"STATS", "unknown command 'STATS'"},
	    {"st\x7f", "unknown command 'st\\x7f'"},
	    {"stats\x01", "malformed request: control character"},
	    {"stats\n", "malformed request: control character"},
	    {"stats\xff", "malformed request: not UTF-8"},
	    {"kick", "kick wants user=, session= or remote="},
	    {"kick\tjson", "kick wants user=, session= or remote="},
	    {"kick\tuser=", "user: empty value"},
	    {"stats\tuser=x", "user=x: not an argument of stats"},
	    {"stats\topenmetrics", "openmetrics: not an argument of stats"},
	    {"metrics\tjson", "json: not an argument of metrics"},
	    {"reload\tnow", "now: not an argument of reload"},
	    {"flush-cache\tremote=1.2.3.4", "remote=1.2.3.4: not an argument of flush-cache"},
	    {"sessions\tuser=a\tuser=b", "user=b: not an argument of sessions"},
	    {"sessions\tremote=example.org",
	     "remote=example.org: not an address or a network (ADDRESS or ADDRESS/BITS)"},
	    {"sessions\tremote=10.0.0.0/33",
	     "remote=10.0.0.0/33: not an address or a network (ADDRESS or ADDRESS/BITS)"},
	};
	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *why = parse_error(cases[i].line);
		g_assert_cmpstr(why, ==, cases[i].why);
	}
}

/* ------------------------------------------------------------ filters */

static GhSessionInfo
info(const char *id, const char *remote, const char *user)
{
	GhSessionInfo i;
	memset(&i, 0, sizeof i);
	g_strlcpy(i.id, id, sizeof i.id);
	i.protocol = "imap";
	i.listener = g_strdup("imap");
	i.remote = g_strdup(remote);
	i.user = g_strdup(user);
	return i;
}

static gboolean
matches(const char *request, const GhSessionInfo *s)
{
	GhControlRequest req;
	char *why = NULL;
	gboolean hit;
	g_assert_true(gh_control_parse_request(request, &req, &why));
	hit = gh_session_filter_match(s, &req.filter);
	gh_control_request_clear(&req);
	return hit;
}

static void
test_filter(void)
{
	GhSessionInfo a = info("aaaa", "192.0.2.7", "alice");
	GhSessionInfo b = info("bbbb", "2001:db8::5", "a\\x22b");
	GhSessionInfo c = info("cccc", "198.51.100.1", NULL);

	g_assert_true(matches("sessions", &a));
	g_assert_true(matches("sessions", &c));
	g_assert_true(matches("sessions\tuser=ALICE", &a));
	g_assert_false(matches("sessions\tuser=alic", &a));
	g_assert_false(matches("sessions\tuser=alice", &c));
	g_assert_true(matches("sessions\tuser=a\"b", &b));
	g_assert_true(matches("sessions\tremote=192.0.2.0/24", &a));
	g_assert_true(matches("sessions\tremote=192.0.2.7", &a));
	g_assert_false(matches("sessions\tremote=192.0.2.8", &a));
	g_assert_false(matches("sessions\tremote=192.0.2.0/24", &b));
	g_assert_true(matches("sessions\tremote=2001:db8::/32", &b));
	g_assert_false(matches("sessions\tremote=::/0", &a));
	g_assert_true(matches("kick\tsession=bbbb", &b));
	g_assert_false(matches("kick\tsession=bbbb", &a));
	/* everything given must match */
	g_assert_false(matches("kick\tuser=alice\tremote=10.0.0.0/8", &a));
	g_assert_true(matches("kick\tuser=alice\tremote=192.0.2.0/24", &a));
	gh_session_info_clear(&a);
	gh_session_info_clear(&b);
	gh_session_info_clear(&c);
}

/* ------------------------------------------------------------ answers */

static void
test_age(void)
{
	static const struct {
		gint64 s;
		const char *text;
	} cases[] = {{-3, "0s"},           {0, "0s"},        {59, "59s"},
		     {60, "1m00s"},        {3599, "59m59s"}, {3600, "1h00m00s"},
		     {86399, "23h59m59s"}, {86400, "1d00h"}, {200000, "2d07h"}};
	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *t = gh_control_format_age(cases[i].s);
		g_assert_cmpstr(t, ==, cases[i].text);
	}
}

static GhSnapshot
two_sessions(void)
{
	GhSnapshot snap = {0};
	GhSessionInfo a = info("aaaaaaaaaaaa", "192.0.2.7", "alice");
	GhSessionInfo b = info("bbbbbbbbbbbb", "2001:db8::5", NULL);

	a.state = GH_SESSION_PROXIED;
	a.backend = g_strdup("10.0.0.1:143");
	a.tls = g_strdup("TLS1.3/AES-256-GCM");
	a.started_us = 1000 * G_USEC_PER_SEC;
	a.bytes_up = 120;
	a.bytes_down = 4567;
	b.state = GH_SESSION_PRE_LOGIN;
	b.started_us = 1095 * G_USEC_PER_SEC;
	snap.now_us = 1100 * G_USEC_PER_SEC + 500;
	snap.sessions = g_array_new(FALSE, FALSE, sizeof(GhSessionInfo));
	g_array_set_clear_func(snap.sessions, (GDestroyNotify)gh_session_info_clear);
	g_array_append_val(snap.sessions, a);
	g_array_append_val(snap.sessions, b);
	snap.n_sessions = 2;
	return snap;
}

static void
test_sessions_text(void)
{
	GhSnapshot snap = two_sessions();
	GhSessionFilter none = {0};
	g_autoptr(GString) out = g_string_new(NULL);

	gh_control_format_sessions(out, &snap, &none, 100, FALSE);
	g_assert_cmpstr(
	    out->str, ==,
	    "ID            PROTO  LISTENER  REMOTE       USER   STATE      BACKEND       "
	    "AGE    UP   DOWN  TLS\n"
	    "aaaaaaaaaaaa  imap   imap      192.0.2.7    alice  proxied    10.0.0.1:143  "
	    "1m40s  120  4567  TLS1.3/AES-256-GCM\n"
	    "bbbbbbbbbbbb  imap   imap      2001:db8::5  -      pre-login  -             "
	    "5s     0    0     no\n");

	/* a bound: the rest is counted, not shown */
	g_string_truncate(out, 0);
	gh_control_format_sessions(out, &snap, &none, 1, FALSE);
	g_assert_true(g_str_has_suffix(out->str, "(1 more not shown)\n"));
	g_assert_null(strstr(out->str, "bbbbbbbbbbbb"));

	/* a filter that matches nothing: the header alone */
	{
		GhControlRequest req;
		char *why = NULL;
		g_assert_true(gh_control_parse_request("sessions\tuser=bob", &req, &why));
		g_string_truncate(out, 0);
		gh_control_format_sessions(out, &snap, &req.filter, 100, FALSE);
		g_assert_cmpstr(
		    out->str, ==,
		    "ID  PROTO  LISTENER  REMOTE  USER  STATE  BACKEND  AGE  UP  DOWN  TLS\n");
		gh_control_request_clear(&req);
	}
	g_array_unref(snap.sessions);
}

static void
test_sessions_json(void)
{
	GhSnapshot snap = two_sessions();
	GhSessionFilter none = {0};
	g_autoptr(GString) out = g_string_new(NULL);
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autoptr(GError) error = NULL;
	JsonObject *root, *first, *second;
	JsonArray *list;

	gh_control_format_sessions(out, &snap, &none, 100, TRUE);
	g_assert_true(g_str_has_suffix(out->str, "}\n"));
	g_assert_true(json_parser_load_from_data(parser, out->str, -1, &error));
	g_assert_no_error(error);
	root = json_node_get_object(json_parser_get_root(parser));
	g_assert_cmpint(json_object_get_int_member(root, "not_shown"), ==, 0);
	list = json_object_get_array_member(root, "sessions");
	g_assert_cmpuint(json_array_get_length(list), ==, 2);
	first = json_array_get_object_element(list, 0);
	g_assert_cmpstr(json_object_get_string_member(first, "id"), ==, "aaaaaaaaaaaa");
	g_assert_cmpstr(json_object_get_string_member(first, "protocol"), ==, "imap");
	g_assert_cmpstr(json_object_get_string_member(first, "user"), ==, "alice");
	g_assert_cmpstr(json_object_get_string_member(first, "state"), ==, "proxied");
	g_assert_cmpstr(json_object_get_string_member(first, "backend"), ==, "10.0.0.1:143");
	g_assert_cmpint(json_object_get_int_member(first, "age_seconds"), ==, 100);
	g_assert_cmpint(json_object_get_int_member(first, "bytes_up"), ==, 120);
	g_assert_cmpint(json_object_get_int_member(first, "bytes_down"), ==, 4567);
	g_assert_cmpstr(json_object_get_string_member(first, "tls"), ==, "TLS1.3/AES-256-GCM");
	second = json_array_get_object_element(list, 1);
	g_assert_true(json_object_get_null_member(second, "user"));
	g_assert_true(json_object_get_null_member(second, "backend"));
	g_assert_true(json_object_get_null_member(second, "tls"));
	g_assert_cmpstr(json_object_get_string_member(second, "state"), ==, "pre-login");
	g_array_unref(snap.sessions);
}

static void
test_reload(void)
{
	g_autoptr(GString) out = g_string_new(NULL);
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);

	gh_control_format_reload(out, TRUE, 3, problems, FALSE);
	g_assert_cmpstr(out->str, ==, "reloaded: configuration generation 3\n");
	g_ptr_array_add(problems, g_strdup("/etc/gh.conf:7: [listener imap] tls: 'maybe' is not "
					   "none, starttls or implicit"));
	g_string_truncate(out, 0);
	gh_control_format_reload(out, FALSE, 3, problems, FALSE);
	g_assert_cmpstr(out->str, ==,
			"/etc/gh.conf:7: [listener imap] tls: 'maybe' is not none, starttls or "
			"implicit\n"
			"reload refused (1 problem): configuration generation 3 stays in force\n");
	g_string_truncate(out, 0);
	gh_control_format_reload(out, FALSE, 3, problems, TRUE);
	g_assert_cmpstr(
	    out->str, ==,
	    "{\"reloaded\":false,\"config_generation\":3,\"problems\":[\"/etc/gh.conf:7: "
	    "[listener imap] tls: 'maybe' is not none, starttls or implicit\"]}\n");
}

/* a configuration with two listeners, from a temporary file */
static GhConfig *
two_listeners(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("gh-control-XXXXXX", &error);
	g_autofree char *path = g_build_filename(dir, "gatehouse.conf", NULL);
	g_autofree char *users = g_build_filename(dir, "users", NULL);
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *text = g_strdup_printf(
	    "[gatehouse]\nhostname = gw.test\n\n"
	    "[listener imap]\nprotocol = imap\nlisten = 127.0.0.1:1143\nauth = users\n"
	    "backend = imap\n\n"
	    "[listener submission]\nprotocol = smtp\nlisten = 127.0.0.1:1587\n"
	    "require_auth = yes\nauth = users\nbackend = smtp\n\n"
	    "[auth users]\nmodule = file\npath = %s\n\n"
	    "[backend imap]\nprotocol = imap\nservers = 127.0.0.1:143\n\n"
	    "[backend smtp]\nprotocol = smtp\nservers = 127.0.0.1:25\nlogin = xclient\n",
	    users);
	GhConfig *cfg;

	g_assert_no_error(error);
	g_assert_true(g_file_set_contents(users, "", -1, NULL));
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	cfg = gh_config_load(path, problems);
	for (guint i = 0; i < problems->len; i++)
		g_printerr("%s\n", (char *)g_ptr_array_index(problems, i));
	g_assert_nonnull(cfg);
	g_unlink(path);
	g_unlink(users);
	g_rmdir(dir);
	return cfg;
}

static void
test_stats_text(void)
{
	g_autoptr(GhStats) st = gh_stats_new();
	g_autoptr(GString) out = g_string_new(NULL);
	GhStatsView v = {
	    .version = "9.9",
	    .started = 1796510043, /* 2026-12-05 22:34:03 UTC */
	    .now = 1796510043 + 3723,
	    .generation = 2,
	    .reloads_ok = 1,
	    .reloads_failed = 1,
	    .config = two_listeners(),
	    .stats = st,
	    .n_sessions = 3,
	    .auth = {.workers = 4,
		     .running = 1,
		     .queued = 0,
		     .queue_max = 1000,
		     .cache_entries = 2,
		     .cache_max = 10000,
		     .cache_hits = 3,
		     .cache_misses = 1,
		     .penalty_entries = 1},
	};

	gh_stats_add(st, GH_STAT_SESSIONS, 2, "imap", "imap", "proxied");
	gh_stats_add(st, GH_STAT_SESSIONS, 1, "smtp", "submission", "pre-login");
	gh_stats_add(st, GH_STAT_LOGINS, 5, "imap", "imap", "users", "ok");
	gh_stats_add(st, GH_STAT_LOGINS, 1, "imap", "imap", "users", "wrong-password");
	gh_stats_add(st, GH_STAT_RELAY_BYTES, 100, "imap", "to_backend");
	gh_stats_add(st, GH_STAT_RELAY_BYTES, 2000, "imap", "to_client");
	gh_stats_add(st, GH_STAT_BACKEND_FAILURES, 2, "imap", "127.0.0.1:143");
	gh_control_format_stats(out, &v, FALSE);
	g_assert_cmpstr(out->str, ==,
			"gatehoused 9.9, up 1h02m03s (since 2026-12-05 22:34:03 UTC)\n"
			"config generation 2 (1 reload, 1 refused)\n"
			"sessions: 3 open\n"
			"  LISTENER    PROTOCOL  PRE-LOGIN  LOGGING-IN  PROXIED\n"
			"  imap        imap      0          0           2\n"
			"  submission  smtp      1          0           0\n"
			"logins since start:\n"
			"  PROTOCOL  LISTENER  MODULE  VERDICT         COUNT\n"
			"  imap      imap      users   ok              5\n"
			"  imap      imap      users   wrong-password  1\n"
			"auth: 4 workers, 1 busy, 0 queued (at most 1000)\n"
			"auth cache: 2 of 10000 entries, hit rate 75.0% (3 hits, 1 misses)\n"
			"failure penalties: 1 client address\n"
			"bytes relayed:\n"
			"  PROTOCOL  DIRECTION   BYTES\n"
			"  imap      to_backend  100\n"
			"  imap      to_client   2000\n"
			"backend connect failures:\n"
			"  BACKEND  SERVER         FAILURES\n"
			"  imap     127.0.0.1:143  2\n"
			"sessions kicked: none\n");

	/* JSON: the same numbers, for scripts */
	{
		g_autoptr(JsonParser) parser = json_parser_new();
		JsonObject *root, *auth, *row;
		JsonArray *sessions;
		g_string_truncate(out, 0);
		gh_control_format_stats(out, &v, TRUE);
		g_assert_true(json_parser_load_from_data(parser, out->str, -1, NULL));
		root = json_node_get_object(json_parser_get_root(parser));
		g_assert_cmpint(json_object_get_int_member(root, "uptime_seconds"), ==, 3723);
		g_assert_cmpint(json_object_get_int_member(root, "config_generation"), ==, 2);
		g_assert_cmpint(json_object_get_int_member(root, "sessions_open"), ==, 3);
		sessions = json_object_get_array_member(root, "sessions");
		g_assert_cmpuint(json_array_get_length(sessions), ==, 2);
		row = json_array_get_object_element(sessions, 0);
		g_assert_cmpstr(json_object_get_string_member(row, "listener"), ==, "imap");
		g_assert_cmpint(json_object_get_int_member(row, "proxied"), ==, 2);
		row =
		    json_array_get_object_element(json_object_get_array_member(root, "logins"), 1);
		g_assert_cmpstr(json_object_get_string_member(row, "verdict"), ==,
				"wrong-password");
		g_assert_cmpint(json_object_get_int_member(row, "count"), ==, 1);
		auth = json_object_get_object_member(root, "auth");
		g_assert_cmpint(json_object_get_int_member(auth, "cache_entries"), ==, 2);
		g_assert_cmpfloat(json_object_get_double_member(auth, "cache_hit_rate"), ==, 0.75);
		row = json_array_get_object_element(
		    json_object_get_array_member(root, "backend_failures"), 0);
		g_assert_cmpstr(json_object_get_string_member(row, "server"), ==, "127.0.0.1:143");
		g_assert_cmpint(json_object_get_int_member(row, "count"), ==, 2);
		g_assert_cmpuint(
		    json_array_get_length(json_object_get_array_member(root, "kicked")), ==, 0);
	}
	gh_control_stats_view_clear(&v);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/control/parse/good", test_parse_good);
	g_test_add_func("/control/parse/bad", test_parse_bad);
	g_test_add_func("/control/filter", test_filter);
	g_test_add_func("/control/age", test_age);
	g_test_add_func("/control/sessions/text", test_sessions_text);
	g_test_add_func("/control/sessions/json", test_sessions_json);
	g_test_add_func("/control/reload", test_reload);
	g_test_add_func("/control/stats", test_stats_text);
	return g_test_run();
}
