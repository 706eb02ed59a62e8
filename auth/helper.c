/*
 * helper.c: starting the helper processes of auth modules; see helper.h.
 */
#include "gh-build.h"

#include "helper.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELPER_SUFFIX "-helper"
#define CHANNEL_FD 3
#define SPAWN_ANSWER_MS 5000
#define MAX_GROUPS 256

typedef struct {
	char *module;
	int channel; /* SOCK_SEQPACKET to the spawner; -1 once it is gone */
	GPid pid;
	GMutex lock; /* one request on the channel at a time */
} Spawner;

static GMutex spawners_lock;
static GPtrArray *spawners; /* of Spawner, never shrinks while running */

static char *
helper_path(const char *module_dir, const char *module)
{
	g_autofree char *file = g_strconcat(module, HELPER_SUFFIX, NULL);
	return g_build_filename(module_dir, file, NULL);
}

static Spawner *
find_spawner(const char *module)
{
	Spawner *found = NULL;

	g_mutex_lock(&spawners_lock);
	for (guint i = 0; spawners != NULL && i < spawners->len; i++) {
		Spawner *s = g_ptr_array_index(spawners, i);
		if (strcmp(s->module, module) == 0)
			found = s;
	}
	g_mutex_unlock(&spawners_lock);
	return found;
}

/* ------------------------------------------------------------ spawners */

static void
spawner_exited(GPid pid, gint status, gpointer data)
{
	Spawner *s = data;
	g_autoptr(GError) error = NULL;

	g_spawn_check_wait_status(status, &error);
	g_critical("the %s helper spawner (pid %d) exited%s%s: %s logins answer 'try later' "
		   "until gatehoused is restarted",
		   s->module, (int)pid, error != NULL ? ": " : "",
		   error != NULL ? error->message : "", s->module);
	g_spawn_close_pid(pid);
}

/* Fork and exec `path --spawner` as uid/gid with `groups`, the channel on
 * fd 3 and nothing else open but stdin, stdout and stderr. */
static gboolean
start_spawner(const char *module,
	      const char *path,
	      uid_t uid,
	      gid_t gid,
	      const gid_t *groups,
	      int n_groups,
	      gboolean switch_user,
	      GError **error)
{
	int sv[2];
	pid_t pid;
	Spawner *s;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "cannot start the %s helper spawner: socketpair: %s", module,
			    g_strerror(errno));
		return FALSE;
	}
	pid = fork();
	if (pid == 0) {
		/* only async-signal-safe calls from here on */
		if (sv[1] == CHANNEL_FD) {
			if (fcntl(CHANNEL_FD, F_SETFD, 0) != 0)
				_exit(126);
		} else if (dup2(sv[1], CHANNEL_FD) != CHANNEL_FD) {
			_exit(126);
		}
		close_range(CHANNEL_FD + 1, ~0U, 0);
		if (switch_user && (setgroups((size_t)n_groups, groups) != 0 || setgid(gid) != 0 ||
				    setuid(uid) != 0))
			_exit(126);
		execl(path, path, "--spawner", (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "cannot start the %s helper spawner: fork: %s", module,
			    g_strerror(errno));
		return FALSE;
	}
	s = g_new0(Spawner, 1);
	s->module = g_strdup(module);
	s->channel = sv[0];
	s->pid = pid;
	g_mutex_init(&s->lock);
	g_child_watch_add(pid, spawner_exited, s);
	g_mutex_lock(&spawners_lock);
	if (spawners == NULL)
		spawners = g_ptr_array_new();
	g_ptr_array_add(spawners, s);
	g_mutex_unlock(&spawners_lock);
	g_message("started the %s helper spawner (pid %d) as uid %u with %d group%s", module,
		  (int)pid, (guint)(switch_user ? uid : geteuid()), n_groups,
		  n_groups == 1 ? "" : "s");
	return TRUE;
}

gboolean
gh_auth_helpers_start(
    GKeyFile *kf, const char *module_dir, const char *user, uid_t uid, gid_t gid, GError **error)
{
	g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
	gid_t list[MAX_GROUPS];
	int n_list = MAX_GROUPS;
	gboolean switch_user = user != NULL && geteuid() == 0;

	/* computed here: NSS is no business of a child forked from a
	 * process that may have threads */
	if (switch_user && getgrouplist(user, gid, list, &n_list) < 0) {
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
			    "user %s is in more than %d groups", user, MAX_GROUPS);
		return FALSE;
	}
	if (!switch_user)
		n_list = getgroups(MAX_GROUPS, list);
	for (guint i = 0; groups[i] != NULL; i++) {
		g_autofree char *module = NULL;
		g_autofree char *path = NULL;

		if (!g_str_has_prefix(groups[i], "auth "))
			continue;
		module = g_key_file_get_string(kf, groups[i], "module", NULL);
		if (module == NULL)
			continue;
		g_strstrip(module);
		if (find_spawner(module) != NULL || strchr(module, '/') != NULL)
			continue;
		path = helper_path(module_dir, module);
		if (!g_file_test(path, G_FILE_TEST_IS_EXECUTABLE))
			continue;
		if (!start_spawner(module, path, uid, gid, list, MAX(n_list, 0), switch_user,
				   error))
			return FALSE;
	}
	return TRUE;
}

void
gh_auth_helpers_stop(void)
{
	g_mutex_lock(&spawners_lock);
	for (guint i = 0; spawners != NULL && i < spawners->len; i++) {
		Spawner *s = g_ptr_array_index(spawners, i);
		g_mutex_lock(&s->lock);
		if (s->channel >= 0)
			close(s->channel);
		s->channel = -1;
		g_mutex_unlock(&s->lock);
	}
	g_mutex_unlock(&spawners_lock);
}

/* Ask the spawner for a helper: one byte out, one byte and a socket back. */
static int
ask_spawner(Spawner *s, GError **error)
{
	char byte = 's';
	char answer = 0;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = &answer, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	struct pollfd p;
	int fd = -1;
	ssize_t n;

	g_mutex_lock(&s->lock);
	if (s->channel < 0 || send(s->channel, &byte, 1, MSG_NOSIGNAL) != 1) {
		g_mutex_unlock(&s->lock);
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PIPE,
			    "the %s helper spawner is gone (restart gatehoused)", s->module);
		return -1;
	}
	p = (struct pollfd){.fd = s->channel, .events = POLLIN};
	while ((n = poll(&p, 1, SPAWN_ANSWER_MS)) < 0 && errno == EINTR)
		;
	if (n == 1) {
		memset(&control, 0, sizeof control);
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof control.buf;
		while ((n = recvmsg(s->channel, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
			;
		for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
		     c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(&fd, CMSG_DATA(c), sizeof(int));
	} else if (n == 0) {
		/* an answer that comes later would be taken for the next
		 * request's: this channel is of no more use */
		close(s->channel);
		s->channel = -1;
	}
	g_mutex_unlock(&s->lock);
	if (fd < 0 || answer != 'y') {
		if (fd >= 0)
			close(fd);
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "the %s helper spawner %s",
			    s->module,
			    n == 0          ? "did not answer within 5 s"
			    : answer == 'n' ? "could not fork a helper"
					    : "is gone (restart gatehoused)");
		return -1;
	}
	return fd;
}

int
gh_auth_helper_connect(const char *module_dir, const char *module, GError **error)
{
	Spawner *s = find_spawner(module);
	g_autofree char *path = NULL;
	int sv[2];
	gint source[1];
	gint target[1] = {CHANNEL_FD};
	gboolean ok;

	if (s != NULL)
		return ask_spawner(s, error);
	path = helper_path(module_dir, module);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "cannot start %s: socketpair: %s", path, g_strerror(errno));
		return -1;
	}
	source[0] = sv[1];
	{
		const char *argv[] = {path, NULL};
		/* without G_SPAWN_DO_NOT_REAP_CHILD, GLib reaps it */
		ok = g_spawn_async_with_pipes_and_fds(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
						      -1, -1, -1, source, target, 1, NULL, NULL,
						      NULL, NULL, error);
	}
	close(sv[1]);
	if (!ok) {
		close(sv[0]);
		return -1;
	}
	return sv[0];
}
