"""The control socket and gatehousectl stats|sessions|kick|flush-cache|reload
(issue 16), end to end: gatehoused with real Dovecot (IMAP) and Postfix
(SMTP, XCLIENT) behind it, gatehousectl as an admin runs it, and raw
AF_UNIX clients for what gatehousectl never sends.

What is asserted is what a user sees: the socket file (mode, owner, gone
after a stop), gatehousectl's output and exit status (0 ok, 1 refused, 64
usage, 69 no daemon, 77 permission denied), the bytes a kicked IMAP or SMTP
client reads, the gateway's and the backends' log lines.  Timeouts are only
upper bounds for a failing test; no assertion on how fast the machine is.

The load tests keep 1,000 sessions open (RLIMIT_NOFILE is raised for this
process, and so for the gatehoused it starts, when its soft limit is lower).
"""
import grp
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from backends import USERS, marker
from lib.clients import ImapClient, SmtpClient, assert_no_secrets, plain_blob
from lib.config import line_of
from lib.gateway import GATEHOUSECTL, ctl, start_gateway
from lib.net import TIMEOUT, free_port, wait_for
from lib.proc import make_tmpdir
from lib.scripted import ImapServer, Server, lines_of

# gatehousectl's exit statuses
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOPERM = 0, 1, 64, 69, 77

IMAP_BYE = '* BYE Session closed by the administrator.'
SMTP_421 = '421 4.7.0 gw.test Session closed by the administrator'
SMTP_GREETING = '220 gw.test ESMTP'
AUTH_OK = '235 2.7.0 Authentication successful'
LOGGED_IN = re.compile(r'^\S+ OK .*Logged in')
SELECT_OK = re.compile(r'^\S+ OK \[READ-WRITE\] Select completed')
NOOP_OK = re.compile(r'^\S+ OK NOOP completed')
KICK_END = 'reason="kicked by the administrator"'

SESSION_COLUMNS = ['ID', 'PROTO', 'LISTENER', 'REMOTE', 'USER', 'STATE', 'BACKEND', 'AGE',
                   'UP', 'DOWN', 'TLS']

# the daemon's deadlines (daemon/core/control.h), as the log states them
CONTROL_READ_TIMEOUT = 5      # s
READ_DEADLINE_LINE = 'sent no whole request within 5 s; dropped'
CONTROL_WRITE_TIMEOUT = 10    # s
WRITE_DEADLINE_LINE = 'read nothing of its answer for 10 s; dropped'

N_LOAD = 1000          # sessions open in the load tests
N_CTL = 200            # concurrent gatehousectl sessions
N_RAW = 50             # concurrent raw control clients that do not read at once


# ---------------------------------------------------------------- helpers

def control_socket(gw):
    """The control_socket the gateway's configuration names."""
    m = re.search(r'^control_socket = (.*)$', Path(gw.conf).read_text(), re.M)
    assert m, gw.conf
    return m.group(1)


def run_ctl(gw, *args, **kw):
    """gatehousectl -c GW.conf ARGS (a CompletedProcess)."""
    return ctl(*args, config=gw.conf, **kw)


def ctl_ok(gw, *args):
    """The standard output of a gatehousectl that must succeed with nothing
    on standard error."""
    r = run_ctl(gw, *args)
    assert r.returncode == EXIT_OK and r.stderr == '', \
        'gatehousectl %s: exit %d\nstdout: %r\nstderr: %r\n--- gatehoused log:\n%s' % (
            ' '.join(args), r.returncode, r.stdout, r.stderr, gw.log()[-3000:])
    return r.stdout


def ctl_json(gw, *args):
    return json.loads(ctl_ok(gw, *args, '--json'))


def session_rows(text):
    """The rows of `gatehousectl sessions` (a header, then one line per
    session; cells blank-separated) as dicts keyed by the header."""
    lines = text.splitlines()
    assert lines and lines[0].split() == SESSION_COLUMNS, text[:2000]
    rows = []
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == len(SESSION_COLUMNS), 'bad row %r in:\n%s' % (line, text[:2000])
        rows.append(dict(zip(SESSION_COLUMNS, cells)))
    return rows


def sessions_json(gw, *args):
    answer = ctl_json(gw, 'sessions', *args)
    assert answer['not_shown'] == 0, answer
    return answer['sessions']


def wait_sessions(gw, n, *args, timeout=30):
    """The sessions (JSON) once there are exactly n of them."""
    got = []

    def check():
        got[:] = [sessions_json(gw, *args)]
        return len(got[0]) == n
    try:
        wait_for(check, timeout, interval=0.1, what='%d sessions' % n)
    except AssertionError:
        raise AssertionError('want %d sessions, have: %r' % (n, got[0] if got else None))
    return got[0]


def raw_control(gw, timeout=TIMEOUT):
    """A raw AF_UNIX stream connection to the gateway's control socket."""
    path = control_socket(gw)
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    while True:
        # a full listen backlog is EAGAIN for a socket with a timeout (a
        # blocking one, as gatehousectl's, waits): wait for the daemon to
        # accept the ones before
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            if time.monotonic() > deadline:
                s.close()
                raise AssertionError('%s: backlog still full after %.0f s' % (path, timeout))
            time.sleep(0.01)


def read_to_close(s, timeout=TIMEOUT):
    """(everything received, how it ended: 'eof' or 'reset'); fails if the
    daemon keeps the connection open for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = b''
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError('the control connection stayed open for %.0f s; got %r'
                                 % (timeout, data[:300]))
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            # the daemon closed with bytes of ours it never read (AF_UNIX
            # then resets instead of a plain EOF)
            return data, 'reset'
        if not chunk:
            return data, 'eof'
        data += chunk


def raw_request(gw, request, timeout=TIMEOUT):
    """Send request (bytes) on a fresh control connection; what comes back
    until the daemon closes."""
    with raw_control(gw) as s:
        s.sendall(request)
        return read_to_close(s, timeout)


def login_lines(gw, mark, user):
    """(verdict, cached) of each login line of `user` logged since mark."""
    return re.findall(r'login: session=\S+ .*? user="%s" .*? verdict=(\S+) .*? cached=(yes|no) '
                      % re.escape(user), gw.since(mark))


def imap_login(port, user, gw=None, tag='a1', select=False):
    """An ImapClient logged in through the gateway (Dovecot's tagged OK),
    with INBOX selected if `select`."""
    c = ImapClient(port, gw=gw, greet=True)
    try:
        c.expect('%s LOGIN %s %s' % (tag, user, USERS[user]), LOGGED_IN)
        if select:
            c.expect('%s2 SELECT INBOX' % tag, SELECT_OK)
    except BaseException:
        c.close()
        raise
    return c


class DovecotLog:
    """Dovecot's log after a mark."""

    def __init__(self, dovecot):
        self.dc = dovecot
        self.mark = len(dovecot.log_text())

    def since(self):
        return self.dc.log_text()[self.mark:]

    def wait(self, pattern, timeout=30):
        rx = re.compile(pattern)
        try:
            return wait_for(lambda: rx.search(self.since()), timeout, what=pattern)
        except AssertionError:
            raise AssertionError('no %r in the Dovecot log within %.0f s; since the mark:\n%s'
                                 % (pattern, timeout, self.since()[-3000:]))


def dovecot_backend(dovecot):
    return dict(protocol='imap', servers='127.0.0.1:%d' % dovecot.imap_port, login='passthrough')


def xclient_backend(postfix):
    return dict(protocol='smtp', servers='127.0.0.1:%d' % postfix.port, login='xclient')


@pytest.fixture
def start(gateways):
    """start(listeners, backends, protocol='imap', **kw) -> a gatehoused with
    the users of backends.USERS (lib.gateway.Gateways.start()).  At the end
    no gateway's log may hold a password (nor any of start.secrets, the
    wrong ones the test sent)."""
    started = []

    def start_(listeners, backends, protocol='imap', **kw):
        gw = gateways.start(listeners, backends, users=USERS, protocol=protocol, **kw)
        started.append(gw)
        return gw
    start_.secrets = []
    yield start_
    for gw in started:
        assert_no_secrets(gw.log(), USERS.items(), secrets=start_.secrets)


@pytest.fixture
def imap_gw(start, dovecot):
    """A gateway with one listener `imap` to Dovecot (passthrough)."""
    return start({'imap': dict(backend='dc')}, {'dc': dovecot_backend(dovecot)})


def raise_nofile(need):
    """Raise this process's soft RLIMIT_NOFILE to at least `need` (the
    gatehoused it starts inherits it); the old limits, for restore."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail('RLIMIT_NOFILE hard limit %d is below the %d this test needs'
                        % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return old


def open_plain(port, n):
    """n TCP connections to an IMAP listener, each having read the greeting."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)
            socks.append(s)
            buf = b''
            while not buf.endswith(b'\r\n'):
                chunk = s.recv(4096)
                assert chunk, 'connection %d closed before the greeting' % len(socks)
                buf += chunk
            assert buf.startswith(b'* OK '), buf
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(things):
    for t in things:
        try:
            t.close()
        except OSError:
            pass


# ---------------------------------------------------------------- the socket

def nobody_ctl(args, groups=None):
    """gatehousectl ARGS as nobody:nogroup, with only the supplementary
    groups given (setpriv)."""
    argv = ['setpriv', '--reuid=nobody', '--regid=nogroup']
    argv += ['--groups=%s' % ','.join(str(g) for g in groups)] if groups else ['--clear-groups']
    argv += [str(GATEHOUSECTL)] + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('run_as', ['root', 'daemon'])
def test_socket_mode_owner_access_and_removal(dovecot, run_as):
    """The socket is 0660, owned by the daemon's user and group (root, or
    the user and group it switches to); root and the group's members may use
    it, anyone else gets exit 77 naming the group; SIGTERM removes it, and
    then gatehousectl says there is no daemon (exit 69)."""
    d = make_tmpdir('gh-ctl-sock-')
    gatehouse = {}
    if run_as == 'daemon':
        uid, gid = pwd.getpwnam('daemon').pw_uid, grp.getgrnam('daemon').gr_gid
        gatehouse = {'user': 'daemon', 'group': 'daemon'}
        # the daemon removes its socket as that user: a folder of its own
        # (as systemd's RuntimeDirectory= makes), that others may traverse
        sockdir = d / 'run'
        sockdir.mkdir()
        shutil.chown(sockdir, 'daemon', 'daemon')
        os.chmod(sockdir, 0o755)
        gatehouse['control_socket'] = str(sockdir / 'control')
    else:
        uid, gid = os.geteuid(), os.getegid()
    group_name = grp.getgrgid(gid).gr_name
    gw = start_gateway(d, {'imap': dict(backend='dc')}, {'dc': dovecot_backend(dovecot)},
                       USERS, protocol='imap', gatehouse=gatehouse)
    try:
        path = control_socket(gw)
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert (st.st_uid, st.st_gid) == (uid, gid)
        if run_as == 'daemon':
            assert 'running as user daemon' in gw.log()

        # root may
        assert 'sessions: 0 open' in ctl_ok(gw, 'stats')
        # a member of the group may (a supplementary group is enough)
        r = nobody_ctl(['-c', gw.conf, 'stats'], groups=[gid])
        assert r.returncode == EXIT_OK, r
        assert 'sessions: 0 open' in r.stdout and r.stderr == '', r
        # anyone else is told why, and which group would do
        r = nobody_ctl(['-c', gw.conf, 'stats'])
        assert r.returncode == EXIT_NOPERM, r
        assert r.stdout == '', r
        assert r.stderr == ('gatehousectl: %s: permission denied: only root and members of '
                            'group %s may use the control socket\n' % (path, group_name)), r
        for args in (['sessions'], ['kick', 'alice'], ['flush-cache'], ['reload']):
            r = nobody_ctl(['-s', path] + args)
            assert r.returncode == EXIT_NOPERM and 'permission denied' in r.stderr, (args, r)

        # SIGTERM: the daemon exits and takes its socket with it
        gw.daemon.signal(signal.SIGTERM)
        assert gw.daemon.proc.wait(timeout=60) == 0, gw.log()[-3000:]
        assert not os.path.lexists(path), os.listdir(os.path.dirname(path))
        assert 'not removed' not in gw.log(), gw.log()[-3000:]
        r = run_ctl(gw, 'stats')
        assert r.returncode == EXIT_UNAVAILABLE, r
        assert r.stdout == '', r
        assert r.stderr == 'gatehousectl: %s: no such socket: is gatehoused running?\n' % path, r
    finally:
        gw.daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_no_daemon_behind_the_socket(dovecot):
    """A daemon that was killed leaves its socket: gatehousectl says nothing
    answers (exit 69); the next gatehoused replaces the stale socket and
    serves on it."""
    d = make_tmpdir('gh-ctl-stale-')
    path = str(d / 'control')
    gws = []
    try:
        gw = start_gateway(d, {'imap': dict(backend='dc')}, {'dc': dovecot_backend(dovecot)},
                           USERS, protocol='imap', gatehouse={'control_socket': path})
        gws.append(gw)
        gw.daemon.signal(signal.SIGKILL)
        gw.daemon.proc.wait(timeout=60)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        r = run_ctl(gw, 'sessions')
        assert r.returncode == EXIT_UNAVAILABLE, r
        assert r.stderr == ('gatehousectl: %s: nothing answers: gatehoused is not running\n'
                            % path), r
        assert r.stdout == ''

        d2 = d / 'again'
        d2.mkdir()
        gw2 = start_gateway(d2, {'imap': dict(backend='dc')}, {'dc': dovecot_backend(dovecot)},
                            USERS, protocol='imap', gatehouse={'control_socket': path})
        gws.append(gw2)
        assert 'sessions: 0 open' in ctl_ok(gw2, 'stats')

        # a second daemon on the same socket is refused, and the first one
        # keeps it
        d3 = d / 'third'
        d3.mkdir()
        with pytest.raises(AssertionError, match='another gatehoused answers on it'):
            start_gateway(d3, {'imap': dict(backend='dc')}, {'dc': dovecot_backend(dovecot)},
                          USERS, protocol='imap', gatehouse={'control_socket': path})
        assert 'sessions: 0 open' in ctl_ok(gw2, 'stats')
    finally:
        for g in gws:
            g.daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_usage_and_refused_requests(imap_gw):
    """Usage errors never reach the daemon (exit 64); a request the daemon
    refuses is exit 1 with its reason on stderr; -s names the socket."""
    gw = imap_gw
    for args, want in ((['kick'], 'usage: gatehousectl kick USER | --session ID | --remote '
                                  'ADDR[/BITS]\n'),
                       (['sessions', 'extra'], "gatehousectl sessions: unexpected argument "
                                               "'extra'\n"),
                       (['stats', '--user', 'x'], None)):
        r = run_ctl(gw, *args)
        assert r.returncode == EXIT_USAGE and r.stdout == '', (args, r)
        if want is not None:
            assert r.stderr == want, (args, r)
    r = run_ctl(gw, 'sessions', '--remote', '300.1.2.3')
    assert r.returncode == EXIT_REFUSED and r.stdout == '', r
    assert r.stderr == ('remote=300.1.2.3: not an address or a network '
                        '(ADDRESS or ADDRESS/BITS)\n'), r
    r = ctl('-s', control_socket(gw), 'sessions')
    assert r.returncode == EXIT_OK and r.stdout.split() == SESSION_COLUMNS, r


# ---------------------------------------------------------------- IMAP, Dovecot

def test_imap_session_listed_and_kicked(imap_gw, dovecot):
    gw = imap_gw
    dc = DovecotLog(dovecot)
    c = imap_login(gw.port(), 'alice', gw=gw, select=True)
    try:
        # Dovecot's own session id for this login, to find its end
        m = dc.wait(r'imap-login: (?:Info: )?Login: user=<alice>.*session=<([^>]+)>')
        dc_session = m.group(1)
        c.expect('a3 NOOP', NOOP_OK)

        def proxied_with_bytes():
            s = sessions_json(gw)
            return len(s) == 1 and s[0]['bytes_up'] > 0 and s[0]['bytes_down'] > 0 and s
        (s,) = wait_for(proxied_with_bytes, 30, interval=0.1,
                        what='one proxied session with bytes both ways: %r' % sessions_json(gw))
        assert re.fullmatch(r'[a-z0-9]+', s['id']), s
        assert s == dict(s, protocol='imap', listener='imap', remote='127.0.0.1', user='alice',
                         state='proxied', backend='127.0.0.1:%d' % dovecot.imap_port, tls=None), s
        assert s['age_seconds'] >= 0

        (row,) = session_rows(ctl_ok(gw, 'sessions'))
        assert row == dict(ID=s['id'], PROTO='imap', LISTENER='imap', REMOTE='127.0.0.1',
                           USER='alice', STATE='proxied',
                           BACKEND='127.0.0.1:%d' % dovecot.imap_port, TLS='no',
                           AGE=row['AGE'], UP=row['UP'], DOWN=row['DOWN']), row
        assert re.fullmatch(r'\d+s|\d+m\d\ds', row['AGE']), row
        assert int(row['UP']) > 0 and int(row['DOWN']) > 0, row

        # the filters
        assert session_rows(ctl_ok(gw, 'sessions', '--user', 'bob')) == []
        assert sessions_json(gw, '--user', 'bob') == []
        assert [r['ID'] for r in session_rows(ctl_ok(gw, 'sessions', '--user', 'ALICE'))] \
            == [s['id']]
        # networks as in trusted_networks: an IPv4 client is also in the
        # IPv4-mapped IPv6 range (::/0, ::ffff:0:0/96)
        for net in ('127.0.0.0/8', '127.0.0.1', '127.0.0.1/32', '::/0', '::ffff:127.0.0.0/104'):
            assert [x['id'] for x in sessions_json(gw, '--remote', net)] == [s['id']], net
        for net in ('10.0.0.0/8', '127.0.0.2', '::1', '2001:db8::/32'):
            assert sessions_json(gw, '--remote', net) == [], net
            assert session_rows(ctl_ok(gw, 'sessions', '--remote', net)) == [], net
        assert [x['id'] for x in sessions_json(gw, '--session', s['id'])] == [s['id']]
        assert sessions_json(gw, '--session', 'nosuchsession') == []

        # nobody else to kick: nothing happens to alice
        assert ctl_ok(gw, 'kick', 'bob') == 'kicked 0 sessions\n'
        c.expect('a4 NOOP', NOOP_OK)

        # kick alice: Dovecot's last words never reach the client, the
        # gateway's goodbye does, then EOF
        mark = gw.mark()
        dc = DovecotLog(dovecot)
        assert ctl_ok(gw, 'kick', 'alice') == 'kicked 1 session\n'
        assert c.until_close() == [IMAP_BYE], c.ctx()
        dc.wait(r'imap\(alice\)<\d+><%s>: (?:Info: )?Disconnected' % re.escape(dc_session))
        end = gw.wait_since(mark, r'session end: session=%s proto=imap listener=imap '
                                  r'remote=127\.0\.0\.1 user="alice" backend=127\.0\.0\.1:%d '
                                  r'client_bytes=(\d+) backend_bytes=(\d+) duration=\S+ (.*)'
                            % (s['id'], dovecot.imap_port))
        assert end.group(3) == KICK_END, end.group(0)
        assert int(end.group(1)) > 0 and int(end.group(2)) > 0, end.group(0)
        assert re.search(r'control: kick user=alice by uid 0 pid \d+: 1 session\n',
                         gw.since(mark)), gw.since(mark)
    finally:
        c.close()
    wait_sessions(gw, 0)
    assert ctl_json(gw, 'stats')['kicked'] == [{'protocol': 'imap', 'count': 1}]
    # kicked again: no one left
    assert ctl_json(gw, 'kick', 'alice') == {'kicked': 0}


def test_imap_kick_json_and_pre_login(imap_gw, dovecot):
    """kick --json; a client that has not logged in gets the BYE as well;
    every other session stays."""
    gw = imap_gw
    pre = ImapClient(gw.port(), gw=gw, greet=True)
    bob = imap_login(gw.port(), 'bob', gw=gw)
    try:
        pre_id = wait_for(lambda: [x['id'] for x in sessions_json(gw)
                                   if x['state'] == 'pre-login'], 30)[0]
        assert ctl_json(gw, 'kick', '--session', pre_id) == {'kicked': 1}
        assert pre.until_close() == [IMAP_BYE], pre.ctx()
        bob.expect('b3 NOOP', NOOP_OK)
        (left,) = wait_sessions(gw, 1)
        assert left['user'] == 'bob' and left['state'] == 'proxied', left
    finally:
        pre.close()
        bob.close()


def test_imap_kick_in_idle(imap_gw, dovecot):
    """A mail client sitting in IDLE (the usual state of a logged-in one)."""
    gw = imap_gw
    c = imap_login(gw.port(), 'bob', gw=gw, select=True)
    try:
        c.line('i1 IDLE')
        assert c.read_line().startswith('+ '), c.ctx()
        (s,) = wait_sessions(gw, 1)
        mark = gw.mark()
        assert ctl_ok(gw, 'kick', '--session', s['id']) == 'kicked 1 session\n'
        assert c.until_close() == [IMAP_BYE], c.ctx()
        end = gw.wait_since(mark, r'session end: session=%s .* (reason=.*)' % s['id'])
        assert end.group(1) == KICK_END, end.group(0)
    finally:
        c.close()
    wait_sessions(gw, 0)


def test_kick_while_logging_in(start):
    """A client whose login waits for a backend that never greets is in
    state logging-in: kicked, it gets the BYE (no tagged reply), and the
    gateway drops its backend connection."""
    ended = threading.Event()

    def hold(conn):
        for _ in lines_of(conn):
            pass
        ended.set()
    backend = Server(hold)
    try:
        gw = start({'imap': dict(backend='mute')},
                   {'mute': dict(protocol='imap', servers='127.0.0.1:%d' % backend.port,
                                 login='passthrough')})
        c = ImapClient(gw.port(), gw=gw, greet=True)
        try:
            c.line('a LOGIN alice %s' % USERS['alice'])
            wait_for(lambda: backend.connections == 1, 30, what='the backend connection')
            (s,) = wait_sessions(gw, 1)
            assert (s['state'], s['user']) == ('logging-in', 'alice'), s
            assert ctl_ok(gw, 'kick', 'alice') == 'kicked 1 session\n'
            assert c.until_close() == [IMAP_BYE], c.ctx()
            assert ended.wait(30), 'the backend connection is still open'
        finally:
            c.close()
        wait_sessions(gw, 0)
    finally:
        backend.close()


def test_kick_before_the_proxy_header(start, dovecot):
    """A connection still owing its PROXY header is closed without a word."""
    gw = start({'imap': dict(backend='dc', proxy_protocol=True)}, {'dc': dovecot_backend(dovecot)},
               gatehouse={'proxy_trusted_networks': '127.0.0.1/32'})
    c = ImapClient(gw.port(), gw=gw)
    try:
        (s,) = wait_sessions(gw, 1)
        assert s['remote'] == '127.0.0.1' and s['user'] is None, s
        assert ctl_ok(gw, 'kick', '--remote', '127.0.0.1') == 'kicked 1 session\n'
        c.expect_close(timeout=30)
    finally:
        c.close()
    wait_sessions(gw, 0)
    assert ctl_json(gw, 'stats')['kicked'] == [{'protocol': 'imap', 'count': 1}]


def test_kick_in_the_middle_of_a_fetch(imap_gw, dovecot):
    """Kicked while Dovecot's answer to a FETCH of a large message is on its
    way to a client that does not read: the client gets what was relayed,
    never the BYE inside the message's literal, then EOF; Dovecot's
    session ends."""
    gw = imap_gw
    size = 24 * 1024 * 1024
    box = marker('big')
    body = (b'x' * 998 + b'\r\n') * (size // 1000)
    message = b'Subject: big\r\n\r\n' + body
    c = imap_login(gw.port(), 'carol', gw=gw)
    try:
        c.expect('c1 CREATE %s' % box, re.compile(r'^c1 OK'))
        c.line('c2 APPEND %s {%d}' % (box, len(message)))
        c.continuation()
        c.send(message + b'\r\n')
        c.expect(None, re.compile(r'^c2 OK'), tag='c2')
    finally:
        c.close()
    wait_sessions(gw, 0)

    dc = DovecotLog(dovecot)
    # a client with a small receive window, so that the answer stalls
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(('127.0.0.1', gw.port()))
    try:
        f = sock.makefile('rb')
        assert f.readline().startswith(b'* OK ')
        sock.sendall(b'f1 LOGIN carol %s\r\n' % USERS['carol'].encode())
        while not f.readline().startswith(b'f1 '):
            pass
        m = dc.wait(r'imap-login: (?:Info: )?Login: user=<carol>.*session=<([^>]+)>')
        sock.sendall(b'f2 SELECT %s\r\nf3 FETCH 1 BODY.PEEK[]\r\n' % box.encode())
        # wait until the relay has carried a good part of it and stalls
        wait_for(lambda: sessions_json(gw)[0]['bytes_down'] > 1024 * 1024, 60, interval=0.2,
                 what='a MB relayed: %r' % sessions_json(gw))
        (s,) = sessions_json(gw)
        mark = gw.mark()
        assert ctl_ok(gw, 'kick', 'carol') == 'kicked 1 session\n'
        got = b''
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            chunk = f.read1(1 << 20)
            if not chunk:
                break
            got += chunk
        else:
            raise AssertionError('no EOF after the kick; got %d bytes' % len(got))
    finally:
        sock.close()
    # the kick came inside the message's literal: no BYE in it
    assert IMAP_BYE.encode() not in got, got[-300:]
    assert len(got) < len(message), len(got)
    assert got.startswith(b'* '), got[:300]
    dc.wait(r'imap\(carol\)<\d+><%s>: (?:Info: )?Disconnected' % re.escape(m.group(1)))
    end = gw.wait_since(mark, r'session end: session=%s .* (reason=.*)' % s['id'])
    assert end.group(1) == KICK_END, end.group(0)
    print('\nmid-fetch kick: the client got %d bytes of a %d-byte message'
          % (len(got), len(message)))


def test_kick_of_a_session_already_closing(imap_gw):
    """A kicked client that does not read (its BYE waits behind the answers
    it never read) is closed once: kicking it again kicks nothing, and it
    counts once."""
    gw = imap_gw
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(('127.0.0.1', gw.port()))
    try:
        # pipelined commands whose answers the client never reads, until
        # neither side takes more
        sock.setblocking(False)
        try:
            for _ in range(100000):
                sock.send(b'a CAPABILITY\r\n' * 100)
        except BlockingIOError:
            pass
        (s,) = wait_sessions(gw, 1)
        mark = gw.mark()
        assert ctl_ok(gw, 'kick', '--remote', '127.0.0.1') == 'kicked 1 session\n'
        again = ctl_ok(gw, 'kick', '--remote', '127.0.0.1')
        kicked = ctl_json(gw, 'stats')['kicked']
        closed = gw.since(mark).count('session %s: 127.0.0.1: closed by the administrator'
                                      % s['id'])
        assert (again, kicked, closed) == \
            ('kicked 0 sessions\n', [{'protocol': 'imap', 'count': 1}], 1), \
            ('a second kick of session %s, which the first one is closing:\n'
             'gatehousectl kick --remote 127.0.0.1: %r\nstats kicked: %r\n'
             'gatehoused log since the first kick:\n%s' % (s['id'], again, kicked,
                                                            gw.since(mark)))
    finally:
        sock.close()
    wait_sessions(gw, 0)


# ---------------------------------------------------------------- SMTP, Postfix

def postfix_since(postfix, mark):
    return postfix.log_text()[mark:]


def test_smtp_session_listed_and_kicked(start, postfix):
    gw = start({'submission': dict(require_auth=True, backend='pf')},
               {'pf': xclient_backend(postfix)}, protocol='smtp')
    c = SmtpClient(gw.port(), gw=gw)
    try:
        c.expect(None, SMTP_GREETING)
        c.ehlo()
        pf_mark = len(postfix.log_text())
        c.expect('AUTH PLAIN ' + plain_blob('alice', USERS['alice']), AUTH_OK)
        # Postfix has the connection (XCLIENT names the client to it)
        wait_for(lambda: re.search(r'postfix/smtpd\[\d+\]: connect from',
                                   postfix_since(postfix, pf_mark)), 30,
                 what='postfix connect')
        c.expect('RSET', 250)

        (s,) = wait_sessions(gw, 1)
        assert s == dict(s, protocol='smtp', listener='submission', remote='127.0.0.1',
                         user='alice', state='proxied', backend='127.0.0.1:%d' % postfix.port,
                         tls=None), s
        (row,) = session_rows(ctl_ok(gw, 'sessions', '--user', 'alice'))
        assert (row['ID'], row['PROTO'], row['USER'], row['STATE']) == \
            (s['id'], 'smtp', 'alice', 'proxied'), row

        mark = gw.mark()
        pf_mark = len(postfix.log_text())
        assert ctl_ok(gw, 'kick', '--session', s['id']) == 'kicked 1 session\n'
        assert c.until_close() == [SMTP_421], c.ctx()
        # the backend's side went too: Postfix sees its client go
        wait_for(lambda: re.search(r'postfix/smtpd\[\d+\]: disconnect from',
                                   postfix_since(postfix, pf_mark)), 30,
                 what='postfix disconnect:\n%s' % postfix_since(postfix, pf_mark))
        end = gw.wait_since(mark, r'session end: session=%s proto=smtp listener=submission '
                                  r'remote=127\.0\.0\.1 user="alice" .* (reason=.*)' % s['id'])
        assert end.group(1) == KICK_END, end.group(0)
    finally:
        c.close()
    wait_sessions(gw, 0)

    # a client that has not logged in: kicked by its address
    pre = SmtpClient(gw.port(), gw=gw)
    try:
        pre.expect(None, SMTP_GREETING)
        pre.ehlo()
        (s,) = wait_sessions(gw, 1)
        assert s['state'] == 'pre-login' and s['user'] is None, s
        assert ctl_ok(gw, 'kick', '--remote', '127.0.0.1/32') == 'kicked 1 session\n'
        assert pre.until_close() == [SMTP_421], pre.ctx()
    finally:
        pre.close()
    wait_sessions(gw, 0)
    assert ctl_json(gw, 'stats')['kicked'] == [{'protocol': 'smtp', 'count': 2}]


def test_smtp_kick_during_data(start, postfix):
    """Kicked in the middle of a message: the client gets the 421, and
    Postfix delivers nothing of the half message."""
    gw = start({'submission': dict(require_auth=True, backend='pf')},
               {'pf': xclient_backend(postfix)}, protocol='smtp')
    subject = marker('kicked-data')
    c = SmtpClient(gw.port(), gw=gw, greet=True)
    try:
        c.ehlo()
        c.expect('AUTH PLAIN ' + plain_blob('bob', USERS['bob']), AUTH_OK)
        c.expect('MAIL FROM:<bob@example.com>', 250)
        c.expect('RCPT TO:<alice@example.com>', 250)
        c.expect('DATA', 354)
        c.send('Subject: %s\r\n\r\nthe first half\r\n' % subject)
        (s,) = wait_sessions(gw, 1)
        assert ctl_ok(gw, 'kick', 'bob') == 'kicked 1 session\n'
        assert c.until_close() == [SMTP_421], c.ctx()
    finally:
        c.close()
    wait_sessions(gw, 0)
    # a message sent after it is delivered; the kicked one never is
    after = marker('after-kick')
    c = SmtpClient(gw.port(), gw=gw, greet=True)
    try:
        c.ehlo()
        c.expect('AUTH PLAIN ' + plain_blob('bob', USERS['bob']), AUTH_OK)
        c.expect('MAIL FROM:<bob@example.com>', 250)
        c.expect('RCPT TO:<alice@example.com>', 250)
        c.expect('DATA', 354)
        c.send('Subject: %s\r\n\r\nwhole\r\n.\r\n' % after)
        c.expect(None, 250)
        c.expect('QUIT', 221)
    finally:
        c.close()
    postfix.wait_message('alice', 'Subject: ' + after)
    assert postfix.find_messages(subject) == []


# ---------------------------------------------------------------- flush-cache

def cache_entries(gw):
    return ctl_json(gw, 'stats')['auth']['cache_entries']


def login_logout(gw, user):
    c = imap_login(gw.port(), user, gw=gw)
    try:
        c.expect('z LOGOUT', re.compile(r'^z OK Logout completed'))
    finally:
        c.close()


def test_flush_cache_one_user(imap_gw, start):
    """flush-cache USER forgets that user's cached verdicts and no one
    else's (the next login of hers is checked again, his comes from the
    cache); flush-cache alone forgets the rest."""
    gw = imap_gw
    mark = gw.mark()
    login_logout(gw, 'alice')
    login_logout(gw, 'bob')
    assert login_lines(gw, mark, 'alice') == [('ok', 'no')], gw.since(mark)
    assert login_lines(gw, mark, 'bob') == [('ok', 'no')], gw.since(mark)
    assert cache_entries(gw) == 2

    assert ctl_ok(gw, 'flush-cache', 'alice') == 'flushed 1 cached verdict\n'
    assert cache_entries(gw) == 1
    assert re.search(r'control: flush-cache user=alice by uid 0 pid \d+: 1 cached verdict '
                     r'dropped\n', gw.since(mark)), gw.since(mark)

    mark = gw.mark()
    login_logout(gw, 'alice')
    login_logout(gw, 'bob')
    assert login_lines(gw, mark, 'alice') == [('ok', 'no')], gw.since(mark)
    assert login_lines(gw, mark, 'bob') == [('ok', 'yes')], gw.since(mark)
    assert cache_entries(gw) == 2

    # the rest
    assert ctl_json(gw, 'flush-cache') == {'flushed': 2}
    assert cache_entries(gw) == 0
    assert ctl_ok(gw, 'flush-cache') == 'flushed 0 cached verdicts\n'
    mark = gw.mark()
    login_logout(gw, 'bob')
    assert login_lines(gw, mark, 'bob') == [('ok', 'no')], gw.since(mark)

    # a cached failure (auth_cache_negative_ttl) is the user's as well
    wrong = 'not-alices-password'
    start.secrets.append(wrong)
    mark = gw.mark()
    for tag in ('w1', 'w2'):
        with ImapClient(gw.port(), gw=gw, greet=True) as c:
            c.expect('%s LOGIN alice %s' % (tag, wrong),
                     'NO [AUTHENTICATIONFAILED] Authentication failed.')
    assert login_lines(gw, mark, 'alice') == [('wrong-password', 'no'),
                                              ('wrong-password', 'yes')], gw.since(mark)
    assert cache_entries(gw) == 2
    assert ctl_json(gw, 'flush-cache', 'ALICE') == {'flushed': 1}
    assert cache_entries(gw) == 1
    mark = gw.mark()
    with ImapClient(gw.port(), gw=gw, greet=True) as c:
        c.expect('w3 LOGIN alice %s' % wrong, 'NO [AUTHENTICATIONFAILED] Authentication failed.')
    assert login_lines(gw, mark, 'alice') == [('wrong-password', 'no')], gw.since(mark)


# ---------------------------------------------------------------- reload

def test_reload_reports_a_broken_file(imap_gw):
    gw = imap_gw
    conf = Path(gw.conf)
    good = conf.read_text()
    assert '\n[listener imap]\n' in good
    # a bad value in the listener's group, an unknown key in [gatehouse]
    conf.write_text(good.replace('\n[listener imap]\n',
                                 '\n[listener imap]\nmax_connections = lots\n')
                    .replace('[gatehouse]\n', '[gatehouse]\nfrobnicate = yes\n'))
    bad_line = line_of(conf, 'listener imap', 'max_connections')
    unknown_line = line_of(conf, 'gatehouse', 'frobnicate')

    mark = gw.mark()
    r = run_ctl(gw, 'reload')
    assert r.returncode == EXIT_REFUSED and r.stdout == '', r
    lines = r.stderr.splitlines()
    assert ("%s:%d: [listener imap] max_connections: bad value 'lots': expected a whole "
            'number from 0 to 1000000' % (conf, bad_line)) in lines, r.stderr
    assert any(ln.startswith('%s:%d: [gatehouse] frobnicate: unknown key' % (conf, unknown_line))
               for ln in lines), r.stderr
    assert lines[-1] == ('reload refused (2 problems): configuration generation 1 stays in '
                         'force'), r.stderr
    assert len(lines) == 3, r.stderr
    st = ctl_json(gw, 'stats')
    assert (st['config_generation'], st['reloads_ok'], st['reloads_failed']) == (1, 0, 1), st
    assert 'config generation 1 (0 reloads, 1 refused)' in ctl_ok(gw, 'stats')
    assert re.search(r'control: reload by uid 0 pid \d+', gw.since(mark))

    # the JSON answer of a refusal: on standard output, for scripts
    r = run_ctl(gw, 'reload', '--json')
    assert r.returncode == EXIT_REFUSED and r.stderr == '', r
    refused = json.loads(r.stdout)
    assert refused['reloaded'] is False and refused['config_generation'] == 1, refused
    assert len(refused['problems']) == 2 and refused['problems'][0] in lines, refused

    # still serving, with the old configuration
    with ImapClient(gw.port(), gw=gw, greet=True) as c:
        assert c.greeting.endswith(' gw.test ready.'), c.greeting

    # fixed (and changed): it takes
    conf.write_text(good.replace('hostname = gw.test', 'hostname = reloaded.test'))
    assert ctl_ok(gw, 'reload') == 'reloaded: configuration generation 2\n'
    with ImapClient(gw.port(), gw=gw, greet=True) as c:
        assert c.greeting.endswith(' reloaded.test ready.'), c.greeting
    assert ctl_json(gw, 'reload') == {'reloaded': True, 'config_generation': 3, 'problems': []}
    st = ctl_json(gw, 'stats')
    assert (st['config_generation'], st['reloads_ok'], st['reloads_failed']) == (3, 2, 2), st


def test_reload_reports_a_syntax_error(imap_gw):
    """A line that is no `key = value` at all (a typo an admin makes) is
    reported by `gatehousectl -c FILE reload` like any other problem: the
    daemon's answer names the line.  gatehousectl must still find the
    control socket in the file it cannot fully parse."""
    gw = imap_gw
    conf = Path(gw.conf)
    good = conf.read_text()
    conf.write_text(good.replace('\n[listener imap]\n',
                                 '\n[listener imap]\nthis line has no equals sign\n'))
    bad_line = conf.read_text().split('\n').index('this line has no equals sign') + 1
    r = run_ctl(gw, 'reload')
    assert (r.returncode, r.stdout, r.stderr.splitlines()) == (EXIT_REFUSED, '', [
        '%s:%d: "this line has no equals sign" is not a key = value pair, a [group] header '
        'or a comment' % (conf, bad_line),
        'reload refused (1 problem): configuration generation 1 stays in force']), \
        ('gatehousectl -c %s reload, with line %d "this line has no equals sign":\n'
         'exit %d\nstdout: %r\nstderr: %r\n(the same with -s %s: %r)'
         % (conf, bad_line, r.returncode, r.stdout, r.stderr, control_socket(gw),
            ctl('-s', control_socket(gw), 'reload').stderr))
    conf.write_text(good)
    assert ctl_ok(gw, 'reload') == 'reloaded: configuration generation 2\n'


# ---------------------------------------------------------------- stats

def test_stats(start, dovecot):
    dead = free_port()       # nothing listens there
    start.secrets.append('wrong-pw-for-stats')
    gw = start({'imap': dict(backend='dc'), 'down': dict(backend='dead')},
               {'dc': dovecot_backend(dovecot),
                'dead': dict(protocol='imap', servers='127.0.0.1:%d' % dead,
                             login='passthrough')})
    text = ctl_ok(gw, 'stats')
    assert re.match(r'gatehoused \S+, up \S+ \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)\n'
                    r'config generation 1 \(0 reloads, 0 refused\)\n'
                    r'sessions: 0 open\n', text), text
    assert 'logins since start: none\n' in text and 'sessions kicked: none\n' in text, text

    good = imap_login(gw.port('imap'), 'alice', gw=gw, select=True)
    bad = ImapClient(gw.port('imap'), gw=gw, greet=True)
    down = ImapClient(gw.port('down'), gw=gw, greet=True)
    try:
        bad.expect('b LOGIN alice wrong-pw-for-stats', 'NO [AUTHENTICATIONFAILED] '
                                                      'Authentication failed.')
        down.expect('d LOGIN bob %s' % USERS['bob'],
                    'NO [UNAVAILABLE] Temporary authentication failure.')
        wait_sessions(gw, 3)

        text = ctl_ok(gw, 'stats')
        assert 'sessions: 3 open\n' in text, text
        table = re.search(r'^  LISTENER +PROTOCOL +PRE-LOGIN +LOGGING-IN +PROXIED\n'
                          r'((?:  .*\n)+?)logins since start:', text, re.M)
        assert table, text
        assert [ln.split() for ln in table.group(1).splitlines()] == \
            [['imap', 'imap', '1', '0', '1'], ['down', 'imap', '1', '0', '0']], text
        logins = re.search(r'^logins since start:\n((?:  .*\n)+)', text, re.M).group(1)
        assert {tuple(ln.split()) for ln in logins.splitlines()} == {
            ('PROTOCOL', 'LISTENER', 'MODULE', 'VERDICT', 'COUNT'),
            ('imap', 'imap', 'file', 'ok', '1'),
            ('imap', 'imap', 'file', 'wrong-password', '1'),
            ('imap', 'down', 'file', 'tempfail', '1')}, text
        assert re.search(r'^backend connect failures:\n  BACKEND +SERVER +FAILURES\n'
                         r'  dead +127\.0\.0\.1:%d +1\n' % dead, text, re.M), text

        st = ctl_json(gw, 'stats')
        assert st['config_generation'] == 1 and st['sessions_open'] == 3, st
        assert st['uptime_seconds'] >= 0 and isinstance(st['started'], int), st
        assert st['sessions'] == [
            {'listener': 'imap', 'protocol': 'imap', 'pre-login': 1, 'logging-in': 0,
             'proxied': 1},
            {'listener': 'down', 'protocol': 'imap', 'pre-login': 1, 'logging-in': 0,
             'proxied': 0}], st
        assert sorted((x['listener'], x['verdict'], x['count'], x['module'], x['protocol'])
                      for x in st['logins']) == [
            ('down', 'tempfail', 1, 'file', 'imap'),
            ('imap', 'ok', 1, 'file', 'imap'),
            ('imap', 'wrong-password', 1, 'file', 'imap')], st
        assert st['backend_failures'] == [
            {'backend': 'dead', 'server': '127.0.0.1:%d' % dead, 'count': 1}], st
        assert st['kicked'] == [], st
        auth = st['auth']
        assert auth['workers'] >= 1 and auth['queued'] == 0 and auth['cache_misses'] >= 3, auth
        assert auth['cache_hits'] == 0 and auth['cache_hit_rate'] == 0.0, auth

        assert ctl_ok(gw, 'kick', '--remote', '127.0.0.0/8') == 'kicked 3 sessions\n'
        for c in (good, bad, down):
            assert c.until_close() == [IMAP_BYE], c.ctx()
    finally:
        for c in (good, bad, down):
            c.close()
    wait_sessions(gw, 0)
    st = ctl_json(gw, 'stats')
    assert st['kicked'] == [{'protocol': 'imap', 'count': 3}], st
    relayed = {x['direction']: x['bytes'] for x in st['relay_bytes'] if x['protocol'] == 'imap'}
    assert relayed.get('to_backend', 0) > 0 and relayed.get('to_client', 0) > 0, st
    text = ctl_ok(gw, 'stats')
    assert re.search(r'^sessions kicked:\n  PROTOCOL +KICKED\n  imap +3\n', text, re.M), text


# ---------------------------------------------------------------- garbage and silence

def test_garbage_and_silence(imap_gw):
    gw = imap_gw
    mark = gw.mark()
    got, _ = raw_request(gw, b'\xff\xfe garbage \x80\n')
    assert got == b'error\nmalformed request: not UTF-8\n', got
    got, _ = raw_request(gw, b'stats\x01\n')
    assert got == b'error\nmalformed request: control character\n', got
    got, _ = raw_request(gw, b'x\n')
    assert got == b"error\nunknown command 'x'\n", got
    got, _ = raw_request(gw, b'\n')
    assert got == b'error\nempty request\n', got
    got, _ = raw_request(gw, b'sessions\tuser=\n')
    assert got == b'error\nuser: empty value\n', got
    got, _ = raw_request(gw, b'kick\n')
    assert got == b'error\nkick wants user=, session= or remote=\n', got
    got, _ = raw_request(gw, b'stats\tuser=alice\n')
    assert got == b'error\nuser=alice: not an argument of stats\n', got
    # the longest request there is, and one byte more
    got, _ = raw_request(gw, b'a' * 4095 + b'\n')
    assert got == b"error\nunknown command '" + b'a' * 64 + b"...'\n", got
    got, _ = raw_request(gw, b'a' * 4096 + b'\n')
    assert got == b'error\nrequest longer than 4096 bytes\n', got
    got, how = raw_request(gw, b'b' * 10000)
    assert got == b'error\nrequest longer than 4096 bytes\n', (got, how)
    assert re.search(r'control: uid 0 pid \d+: bad request: malformed request: not UTF-8\n',
                     gw.since(mark)), gw.since(mark)
    assert 'request longer than 4096 bytes; dropped' in gw.since(mark)
    # a good request works the same way by hand
    got, how = raw_request(gw, b'sessions\tjson\n')
    assert got == b'ok\n{"sessions":[],"not_shown":0}\n' and how == 'eof', got

    # silence, and half a request: dropped at the read deadline
    mark = gw.mark()
    with raw_control(gw) as quiet, raw_control(gw) as half:
        half.sendall(b'stats')
        assert read_to_close(quiet, timeout=60) == (b'', 'eof')
        assert read_to_close(half, timeout=60) == (b'', 'eof')
    wait_for(lambda: gw.since(mark).count(READ_DEADLINE_LINE) == 2, 30,
             what='two "%s" lines:\n%s' % (READ_DEADLINE_LINE, gw.since(mark)))
    # a client that goes away at once is no trouble either
    for _ in range(20):
        raw_control(gw).close()
        with raw_control(gw) as s:
            s.sendall(b'sessions\n')
    assert gw.alive()
    assert 'sessions: 0 open' in ctl_ok(gw, 'stats')


def test_request_sent_in_time_is_answered_however_busy_the_daemon(imap_gw):
    """The read deadline times the client, not the daemon: a request sent
    well within it, while the daemon could not read (stopped here with
    SIGSTOP past the deadline, as a main loop busy for seconds would be),
    is answered, not dropped."""
    gw = imap_gw
    mark = gw.mark()
    with raw_control(gw) as s:
        # the daemon accepts in order: once a later client is answered,
        # this one is accepted and its read deadline runs
        ctl_ok(gw, 'stats')
        gw.daemon.signal(signal.SIGSTOP)
        try:
            s.sendall(b'stats\n')
            time.sleep(CONTROL_READ_TIMEOUT + 2)
        finally:
            gw.daemon.signal(signal.SIGCONT)
        data, how = read_to_close(s, timeout=60)
    assert how == 'eof' and data.startswith(b'ok\n') and b'sessions: 0 open' in data, \
        (how, data[:300], gw.since(mark))
    assert READ_DEADLINE_LINE not in gw.since(mark)


def test_too_many_control_clients(imap_gw):
    """512 clients at once are served; the next one is told "busy"; once
    the silent ones are dropped, requests are answered again."""
    gw = imap_gw
    old = raise_nofile(2048)
    socks = []
    try:
        mark = gw.mark()
        for _ in range(512):
            socks.append(raw_control(gw))
        # the daemon may not have accepted all 512 yet when the 513th
        # comes: ask until one is refused
        busy = None
        for _ in range(100):
            got, _ = raw_request(gw, b'stats\n')
            if got == b'error\nbusy\n':
                busy = got
                break
            assert got.startswith(b'ok\n'), got
            time.sleep(0.05)
        assert busy, 'no "busy" with 512 silent clients open'
        assert 'control: 512 clients already; one more refused' in gw.since(mark)
        for s in socks:
            assert read_to_close(s, timeout=60)[0] == b''
    finally:
        close_all(socks)
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
    assert 'sessions: 0 open' in ctl_ok(gw, 'stats')


# ---------------------------------------------------------------- load

@pytest.fixture
def loaded(start, dovecot):
    """(gateway, plain sockets, proxied clients): N_LOAD sessions open, a
    few of them logged in to Dovecot; everything closed at the end."""
    old = raise_nofile(8192)
    gw = start({'imap': dict(backend='dc')}, {'dc': dovecot_backend(dovecot)})
    plain, proxied = [], []
    try:
        for user in ('alice', 'bob', 'carol'):
            proxied.append(imap_login(gw.port(), user, gw=gw, tag='p', select=True))
        plain = open_plain(gw.port(), N_LOAD - len(proxied))
        yield gw, plain, proxied
    finally:
        close_all(plain)
        close_all(proxied)
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_load_sessions_while_logging_in(loaded, tmp):
    """N_CTL concurrent `gatehousectl sessions` and N_RAW raw `sessions json`
    requests that are not read yet, with N_LOAD sessions open: a login in
    the middle of them is answered (and a command after it), and every
    request then gets its whole answer.

    The gatehousectl processes are started from a thread (starting 200
    processes takes seconds on a small machine); the login begins once half
    of them are started, with the raw requests sent and unread."""
    gw, plain, proxied = loaded
    procs, outs, raws = [], [], []
    spawn_error = []

    def spawn():
        try:
            for i in range(N_CTL):
                out = tmp / ('ctl%d.out' % i)
                with open(out, 'w') as f:
                    p = subprocess.Popen([str(GATEHOUSECTL), '-c', str(gw.conf), 'sessions'],
                                         stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
                outs.append(out)
                procs.append(p)
        except BaseException as e:
            spawn_error.append(e)
    spawner = threading.Thread(target=spawn)
    t0 = time.monotonic()
    spawner.start()
    try:
        wait_for(lambda: len(procs) >= N_CTL // 2 or spawn_error, 120,
                 what='%d gatehousectl started' % (N_CTL // 2))
        for _ in range(N_RAW):
            s = raw_control(gw, timeout=120)
            s.sendall(b'sessions\tjson\n')
            raws.append(s)
        t_sent = time.monotonic()

        # while those are in flight: a login, and a command after it
        c = imap_login(gw.port(), 'alice', gw=gw, tag='L')
        try:
            c.expect('L2 NOOP', NOOP_OK)
            t_login = time.monotonic()
            started = list(procs)
            in_flight = N_CTL - len(started) + sum(p.poll() is None for p in started)
        finally:
            c.close()

        # the raw clients read now: each gets its whole answer
        answers = [None] * len(raws)

        def read(i):
            try:
                answers[i] = read_to_close(raws[i], timeout=120)
            except BaseException as e:  # reported below
                answers[i] = (repr(e).encode(), 'failed')
        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(raws))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        for i, (data, how) in enumerate(answers):
            assert how == 'eof' and data.startswith(b'ok\n'), \
                (i, how, data[:300], [l for l in gw.log().splitlines() if 'control:' in l][-20:])
            body = json.loads(data[3:])
            assert body['not_shown'] == 0, i
            assert len(body['sessions']) >= N_LOAD, (i, len(body['sessions']))
            states = [x['state'] for x in body['sessions']]
            assert states.count('proxied') >= len(proxied), (i, states.count('proxied'))

        spawner.join(180)
        assert not spawner.is_alive() and not spawn_error, spawn_error
        assert len(procs) == N_CTL
        deadline = time.monotonic() + 180
        for i, p in enumerate(procs):
            try:
                rc = p.wait(max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError('gatehousectl sessions #%d still running after 180 s' % i)
            text = outs[i].read_text()
            assert rc == EXIT_OK, (i, rc, text[-2000:])
            rows = session_rows(text)
            assert len(rows) >= N_LOAD, (i, len(rows))
        t_done = time.monotonic()
    finally:
        spawner.join(180)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        close_all(raws)
    print('\nload: login + NOOP done %.1f s after the %d raw requests, with %d of %d '
          'gatehousectl not yet started or still running; all %d answered %.1f s after the '
          'start' % (t_login - t_sent, N_RAW, in_flight, N_CTL, N_CTL + N_RAW, t_done - t0))
    assert gw.alive()
    assert WRITE_DEADLINE_LINE not in gw.log() and READ_DEADLINE_LINE not in gw.log()


def test_steady_slow_reader_gets_its_whole_answer(loaded):
    """The write deadline drops a client that takes nothing of its answer,
    not one that takes it slowly: a client reading a few KiB every half
    second, which needs longer than the deadline for the whole answer,
    gets all of it."""
    gw, plain, proxied = loaded
    mark = gw.mark()
    with raw_control(gw, timeout=120) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b'sessions\tjson\n')
        t0 = time.monotonic()
        data = b''
        while True:
            s.settimeout(60)
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            time.sleep(0.5)
        took = time.monotonic() - t0
    # the precondition, so that the test can fail: the reading took longer
    # than the write deadline
    assert took > CONTROL_WRITE_TIMEOUT + 2, (took, len(data))
    assert data.startswith(b'ok\n'), data[:200]
    assert len(json.loads(data[3:])['sessions']) >= N_LOAD
    assert WRITE_DEADLINE_LINE not in gw.since(mark), gw.since(mark)
    print('\nsteady slow reader: %d bytes in %.1f s' % (len(data), took))


def test_slow_reader_dropped(loaded):
    """A client that asks for N_LOAD sessions in JSON and reads nothing is
    dropped at the write deadline: it reads the start of the answer, then
    EOF; the daemon goes on serving."""
    gw, plain, proxied = loaded
    full = b'ok\n' + ctl_ok(gw, 'sessions', '--json').encode()
    assert len(json.loads(full[3:])['sessions']) >= N_LOAD
    mark = gw.mark()
    with raw_control(gw, timeout=120) as s:
        s.sendall(b'sessions\tjson\n')
        gw.wait_since(mark, re.escape(WRITE_DEADLINE_LINE), timeout=60)
        # meanwhile the daemon answered others
        data, how = read_to_close(s, timeout=60)
    assert how == 'eof', how
    assert data.startswith(b'ok\n{"sessions":[{"id":'), data[:200]
    assert len(data) < len(full), (len(data), len(full))
    print('\nslow reader: got %d bytes of a %d-byte answer, then EOF' % (len(data), len(full)))
    with pytest.raises(ValueError):
        json.loads(data[3:])
    assert re.search(r'control: uid 0 pid \d+ %s' % re.escape(WRITE_DEADLINE_LINE),
                     gw.since(mark)), gw.since(mark)
    # still serving: sessions and logins
    assert len(session_rows(ctl_ok(gw, 'sessions'))) >= N_LOAD
    c = imap_login(gw.port(), 'alice', gw=gw, tag='s')
    try:
        c.expect('s2 NOOP', NOOP_OK)
    finally:
        c.close()


# a FETCH answer whose literal (46 octets) holds line ends of its own
FETCH_FIRST = b'Subject: first line of the body\r\n'
FETCH_MORE = b'\r\nbody line\r\n'
FETCH_HEAD = b'* 1 FETCH (BODY[] {%d}\r\n' % (len(FETCH_FIRST) + len(FETCH_MORE))
FETCH_REST = FETCH_MORE + b')\r\n'


@pytest.mark.parametrize('where', ['inside-a-literal', 'between-responses'])
def test_imap_kick_goodbye_only_between_the_servers_lines(start, where):
    """Kicked while a scripted server's FETCH answer is half sent, with its
    literal stopped right after a line end of its own: the client gets what
    was relayed and EOF, no "* BYE" inside the literal (where it would read
    as the message's text).  Kicked once the answer is whole: the BYE
    follows it.  gatehoused follows the server's literals for this
    (daemon/imap/imap-track.c)."""
    release = threading.Event()

    def on_command(conn, tag, name, first):
        if name != b'FETCH':
            return False
        conn.sendall(FETCH_HEAD + FETCH_FIRST)
        if where == 'inside-a-literal':
            release.wait(TIMEOUT)
            return True
        conn.sendall(FETCH_REST + tag + b' OK FETCH done\r\n')
        return True
    fb = ImapServer(on_command=on_command)
    try:
        gw = start({'imap': dict(backend='fake')},
                   {'fake': dict(protocol='imap', servers='127.0.0.1:%d' % fb.port,
                                 login='passthrough')})
        c = ImapClient(gw.port(), gw=gw)
        try:
            c.greeting_caps()
            assert c.login('alice', USERS['alice']).startswith('OK '), c.ctx()
            c.line('f1 FETCH 1 BODY[]')
            want = FETCH_HEAD + FETCH_FIRST
            if where == 'between-responses':
                want += FETCH_REST + b'f1 OK FETCH done\r\n'
            got = c.read_bytes(len(want))
            assert got == want, got
            assert ctl_ok(gw, 'kick', 'alice') == 'kicked 1 session\n'
            c.closed_within()
            rest = c.drained
        finally:
            c.close()
        if where == 'inside-a-literal':
            assert rest == b'', rest
        else:
            assert rest == IMAP_BYE.encode() + b'\r\n', rest
    finally:
        release.set()
        fb.close()
