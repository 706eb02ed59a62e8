/*
 * test-journal.c: the log's journal writer (daemon/config/log.c, "the
 * journal") against a datagram socket of the test's own, as journald's
 * native socket would get it: each field of the native protocol byte by
 * byte; an entry of a thread that does not hold goes at once, with
 * SYSLOG_IDENTIFIER and PRIORITY; a holding thread's entries wait for
 * their time (or for a full batch) and then go in order; what the socket
 * has no room for stays held and goes later, none lost and none twice;
 * past the bound a line is dropped and the count is said once room comes
 * back; the thread's end sends what it holds; and a journal that came back
 * at the same path (journald restarted) gets the next entries.
 */
#include "gh-build.h"

#include "config/log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char *dir;
static char *path;
static int journal = -1; /* the test's end: what journald would read */

static void
journal_open(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	if (journal >= 0)
		close(journal);
	(void)unlink(path);
	journal = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	g_assert_cmpint(journal, >=, 0);
	g_strlcpy(a.sun_path, path, sizeof a.sun_path);
	g_assert_cmpint(bind(journal, (struct sockaddr *)&a, sizeof a), ==, 0);
}

/* The next entry, or NULL if none is waiting. */
static GBytes *
next_entry(void)
{
	char buf[65536];
	ssize_t n = recv(journal, buf, sizeof buf, MSG_DONTWAIT);

	if (n < 0) {
		g_assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		return NULL;
	}
	return g_bytes_new(buf, (gsize)n);
}

/* The value of KEY=value in an entry without binary fields. */
static char *
field(GBytes *entry, const char *key)
{
	gsize n;
	const char *data = g_bytes_get_data(entry, &n);
	g_autofree char *text = g_strndup(data, n);
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
	g_autofree char *prefix = g_strconcat(key, "=", NULL);

	for (char **l = lines; *l != NULL; l++)
		if (g_str_has_prefix(*l, prefix))
			return g_strdup(*l + strlen(prefix));
	return NULL;
}

static char *
message_of(GBytes *entry)
{
	return field(entry, "MESSAGE");
}

static void
drain(void)
{
	GBytes *e;
	while ((e = next_entry()) != NULL)
		g_bytes_unref(e);
}

static void
test_field(void)
{
	GString *out = g_string_new(NULL);
	static const char binary[] = "MESSAGE\n\x0b\0\0\0\0\0\0\0two\nlines\0x\n";

	gh_log_journal_field(out, "MESSAGE", "plain text", -1);
	g_assert_cmpstr(out->str, ==, "MESSAGE=plain text\n");
	g_string_truncate(out, 0);
	/* a newline in the value: the key, a newline, the length (64 bits,
	 * little-endian), the value as it is, a newline */
	gh_log_journal_field(out, "MESSAGE", "two\nlines\0x", 11);
	g_assert_cmpmem(out->str, out->len, binary, sizeof binary - 1);
	g_string_truncate(out, 0);
	gh_log_journal_field(out, "GH_USER", "", -1);
	g_assert_cmpstr(out->str, ==, "GH_USER=\n");
	g_string_free(out, TRUE);
}

/* The entry's KEY is want. */
static void
assert_field(GBytes *entry, const char *key, const char *want)
{
	g_autofree char *got = field(entry, key);
	g_assert_cmpstr(got, ==, want);
}

static void
test_at_once(void)
{
	GhLoginLog l = {.session_id = "s1", .protocol = "imap", .user = "alice", .verdict = "ok"};
	GBytes *e;

	drain();
	g_message("at once %d", 1);
	e = next_entry();
	g_assert_nonnull(e);
	assert_field(e, "MESSAGE", "at once 1");
	assert_field(e, "PRIORITY", "5");
	assert_field(e, "SYSLOG_IDENTIFIER", "test-journal");
	assert_field(e, "GLIB_DOMAIN", G_LOG_DOMAIN);
	g_bytes_unref(e);
	g_assert_null(next_entry());

	/* the login line's structured fields go as they are */
	gh_log_login(&l);
	e = next_entry();
	g_assert_nonnull(e);
	assert_field(e, "GH_USER", "alice");
	assert_field(e, "GH_VERDICT", "ok");
	assert_field(e, "PRIORITY", "6");
	g_bytes_unref(e);
}

/* The entries waiting now, in order, as "MESSAGE" texts. */
static GPtrArray *
messages(void)
{
	GPtrArray *got = g_ptr_array_new_with_free_func(g_free);
	GBytes *e;

	while ((e = next_entry()) != NULL) {
		g_ptr_array_add(got, message_of(e));
		g_bytes_unref(e);
	}
	return got;
}

/* Until the thread holds nothing; at most 5 s of 1 ms steps. */
static void
flush_all(void)
{
	for (int i = 0; i < 5000 && gh_log_flush_due() >= 0; i++)
		g_usleep(1000);
	g_assert_cmpint(gh_log_flush_due(), ==, -1);
}

static void
test_held(void)
{
	g_autoptr(GPtrArray) got = NULL;
	gint due;

	drain();
	gh_log_hold_thread();
	g_assert_cmpint(gh_log_flush_due(), ==, -1); /* nothing held */
	g_message("held 1");
	g_message("held 2");
	g_message("held 3");
	/* not yet: they wait for the oldest one's time */
	g_assert_null(next_entry());
	due = gh_log_flush_due();
	g_assert_cmpint(due, >, 0);
	g_assert_cmpint(due, <=, 20);
	g_assert_null(next_entry());
	g_usleep((gulong)(due + 1) * 1000);
	g_assert_cmpint(gh_log_flush_due(), ==, -1); /* sent, nothing left */
	got = messages();
	g_assert_cmpuint(got->len, ==, 3);
	g_assert_cmpstr(got->pdata[0], ==, "held 1");
	g_assert_cmpstr(got->pdata[1], ==, "held 2");
	g_assert_cmpstr(got->pdata[2], ==, "held 3");
	gh_log_release_thread();
}

static void
test_batch(void)
{
	g_autoptr(GPtrArray) got = NULL;

	drain();
	gh_log_hold_thread();
	/* a full batch goes without waiting for its time (as much of it as
	 * the socket queues: net.unix.max_dgram_qlen may be as low as 10) */
	for (int i = 0; i < 64; i++)
		g_message("batch %d", i);
	got = messages();
	g_assert_cmpuint(got->len, >=, 10);
	g_assert_cmpstr(got->pdata[0], ==, "batch 0");
	for (int round = 0; round < 5000 && got->len < 64; round++) {
		g_autoptr(GPtrArray) part = NULL;
		(void)gh_log_flush_due();
		part = messages();
		for (guint i = 0; i < part->len; i++)
			g_ptr_array_add(got, g_strdup(part->pdata[i]));
		g_usleep(1000);
	}
	g_assert_cmpuint(got->len, ==, 64);
	g_assert_cmpstr(got->pdata[63], ==, "batch 63");
	g_assert_cmpint(gh_log_flush_due(), ==, -1);
	gh_log_release_thread();
}

static void
test_no_room(void)
{
	g_autoptr(GPtrArray) got = g_ptr_array_new_with_free_func(g_free);
	const int total = 3000;

	drain();
	gh_log_hold_thread();
	/* more than the socket queues (net.unix.max_dgram_qlen is 10 to 512,
	 * and 3000 entries pass any receive buffer): logging never waits */
	for (int i = 0; i < total; i++)
		g_message("room %d", i);
	g_assert_cmpint(gh_log_flush_due(), >=, 0); /* some are still held */
	for (int round = 0; round < 5000 && (int)got->len < total; round++) {
		g_autoptr(GPtrArray) part = messages();
		for (guint i = 0; i < part->len; i++)
			g_ptr_array_add(got, g_strdup(part->pdata[i]));
		(void)gh_log_flush_due();
		g_usleep(1000);
	}
	/* every one, once, in order */
	g_assert_cmpuint(got->len, ==, (guint)total);
	for (int i = 0; i < total; i++) {
		g_autofree char *want = g_strdup_printf("room %d", i);
		g_assert_cmpstr(got->pdata[i], ==, want);
	}
	flush_all();
	g_assert_null(next_entry());
	gh_log_release_thread();
}

static void
test_overflow(void)
{
	g_autofree char *big = g_strnfill(3000, 'x');
	g_autoptr(GPtrArray) got = g_ptr_array_new_with_free_func(g_free);
	const int total = 1000; /* 3 MB: past the 1 MiB a thread may hold */
	char *last;
	guint64 dropped;

	drain();
	gh_log_hold_thread();
	for (int i = 0; i < total; i++)
		g_message("%d %s", i, big);
	for (int round = 0; round < 5000; round++) {
		gint due = gh_log_flush_due();
		g_autoptr(GPtrArray) part = messages();
		for (guint i = 0; i < part->len; i++)
			g_ptr_array_add(got, g_strdup(part->pdata[i]));
		if (due < 0 && part->len == 0)
			break; /* nothing held, nothing more came */
		g_usleep(1000);
	}
	g_assert_cmpuint(got->len, >, 1);
	/* the kept ones in order, from the first; the last says how many went */
	for (guint i = 0; i + 1 < got->len; i++) {
		g_autofree char *want = g_strdup_printf("%u %s", i, big);
		g_assert_cmpstr(got->pdata[i], ==, want);
	}
	last = got->pdata[got->len - 1];
	g_assert_true(g_str_has_prefix(last, "the journal did not keep up: "));
	dropped = g_ascii_strtoull(last + strlen("the journal did not keep up: "), NULL, 10);
	g_assert_cmpuint(dropped, >, 0);
	g_assert_cmpuint(got->len - 1 + dropped, ==, (guint64)total);
	gh_log_release_thread();
}

static void
test_release(void)
{
	g_autoptr(GPtrArray) got = NULL;

	drain();
	gh_log_hold_thread();
	g_message("release 1");
	g_message("release 2");
	g_assert_null(next_entry());
	gh_log_release_thread(); /* the thread's end: what it holds goes now */
	got = messages();
	g_assert_cmpuint(got->len, ==, 2);
	g_assert_cmpstr(got->pdata[1], ==, "release 2");
	/* and the thread no longer holds */
	g_message("release 3");
	g_clear_pointer(&got, g_ptr_array_unref);
	got = messages();
	g_assert_cmpuint(got->len, ==, 1);
}

static void
test_reconnect(void)
{
	g_autoptr(GPtrArray) got = NULL;

	/* journald restarted: a new socket at the same path */
	journal_open();
	g_message("after restart");
	got = messages();
	g_assert_cmpuint(got->len, ==, 1);
	g_assert_cmpstr(got->pdata[0], ==, "after restart");

	/* and for a holding thread's batch */
	journal_open();
	gh_log_hold_thread();
	g_message("held after restart");
	gh_log_release_thread();
	g_clear_pointer(&got, g_ptr_array_unref);
	got = messages();
	g_assert_cmpuint(got->len, ==, 1);
	g_assert_cmpstr(got->pdata[0], ==, "held after restart");
}

static void
test_gone(void)
{
	g_autoptr(GPtrArray) got = NULL;
	gint due;

	/* journald stopped and not back yet: no socket at the path */
	drain();
	close(journal);
	journal = -1;
	(void)unlink(path);
	gh_log_hold_thread();
	g_message("into the void");
	due = gh_log_flush_due();
	g_assert_cmpint(due, >, 0);
	g_usleep((gulong)(due + 1) * 1000);
	/* due: it cannot go, and is dropped and counted; nothing else is
	 * tried while nothing goes out */
	g_assert_cmpint(gh_log_flush_due(), ==, -1);
	/* back: the next line goes, then the count of those dropped */
	journal_open();
	g_message("back again");
	flush_all();
	got = messages();
	g_assert_cmpuint(got->len, ==, 2);
	g_assert_cmpstr(got->pdata[0], ==, "back again");
	g_assert_cmpstr(got->pdata[1], ==, "the journal did not keep up: 1 log lines dropped");
	gh_log_release_thread();
}

int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	/* g_test_init's handler would also print every line on stdout */
	g_log_set_default_handler(g_log_default_handler, NULL);
	dir = g_dir_make_tmp("gh-journal-XXXXXX", NULL);
	g_assert_nonnull(dir);
	path = g_build_filename(dir, "socket", NULL);
	journal_open();
	gh_log_init("test-journal", FALSE);
	g_assert_true(gh_log_use_journal(path));
	g_test_add_func("/journal/field", test_field);
	g_test_add_func("/journal/at-once", test_at_once);
	g_test_add_func("/journal/held", test_held);
	g_test_add_func("/journal/batch", test_batch);
	g_test_add_func("/journal/no-room", test_no_room);
	g_test_add_func("/journal/overflow", test_overflow);
	g_test_add_func("/journal/release", test_release);
	g_test_add_func("/journal/reconnect", test_reconnect);
	g_test_add_func("/journal/gone", test_gone);
	rc = g_test_run();
	close(journal);
	(void)unlink(path);
	(void)rmdir(dir);
	g_free(path);
	g_free(dir);
	return rc;
}
