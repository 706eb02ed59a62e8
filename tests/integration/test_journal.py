"""gatehoused under systemd: its stderr is a journal stream, and its lines go
to journald as entries of the native protocol, with structured fields.  The
journald is Debian's own, started here in a journal namespace of its own
(backends.Journald); gatehoused's stderr is connected to that namespace's
stream as systemd connects it for StandardError=journal, and what
`journalctl --namespace` reads back is checked.  The logins are Python's
imaplib against gatehoused in front of the module's Dovecot.

- Each login attempt is one entry: its MESSAGE is the login line, with
  GH_USER, GH_VERDICT, GH_REMOTE and the others, PRIORITY 6 and
  SYSLOG_IDENTIFIER gatehoused; the session-end line is an entry of
  PRIORITY 5; no entry holds a password.
- An I/O thread sends its entries together, a few milliseconds after the
  first: a login's line reaches the journal although nothing else happens
  after it (the held entries set how long the thread may sleep).
- 300 logins in a row: 300 login entries, none lost, none twice.
- journald restarted (the same namespace, a new process): the lines of the
  next logins reach the new one.
"""
import imaplib
import shutil
import socket

import pytest

from backends import USERS, Journald
from lib.clients import assert_no_secrets
from lib.gateway import start_gateway
from lib.net import TIMEOUT, wait_for
from lib.proc import make_tmpdir

pytestmark = pytest.mark.skipif(not Journald.available(),
                                reason='needs root and systemd-journald (Debian: systemd)')


@pytest.fixture
def journal():
    j = Journald().start()
    try:
        yield j
    finally:
        j.stop()
        j.cleanup()


@pytest.fixture
def gw(journal, dovecot):
    """One IMAP listener in front of the module's Dovecot (passthrough
    login); gatehoused's stderr is the journal's stream."""
    d = make_tmpdir('gh-journal-')
    stream = journal.stream('gatehoused')
    g = start_gateway(d, {'imap': dict(protocol='imap', plaintext_auth='always', backend='up')},
                      {'up': dict(protocol='imap', servers='127.0.0.1:%d' % dovecot.imap_port,
                                  login='passthrough')},
                      users=USERS, output=stream)
    stream.close()  # gatehoused has its own copy
    try:
        journal.wait_entries(1, 'SYSLOG_IDENTIFIER=gatehoused', timeout=60)
        wait_for(lambda: any(' ready: ' in e.get('MESSAGE', '') for e in journal.entries()),
                 60, what='the ready line in the journal')
        yield g
    finally:
        g.daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


class Imap(imaplib.IMAP4):
    """imaplib's client, from a given loopback source address."""

    def __init__(self, port, source):
        self.source = source
        super().__init__('127.0.0.1', port, timeout=TIMEOUT)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


def login(gw, user, password, source='127.0.0.1'):
    """One IMAP LOGIN (then LOGOUT when it worked): 'OK' or 'NO'."""
    m = Imap(gw.port('imap'), source)
    try:
        m.login(user, password)
    except imaplib.IMAP4.error:
        m.shutdown()
        return 'NO'
    m.logout()
    return 'OK'


def session_ends(journal, count):
    """The session-end entries, once there are `count`."""
    return wait_for(lambda: (lambda e: e if len(e) >= count else None)(
        [e for e in journal.entries('PRIORITY=5', 'SYSLOG_IDENTIFIER=gatehoused')
         if e.get('MESSAGE', '').startswith('session end: ')]), 30, interval=0.2,
        what='%d session-end entries' % count)


def test_login_and_session_end_entries(journal, gw):
    assert login(gw, 'alice', USERS['alice'], source='127.0.0.2') == 'OK'
    assert login(gw, 'alice', 'Wr0ng-Secret-7', source='127.0.0.3') == 'NO'
    assert login(gw, 'mallory', 'Gu3ss-Secret-9', source='127.0.0.4') == 'NO'

    ok, = journal.wait_entries(1, 'GH_VERDICT=ok')
    assert ok['MESSAGE'].startswith('login: session=')
    assert ok['GH_USER'] == 'alice' and ok['GH_REMOTE'] == '127.0.0.2', ok
    assert ok['GH_PROTOCOL'] == 'imap' and ok['GH_LISTENER'] == 'imap', ok
    assert ok['PRIORITY'] == '6' and ok['SYSLOG_IDENTIFIER'] == 'gatehoused', ok
    assert ok['_TRANSPORT'] == 'journal', ok  # the native protocol, not the stream
    wrong, = journal.wait_entries(1, 'GH_VERDICT=wrong-password')
    assert wrong['GH_USER'] == 'alice' and wrong['GH_REMOTE'] == '127.0.0.3', wrong
    unknown, = journal.wait_entries(1, 'GH_VERDICT=unknown-user')
    assert unknown['GH_USER'] == 'mallory', unknown

    end, = session_ends(journal, 1)
    assert end['MESSAGE'].startswith('session end: session=%s ' % ok['GH_SESSION']), end
    assert end['GLIB_DOMAIN'] == 'gh-daemon', end

    text = '\n'.join(str(e) for e in journal.entries())
    assert_no_secrets(text, [('alice', USERS['alice'])], where='the journal',
                      secrets=['Wr0ng-Secret-7', 'Gu3ss-Secret-9'])


def test_held_lines_go_out_while_idle(journal, gw):
    # one login, then nothing: its entries still come, from a thread that
    # has nothing else to wake it
    assert login(gw, 'bob', USERS['bob']) == 'OK'
    journal.wait_entries(1, 'GH_USER=bob', timeout=10)
    session_ends(journal, 1)


def test_many_logins_none_lost(journal, gw):
    n = 300
    for i in range(n):
        assert login(gw, 'alice', USERS['alice']) == 'OK', i
    entries = journal.wait_entries(n, 'GH_VERDICT=ok', timeout=60)
    sessions = [e['GH_SESSION'] for e in entries]
    assert len(sessions) == n and len(set(sessions)) == n


def test_journald_restarted(journal, gw):
    assert login(gw, 'alice', USERS['alice']) == 'OK'
    journal.wait_entries(1, 'GH_VERDICT=ok')
    journal.stop()
    journal.start()  # the same namespace, a new journald
    for _ in range(3):
        assert login(gw, 'bob', USERS['bob']) == 'OK'
    journal.wait_entries(3, 'GH_USER=bob')
    assert gw.alive()
