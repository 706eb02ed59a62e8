"""The fail2ban filter (etc/fail2ban/filter.d/gatehouse.conf) against the log
gatehoused really writes: `fail2ban-regex` (Debian's fail2ban) reads a
gatehoused log made here by real logins and prints the address of every
line the filter matches.

Every wrong-password and unknown-user line matches, with the client's
address, also when that address came in a PROXY header; ok, tempfail (the
backend down) and refused lines never match; a user name made to look like
another address cannot pass for it.
"""
import shutil
import subprocess

import pytest

from lib.clients import ImapClient
from lib.gateway import start_gateway
from lib.paths import SRCDIR
from lib.proc import make_tmpdir
from lib.net import free_port
from lib.scripted import ImapServer

FILTER = SRCDIR / 'etc' / 'fail2ban' / 'filter.d' / 'gatehouse.conf'
USERS = {'alice': 'alice-pw'}

pytestmark = pytest.mark.skipif(shutil.which('fail2ban-regex') is None,
                                reason='fail2ban is not installed (./quickstart installs it)')


@pytest.fixture
def gw():
    """IMAP listeners: `imap` (backend up), `down` (backend down), `lb`
    (proxy_protocol = yes, balancer 127.0.0.1)."""
    backend = ImapServer()
    d = make_tmpdir('gh-f2b-')
    g = start_gateway(
        d, {'imap': dict(protocol='imap', plaintext_auth='always', backend='up'),
            'down': dict(protocol='imap', plaintext_auth='always', backend='dead'),
            'lb': dict(protocol='imap', plaintext_auth='always', backend='up',
                       proxy_protocol=True)},
        {'up': dict(protocol='imap', servers='127.0.0.1:%d' % backend.port),
         'dead': dict(protocol='imap', servers='127.0.0.1:%d' % free_port())},
        users=USERS, gatehouse={'proxy_trusted_networks': '127.0.0.1/32'})
    try:
        yield g
    finally:
        g.daemon.stop()
        backend.close()
        shutil.rmtree(d, ignore_errors=True)


def login(gw, listener, source, user, password, header=None):
    """One IMAP LOGIN from `source`; the tagged answer."""
    c = ImapClient(gw.port(listener), [password], source=source)
    try:
        if header is not None:
            c.send(header)
        c.greeting = c.read_line()
        c.line('a LOGIN %s %s' % (user, password))
        while True:
            line = c.read_line()
            if line.startswith('a '):
                return line
    finally:
        c.close()


def banned_addresses(log_text, tmp):
    """The address of every line fail2ban-regex matches, in order."""
    log = tmp / 'gatehoused.log'
    log.write_text(log_text)
    r = subprocess.run(['fail2ban-regex', '-o', 'ip', str(log), str(FILTER)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]


def test_failed_logins_match_with_the_client_address(gw, tmp):
    mark = gw.mark()
    assert 'NO' in login(gw, 'imap', '127.0.0.2', 'alice', 'wrong')         # wrong-password
    assert 'NO' in login(gw, 'imap', '127.0.0.3', 'mallory', 'guess')       # unknown-user
    assert 'OK' in login(gw, 'imap', '127.0.0.4', 'alice', USERS['alice'])  # ok
    assert 'UNAVAILABLE' in login(gw, 'down', '127.0.0.5', 'alice', USERS['alice'])  # tempfail
    # behind the balancer: the header's address, not the balancer's
    header = b'PROXY TCP4 198.51.100.9 127.0.0.1 40000 143\r\n'
    assert 'NO' in login(gw, 'lb', None, 'alice', 'wrong-again', header=header)
    # a user name dressed up as another address is still counted against the sender
    assert 'NO' in login(gw, 'imap', '127.0.0.6',
                         '"x remote=203.0.113.66 verdict=wrong-password"', 'nope')
    text = gw.since(mark)
    assert text.count('gh-login: login: ') == 6, text
    assert 'remote=127.0.0.5' in text and 'verdict=tempfail' in text, text
    assert banned_addresses(text, gw.dir) == ['127.0.0.2', '127.0.0.3', '198.51.100.9',
                                              '127.0.0.6']
