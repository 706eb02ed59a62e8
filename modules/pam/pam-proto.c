/*
 * pam-proto.c: frames between the pam module and its helper; see
 * pam-proto.h for the format and the invariants.
 */
#include "gh-build.h"

#include "pam-proto.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUEST_FIELDS 9

/* ------------------------------------------------------------ encoding */

typedef struct {
	guint8 *buf;
	gsize size; /* usable bytes, header included */
	gsize len;
	gboolean bad;
} Writer;

static void
put(Writer *w, const char *s, gsize n)
{
	if (w->bad)
		return;
	if (memchr(s, '\0', n) != NULL || n + 1 > w->size - w->len) {
		w->bad = TRUE;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->buf[w->len + n] = '\0';
	w->len += n + 1;
}

static void
put_str(Writer *w, const char *s)
{
	put(w, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

static gboolean
writer_init(Writer *w, guint8 *buf, gsize size)
{
	w->buf = buf;
	w->size = MIN(size, (gsize)GH_PAM_HEADER + GH_PAM_FRAME_MAX);
	w->len = GH_PAM_HEADER;
	w->bad = w->size < GH_PAM_HEADER;
	return !w->bad;
}

static gsize
writer_finish(Writer *w)
{
	gsize payload = w->len - GH_PAM_HEADER;

	if (w->bad || payload == 0)
		return 0;
	w->buf[0] = (guint8)(payload >> 24);
	w->buf[1] = (guint8)(payload >> 16);
	w->buf[2] = (guint8)(payload >> 8);
	w->buf[3] = (guint8)payload;
	return w->len;
}

gsize
gh_pam_request_encode(const GhPamRequest *req, guint8 *buf, gsize size)
{
	char limit[16];
	Writer w;

	if (!writer_init(&w, buf, size) || req->limit < 1 || req->limit > GH_PAM_MAX_LIMIT)
		return 0;
	g_snprintf(limit, sizeof limit, "%u", req->limit);
	put_str(&w, GH_PAM_PROTO_VERSION);
	put_str(&w, req->service);
	put_str(&w, req->account ? "1" : "0");
	put_str(&w, req->user);
	put_str(&w, req->password);
	put_str(&w, req->rhost);
	put_str(&w, req->tty);
	put_str(&w, req->session_id);
	put_str(&w, limit);
	return writer_finish(&w);
}

gsize
gh_pam_response_encode(const GhPamResponse *res, guint8 *buf, gsize size)
{
	char verdict[2] = {(char)('0' + MIN(res->verdict, 9u)), '\0'};
	Writer w;

	if (!writer_init(&w, buf, size) || res->verdict > 3)
		return 0;
	put_str(&w, GH_PAM_PROTO_VERSION);
	put_str(&w, verdict);
	put_str(&w, res->reason);
	for (guint i = 0; i < MIN(res->n_lines, (guint)GH_PAM_MAX_LINES); i++) {
		const char *line = res->lines[i] != NULL ? res->lines[i] : "";
		put(&w, line, MIN(strlen(line), (gsize)GH_PAM_MAX_LINE));
	}
	return writer_finish(&w);
}

/* ------------------------------------------------------------ decoding */

gsize
gh_pam_frame_length(const guint8 header[GH_PAM_HEADER])
{
	guint32 n = ((guint32)header[0] << 24) | ((guint32)header[1] << 16) |
		    ((guint32)header[2] << 8) | (guint32)header[3];

	return n == 0 || n > GH_PAM_FRAME_MAX ? 0 : n;
}

/* Split the payload into at most `max` fields; -1 when it does not end in
 * a NUL or has more than `max`. */
static int
split(const char *payload, gsize len, const char **fields, int max)
{
	int n = 0;
	gsize at = 0;

	if (len == 0 || payload[len - 1] != '\0')
		return -1;
	while (at < len) {
		if (n == max)
			return -1;
		fields[n++] = payload + at;
		at += strlen(payload + at) + 1;
	}
	return n;
}

/* "1".."3600", digits only, no leading zero */
static gboolean
parse_limit(const char *s, guint *out)
{
	guint v = 0;

	if (s[0] < '1' || s[0] > '9' || strlen(s) > 4)
		return FALSE;
	for (const char *p = s; *p != '\0'; p++) {
		if (!g_ascii_isdigit(*p))
			return FALSE;
		v = v * 10 + (guint)(*p - '0');
	}
	if (v > GH_PAM_MAX_LIMIT)
		return FALSE;
	*out = v;
	return TRUE;
}

gboolean
gh_pam_request_decode(const char *payload, gsize len, GhPamRequest *req, const char **why)
{
	const char *f[REQUEST_FIELDS];
	int n = split(payload, len, f, REQUEST_FIELDS);

	if (n < 1 || strcmp(f[0], GH_PAM_PROTO_VERSION) != 0) {
		*why = "not a gatehouse-pam 1 request";
		return FALSE;
	}
	if (n != REQUEST_FIELDS) {
		*why = "wrong number of fields";
		return FALSE;
	}
	if (f[1][0] == '\0' || f[3][0] == '\0') {
		*why = "empty service or user";
		return FALSE;
	}
	if (strcmp(f[2], "1") != 0 && strcmp(f[2], "0") != 0) {
		*why = "bad account flag";
		return FALSE;
	}
	if (!parse_limit(f[8], &req->limit)) {
		*why = "bad time limit";
		return FALSE;
	}
	req->service = f[1];
	req->account = f[2][0] == '1';
	req->user = f[3];
	req->password = f[4];
	req->rhost = f[5];
	req->tty = f[6];
	req->session_id = f[7];
	return TRUE;
}

gboolean
gh_pam_response_decode(const char *payload, gsize len, GhPamResponse *res, const char **why)
{
	const char *f[3 + GH_PAM_MAX_LINES];
	int n = split(payload, len, f, G_N_ELEMENTS(f));

	if (n < 1 || strcmp(f[0], GH_PAM_PROTO_VERSION) != 0) {
		*why = "not a gatehouse-pam 1 response";
		return FALSE;
	}
	if (n < 3) {
		*why = "wrong number of fields";
		return FALSE;
	}
	if (f[1][0] < '0' || f[1][0] > '3' || f[1][1] != '\0') {
		*why = "bad verdict";
		return FALSE;
	}
	res->verdict = (guint)(f[1][0] - '0');
	res->reason = f[2];
	res->n_lines = (guint)n - 3;
	for (guint i = 0; i < res->n_lines; i++)
		res->lines[i] = f[3 + i];
	return TRUE;
}

/* ------------------------------------------------------------ I/O */

/* Wait until fd is ready for `events`, or the deadline passes. */
static GhPamIo
wait_for(int fd, short events, gint64 deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int ms = -1;
		int rc;

		if (deadline > 0) {
			gint64 left = deadline - g_get_monotonic_time();
			if (left <= 0)
				return GH_PAM_IO_TIMEOUT;
			ms = (int)MIN((left + 999) / 1000, (gint64)G_MAXINT);
		}
		rc = poll(&p, 1, ms);
		if (rc > 0)
			return GH_PAM_IO_OK;
		if (rc == 0)
			continue; /* the loop checks the deadline */
		if (errno != EINTR)
			return GH_PAM_IO_ERROR;
	}
}

GhPamIo
gh_pam_write_all(int fd, const guint8 *buf, gsize len, gint64 deadline)
{
	gsize done = 0;

	while (done < len) {
		ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			done += (gsize)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			GhPamIo io = wait_for(fd, POLLOUT, deadline);
			if (io != GH_PAM_IO_OK)
				return io;
			continue;
		}
		return GH_PAM_IO_ERROR;
	}
	return GH_PAM_IO_OK;
}

/* Read exactly len bytes; EOF counts as such only before the first. */
static GhPamIo
read_exact(int fd, guint8 *buf, gsize len, gint64 deadline, gboolean first)
{
	gsize done = 0;

	while (done < len) {
		ssize_t n = recv(fd, buf + done, len - done, MSG_DONTWAIT);
		if (n > 0) {
			done += (gsize)n;
			continue;
		}
		if (n == 0) {
			if (first && done == 0)
				return GH_PAM_IO_EOF;
			errno = EPROTO;
			return GH_PAM_IO_ERROR;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			GhPamIo io = wait_for(fd, POLLIN, deadline);
			if (io != GH_PAM_IO_OK)
				return io;
			continue;
		}
		return GH_PAM_IO_ERROR;
	}
	return GH_PAM_IO_OK;
}

GhPamIo
gh_pam_read_frame(int fd, guint8 *buf, gsize *len, gint64 deadline)
{
	guint8 header[GH_PAM_HEADER];
	GhPamIo io = read_exact(fd, header, sizeof header, deadline, TRUE);

	if (io != GH_PAM_IO_OK)
		return io;
	*len = gh_pam_frame_length(header);
	if (*len == 0) {
		errno = EPROTO;
		return GH_PAM_IO_ERROR;
	}
	return read_exact(fd, buf, *len, deadline, FALSE);
}
