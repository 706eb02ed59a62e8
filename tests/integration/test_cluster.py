"""A cluster of real components, as doc/deployment.md sets it up: a real
HAProxy 2.6 in front of two gatehoused nodes (IMAP and POP3 behind
send-proxy-v2, submission behind send-proxy, all proxy_protocol = yes,
health checks with check-send-proxy), two real Dovecots behind them
(haproxy = yes, gatehouse's IMAP and POP3 backends proxy_protocol = v2) and a real Postfix (smtpd_upstream_proxy_
protocol = haproxy, gatehouse's SMTP backend proxy_protocol = v1, login =
xclient as in test_smtp_backend.py).

Clients connect to HAProxy from loopback addresses of their own (127.0.0.2,
127.0.0.3, ...), so every hop sees a TCP peer of 127.0.0.1 and only the
PROXY headers carry the client's address.  The tests show that address in
gatehoused's, Dovecot's and Postfix's logs with mail delivered, a user
landing on the same Dovecot through either node, the failure penalty keyed
on the client's address, HAProxy's health checks passing, and a node's stop
moving new sessions to the other without a failed login.

Every process here is a child of the test, on 127.0.0.1 ports chosen at run
time, stopped by its PID.
"""
import csv
import io
import re
import select
import shutil
import signal
import socket
import subprocess

import pytest

from backends import USERS, ProxyDovecot, ProxyPostfix, marker, received, running
from lib.clients import ImapClient, Pop3Client, SmtpClient
from lib.config import file_auth, users_file, write_config
from lib.gateway import Daemon, Gateway
from lib.net import free_port, wait_for
from lib.paths import GATEHOUSED
from lib.proc import make_tmpdir, stop_process

HAPROXY = '/usr/sbin/haproxy'

pytestmark = pytest.mark.skipif(not shutil.which(HAPROXY), reason='needs haproxy')

IMAP_GREETING = re.compile(r'\* OK \[CAPABILITY [^\]]*\] gw\.test ready\.$')
SMTP_GREETING = '220 gw.test ESMTP'
AUTH_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'

# each node's first failure from an address is answered after 2 s, the
# next after 4, then 8: long enough that a good login from elsewhere is
# answered first on any machine
FAILURE_DELAY = 2

# HAProxy's checks: every 300 ms; 2 failures take a server out, 2 passes
# bring it back
CHECK = 'inter 300ms fall 2 rise 2'


# ---------- HAProxy ----------

# doc/deployment.md's HAProxy configuration with the test's addresses, and
# around it what a test needs: the log to stdout, the stats socket, and one
# frontend per node that reaches that node alone (imap_node1, imap_node2:
# to show what one node does with two clients, and that either node sends a
# user to the same Dovecot)
HAPROXY_CONF = '''\
global
    log stdout format raw local0
    stats socket {dir}/haproxy.sock mode 600 level admin

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 30m
    timeout server 30m
    timeout check 5s
    option redispatch
    retries 3

frontend imap
    bind 127.0.0.1:{imap}
    default_backend gatehouse_imap

backend gatehouse_imap
    balance leastconn
    option tcp-check
    tcp-check expect string "* OK"
    server node1 127.0.0.1:{node1_imap} send-proxy-v2 check check-send-proxy {check}
    server node2 127.0.0.1:{node2_imap} send-proxy-v2 check check-send-proxy {check}

frontend pop3
    bind 127.0.0.1:{pop3}
    default_backend gatehouse_pop3

backend gatehouse_pop3
    balance leastconn
    option tcp-check
    tcp-check expect string "+OK"
    server node1 127.0.0.1:{node1_pop3} send-proxy-v2 check check-send-proxy {check}
    server node2 127.0.0.1:{node2_pop3} send-proxy-v2 check check-send-proxy {check}

frontend submission
    bind 127.0.0.1:{submission}
    default_backend gatehouse_submission

backend gatehouse_submission
    balance leastconn
    option tcp-check
    tcp-check expect string "220 "
    server node1 127.0.0.1:{node1_submission} send-proxy check check-send-proxy {check}
    server node2 127.0.0.1:{node2_submission} send-proxy check check-send-proxy {check}

# the test's own: each node alone
frontend imap_node1
    bind 127.0.0.1:{imap_node1}
    default_backend only_node1_imap

backend only_node1_imap
    server node1 127.0.0.1:{node1_imap} send-proxy-v2

frontend imap_node2
    bind 127.0.0.1:{imap_node2}
    default_backend only_node2_imap

backend only_node2_imap
    server node2 127.0.0.1:{node2_imap} send-proxy-v2
'''


class Haproxy:
    """haproxy -db -f DIR/haproxy.cfg in the foreground, its log (stdout) in
    DIR/haproxy.log; wait_up() until it serves; stats() asks its stats
    socket."""

    def __init__(self, directory, conf_text):
        self.dir = directory
        self.conf = directory / 'haproxy.cfg'
        self.conf.write_text(conf_text)
        self.sock = directory / 'haproxy.sock'
        self.log_path = directory / 'haproxy.log'
        chk = subprocess.run([HAPROXY, '-c', '-f', str(self.conf)], capture_output=True,
                             text=True, timeout=60)
        assert chk.returncode == 0, 'haproxy -c: %s%s' % (chk.stdout, chk.stderr)
        self._out = open(self.log_path, 'w')
        self.proc = subprocess.Popen([HAPROXY, '-db', '-f', str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def wait_up(self):
        # up once its stats socket answers (not a probe on a frontend: that
        # would reach the nodes as one more client)
        def up():
            if self.proc.poll() is not None:
                raise AssertionError('haproxy exited with %s:\n%s'
                                     % (self.proc.returncode, self.log()[-3000:]))
            try:
                return 'pxname' in self.command('show stat')
            except OSError:
                return False
        wait_for(up, 30, what='haproxy stats socket')

    def log(self):
        return self.log_path.read_text(errors='replace')

    def command(self, line):
        """One command on the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(self.sock))
            s.sendall(line.encode() + b'\n')
            out = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode(errors='replace')
                out += chunk

    def stats(self):
        """{(backend, server): row} of `show stat` (rows: dicts of its CSV)."""
        text = self.command('show stat').lstrip('# ')
        return {(r['pxname'], r['svname']): r for r in csv.DictReader(io.StringIO(text))
                if r['svname'] not in ('FRONTEND', 'BACKEND')}

    def wait_servers(self, want, timeout=30.0):
        """Until every (backend, server) in want has (status, check_status)
        as given there: {('gatehouse_imap', 'node1'): ('UP', 'L7OK'), ...}."""
        def seen():
            st = self.stats()
            return {k: (st[k]['status'], st[k]['check_status']) for k in want}
        try:
            wait_for(lambda: seen() == want, timeout, what='haproxy servers %r' % want)
        except AssertionError:
            raise AssertionError('haproxy servers: %r, want %r\n--- haproxy log:\n%s'
                                 % (seen(), want, self.log()[-3000:]))

    def stop(self):
        rc = stop_process(self.proc)
        self._out.close()
        return rc


# ---------- the cluster ----------

class Cluster:
    """Two gatehoused nodes (-d: their debug lines show what the health
    checks send) and HAProxy in front.  nodes[i]: a lib.gateway.Gateway with
    the listeners imap and submission; port(name): HAProxy's frontends
    imap, submission, imap_node1, imap_node2."""

    def __init__(self):
        self.dir = make_tmpdir('gh-cluster-')
        self.nodes = []
        self.stopped = []
        self.haproxy = None
        self.ports = {}

    def start(self, dovecots, postfix):
        """The nodes, then HAProxy; close() stops what started, even when
        this fails half-way."""
        backends = {
            # forward_client = no: Dovecot's rip= can come from the header only
            'imap': dict(protocol='imap', login='passthrough', proxy_protocol='v2',
                         forward_client=False,
                         servers=' '.join('127.0.0.1:%d' % d.imap_port for d in dovecots)),
            'submission': dict(protocol='smtp', login='xclient', proxy_protocol='v1',
                               servers='127.0.0.1:%d' % postfix.proxy_port),
            'pop3': dict(protocol='pop3', login='passthrough', proxy_protocol='v2',
                         forward_client=False,
                         servers=' '.join('127.0.0.1:%d' % d.pop3_port for d in dovecots)),
        }
        for n in (1, 2):
            self._start_node(n, backends)
        self.ports = {name: free_port() for name in ('imap', 'submission', 'pop3', 'imap_node1',
                                                     'imap_node2')}
        text = HAPROXY_CONF.format(
            dir=self.dir, check=CHECK,
            node1_imap=self.nodes[0].port('imap'), node2_imap=self.nodes[1].port('imap'),
            node1_submission=self.nodes[0].port('submission'),
            node2_submission=self.nodes[1].port('submission'),
            node1_pop3=self.nodes[0].port('pop3'), node2_pop3=self.nodes[1].port('pop3'),
            **self.ports)
        self.haproxy = Haproxy(self.dir, text)
        self.haproxy.wait_up()
        # ready once every checked server has passed its checks
        self.haproxy.wait_servers({(b, n): ('UP', 'L7OK')
                                   for b in ('gatehouse_imap', 'gatehouse_submission',
                                             'gatehouse_pop3')
                                   for n in ('node1', 'node2')})

    def _start_node(self, n, backends):
        d = self.dir / ('node%d' % n)
        d.mkdir()
        ports = {'imap': free_port(), 'submission': free_port(), 'pop3': free_port()}
        listeners = {
            'imap': dict(protocol='imap', listen='127.0.0.1:%d' % ports['imap'],
                         proxy_protocol=True, auth='users', backend='imap'),
            'submission': dict(protocol='smtp', listen='127.0.0.1:%d' % ports['submission'],
                               proxy_protocol=True, require_auth=True, auth='users',
                               backend='submission'),
            'pop3': dict(protocol='pop3', listen='127.0.0.1:%d' % ports['pop3'],
                         proxy_protocol=True, auth='users', backend='pop3'),
        }
        upath = users_file(d / 'users', USERS)
        conf = write_config(d / 'gatehouse.conf', listeners, {'users': file_auth(upath)},
                            backends, gatehouse={'proxy_trusted_networks': '127.0.0.1/32',
                                                 'failure_delay': FAILURE_DELAY})
        daemon = Daemon([GATEHOUSED, '-d', '-c', conf], d / 'gatehoused.log')
        self.nodes.append(Gateway(daemon, ports, d, conf))
        daemon.wait_ready()

    def port(self, frontend):
        return self.ports[frontend]

    def stop_node(self, i):
        """SIGTERM to node i (by its PID); its exit code."""
        node = self.nodes[i]
        rc = node.daemon.stop()
        self.stopped.append(node)
        return rc

    def context(self):
        """The ends of the logs, for a failure message."""
        out = ''
        for i, node in enumerate(self.nodes, 1):
            out += '\n--- node%d log:\n%s' % (i, node.log()[-2000:])
        if self.haproxy:
            out += '\n--- haproxy log:\n%s' % self.haproxy.log()[-2000:]
        return out

    def close(self):
        crashed = [n for n in self.nodes if n not in self.stopped and not n.alive()]
        crash_log = crashed[0].log()[-3000:] if crashed else ''
        if self.haproxy:
            self.haproxy.stop()
        errors = []
        for node in self.nodes:
            try:
                node.daemon.stop()
            except AssertionError as e:   # valgrind found errors
                errors.append(e)
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not crashed, 'a gatehoused node died during the test:\n' + crash_log
        if errors:
            raise errors[0]


@pytest.fixture(scope='module')
def pf():
    with running(ProxyPostfix()) as server:
        yield server


@pytest.fixture(scope='module')
def dovecots(pf):
    """Two Dovecots with haproxy = yes, each with a store of its own."""
    with running(ProxyDovecot(pf.port)) as one, running(ProxyDovecot(pf.port)) as two:
        yield [one, two]


@pytest.fixture
def cluster(dovecots, pf):
    c = Cluster()
    try:
        c.start(dovecots, pf)
        yield c
    finally:
        c.close()


# ---------- helpers ----------

def imap_login(port, user, source, cluster, tag='a1'):
    """Connect to HAProxy's `port` from `source`, read the greeting, LOGIN;
    the tagged reply without its tag, and the open client."""
    c = ImapClient(port, source=source)
    g = c.read_line()
    if not IMAP_GREETING.match(g):
        c.fail('greeting %r%s' % (g, cluster.context()))
    return c, c.command('%s LOGIN %s %s' % (tag, user, USERS[user]))


def login_lines(node, user=None, remote=None):
    """(session, remote, user, verdict, backend) of each login line in the
    node's log, for user / remote when given."""
    rows = re.findall(r'login: session=(\S+) proto=\S+ listener=\S+ remote=(\S+) user="([^"]*)" '
                      r'.* verdict=(\S+) reason=".*" backend=(\S+) ', node.log())
    return [r for r in rows if (user is None or r[2] == user)
            and (remote is None or r[1] == remote)]


def settle(predicate, timeout=10.0):
    """Wait up to `timeout` for predicate() to hold, without failing: the
    assertion after it says what was seen.  For Dovecot's log, which its log
    process writes after the client already has its reply."""
    try:
        wait_for(predicate, timeout, what='the logs to settle')
    except AssertionError:
        pass


def dovecots_logging(dovecots, marks, pattern):
    """The Dovecots whose log since their mark matches `pattern`, once at
    least one does (or after ten seconds, none)."""
    rx = re.compile(pattern)

    def hits():
        return [d for d, m in zip(dovecots, marks) if rx.search(d.since(m))]
    settle(hits)
    return hits()


def logged_in(c, reply):
    """Dovecot's tagged OK after the login (gatehouse passes it on)."""
    if not reply.startswith('OK '):
        c.fail('login refused: %r' % reply)


# ---------- the client's address at every hop ----------

def test_client_address_at_every_hop(cluster, dovecots, pf):
    """IMAP from 127.0.0.2 and submission from 127.0.0.3 through HAProxy:
    gatehoused's login line says remote=127.0.0.2 / remote=127.0.0.3;
    Dovecot logs rip=127.0.0.2 (from gatehouse's v2 header: its TCP peer is
    127.0.0.1); Postfix logs its connection from [127.0.0.3] (from
    gatehouse's v1 header, before any XCLIENT) and delivers the message."""
    dc_marks = [d.mark() for d in dovecots]
    pf_mark = len(pf.log_text())

    c, reply = imap_login(cluster.port('imap'), 'alice', '127.0.0.2', cluster)
    try:
        logged_in(c, reply)
        c.expect('a2 LOGOUT', re.compile(r'^a2 OK'))
    finally:
        c.close()
    rows = wait_for(lambda: [r for n in cluster.nodes for r in login_lines(n, 'alice')],
                    what='a login line for alice')
    assert [(r[1], r[3]) for r in rows] == [('127.0.0.2', 'ok')], rows
    hits = dovecots_logging(dovecots, dc_marks,
                            r'imap-login: Info: Login: user=<alice>, method=PLAIN, '
                            r'rip=127\.0\.0\.2, lip=127\.0\.0\.1')
    assert len(hits) == 1 and rows[0][4] == '127.0.0.1:%d' % hits[0].imap_port, \
        'Dovecot logs: %r\nlogin line %r' % ([d.since(m) for d, m in zip(dovecots, dc_marks)], rows)

    subject = marker('cluster-smtp')
    s = SmtpClient(cluster.port('submission'), source='127.0.0.3')
    try:
        s.expect(None, SMTP_GREETING)
        s.ehlo('client.example.org')
        got = s.auth_plain('bob', USERS['bob'])
        if got != '235 2.7.0 Authentication successful':
            s.fail('AUTH: %r%s' % (got, cluster.context()))
        s.expect('MAIL FROM:<bob@example.com>', 250)
        s.expect('RCPT TO:<carol@example.com>', 250)
        s.expect('DATA', 354)
        s.line('Subject: %s' % subject)
        s.line('')
        s.line('through HAProxy and gatehouse')
        queued = s.expect('.', 250)[-1]
        s.expect('QUIT', 221)
    finally:
        s.close()
    msg = pf.wait_queued('carol', queued)
    rcv = received(msg)
    assert b'[127.0.0.3]' in rcv and b'(Authenticated sender: bob)' in rcv, rcv
    rows = wait_for(lambda: [r for n in cluster.nodes for r in login_lines(n, 'bob')],
                    what='a login line for bob')
    assert [(r[1], r[3]) for r in rows] == [('127.0.0.3', 'ok')], rows
    # smtpd's first line for the connection: the header's address, before
    # XCLIENT said anything
    connect = re.compile(r'postfix/smtpd\[\d+\]: connect from [^\[\s]*\[127\.0\.0\.3\]')
    settle(lambda: connect.search(pf.log_text()[pf_mark:]))
    assert connect.search(pf.log_text()[pf_mark:]), pf.log_text()[pf_mark:][-3000:]


def test_pop3_client_address_at_every_hop(cluster, dovecots):
    """POP3 from 127.0.0.4 through HAProxy (send-proxy-v2) and gatehouse
    (its POP3 backend proxy_protocol = v2, forward_client = no): gatehoused's
    login line and Dovecot's pop3-login both name 127.0.0.4, and the session
    after the login is Dovecot's."""
    dc_marks = [d.mark() for d in dovecots]
    c = Pop3Client(cluster.port('pop3'), source='127.0.0.4')
    try:
        c.expect(None, '+OK gw.test ready.')
        got = c.user_pass('carol', USERS['carol'])
        if got != '+OK Logged in.':
            c.fail('POP3 login: %r%s' % (got, cluster.context()))
        c.expect('STAT', re.compile(r'\+OK \d+ \d+'))
        c.expect('QUIT', '+OK Logging out.')
    finally:
        c.close()
    rows = wait_for(lambda: [r for n in cluster.nodes for r in login_lines(n, 'carol')],
                    what='a login line for carol')
    assert [(r[1], r[3]) for r in rows] == [('127.0.0.4', 'ok')], rows
    hits = dovecots_logging(dovecots, dc_marks,
                            r'pop3-login: Info: Login: user=<carol>, method=PLAIN, '
                            r'rip=127\.0\.0\.4, lip=127\.0\.0\.1')
    assert len(hits) == 1 and rows[0][4] == '127.0.0.1:%d' % hits[0].pop3_port, \
        'Dovecot logs: %r\nlogin line %r' % ([d.since(m) for d, m in zip(dovecots, dc_marks)], rows)


# ---------- a user's server ----------

def test_user_lands_on_same_dovecot_through_either_node(cluster, dovecots):
    """Two Dovecots in the IMAP backend's servers: each user logs in through
    node1 and through node2 (HAProxy's per-node frontends) and both nodes
    send the user to the same Dovecot, which logs both logins; the three
    users are not all on one Dovecot."""
    marks = [d.mark() for d in dovecots]
    for user, source in (('alice', '127.0.0.6'), ('bob', '127.0.0.7'), ('carol', '127.0.0.8')):
        for frontend in ('imap_node1', 'imap_node2'):
            c, reply = imap_login(cluster.port(frontend), user, source, cluster)
            try:
                logged_in(c, reply)
                c.expect('a2 LOGOUT', re.compile(r'^a2 OK'))
            finally:
                c.close()
    servers = {}
    for user in ('alice', 'bob', 'carol'):
        per_node = [wait_for(lambda n=n: login_lines(n, user), what='%s on a node' % user)
                    for n in cluster.nodes]
        assert all(len(rows) == 1 and rows[0][3] == 'ok' for rows in per_node), per_node
        backends = {rows[0][4] for rows in per_node}
        assert len(backends) == 1, '%s went to %r through the two nodes' % (user, backends)
        (servers[user],) = backends
        dc = [d for d in dovecots if '127.0.0.1:%d' % d.imap_port == servers[user]]
        assert len(dc) == 1, (servers, [d.imap_port for d in dovecots])
        rx = re.compile(r'Login: user=<%s>, method=PLAIN, rip=127\.0\.0\.\d+' % user)
        # Dovecot's log process writes the line after the client has its
        # OK: wait for the user's server to show both, then count on each
        settle(lambda: len(rx.findall(dc[0].since(marks[dovecots.index(dc[0])]))) >= 2)
        for d, m in zip(dovecots, marks):
            n = len(rx.findall(d.since(m)))
            assert n == (2 if d is dc[0] else 0), \
                '%s: %d logins on Dovecot %d, want %d\n%s' % (
                    user, n, d.imap_port, 2 if d is dc[0] else 0, d.since(m)[-2000:])
    # the hash of the name spreads these three over both servers, so the
    # same server through both nodes is the user's, not the first in the list
    assert len(set(servers.values())) == 2, servers


# ---------- the failure penalty ----------

def test_penalty_keyed_on_the_client_address(cluster):
    """Through HAProxy to node1 alone (so both clients reach the same node
    from the same TCP peer, 127.0.0.1): 127.0.0.4 guesses passwords and
    waits longer each time; while its third guess is still unanswered,
    127.0.0.5 logs in and gets its OK.  By order, not by the clock."""
    node1 = cluster.nodes[0]
    bad = ImapClient(cluster.port('imap_node1'), source='127.0.0.4', gw=node1)
    good = None
    try:
        assert IMAP_GREETING.match(bad.read_line())
        bad.expect('b1 LOGIN alice wrong-1', AUTH_FAILED)
        bad.expect('b2 LOGIN alice wrong-2', AUTH_FAILED)
        # the third guess goes out before the other client connects
        bad.line('b3 LOGIN alice wrong-3')
        good = ImapClient(cluster.port('imap_node1'), source='127.0.0.5', gw=node1)
        assert IMAP_GREETING.match(good.read_line())
        logged_in(good, good.command('g1 LOGIN bob %s' % USERS['bob']))
        # the good login is answered while the third guess still waits
        readable, _, _ = select.select([bad.sock], [], [], 0)
        assert not readable and not bad.buf, \
            'the guesser was answered before the good login:%s' % cluster.context()
        bad.expect(None, AUTH_FAILED, tag='b3')
    finally:
        bad.close()
        if good is not None:
            good.close()
    # the node logs a login when it answers it: the same order
    rows = login_lines(node1)
    guess = ('127.0.0.4', 'alice', 'wrong-password')
    assert [(r[1], r[2], r[3]) for r in rows] == [guess, guess, ('127.0.0.5', 'bob', 'ok'), guess], \
        rows


# ---------- health checks ----------

def test_health_checks_pass(cluster):
    """HAProxy's checks (check-send-proxy) pass on both nodes and both
    listeners (`show stat`: UP, L7OK); the nodes' debug lines show what the
    checks send: a v2 LOCAL header on IMAP (send-proxy-v2), and on
    submission (send-proxy) a v1 TCP4 header naming the check's own
    connection, 127.0.0.1 to the node, not UNKNOWN; a v2 LOCAL header on
    POP3; none is refused."""
    st = cluster.haproxy.stats()
    for b in ('gatehouse_imap', 'gatehouse_submission', 'gatehouse_pop3'):
        for n in ('node1', 'node2'):
            row = st[(b, n)]
            assert (row['status'], row['check_status']) == ('UP', 'L7OK'), (b, n, row)
    for i, node in enumerate(cluster.nodes):
        def checks():
            log = node.log()
            conns = {sid: (listener, port) for sid, port, listener in re.findall(
                r'session (\S+): connect from 127\.0\.0\.1 port (\d+) on listener (\S+)', log)}
            seen = {}
            for sid, what in re.findall(r'session (\S+): PROXY header from 127\.0\.0\.1: (.*)',
                                        log):
                listener, port = conns[sid]
                # the check's own connection: its source port, the node's port
                what = what.replace('port %s to' % port, 'port SAME to')
                seen.setdefault(listener, set()).add(what)
            return seen if seen.get('imap') and seen.get('submission') and seen.get('pop3') \
                else None
        seen = wait_for(checks, what='health checks on node%d' % (i + 1))
        assert seen == {'imap': {'LOCAL'}, 'pop3': {'LOCAL'}, 'submission': {
            'client 127.0.0.1 port SAME to 127.0.0.1 port %d' % node.port('submission')}}, seen
        assert 'PROXY header (' not in node.log() and 'proxy_trusted_networks' not in node.log()


# ---------- a node goes away ----------

def test_node_stop_moves_sessions_without_failed_login(cluster):
    """Logins one after the other through HAProxy's imap frontend: the
    first ones spread over both nodes; then node1 gets SIGTERM (by its PID)
    and exits; the logins go on at once (HAProxy's retry with redispatch
    covers the moment before its check marks node1 DOWN) and after DOWN.
    Every login succeeds; after the stop, node2 takes them all."""
    node1, node2 = cluster.nodes
    n_before, n_window, n_after = 6, 6, 4
    ok = 0
    sources = iter('127.0.1.%d' % i for i in range(1, 100))

    def one_login():
        c, reply = imap_login(cluster.port('imap'), 'alice', next(sources), cluster)
        try:
            logged_in(c, reply)
            c.expect('a2 LOGOUT', re.compile(r'^a2 OK'))
        finally:
            c.close()
        return 1

    for _ in range(n_before):
        ok += one_login()
    before = [len(login_lines(n, 'alice')) for n in cluster.nodes]
    assert sum(before) == n_before and min(before) > 0, \
        'leastconn did not spread the logins: %r%s' % (before, cluster.context())
    mark2 = node2.mark()
    assert cluster.stop_node(0) == 0, node1.log()[-3000:]
    for _ in range(n_window):
        ok += one_login()
    cluster.haproxy.wait_servers({('gatehouse_imap', 'node1'): ('DOWN', 'L4CON'),
                                  ('gatehouse_imap', 'node2'): ('UP', 'L7OK')})
    for _ in range(n_after):
        ok += one_login()
    assert ok == n_before + n_window + n_after
    assert len(login_lines(node1, 'alice')) == before[0], node1.log()[-3000:]
    after = re.findall(r'login: .* user="alice" .* verdict=ok ', node2.since(mark2))
    assert len(after) == n_window + n_after, node2.since(mark2)[-3000:]
    assert re.search(r'Server gatehouse_imap/node1 is DOWN', cluster.haproxy.log()), \
        cluster.haproxy.log()[-3000:]



def test_planned_stop_drains_at_the_balancer_first(cluster):
    """doc/deployment.md's planned stop: node1 holds a proxied session;
    HAProxy is told to drain node1 (stats socket), then node1 gets SIGTERM
    and waits for its session.  New logins meanwhile all go to node2 and
    succeed; the held session still works, and once it ends node1 exits.
    (Without the drain, a node that waits for its sessions leaves its
    listening sockets open: connections sent there are never served.)"""
    node1, node2 = cluster.nodes
    held, reply = imap_login(cluster.port('imap_node1'), 'alice', '127.0.0.10', cluster)
    try:
        logged_in(held, reply)
        for backend in ('gatehouse_imap', 'gatehouse_submission'):
            out = cluster.haproxy.command('set server %s/node1 state drain' % backend)
            assert out.strip() == '', out
        cluster.haproxy.wait_servers({('gatehouse_imap', 'node1'): ('DRAIN', 'L7OK')})
        mark1, mark2 = node1.mark(), node2.mark()
        node1.daemon.signal(signal.SIGTERM)
        node1.wait_since(mark1, r'stopping: 1 session open')
        for i in range(6):
            c, reply = imap_login(cluster.port('imap'), 'bob', '127.0.3.%d' % (i + 1), cluster)
            try:
                logged_in(c, reply)
                c.expect('a2 LOGOUT', re.compile(r'^a2 OK'))
            finally:
                c.close()
        held.expect('a2 NOOP', re.compile(r'^a2 OK'))
        assert node1.alive(), node1.log()[-3000:]
    finally:
        held.close()
    wait_for(lambda: not node1.alive(), what='node1 exits once its session ended')
    assert cluster.stop_node(0) == 0, node1.log()[-3000:]
    assert len(re.findall(r'login: .* user="bob" .* verdict=ok ', node2.since(mark2))) == 6
    assert 'user="bob"' not in node1.since(mark1)
