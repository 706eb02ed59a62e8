/*
 * fuzz-auth-command.h: what the SMTP and POP3 command targets share about
 * AUTH: the one command line that may pass the command limit
 * (gh_line_next_command, as the sessions frame their input), and what an
 * AUTH command parsed into: the mechanism upper-case and one word, the
 * initial response one word, and what the session's SASL step makes of
 * that response (daemon/session/sasl.c) consistent with its status.
 */
#pragma once

#include <glib.h>

/* mech: not NULL; initial: NULL when the command had none. */
void fuzz_check_sasl_start(const char *mech, const char *initial);

/* p[0..left): a whole line of line_len octets (used with its end, at most
 * max_long) is in front.  gh_line_next_command agrees: the same line when
 * it fits `max` or starts with the word AUTH, else TOO_LONG over the same
 * bytes.  Returns whether the session takes it as a command. */
gboolean fuzz_check_command_line(
    const char *p, gsize left, gsize line_len, gsize used, gsize max, gsize max_long);
