/*
 * keyfile.h: loading gatehouse's configuration key file and pointing at the
 * line a problem is on.
 *
 * gatehouse.conf is a GLib key file with two additions that admins expect from
 * sample configurations: a ';' or '#' preceded by white space starts a
 * comment that runs to the end of the line (GKeyFile alone would keep it as
 * part of the value), and lines starting with ';' are comments too.  The
 * loader strips these before GKeyFile sees the text, keeping line numbers.
 * A key given twice in one group, or a group given twice, is an error (GKeyFile
 * would silently keep the last).
 *
 * GKeyFile does not report line numbers, so gh_key_file_line() reads the file
 * once more to find them; it is only used on error paths.
 *
 * Includes only <glib.h>; no logging.
 */
#pragma once

#include <glib.h>

/* Load `path`.  On a read or syntax error returns NULL and sets *error with
 * a message "PATH: ..." or "PATH:LINE: ..." (domain G_KEY_FILE_ERROR or
 * G_FILE_ERROR).  (transfer full) */
GKeyFile *gh_key_file_load(const char *path, GError **error);

/* Same, from text already in memory; `path` is only used in messages. */
GKeyFile *gh_key_file_load_from_data(const char *path, const char *text, gsize len, GError **error);

/* The 1-based line of `key` in `[group]` of the file at `path`, or of the
 * group header when key is NULL; 0 when not found or the file is unreadable. */
guint gh_key_file_line(const char *path, const char *group, const char *key);

/* The value of `key` in `[group]`, comments stripped as the loader strips
 * them, found line by line in a file that may not load as a whole
 * (gatehousectl looks for the control socket of a file an admin is still
 * fixing).  NULL when the file is unreadable or has no such key.  No
 * escapes are undone.  (transfer full) */
char *gh_key_file_peek(const char *path, const char *group, const char *key);

/* "PATH:LINE: [GROUP] KEY: " (or without LINE when it cannot be found, without
 * KEY when key is NULL), followed by the formatted message.  (transfer full) */
char *
gh_key_file_problem(const char *path, const char *group, const char *key, const char *format, ...)
    G_GNUC_PRINTF(4, 5);
char *gh_key_file_problemv(const char *path,
			   const char *group,
			   const char *key,
			   const char *format,
			   va_list ap) G_GNUC_PRINTF(4, 0);

/* Split a list value on white space (spaces, tabs), dropping empty items.
 * NULL gives an empty vector.  (transfer full) */
char **gh_key_file_split_list(const char *value);
