/*
 * main.c: gatehoused's command line and start-up order.
 *
 *   gatehoused [-c FILE] [-t] [-d] [--version]
 *
 * Start-up: read and check the config (all of it, or nothing runs); take the
 * sockets systemd passed or bind the listeners; create the control socket;
 * start the spawners of the auth modules' helpers (PAM's), which keep the
 * user's groups; drop to `user`/`group` when started as root, without the
 * group that owns /etc/shadow, or give up the capabilities it
 * was started with when started as another user; load the auth modules (after the drop, so that
 * what works at start also works at reload); run.  `-t` stops after the checks and the module
 * loading and says what is wrong, with file and line.
 */
#include "gh-build.h"

#include "config/config.h"
#include "gh-auth.h"
#include "helper.h"
#include "core/listener.h"
#include "config/log.h"
#include "core/server.h"
#include "core/control.h"
#include "core/metrics.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The user and group `user =` and `group =` name (unset: our own). */
static gboolean
target_ids(const GhConfig *cfg, uid_t *uid, gid_t *gid, GError **error)
{
	struct passwd *pw;

	*uid = geteuid();
	*gid = getegid();
	if (cfg->user == NULL)
		return TRUE;
	errno = 0;
	pw = getpwnam(cfg->user);
	if (pw == NULL) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
			    "[gatehouse] user = %s: no such user", cfg->user);
		return FALSE;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (cfg->group != NULL) {
		struct group *gr = getgrnam(cfg->group);
		if (gr == NULL) {
			g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
				    "[gatehouse] group = %s: no such group", cfg->group);
			return FALSE;
		}
		*gid = gr->gr_gid;
	}
	return TRUE;
}

#define MAX_GROUPS 256

/* The groups /etc/group gives `user`, without the one that owns
 * /etc/shadow unless it is `gid` itself: PAM runs in the helpers, which
 * keep it; gatehoused never reads the password hashes.  -1 when there are
 * too many. */
static int
network_groups(const char *user, gid_t gid, gid_t *list, int max, gboolean *left_out)
{
	struct stat st;
	gboolean drop = stat("/etc/shadow", &st) == 0 && st.st_gid != 0 && st.st_gid != gid;
	int n = max;
	int kept = 0;

	*left_out = FALSE;
	if (getgrouplist(user, gid, list, &n) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (drop && list[i] == st.st_gid)
			*left_out = TRUE;
		else
			list[kept++] = list[i];
	}
	return kept;
}

static gboolean
drop_privileges(const GhConfig *cfg, uid_t uid, gid_t gid, GError **error)
{
	gid_t groups[MAX_GROUPS];
	gboolean left_out;
	int n;

	if (cfg->user == NULL) {
		if (geteuid() == 0)
			g_warning("running as root: no `user =` in [gatehouse], so every session's "
				  "code and the PAM helpers keep root's rights (set user = "
				  "gatehouse, or start gatehoused as that user)");
		return TRUE;
	}
	if (geteuid() != 0) {
		if (geteuid() != uid)
			g_message("not started as root: staying uid %u instead of user %s",
				  (guint)geteuid(), cfg->user);
		return TRUE;
	}
	n = network_groups(cfg->user, gid, groups, MAX_GROUPS, &left_out);
	if (n < 0) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
			    "user %s is in more than %d groups", cfg->user, MAX_GROUPS);
		return FALSE;
	}
	if (setgroups((size_t)n, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
			    "cannot switch to user %s: %s", cfg->user, g_strerror(errno));
		return FALSE;
	}
	if (setuid(0) == 0) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "privileges could be regained");
		return FALSE;
	}
	/* setuid() cleared it; core dumps could hold passwords anyway */
	(void)prctl(PR_SET_DUMPABLE, 0);
	g_message("running as user %s, group id %u%s", cfg->user, (guint)gid,
		  left_out ? ", without the group of /etc/shadow (only PAM helpers keep it)" : "");
	return TRUE;
}

/* Started as another user with capabilities: systemd's
 * AmbientCapabilities=CAP_NET_BIND_SERVICE (gatehouse.service), so that
 * listeners without a socket from systemd may bind ports below 1024.  The
 * sockets are open now: give up every capability (effective, permitted,
 * inheritable and so ambient), as setuid() does for root, and stay out of
 * core dumps and the reach of ptrace by other processes of the same user,
 * which could read passwords.  Root (no `user`) keeps what it has. */
static gboolean
drop_capabilities(GError **error)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
	gboolean any = FALSE;

	if (geteuid() == 0)
		return TRUE;
	(void)prctl(PR_SET_DUMPABLE, 0);
	if (syscall(SYS_capget, &hdr, data) != 0) {
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
			    "cannot read the capabilities: %s", g_strerror(errno));
		return FALSE;
	}
	for (guint i = 0; i < G_N_ELEMENTS(data); i++)
		any = any || data[i].permitted != 0 || data[i].effective != 0 ||
		      data[i].inheritable != 0;
	if (!any)
		return TRUE;
	memset(data, 0, sizeof data);
	if (syscall(SYS_capset, &hdr, data) != 0) {
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
			    "cannot give up the capabilities: %s", g_strerror(errno));
		return FALSE;
	}
	g_message("running as uid %u, without the capabilities it was started with",
		  (guint)geteuid());
	return TRUE;
}

static void
print_problems(GPtrArray *problems, gboolean to_log)
{
	for (guint i = 0; i < problems->len; i++) {
		const char *p = g_ptr_array_index(problems, i);
		if (to_log)
			g_critical("%s", p);
		else
			fprintf(stderr, "%s\n", p);
	}
}

int
main(int argc, char **argv)
{
	g_autofree char *config_path = NULL;
	gboolean test_only = FALSE, debug = FALSE, version = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "Configuration file", "FILE"},
	    {"test", 't', 0, G_OPTION_ARG_NONE, &test_only, "Check the configuration and exit",
	     NULL},
	    {"debug", 'd', 0, G_OPTION_ARG_NONE, &debug, "Log debug messages", NULL},
	    {"version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL},
	    {NULL}};
	g_autoptr(GOptionContext) octx = g_option_context_new("- the gatehouse mail gateway");
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GhConfig) cfg = NULL;
	g_autoptr(GPtrArray) listeners = NULL;
	g_autoptr(GhTls) tls = NULL;
	GhAuthCore *core;
	GhAuthSet *set;
	GhAuthSettings settings;
	GhServer *server;
	GhControl *control = NULL;
	GhMetricsServer *metrics = NULL;
	int control_fd = -1;
	uid_t uid;
	gid_t gid;
	int rc;

	g_option_context_add_main_entries(octx, entries, NULL);
	g_option_context_set_summary(octx,
				     "Accepts SMTP and IMAP clients, checks their credentials "
				     "against auth modules,\nand proxies them to backend mail "
				     "servers.");
	if (!g_option_context_parse(octx, &argc, &argv, &error)) {
		fprintf(stderr, "gatehoused: %s (try --help)\n", error->message);
		return 64;
	}
	if (argc > 1) {
		fprintf(stderr, "gatehoused: unexpected argument '%s' (try --help)\n", argv[1]);
		return 64;
	}
	if (version) {
		printf("gatehoused %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (config_path == NULL)
		config_path = g_strdup(GH_CONFIG_FILE);
	gh_log_init("gatehoused", debug);

	cfg = gh_config_load(config_path, problems);
	if (test_only) {
		if (cfg != NULL) {
			GhAuthSettings s;
			gh_server_settings_from_config(cfg, &s);
			s.workers = 1;
			core = gh_auth_core_new(&s);
			set = gh_auth_set_new(core, cfg->kf, cfg->path, cfg->module_dir, problems);
			gh_auth_set_unref(set);
			gh_auth_core_free(core);
			/* certificates and keys are read as at start */
			gh_tls_unref(gh_tls_new(cfg, problems));
		}
		print_problems(problems, FALSE);
		if (problems->len > 0) {
			fprintf(stderr, "%s: %u problem%s\n", config_path, problems->len,
				problems->len == 1 ? "" : "s");
			return 1;
		}
		printf("%s: configuration OK\n", config_path);
		return 0;
	}
	if (cfg == NULL) {
		print_problems(problems, TRUE);
		g_critical("%s: %u problem%s; not starting", config_path, problems->len,
			   problems->len == 1 ? "" : "s");
		return 1;
	}

	/* before dropping privileges: a key file is often readable by root only */
	tls = gh_tls_new(cfg, problems);
	if (tls == NULL) {
		print_problems(problems, TRUE);
		g_critical("cannot load the TLS certificates; not starting");
		return 1;
	}
	listeners = gh_listeners_open(cfg, &error);
	if (listeners == NULL) {
		g_critical("%s; not starting", error->message);
		return 1;
	}
	if (!target_ids(cfg, &uid, &gid, &error)) {
		g_critical("%s; not starting", error->message);
		return 1;
	}
	/* its directory under /run is root's to create */
	if (cfg->control_socket[0] != '\0') {
		control_fd = gh_control_bind(cfg->control_socket, uid, gid, &error);
		if (control_fd < 0) {
			g_critical("%s; not starting", error->message);
			return 1;
		}
	}
	/* before the drop: the spawners keep the groups gatehoused gives up */
	if (!gh_auth_helpers_start(cfg->kf, cfg->module_dir, cfg->user, uid, gid, &error)) {
		g_critical("%s; not starting", error->message);
		return 1;
	}
	if (!drop_privileges(cfg, uid, gid, &error) || !drop_capabilities(&error)) {
		g_critical("%s; not starting", error->message);
		return 1;
	}
	gh_server_settings_from_config(cfg, &settings);
	core = gh_auth_core_new(&settings);
	set = gh_auth_set_new(core, cfg->kf, cfg->path, cfg->module_dir, problems);
	if (set == NULL) {
		print_problems(problems, TRUE);
		g_critical("cannot set up the auth modules; not starting");
		gh_auth_core_free(core);
		return 1;
	}

	server = gh_server_new(cfg, core, set, tls, listeners);
	gh_auth_set_unref(set);
	if (control_fd >= 0)
		control = gh_control_new(server, control_fd, cfg->control_socket);
	if (cfg->metrics_listen != NULL &&
	    (metrics = gh_metrics_server_new(server, cfg->metrics_listen, &error)) == NULL) {
		g_critical("%s; not starting", error->message);
		rc = 1;
	} else {
		rc = gh_server_run(server);
	}
	gh_metrics_server_free(metrics);
	gh_control_free(control);
	gh_server_free(server);
	gh_auth_core_free(core);
	gh_auth_helpers_stop();
	return rc;
}
