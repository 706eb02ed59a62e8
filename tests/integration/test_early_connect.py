"""[backend] early_connect: the backend is dialled while the credentials are
checked, and logged in only once they are right.

The auth source is PAM held by a gate (pamfix.PamGate: every conversation
waits until the test lets go), so the tests order events without a clock:
while PAM holds the login, the backend (real Dovecot, IMAP and submission,
behind a recording relay) already has its connection and has been sent no
credential; after a yes the login goes over that same connection; after a
no the backend hears only our goodbye.  Also: early_connect = no dials
nothing before the verdict; an address with a recent failure gets no early
connection; a verdict the cache already had gets none; a chain that may
answer with a route (a users file with route=) gets none; a backend that closes the parked connection costs the
client nothing (a fresh one is made).
"""
import select

import pytest

from backends import USERS
from lib.clients import ImapClient, SmtpClient, imap_quote, plain_blob
from lib.config import write_config
from lib.net import free_port, wait_for
from pamfix import PamGate, PamWrapper, find_pam_wrapper, start_gatehoused

pytestmark = pytest.mark.skipif(find_pam_wrapper() is None,
                                reason='pam_wrapper is not installed (libpam-wrapper)')

IMAP_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'


@pytest.fixture
def pw(tmp):
    return PamWrapper(tmp / 'pam')


@pytest.fixture
def gate(tmp):
    g = PamGate(tmp)
    yield g
    g.release()


def gateway(tmp, daemons, pw, gate, imap_port=None, smtp_port=None, backend=None, users=None,
            gatehouse=None):
    """gatehoused with `auth = [users] pam`: PAM behind the gate, and a users
    file first when `users` (its text) is given; listeners imap -> imap_port
    and sub -> smtp_port (login = passthrough), `backend`: more keys of
    both backends."""
    pw.matrix_service('gatehouse', USERS, before=[gate.pam_line()])
    auth = {'pam': {'module': 'pam'}}
    chain = 'pam'
    if users is not None:
        (tmp / 'users').write_text(users)
        auth = {'users': {'module': 'file', 'path': str(tmp / 'users')}, 'pam': {'module': 'pam'}}
        chain = 'users pam'
    listeners, backends = {}, {}
    ports = {}
    if imap_port is not None:
        ports['imap'] = free_port()
        listeners['imap'] = {'protocol': 'imap', 'listen': '127.0.0.1:%d' % ports['imap'],
                             'plaintext_auth': 'always', 'auth': chain, 'backend': 'imap'}
        backends['imap'] = dict({'protocol': 'imap', 'login': 'passthrough',
                                 'servers': '127.0.0.1:%d' % imap_port}, **(backend or {}))
    if smtp_port is not None:
        ports['sub'] = free_port()
        listeners['sub'] = {'protocol': 'smtp', 'listen': '127.0.0.1:%d' % ports['sub'],
                            'require_auth': 'yes', 'plaintext_auth': 'always', 'auth': chain,
                            'backend': 'smtp'}
        backends['smtp'] = dict({'protocol': 'smtp', 'login': 'passthrough',
                                 'servers': '127.0.0.1:%d' % smtp_port}, **(backend or {}))
    conf = write_config(tmp / 'gh.conf', listeners, auth, backends,
                        gatehouse=dict({'auth_cache_size': '0'}, **(gatehouse or {})))
    gw = start_gatehoused(tmp, daemons, conf, pw.env())
    return gw, ports


def no_reply_yet(c):
    """The client has been answered nothing (PAM still holds the login)."""
    return not c.buf and not select.select([c.sock], [], [], 0)[0]


def test_imap_backend_dialled_while_pam_checks(tmp, daemons, pw, gate, imap_relay):
    """While PAM holds the login, Dovecot already has the connection (its
    greeting read) and has been sent nothing; after the yes the LOGIN goes
    over that same connection and the session works."""
    gw, ports = gateway(tmp, daemons, pw, gate, imap_port=imap_relay.port)
    with ImapClient(ports['imap'], greet=True) as c:
        c.line('a1 LOGIN alice %s' % imap_quote(USERS['alice']))
        wait_for(lambda: gate.count() == 1, what='PAM holding the login')
        wait_for(lambda: imap_relay.connections() == 1, what='the early backend connection')
        assert no_reply_yet(c)
        # Dovecot's greeting carries its capabilities: nothing to ask yet,
        # and certainly no credential before the verdict
        assert imap_relay.text() == b''
        gate.release()
        _, tagged = c.tagged('a1')
        assert tagged.startswith('a1 OK'), tagged
        assert c.cmd('a2 SELECT INBOX')[-1].startswith('a2 OK')
        c.cmd('a3 LOGOUT')
    assert imap_relay.connections() == 1
    assert b'LOGIN' in imap_relay.text() or b'AUTHENTICATE' in imap_relay.text()
    assert gw.stop() == 0


def test_imap_wrong_password_only_goodbye(tmp, daemons, pw, gate, imap_relay, dovecot):
    """A wrong password: the early connection is closed, after a LOGOUT if
    it was already waiting for the login (the verdict may come before
    Dovecot's greeting did), and nothing else: no user name, no password,
    no login command reaches Dovecot."""
    gw, ports = gateway(tmp, daemons, pw, gate, imap_port=imap_relay.port)
    with ImapClient(ports['imap'], greet=True) as c:
        c.line('a1 LOGIN alice wrong-alice-pw')
        wait_for(lambda: gate.count() == 1, what='PAM holding the login')
        wait_for(lambda: imap_relay.connections() == 1, what='the early backend connection')
        gate.release()
        assert c.tagged('a1')[1] == 'a1 ' + IMAP_FAILED
    wait_for(lambda: imap_relay.ended == 1, what='the early connection closed')
    assert imap_relay.text() in (b'', b'ghb LOGOUT\r\n'), imap_relay.text()
    assert imap_relay.connections() == 1
    assert gw.stop() == 0
    assert b'alice' not in imap_relay.text() and b'wrong' not in imap_relay.text()


def test_submission_ehlo_before_verdict_auth_after(tmp, daemons, pw, gate, submission_relay):
    """SMTP: the backend's greeting and EHLO happen while PAM holds the
    login; AUTH goes after the yes on the same connection; after a no the
    backend hears QUIT and nothing else."""
    gw, ports = gateway(tmp, daemons, pw, gate, smtp_port=submission_relay.port)
    with SmtpClient(ports['sub'], greet=True) as c:
        c.cmd('EHLO client.test')
        c.line('AUTH PLAIN ' + plain_blob('alice', USERS['alice']))
        wait_for(lambda: gate.count() == 1, what='PAM holding the login')
        wait_for(lambda: submission_relay.text().startswith(b'EHLO '),
                 what='EHLO to the backend before the verdict')
        assert no_reply_yet(c)
        assert b'AUTH' not in submission_relay.text()
        gate.release()
        assert c.reply() == ['235 2.7.0 Authentication successful']
        assert c.cmd('NOOP')[0].startswith('250')
        c.cmd('QUIT')
    assert submission_relay.connections() == 1
    assert b'AUTH PLAIN ' in submission_relay.text()

    with SmtpClient(ports['sub'], greet=True) as c:
        c.cmd('EHLO client.test')
        c.line('AUTH PLAIN ' + plain_blob('alice', 'wrong-alice-pw'))
        wait_for(lambda: gate.count() == 2, what='PAM holding the second login')
        wait_for(lambda: submission_relay.connections() == 2, what='the second early connection')
        assert c.reply() == ['535 5.7.8 Authentication credentials invalid']
    wait_for(lambda: submission_relay.ended == 2, what='the second connection closed')
    second = submission_relay.text(1)
    # EHLO (and QUIT) if the greeting came before the verdict; never AUTH
    assert b'AUTH' not in second and (second == b'' or second.startswith(b'EHLO ')), second
    assert gw.stop() == 0


def test_early_connect_no(tmp, daemons, pw, gate, imap_relay):
    """early_connect = no: nothing is dialled while PAM holds the login (a
    state that lasts until the test lets go), and a wrong password never
    opens a backend connection at all."""
    gw, ports = gateway(tmp, daemons, pw, gate, imap_port=imap_relay.port,
                        backend={'early_connect': 'no'})
    with ImapClient(ports['imap'], greet=True) as c:
        c.line('a1 LOGIN alice wrong-alice-pw')
        wait_for(lambda: gate.count() == 1, what='PAM holding the login')
        c.nothing_pending(0.3)
        assert imap_relay.connections() == 0
        gate.release()
        assert c.tagged('a1')[1] == 'a1 ' + IMAP_FAILED
        assert c.login('alice', USERS['alice'], tag='a2').startswith('OK')
    assert imap_relay.connections() == 1
    assert gw.stop() == 0


def test_no_early_connection_after_a_failure(tmp, daemons, pw, gate, imap_relay):
    """An address with a recent failed login (failure_delay > 0) is not
    given an early backend connection: a password guesser makes the gateway
    open none."""
    gw, ports = gateway(tmp, daemons, pw, gate, imap_port=imap_relay.port,
                        gatehouse={'failure_delay': '1'})
    gate.release()
    with ImapClient(ports['imap'], greet=True) as c:
        assert c.login('alice', 'wrong-alice-pw', tag='a1') == IMAP_FAILED
    wait_for(lambda: imap_relay.ended == 1, what='the first early connection closed')
    assert imap_relay.text() in (b'', b'ghb LOGOUT\r\n'), imap_relay.text()
    with ImapClient(ports['imap'], greet=True) as c:
        assert c.login('alice', 'wrong-again', tag='a2') == IMAP_FAILED
        assert c.login('alice', USERS['alice'], tag='a3').startswith('OK')
    # the first attempt's early connection, then only the real login's
    assert imap_relay.connections() == 2
    assert b'wrong' not in imap_relay.text()
    assert gw.stop() == 0


def test_cached_verdict_dials_nothing_early(tmp, daemons, pw, gate, imap_relay):
    """A verdict the cache already has comes at once: no early connection.
    The first wrong password costs one; the same wrong password again,
    answered from the cache, costs none: the right password after it (not
    cached) is the second connection, not the third."""
    gw, ports = gateway(tmp, daemons, pw, gate, imap_port=imap_relay.port,
                        gatehouse={'auth_cache_size': '100'})
    gate.release()
    for tag in ('a1', 'a2'):
        with ImapClient(ports['imap'], greet=True) as c:
            assert c.login('alice', 'wrong-alice-pw', tag=tag) == IMAP_FAILED
    assert 'cached=yes' in gw.text()
    with ImapClient(ports['imap'], greet=True) as c:
        assert c.login('alice', USERS['alice'], tag='a3').startswith('OK')
        c.cmd('a4 LOGOUT')
    assert imap_relay.connections() == 2, gw.text()
    assert b'wrong' not in imap_relay.text()
    assert gw.stop() == 0


def test_route_capable_chain_dials_after_verdict(tmp, daemons, pw, gate, imap_relay):
    """A users file with a route= line may send a user elsewhere: the
    default server is not known before the verdict, so nothing is dialled
    early; with no route= line it is."""
    users = 'dave:{PLAIN}dave-pw:route=127.0.0.1:%d\n' % imap_relay.port
    gw, ports = gateway(tmp, daemons, pw, gate, imap_port=imap_relay.port, users=users)
    with ImapClient(ports['imap'], greet=True) as c:
        c.line('a1 LOGIN alice %s' % imap_quote(USERS['alice']))
        wait_for(lambda: gate.count() == 1, what='PAM holding the login')
        c.nothing_pending(0.3)
        assert imap_relay.connections() == 0
        gate.release()
        assert c.tagged('a1')[1].startswith('a1 OK')
    assert gw.stop() == 0


def test_parked_connection_lost(tmp, daemons, pw, gate, imap_relay):
    """The backend closes the parked connection (a restart, its own idle
    timeout) while PAM holds the login: the yes dials afresh and the client
    never notices."""
    gw, ports = gateway(tmp, daemons, pw, gate, imap_port=imap_relay.port)
    with ImapClient(ports['imap'], greet=True) as c:
        c.line('a1 LOGIN alice %s' % imap_quote(USERS['alice']))
        wait_for(lambda: gate.count() == 1, what='PAM holding the login')
        wait_for(lambda: imap_relay.connections() == 1, what='the early backend connection')
        # cut once the greeting has reached the gateway, which parks on it
        # (earlier, the link would fail in its greeting, not be lost parked)
        wait_for(lambda: b'\n' in imap_relay.from_server(0), what='the greeting relayed')
        imap_relay.cut()
        wait_for(lambda: 'while the login was being checked' in gw.text(),
                 what='the lost parked connection in the log')
        gate.release()
        assert c.tagged('a1')[1].startswith('a1 OK')
        c.cmd('a2 LOGOUT')
    assert imap_relay.connections() == 2
    assert gw.stop() == 0
