/*
 * conn.c: a non-blocking socket with bounded buffers (see conn.h).
 *
 * Reads are bounded by in_max so a peer can never make us hold more than
 * that; writes go straight to the socket when it takes them and are queued
 * only for the part it does not.
 */
#include "gh-build.h"

#include "net/conn.h"
#include "common/timer.h"
#include "config/log.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Readiness comes from one epoll set per main context, itself one GSource
 * watching the epoll descriptor.  Changing what a connection waits for is
 * one epoll_ctl(2); GLib's own fd watches would wake the loop through its
 * eventfd on every change and hand poll(2) every descriptor of every idle
 * session on every iteration.
 */
#define GH_EPOLL_BATCH 64

/* A descriptor GLib polls (its wake-up eventfd, whatever else a GLib
 * source on an I/O thread watches) that epoll_poll() keeps in the epoll set
 * beside the connections and the listening sockets (GhWatch). */
typedef struct {
	int fd;
	gushort events; /* GLib's G_IO_* */
	dev_t dev;
	ino_t ino; /* what fd was when added: never remove another file's record */
	gboolean seen;
} ForeignFd;

/*
 * A connection's epoll record names it by a handle, never by its address:
 * its slot in the source's table and the slot's generation.  Freeing a
 * connection empties its slot and moves the generation on, so whatever
 * event still names it (one later in the batch being dispatched, one kept
 * by epoll_poll for the next dispatch, or a record that outlives the close
 * because a forked child holds the socket for a moment between fork and
 * exec) finds a stranger in the slot and is dropped.  That is also why
 * freeing a connection needs no EPOLL_CTL_DEL before close(2): the record
 * goes with the socket's last descriptor, and until then it can reach
 * nothing.
 */
typedef struct {
	GhConn *conn;   /* a connection's slot, or NULL */
	GhWatch *watch; /* a listening socket's (gh_watch_new), or NULL; both NULL: free */
	guint32 gen;    /* moves on each time the slot is freed */
	guint32 next;   /* a free slot: the next free one */
} ConnSlot;

#define SLOT_NONE G_MAXUINT32

typedef struct {
	GSource source;
	int epfd;
	GMainContext *context;
	GArray *slots;      /* of ConnSlot */
	guint32 free_slots; /* first free slot, or SLOT_NONE */
	/* epoll_poll(): connection events its epoll_wait() brought, for the
	 * next dispatch */
	struct epoll_event pending[GH_EPOLL_BATCH];
	int n_pending;
	GArray *foreign;       /* of ForeignFd */
	gboolean plain_poll;   /* a descriptor epoll refused: g_poll() from now on */
	gboolean warned_stale; /* said once that a foreign record outlived its fd */
} EpollSource;

struct _GhWatch {
	int fd;
	EpollSource *epoll; /* the context's */
	guint32 slot;
	GhWatchFunc func;
	gpointer user_data;
};

/* The epoll record's data: a connection's handle (generation << 32 | slot
 * << 1, even), a foreign descriptor's fd * 2 + 1. */
#define FOREIGN_TAG(fd) (((guint64)(guint)(fd) << 1) | 1u)
#define CONN_HANDLE(slot, gen) (((guint64)(gen) << 32) | ((guint64)(slot) << 1))

static void conn_register(GhConn *c, GIOCondition events);
static gboolean write_now(GhConn *c, const void *data, gsize len, int flags);

/* GLib's G_IO_* and epoll's EPOLL*: the one mapping, both ways. */
static guint32
epoll_events_of(guint events)
{
	return ((events & G_IO_IN) ? EPOLLIN : 0) | ((events & G_IO_OUT) ? EPOLLOUT : 0) |
	       ((events & G_IO_PRI) ? EPOLLPRI : 0);
}

static GIOCondition
condition_of(guint32 events)
{
	return ((events & EPOLLIN) ? G_IO_IN : 0) | ((events & EPOLLOUT) ? G_IO_OUT : 0) |
	       ((events & EPOLLPRI) ? G_IO_PRI : 0) | ((events & EPOLLERR) ? G_IO_ERR : 0) |
	       ((events & EPOLLHUP) ? G_IO_HUP : 0);
}

static GMutex epoll_lock;
static GHashTable *epoll_by_context; /* GMainContext * -> EpollSource * */

/* A free slot for c or w (one of them). */
static guint32
slot_take(EpollSource *ep, GhConn *c, GhWatch *w)
{
	guint32 i = ep->free_slots;
	ConnSlot *s;

	if (i == SLOT_NONE) {
		ConnSlot fresh = {.conn = NULL, .watch = NULL, .gen = 0, .next = SLOT_NONE};
		i = ep->slots->len;
		g_array_append_val(ep->slots, fresh);
	}
	s = &g_array_index(ep->slots, ConnSlot, i);
	ep->free_slots = s->next;
	s->conn = c;
	s->watch = w;
	return i;
}

static void
slot_give_back(EpollSource *ep, guint32 i)
{
	ConnSlot *s = &g_array_index(ep->slots, ConnSlot, i);
	s->conn = NULL;
	s->watch = NULL;
	s->gen++;
	s->next = ep->free_slots;
	ep->free_slots = i;
}

/* What the epoll record of slot i carries (see ConnSlot). */
static guint64
slot_handle(EpollSource *ep, guint32 i)
{
	return CONN_HANDLE(i, g_array_index(ep->slots, ConnSlot, i).gen);
}

/* The slot an event names, or NULL: freed since (see ConnSlot). */
static const ConnSlot *
slot_of(EpollSource *ep, guint64 handle)
{
	guint32 i = (guint32)(handle >> 1) & 0x7fffffffu;
	const ConnSlot *s;

	if (i >= ep->slots->len)
		return NULL;
	s = &g_array_index(ep->slots, ConnSlot, i);
	return s->gen == (guint32)(handle >> 32) ? s : NULL;
}

static gboolean
epoll_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
	EpollSource *ep = (EpollSource *)source;
	struct epoll_event events[GH_EPOLL_BATCH];
	int n;
	(void)callback;
	(void)data;

	if (ep->n_pending > 0) {
		n = ep->n_pending;
		memcpy(events, ep->pending, (gsize)n * sizeof events[0]);
		ep->n_pending = 0;
	} else {
		do {
			n = epoll_wait(ep->epfd, events, GH_EPOLL_BATCH, 0);
		} while (n < 0 && errno == EINTR);
	}
	for (int i = 0; i < n; i++) {
		const ConnSlot *s;
		GhConn *c;
		GIOCondition cond;
		if ((events[i].data.u64 & 1u) != 0)
			continue; /* a foreign descriptor: GLib's, reported by epoll_poll */
		s = slot_of(ep, events[i].data.u64);
		if (s == NULL)
			continue; /* freed since: by an earlier callback, say */
		if (s->watch != NULL) {
			s->watch->func(s->watch->fd, s->watch->user_data);
			continue;
		}
		c = s->conn;
		if (c == NULL)
			continue;
		cond = condition_of(events[i].events);
		if ((events[i].events & EPOLLRDHUP) != 0)
			c->peer_shut = TRUE;
		/* an event we stopped wanting (lazily left in the set): narrow
		 * the record now, or level-triggered epoll reports it again */
		if ((cond & ~(c->watching | G_IO_HUP | G_IO_ERR)) != 0 || c->watching == 0)
			conn_register(c, c->watching);
		if (c->watching == 0)
			continue;
		cond &= c->watching | G_IO_HUP | G_IO_ERR;
		if (cond != 0 && c->func != NULL)
			c->func(c, cond, c->user_data);
	}
	/* what the callbacks set for soon runs in this turn, not the next */
	gh_timer_run_soon();
	return G_SOURCE_CONTINUE;
}

static void
epoll_finalize(GSource *source)
{
	EpollSource *ep = (EpollSource *)source;
	g_mutex_lock(&epoll_lock);
	if (epoll_by_context != NULL && g_hash_table_lookup(epoll_by_context, ep->context) == ep)
		g_hash_table_remove(epoll_by_context, ep->context);
	g_mutex_unlock(&epoll_lock);
	g_array_unref(ep->slots);
	g_array_unref(ep->foreign);
	close(ep->epfd);
}

static GSourceFuncs epoll_funcs = {
    .dispatch = epoll_dispatch,
    .finalize = epoll_finalize,
};

/* ------------------------------------------------------------ the poll function */

/*
 * GLib's loop sleeps in poll(2) over its descriptors, our epoll descriptor
 * among them, and the epoll source then asks epoll_wait(2) what happened:
 * two system calls per wake-up.  An I/O thread's context gets this poll
 * function instead, which puts GLib's few other descriptors (its wake-up
 * eventfd) into the epoll set itself and sleeps in one epoll_wait(); the
 * events of the connections and listening sockets it brings are kept for
 * the epoll source's dispatch.  Sleeping inside epoll_wait also makes
 * EPOLLEXCLUSIVE on a listening socket work: a new connection wakes one
 * I/O thread, not all of them (a thread asleep in poll(2) on an epoll
 * descriptor is not counted as an exclusive waiter).
 */
static __thread GMainContext *poll_context;
static __thread EpollSource *poll_source;

static EpollSource *
thread_epoll(void)
{
	GMainContext *ctx = g_main_context_get_thread_default();

	if (ctx != poll_context) {
		g_mutex_lock(&epoll_lock);
		poll_source = epoll_by_context != NULL && ctx != NULL
				  ? g_hash_table_lookup(epoll_by_context, ctx)
				  : NULL;
		g_mutex_unlock(&epoll_lock);
		poll_context = ctx;
	}
	return poll_source;
}

static gboolean
foreign_add(EpollSource *ep, ForeignFd *f)
{
	struct epoll_event ev = {.events = epoll_events_of(f->events),
				 .data.u64 = FOREIGN_TAG(f->fd)};
	struct stat st;
	int listening = 0;
	socklen_t len = sizeof listening;

	if (fstat(f->fd, &st) != 0)
		return FALSE;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	/* a listening socket: one waiter woken per connection */
	if (f->events == G_IO_IN &&
	    getsockopt(f->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening)
		ev.events |= EPOLLEXCLUSIVE;
	return epoll_ctl(ep->epfd, EPOLL_CTL_ADD, f->fd, &ev) == 0;
}

static void
foreign_remove(EpollSource *ep, const ForeignFd *f)
{
	struct stat st;

	/* closed and its number taken by a connection of this very set: the
	 * record went with the close, and DEL would remove the connection's */
	if (fstat(f->fd, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino)
		(void)epoll_ctl(ep->epfd, EPOLL_CTL_DEL, f->fd, NULL);
}

/* Bring the foreign records in line with what GLib polls now.  FALSE when
 * epoll refuses one (a regular file, say). */
static gboolean
foreign_sync(EpollSource *ep, GPollFD *fds, guint nfds)
{
	for (guint j = 0; j < ep->foreign->len; j++)
		g_array_index(ep->foreign, ForeignFd, j).seen = FALSE;
	for (guint i = 0; i < nfds; i++) {
		ForeignFd *found = NULL;
		if (fds[i].fd == ep->epfd || fds[i].fd < 0)
			continue;
		for (guint j = 0; j < ep->foreign->len && found == NULL; j++)
			if (g_array_index(ep->foreign, ForeignFd, j).fd == fds[i].fd)
				found = &g_array_index(ep->foreign, ForeignFd, j);
		if (found != NULL && found->events != fds[i].events) {
			foreign_remove(ep, found);
			found->events = fds[i].events;
			if (!foreign_add(ep, found))
				return FALSE;
		} else if (found == NULL) {
			ForeignFd f = {.fd = fds[i].fd, .events = fds[i].events};
			if (!foreign_add(ep, &f))
				return FALSE;
			g_array_append_val(ep->foreign, f);
			found = &g_array_index(ep->foreign, ForeignFd, ep->foreign->len - 1);
		}
		found->seen = TRUE;
	}
	for (guint j = ep->foreign->len; j-- > 0;) {
		ForeignFd *f = &g_array_index(ep->foreign, ForeignFd, j);
		if (!f->seen) {
			foreign_remove(ep, f);
			g_array_remove_index_fast(ep->foreign, j);
		}
	}
	return TRUE;
}

static gint
epoll_poll(GPollFD *fds, guint nfds, gint timeout)
{
	EpollSource *ep = thread_epoll();
	struct epoll_event events[GH_EPOLL_BATCH];
	GPollFD *mine = NULL;
	gboolean keep;
	gint ready = 0;
	int n;

	if (ep == NULL || ep->plain_poll)
		return g_poll(fds, nfds, timeout);
	for (guint i = 0; i < nfds; i++) {
		fds[i].revents = 0;
		if (fds[i].fd == ep->epfd)
			mine = &fds[i];
	}
	if (mine == NULL)
		return g_poll(fds, nfds, timeout);
	if (!foreign_sync(ep, fds, nfds)) {
		/* leave the set as GLib's poll would find it */
		for (guint j = 0; j < ep->foreign->len; j++)
			foreign_remove(ep, &g_array_index(ep->foreign, ForeignFd, j));
		g_array_set_size(ep->foreign, 0);
		ep->plain_poll = TRUE;
		return g_poll(fds, nfds, timeout);
	}
	/* events kept from the last call wait for a dispatch that a source of
	 * higher priority put off: do not sleep, and keep those alone */
	keep = ep->n_pending == 0;
	if (keep) {
		/* the thread's journal entries, when due (config/log.h) */
		gint due = gh_log_flush_due();
		if (due >= 0 && (timeout < 0 || timeout > due))
			timeout = due;
	}
	n = epoll_wait(ep->epfd, events, GH_EPOLL_BATCH, keep ? timeout : 0);
	if (n < 0)
		return -1; /* EINTR: GLib's loop goes round again */
	for (int i = 0; i < n; i++) {
		if ((events[i].data.u64 & 1u) == 0) {
			/* a connection's; level-triggered, so one not kept now
			 * comes again */
			if (keep) {
				ep->pending[ep->n_pending++] = events[i];
				mine->revents |= G_IO_IN;
			}
			continue;
		}
		gint fd = (gint)(events[i].data.u64 >> 1);
		gboolean polled = FALSE;
		for (guint j = 0; j < nfds; j++) {
			if (fds[j].fd != fd)
				continue;
			fds[j].revents |= (gushort)condition_of(events[i].events);
			fds[j].revents &= fds[j].events | G_IO_ERR | G_IO_HUP;
			polled = TRUE;
		}
		/* foreign_sync left only what GLib polls now, but it cannot
		 * remove the record of a descriptor closed while a copy lives
		 * on: that record reports the copy's file on every turn, and
		 * the thread spins until the copy is closed.  A bug of ours
		 * (as the connector's was); say so once rather than spin in
		 * silence. */
		if (!polled && !ep->warned_stale) {
			ep->warned_stale = TRUE;
			g_warning(
			    "descriptor %d was closed while the loop watched it and a copy of it "
			    "lives on: this I/O thread wakes for that copy until it is closed "
			    "(a bug; please report it)",
			    fd);
		}
	}
	if (ep->n_pending > 0)
		mine->revents |= G_IO_IN;
	for (guint i = 0; i < nfds; i++)
		ready += fds[i].revents != 0;
	return ready;
}

/* The epoll source of context, made on first use; it lives as long as the
 * context (which holds the only reference). */
static EpollSource *
epoll_for(GMainContext *context)
{
	EpollSource *ep;
	if (context == NULL)
		context = g_main_context_default();
	g_mutex_lock(&epoll_lock);
	if (epoll_by_context == NULL)
		epoll_by_context = g_hash_table_new(NULL, NULL);
	ep = g_hash_table_lookup(epoll_by_context, context);
	if (ep == NULL) {
		int epfd = epoll_create1(EPOLL_CLOEXEC);
		if (epfd < 0)
			g_error("epoll_create1: %s", g_strerror(errno));
		ep = (EpollSource *)g_source_new(&epoll_funcs, sizeof(EpollSource));
		ep->epfd = epfd;
		ep->context = context;
		ep->slots = g_array_new(FALSE, FALSE, sizeof(ConnSlot));
		ep->free_slots = SLOT_NONE;
		ep->foreign = g_array_new(FALSE, FALSE, sizeof(ForeignFd));
		g_source_set_name((GSource *)ep, "gatehouse connections");
		/* GLib blocks a source that cannot recurse while it dispatches:
		 * it takes the source's fds out of the context's poll set and
		 * puts them back, and each of those changes writes the
		 * context's eventfd, so the next poll() returns at once for
		 * nothing.  Nothing here runs a nested loop, so skip that. */
		g_source_set_can_recurse((GSource *)ep, TRUE);
		(void)g_source_add_unix_fd((GSource *)ep, epfd, G_IO_IN);
		g_hash_table_insert(epoll_by_context, context, ep);
		g_source_attach((GSource *)ep, context);
		g_source_unref((GSource *)ep);
		/* an I/O thread's own context (never the default one, where
		 * GIO and libsoup keep their own descriptors) sleeps in the
		 * epoll set */
		if (context != g_main_context_default())
			g_main_context_set_poll_func(context, epoll_poll);
	}
	g_mutex_unlock(&epoll_lock);
	return ep;
}

GhConn *
gh_conn_new(int fd, GMainContext *context, gsize in_max, gsize out_max)
{
	GhConn *c = g_new0(GhConn, 1);
	c->fd = fd;
	c->context = context;
	c->epoll = epoll_for(context);
	c->in_max = in_max;
	c->out_max = out_max;
	c->in = g_byte_array_new();
	c->out = g_byte_array_new();
	c->slot = slot_take(c->epoll, c, NULL);
	return c;
}

void
gh_conn_free(GhConn *c)
{
	EpollSource *ep;
	if (c == NULL)
		return;
	ep = c->epoll;
	if (c->tls != NULL) {
		/* tell the peer we are done, if the socket takes it now; never wait */
		if (!c->tls_handshaking && c->error == 0)
			(void)gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c->tls);
	}
	g_free(c->tls_error);
	/* No EPOLL_CTL_DEL: the record goes with the close, or, if a forked
	 * child holds the socket for a moment, names a slot c no longer has
	 * (see ConnSlot). */
	slot_give_back(ep, c->slot);
	if (c->fd >= 0)
		close(c->fd);
	/* buffers may hold credentials on their way to a backend */
	if (c->in->len > 0)
		explicit_bzero(c->in->data, c->in->len);
	if (c->out->len > 0)
		explicit_bzero(c->out->data, c->out->len);
	g_byte_array_unref(c->in);
	g_byte_array_unref(c->out);
	g_free(c);
}

GhWatch *
gh_watch_new(
    int fd, GMainContext *context, gboolean exclusive, GhWatchFunc func, gpointer user_data)
{
	GhWatch *w = g_new0(GhWatch, 1);
	EpollSource *ep = epoll_for(context);
	struct epoll_event ev = {.events = EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0)};

	w->fd = fd;
	w->epoll = ep;
	w->func = func;
	w->user_data = user_data;
	w->slot = slot_take(ep, NULL, w);
	ev.data.u64 = slot_handle(ep, w->slot);
	if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int err = errno;
		slot_give_back(ep, w->slot);
		g_free(w);
		errno = err;
		return NULL;
	}
	return w;
}

void
gh_watch_free(GhWatch *w)
{
	EpollSource *ep;
	if (w == NULL)
		return;
	ep = w->epoll;
	/* the socket lives on (other threads' sets, a later watch): its
	 * record in this set must go now */
	(void)epoll_ctl(ep->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	slot_give_back(ep, w->slot);
	g_free(w);
}

void
gh_conn_set_callback(GhConn *c, GhConnFunc func, gpointer user_data)
{
	c->func = func;
	c->user_data = user_data;
}

/* Bring the epoll set's record of c to `events` (0: out of the set). */
static void
conn_register(GhConn *c, GIOCondition events)
{
	EpollSource *ep = c->epoll;
	struct epoll_event ev = {0};
	int op;
	if (events == c->registered)
		return;
	if (events == 0)
		op = EPOLL_CTL_DEL; /* a record with no events would still report hang-ups */
	else
		op = c->registered == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	ev.events = epoll_events_of(events & (G_IO_IN | G_IO_OUT));
	/* with reading: say when the peer's FIN is in, so that the read that
	 * empties the socket knows it was the last (peer_shut) */
	if ((events & G_IO_IN) != 0)
		ev.events |= EPOLLRDHUP;
	ev.data.u64 = slot_handle(ep, c->slot);
	if (epoll_ctl(ep->epfd, op, c->fd, &ev) != 0 && op != EPOLL_CTL_DEL) {
		/* out of kernel memory for watches: fail the connection rather
		 * than leave it waiting for an event that cannot come */
		g_warning("epoll_ctl on fd %d: %s", c->fd, g_strerror(errno));
		c->error = errno;
		return;
	}
	c->registered = events;
}

void
gh_conn_want(GhConn *c, GIOCondition condition)
{
	if (condition != 0)
		condition |= c->tls_want;
	if (c->fd < 0)
		return;
	c->watching = condition;
	/* Narrowing is lazy: an event we no longer want is dropped, and the
	 * record fixed, only if it comes.  A session that stops reading while
	 * its login is checked and then reads again costs no syscall. */
	if ((condition & ~c->registered) != 0)
		conn_register(c, condition);
}

static void
tls_failed(GhConn *c, const char *what, int rc)
{
	if (c->tls_error == NULL)
		c->tls_error = g_strdup_printf("%s: %s", what, gnutls_strerror(rc));
	c->error = ECONNRESET;
}

static gsize
tls_fill(GhConn *c)
{
	gsize added = 0;
	c->tls_want = 0;
	while (!c->eof && c->error == 0 &&
	       (c->in->len < c->in_max || gnutls_record_check_pending(c->tls) > 0)) {
		guint8 buf[16384];
		ssize_t n = gnutls_record_recv(c->tls, buf, sizeof buf);
		if (n > 0) {
			g_byte_array_append(c->in, buf, (guint)n);
			added += (gsize)n;
			c->bytes_in += (guint64)n;
			if (!c->plain_data)
				explicit_bzero(buf, (gsize)n);
		} else if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
			/* close-notify, or a peer that just closed: both are an end */
			c->eof = TRUE;
		} else if (n == GNUTLS_E_INTERRUPTED) {
			continue;
		} else if (n == GNUTLS_E_AGAIN) {
			if (gnutls_record_get_direction(c->tls) == 1)
				c->tls_want = G_IO_OUT;
			break;
		} else if (!gnutls_error_is_fatal((int)n)) {
			continue; /* a warning alert is not an end */
		} else {
			tls_failed(c, "TLS read", (int)n);
		}
	}
	return added;
}

/* Drop the first n bytes of a buffer.  Before a session's data is plain
 * (it may carry a password), wipe them, and the old copy of the rest that
 * the move to the front leaves behind the new end. */
static void
drop_front(GhConn *c, GByteArray *buf, gsize n)
{
	gsize rest;

	n = MIN(n, buf->len);
	if (n == 0)
		return;
	rest = buf->len - n;
	if (!c->plain_data)
		explicit_bzero(buf->data, n);
	g_byte_array_remove_range(buf, 0, (guint)n);
	if (!c->plain_data && rest > 0)
		explicit_bzero(buf->data + rest, n);
}

static gboolean
tls_flush(GhConn *c)
{
	c->tls_want = 0;
	while (c->out->len > 0 && c->error == 0) {
		/* after E_AGAIN the same record must be offered again */
		gsize len = c->tls_send_len != 0 ? c->tls_send_len : MIN(c->out->len, 16384);
		ssize_t n = gnutls_record_send(c->tls, c->out->data, len);
		if (n > 0) {
			c->tls_send_len = 0;
			c->bytes_out += (guint64)n;
			drop_front(c, c->out, (gsize)n);
		} else if (n == GNUTLS_E_INTERRUPTED) {
			continue;
		} else if (n == GNUTLS_E_AGAIN) {
			c->tls_send_len = len;
			if (gnutls_record_get_direction(c->tls) == 0)
				c->tls_want = G_IO_IN;
			break;
		} else {
			tls_failed(c, "TLS write", (int)n);
		}
	}
	return c->out->len == 0;
}

void
gh_conn_tls_start(GhConn *c, gnutls_session_t session)
{
	c->tls = session;
	c->tls_handshaking = TRUE;
}

int
gh_conn_tls_handshake(GhConn *c)
{
	int rc;
	c->tls_want = 0;
	do {
		rc = gnutls_handshake(c->tls);
	} while (rc < 0 && rc != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(rc));
	if (rc == 0) {
		c->tls_handshaking = FALSE;
		return 1;
	}
	if (rc == GNUTLS_E_AGAIN) {
		c->tls_want = gnutls_record_get_direction(c->tls) == 1 ? G_IO_OUT : G_IO_IN;
		return 0;
	}
	if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t text = {NULL, 0};
		unsigned status = gnutls_session_get_verify_cert_status(c->tls);
		gnutls_certificate_verification_status_print(
		    status, gnutls_certificate_type_get(c->tls), &text, 0);
		c->tls_error = g_strdup_printf("TLS handshake: certificate not trusted: %s",
					       text.data != NULL ? (char *)text.data : "?");
		gnutls_free(text.data);
	} else if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		c->tls_error = g_strdup_printf("TLS handshake: the peer sent alert \"%s\"",
					       gnutls_alert_get_name(gnutls_alert_get(c->tls)));
	} else {
		c->tls_error = g_strdup_printf("TLS handshake: %s", gnutls_strerror(rc));
	}
	c->error = ECONNRESET;
	return -1;
}

gsize
gh_conn_fill(GhConn *c)
{
	gsize added = 0;
	if (c->tls != NULL)
		return c->tls_handshaking ? 0 : tls_fill(c);
	while (c->in->len < c->in_max && !c->eof && c->error == 0) {
		guint8 buf[16384];
		gsize room = MIN(sizeof buf, c->in_max - c->in->len);
		ssize_t n = recv(c->fd, buf, room, 0);
		if (n > 0) {
			g_byte_array_append(c->in, buf, (guint)n);
			added += (gsize)n;
			c->bytes_in += (guint64)n;
			if (!c->plain_data)
				explicit_bzero(buf, (gsize)n);
			if ((gsize)n < room)
				break;
		} else if (n == 0) {
			c->eof = TRUE;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			c->error = errno;
		}
	}
	return added;
}

void
gh_conn_consume(GhConn *c, gsize n)
{
	drop_front(c, c->in, n);
}

/* Send data[0..len) as far as the socket takes it (send(2) `flags` added):
 * the bytes taken; c->error set on failure. */
static gsize
send_some(GhConn *c, const void *data, gsize len, int flags)
{
	gsize off = 0;
	while (off < len) {
		ssize_t n = send(c->fd, (const char *)data + off, len - off, MSG_NOSIGNAL | flags);
		if (n > 0) {
			off += (gsize)n;
			c->bytes_out += (guint64)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			c->error = n < 0 ? errno : EPIPE;
			break;
		}
	}
	return off;
}

/* Plaintext: send what `out` holds, as far as the socket takes it. */
static gboolean
flush_plain(GhConn *c, int flags)
{
	gsize off = 0;
	if (c->error == 0)
		off = send_some(c, c->out->data, c->out->len, flags);
	drop_front(c, c->out, off);
	return c->out->len == 0;
}

gboolean
gh_conn_flush(GhConn *c)
{
	if (c->tls != NULL)
		return c->tls_handshaking ? c->out->len == 0 : tls_flush(c);
	return flush_plain(c, 0);
}

gboolean
gh_conn_queue(GhConn *c, const void *data, gsize len)
{
	if (c->out->len + len > c->out_max)
		return FALSE;
	if (!c->corked) {
		/* straight from the caller's bytes when nothing waits: only
		 * what the socket refuses is copied */
		(void)write_now(c, data, len, 0);
		return TRUE;
	}
	g_byte_array_append(c->out, data, (guint)len);
	if (c->out->len >= GH_CONN_CORK_MAX)
		(void)gh_conn_flush(c);
	return TRUE;
}

void
gh_conn_cork(GhConn *c)
{
	c->corked = TRUE;
}

void
gh_conn_uncork(GhConn *c)
{
	c->corked = FALSE;
	/* From GH_CONN_CORK_MAX on, the last gh_conn_queue has tried the
	 * socket already and what is left is what it refused: leave it to the
	 * writable event, exactly as if nothing had been corked (trying again
	 * here could empty the queue after the owner stopped reading for it,
	 * and then nothing would wake the owner for the input it left). */
	if (c->out->len > 0 && c->out->len < GH_CONN_CORK_MAX)
		(void)gh_conn_flush(c);
}

gboolean
gh_conn_queue_printf(GhConn *c, const char *format, ...)
{
	va_list ap;
	g_autofree char *text = NULL;
	va_start(ap, format);
	text = g_strdup_vprintf(format, ap);
	va_end(ap);
	return gh_conn_queue(c, text, strlen(text));
}

gsize
gh_conn_pending(GhConn *c)
{
	return c->out->len;
}

gsize
gh_conn_recv(GhConn *c, void *buf, gsize len)
{
	if (c->eof || c->error != 0 || len == 0)
		return 0;
	if (c->tls != NULL) {
		if (c->tls_handshaking)
			return 0;
		c->tls_want = 0;
		for (;;) {
			ssize_t n = gnutls_record_recv(c->tls, buf, len);
			if (n > 0) {
				c->bytes_in += (guint64)n;
				return (gsize)n;
			}
			if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
				c->eof = TRUE;
			} else if (n == GNUTLS_E_INTERRUPTED) {
				continue;
			} else if (n == GNUTLS_E_AGAIN) {
				if (gnutls_record_get_direction(c->tls) == 1)
					c->tls_want = G_IO_OUT;
			} else if (!gnutls_error_is_fatal((int)n)) {
				continue;
			} else {
				tls_failed(c, "TLS read", (int)n);
			}
			return 0;
		}
	}
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0) {
			c->bytes_in += (guint64)n;
			return (gsize)n;
		}
		if (n == 0)
			c->eof = TRUE;
		else if (errno == EINTR)
			continue;
		else if (errno != EAGAIN && errno != EWOULDBLOCK)
			c->error = errno;
		return 0;
	}
}

/* gh_conn_write with send(2) `flags`: TRUE when the socket took it all. */
static gboolean
write_now(GhConn *c, const void *data, gsize len, int flags)
{
	gsize off;
	if (c->out->len > 0 || c->tls != NULL || c->error != 0) {
		/* TLS keeps its record-resend rule in tls_flush; queued bytes
		 * go first */
		g_byte_array_append(c->out, data, (guint)len);
		(void)gh_conn_flush(c);
		return FALSE;
	}
	off = send_some(c, data, len, flags);
	if (c->error != 0)
		return FALSE;
	if (off < len) {
		g_byte_array_append(c->out, (const guint8 *)data + off, (guint)(len - off));
		return FALSE;
	}
	return TRUE;
}

void
gh_conn_write(GhConn *c, const void *data, gsize len)
{
	(void)write_now(c, data, len, 0);
}

/* MSG_MORE holds the bytes back (all of them, or the last part of a
 * segment when the socket refused the rest), so that the shutdown right
 * after sends them with our FIN in one segment; refused ones follow with
 * the next plain send, which sends the held part too. */
gboolean
gh_conn_write_last(GhConn *c, const void *data, gsize len)
{
	if (!write_now(c, data, len, MSG_MORE))
		return FALSE;
	(void)shutdown(c->fd, SHUT_WR);
	return TRUE;
}

gboolean
gh_conn_shut(GhConn *c)
{
	c->corked = FALSE;
	if (!(c->tls != NULL ? gh_conn_flush(c) : flush_plain(c, MSG_MORE)) || c->error != 0)
		return FALSE;
	(void)shutdown(c->fd, SHUT_WR);
	return TRUE;
}

void
gh_conn_trim(GhConn *c)
{
	/* a GByteArray keeps its capacity; an empty new one holds no data */
	if (c->in->len == 0) {
		g_byte_array_unref(c->in);
		c->in = g_byte_array_new();
	}
	if (c->out->len == 0) {
		g_byte_array_unref(c->out);
		c->out = g_byte_array_new();
	}
}
