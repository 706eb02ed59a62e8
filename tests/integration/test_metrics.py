"""The Prometheus endpoint ([metrics] listen) of a real gatehoused, read with
curl while an IMAP (and a POP3) session is proxied to a real Dovecot, and checked with
Prometheus's own promtool and the Python client's parsers.

What a user of the metrics sees: every listener's session gauges from the
start (zeros); during a proxied session its gauge is 1 and the relayed bytes
grow; a wrong password and a good one are one login each by verdict, and the
auth latency histogram counted both checks; a backend that is down shows as
a backend failure of its server; after logout the gauge is back to 0.  The
text passes `promtool check metrics` (no lint) every time, OpenMetrics comes
when the Accept header asks for it, other paths are 404, other methods 405.
At start, a bad [metrics] listen is a configuration problem with its line,
and an address already in use keeps gatehoused from starting.
"""
import re
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from backends import USERS
from lib.clients import ImapClient, Pop3Client
from lib.config import file_auth, users_file, write_config
from lib.gateway import Daemon, Gateway, READY_LINE
from lib.net import TIMEOUT, free_port, wait_for
from lib.paths import GATEHOUSED

from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

PROMTOOL = '/usr/bin/promtool'
TEXT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
OM_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8'
OM_ACCEPT = ('application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
             'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')  # Prometheus's
AUTH_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'
TEMPFAIL = 'NO [UNAVAILABLE] Temporary authentication failure.'
STATES = ('pre-login', 'logging-in', 'proxied')


# ------------------------------------------------------------ the gateway

def start_metrics_gateway(directory, listeners, backends, metrics_port, users=USERS):
    """gatehoused with listeners on free ports (IMAP unless they say), the file module's
    `users`, `backends`, and [metrics] listen = 127.0.0.1:metrics_port (lib's
    write_config writes the other groups; [metrics] is added after them).
    Returns a lib.gateway.Gateway once it is ready."""
    upath = users_file(directory / 'users', users)
    ports, groups = {}, {}
    for name, keys in listeners.items():
        ports[name] = free_port()
        groups[name] = dict({'protocol': 'imap'}, **keys)
        groups[name].update(listen='127.0.0.1:%d' % ports[name], auth='users',
                            plaintext_auth='always')
    conf = write_config(directory / 'gatehouse.conf', groups, {'users': file_auth(upath)},
                        backends)
    with open(conf, 'a') as f:
        f.write('[metrics]\nlisten = 127.0.0.1:%d\n' % metrics_port)
    daemon = Daemon([GATEHOUSED, '-c', conf], directory / 'gatehoused.log')
    try:
        daemon.wait_ready()
    except AssertionError:
        daemon.stop()
        raise
    gw = Gateway(daemon, ports, directory, conf)
    gw.metrics_port = metrics_port
    return gw


@pytest.fixture
def gw(tmp, dovecot):
    """Listener imap -> Dovecot (login = passthrough), listener down -> a
    port where nothing listens; the endpoint on a free port."""
    dead = free_port()
    g = start_metrics_gateway(
        tmp, {'imap': dict(backend='dc'), 'down': dict(backend='dead')},
        {'dc': dict(protocol='imap', servers='127.0.0.1:%d' % dovecot.imap_port,
                    login='passthrough'),
         'dead': dict(protocol='imap', servers='127.0.0.1:%d' % dead, login='passthrough')},
        free_port())
    g.dead = dead
    yield g
    alive = g.alive()
    log = g.log()
    g.daemon.stop()
    assert alive, 'gatehoused died during the test:\n%s' % log[-3000:]


# ------------------------------------------------------------ reading

class Scrape:
    """One curl of the endpoint: status, headers (lower-case names), body."""

    def __init__(self, port, path='/metrics', method='GET', accept=None):
        url = 'http://127.0.0.1:%d%s' % (port, path)
        with tempfile.NamedTemporaryFile(prefix='gh-scrape-') as body:
            argv = ['curl', '-sS', '--max-time', str(int(TIMEOUT))]
            if method == 'HEAD':
                argv += ['-I', url]      # the headers are the output
            else:
                argv += ['-D', '-', '-o', body.name, '-X', method, url]
            if accept is not None:
                argv += ['-H', 'Accept: ' + accept]
            p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 10)
            assert p.returncode == 0, 'curl %s: exit %d: %s' % (url, p.returncode, p.stderr)
            self.body = '' if method == 'HEAD' else Path(body.name).read_text()
        head = p.stdout.replace('\r\n', '\n').strip().split('\n')
        self.status = int(head[0].split()[1])
        self.headers = {k.strip().lower(): v.strip()
                        for k, v in (h.split(':', 1) for h in head[1:] if ':' in h)}


def promtool_ok(text):
    """promtool check metrics: exit 0 and no lint."""
    p = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == '' and p.stderr == '', \
        'promtool check metrics: exit %d\n%s%s\n--- text:\n%s' % (
            p.returncode, p.stdout, p.stderr, text)


def samples(text, openmetrics=False):
    """{(sample name, ((label, value), ...) sorted): value} of the text,
    by the Python client's parser of that format."""
    parse = parse_openmetrics if openmetrics else parse_text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in parse(text) for s in f.samples}


def value(got, name, **labels):
    """The value of one series; KeyError (with what there is) when absent."""
    key = (name, tuple(sorted(labels.items())))
    if key not in got:
        there = sorted(k for k in got if k[0] == name)
        raise KeyError('no %s%r; there are: %r' % (name, labels, there))
    return got[key]


def family_sum(got, name, **labels):
    """The sum of the series of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in got.items()
               if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def metrics(gw):
    """One scrape (text format), checked by promtool; its samples."""
    s = Scrape(gw.metrics_port)
    assert s.status == 200, (s.status, s.body)
    assert s.headers.get('content-type') == TEXT_TYPE, s.headers
    promtool_ok(s.body)
    return samples(s.body)


def wait_metric(gw, predicate, what):
    """Scrape until predicate(samples) holds (the sessions' end reaches the
    workers' counters after the client sees its connection close)."""
    last = {}

    def check():
        last['got'] = metrics(gw)
        return predicate(last['got'])
    try:
        wait_for(check, 30, interval=0.1, what=what)
        return last['got']
    except AssertionError:
        raise AssertionError('%s; last scrape: %r\n--- log:\n%s'
                             % (what, last.get('got'), gw.log()[-3000:]))


def session_gauge(got, listener, state):
    return value(got, 'gatehouse_sessions', protocol='imap', listener=listener, state=state)


# ------------------------------------------------------------ tests

def test_metrics_during_a_proxied_session(gw):
    before = metrics(gw)
    # every listener and state from the start, at 0
    for listener in ('imap', 'down'):
        for state in STATES:
            assert session_gauge(before, listener, state) == 0, (listener, state, before)
        assert value(before, 'gatehouse_connections_total', protocol='imap',
                     listener=listener) == 0
    assert value(before, 'gatehouse_auth_duration_seconds_count') == 0
    assert value(before, 'gatehouse_config_generation') == 1
    relay_before = family_sum(before, 'gatehouse_relay_bytes_total', protocol='imap')

    c = ImapClient(gw.port('imap'), gw=gw)
    try:
        c.read_line()
        c.expect('a001 LOGIN alice wrongpw', AUTH_FAILED)
        c.expect('a002 LOGIN alice alicepw', re.compile(r'^a002 OK .*Logged in'))
        c.expect('a003 SELECT INBOX', re.compile(r'^a003 OK \[READ-WRITE\]'))

        during = metrics(gw)
        assert session_gauge(during, 'imap', 'proxied') == 1, during
        assert session_gauge(during, 'imap', 'pre-login') == 0, during
        assert session_gauge(during, 'imap', 'logging-in') == 0, during
        assert session_gauge(during, 'down', 'proxied') == 0, during
        assert value(during, 'gatehouse_connections_total', protocol='imap',
                     listener='imap') == 1
        login = dict(protocol='imap', listener='imap', module='file')
        assert value(during, 'gatehouse_logins_total', verdict='wrong-password', **login) == 1
        assert value(during, 'gatehouse_logins_total', verdict='ok', **login) == 1
        assert family_sum(during, 'gatehouse_logins_total') == 2, during
        # two checks of a password: the histogram counted both
        assert value(during, 'gatehouse_auth_duration_seconds_count') == 2
        assert value(during, 'gatehouse_auth_duration_seconds_bucket', le='+Inf') == 2
        assert value(during, 'gatehouse_auth_duration_seconds_sum') > 0
        # the relay counted Dovecot's login reply and SELECT both ways while
        # the session runs
        to_client = value(during, 'gatehouse_relay_bytes_total', protocol='imap',
                          direction='to_client')
        to_backend = value(during, 'gatehouse_relay_bytes_total', protocol='imap',
                           direction='to_backend')
        assert to_client > 0 and to_backend > 0, during
        assert to_client + to_backend > relay_before

        c.expect('a004 LOGOUT', re.compile(r'^a004 OK'))
        assert c.eof()
    finally:
        c.close()

    after = wait_metric(gw, lambda got: session_gauge(got, 'imap', 'proxied') == 0,
                        'the proxied gauge back to 0 after LOGOUT')
    # counters only grow: the session's bytes stay counted after its end
    assert value(after, 'gatehouse_relay_bytes_total', protocol='imap',
                 direction='to_client') >= to_client
    assert value(after, 'gatehouse_relay_bytes_total', protocol='imap',
                 direction='to_backend') >= to_backend
    assert value(after, 'gatehouse_logins_total', verdict='ok', **login) == 1


def test_pop3_series(tmp, dovecot):
    """A POP3 listener has its own series, labelled protocol="pop3": the
    session gauges from the start, a wrong and a good login by verdict, the
    proxied gauge and the relayed bytes of a session to Dovecot's POP3."""
    gw = start_metrics_gateway(
        tmp, {'pop3': dict(protocol='pop3', backend='dc')},
        {'dc': dict(protocol='pop3', servers='127.0.0.1:%d' % dovecot.pop3_port,
                    login='passthrough')}, free_port())
    try:
        before = metrics(gw)
        for state in STATES:
            assert value(before, 'gatehouse_sessions', protocol='pop3', listener='pop3',
                         state=state) == 0, before
        c = Pop3Client(gw.port('pop3'), gw=gw)
        try:
            c.expect(None, '+OK gw.test ready.')
            assert c.user_pass('alice', 'wrongpw') == '-ERR [AUTH] Authentication failed.'
            assert c.user_pass('alice', 'alicepw') == '+OK Logged in.', c.ctx()
            c.expect('STAT', re.compile(r'\+OK \d+ \d+'))
            during = metrics(gw)
            assert value(during, 'gatehouse_sessions', protocol='pop3', listener='pop3',
                         state='proxied') == 1, during
            login = dict(protocol='pop3', listener='pop3', module='file')
            assert value(during, 'gatehouse_logins_total', verdict='wrong-password',
                         **login) == 1
            assert value(during, 'gatehouse_logins_total', verdict='ok', **login) == 1
            assert value(during, 'gatehouse_relay_bytes_total', protocol='pop3',
                         direction='to_client') > 0, during
            assert family_sum(during, 'gatehouse_relay_bytes_total', protocol='imap') == 0
            c.expect('QUIT', '+OK Logging out.')
        finally:
            c.close()
        wait_metric(gw, lambda got: value(got, 'gatehouse_sessions', protocol='pop3',
                                          listener='pop3', state='proxied') == 0,
                    'the POP3 proxied gauge back to 0 after QUIT')
    finally:
        alive = gw.alive()
        log = gw.log()
        gw.daemon.stop()
        assert alive, 'gatehoused died during the test:\n%s' % log[-3000:]


def test_backend_down_is_a_backend_failure(gw):
    before = metrics(gw)
    assert family_sum(before, 'gatehouse_backend_failures_total') == 0, before
    c = ImapClient(gw.port('down'), gw=gw)
    try:
        c.read_line()
        c.expect('a001 LOGIN alice alicepw', TEMPFAIL)
    finally:
        c.close()
    server = '127.0.0.1:%d' % gw.dead
    got = wait_metric(gw, lambda got: family_sum(got, 'gatehouse_backend_failures_total') >= 1,
                      'a backend failure counted')
    assert value(got, 'gatehouse_backend_failures_total', backend='dead', server=server) == 1, got
    assert family_sum(got, 'gatehouse_backend_failures_total') == 1, got
    # one login (its password checked once), on that listener
    assert family_sum(got, 'gatehouse_logins_total', listener='down') == 1, got
    assert value(got, 'gatehouse_auth_duration_seconds_count') == 1


def test_formats_paths_and_methods(gw):
    om = Scrape(gw.metrics_port, accept=OM_ACCEPT)
    assert om.status == 200
    assert om.headers.get('content-type') == OM_TYPE, om.headers
    assert om.body.endswith('\n# EOF\n'), om.body[-200:]
    got = samples(om.body, openmetrics=True)
    assert value(got, 'gatehouse_sessions', protocol='imap', listener='imap',
                 state='proxied') == 0
    assert '# TYPE gatehouse_logins counter\n' in om.body
    assert '# UNIT gatehouse_auth_duration_seconds seconds\n' in om.body

    text = Scrape(gw.metrics_port, accept='text/plain')
    assert text.headers.get('content-type') == TEXT_TYPE
    assert '# TYPE gatehouse_logins_total counter\n' in text.body
    assert '# EOF' not in text.body

    head = Scrape(gw.metrics_port, method='HEAD')
    assert head.status == 200 and head.headers.get('content-type') == TEXT_TYPE, head.headers
    assert head.body == ''

    for path in ('/other', '/', '/metrics/x', '/Metrics'):
        assert Scrape(gw.metrics_port, path).status == 404, path
    for method in ('POST', 'PUT', 'DELETE'):
        r = Scrape(gw.metrics_port, method=method)
        assert r.status == 405, method
        assert r.headers.get('allow') == 'GET, HEAD', r.headers
    # still serving
    metrics(gw)


def test_bad_listen_is_a_config_problem(tmp):
    conf = write_config(tmp / 'gatehouse.conf',
                        {'imap': dict(protocol='imap', listen='127.0.0.1:%d' % free_port(),
                                      auth='users', backend='dc')},
                        {'users': file_auth(users_file(tmp / 'users', USERS))},
                        {'dc': dict(protocol='imap', servers='127.0.0.1:143')})
    lines = conf.read_text().count('\n')
    with open(conf, 'a') as f:
        f.write('[metrics]\nlisten = localhost:9199\nport = 1\n')
    p = subprocess.run([str(GATEHOUSED), '-t', '-c', str(conf)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert ('%s:%d: [metrics] listen: bad listen address \'localhost:9199\': an IP address or '
            '\'*\' is needed, not a host name' % (conf, lines + 2)) in p.stderr, p.stderr
    assert '%s:%d: [metrics] port: unknown key' % (conf, lines + 3) in p.stderr, p.stderr


def test_address_in_use_keeps_it_from_starting(tmp, dovecot):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        conf = write_config(tmp / 'gatehouse.conf',
                            {'imap': dict(protocol='imap', listen='127.0.0.1:%d' % free_port(),
                                          auth='users', backend='dc')},
                            {'users': file_auth(users_file(tmp / 'users', USERS))},
                            {'dc': dict(protocol='imap',
                                        servers='127.0.0.1:%d' % dovecot.imap_port)})
        with open(conf, 'a') as f:
            f.write('[metrics]\nlisten = 127.0.0.1:%d\n' % port)
        d = Daemon([GATEHOUSED, '-c', conf], tmp / 'gatehoused.log')
        try:
            rc = d.proc.wait(60)
        except subprocess.TimeoutExpired:
            d.stop()
            raise AssertionError('gatehoused started on a metrics port in use:\n' + d.text())
        d.stop()
        log = d.text()
    assert rc != 0, log
    assert 'metrics endpoint: cannot listen on 127.0.0.1:%d: ' % port in log, log
    assert not READY_LINE.search(log), log
