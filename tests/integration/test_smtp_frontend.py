"""The SMTP front end before login, as a client meets it: every reply of the
specification table, exact; leniency (lower case, bare LF, AUTH before EHLO);
pipelining; bad input (long lines, NUL bytes, silent and vanishing clients);
the session limits (idle, errors, auth failures, connections); shutdown; and a
short session under valgrind.  The daemon log never holds a password.

Each test starts its own gatehoused on 127.0.0.1 with a config written here.
Where a login must succeed, a tiny SMTP responder (lib.scripted.SmtpServer)
stands in for the backend MTA; where the backend must be down, the config
points at a port with nothing listening."""
import signal
import socket
import threading
import time

import pytest

from lib.clients import SmtpClient, b64, plain_blob
from lib.gateway import FrontEnd, front_ends
from lib.net import wait_for
from lib.scripted import SmtpServer


USERS = {
    'alice': 'alice-Secret.1',
    'bob': 'bob pw with spaces',
}

GREETING = ['220 gw.test ESMTP']
OK = ['250 2.0.0 OK']
BAD_CREDS = ['535 5.7.8 Authentication credentials invalid']
TEMPFAIL = ['454 4.7.0 Temporary authentication failure']
AUTH_OK = ['235 2.7.0 Authentication successful']
CANCELLED = ['501 5.0.0 Authentication cancelled']
UNDECODABLE = ['501 5.5.2 Cannot decode response']
TOO_LONG = ['500 5.5.6 Line too long']
UNRECOGNIZED = ['500 5.5.2 Syntax error, command unrecognized']
BAD_SEQUENCE = ['503 5.5.1 Bad sequence of commands']
NEED_AUTH = ['530 5.7.0 Authentication required']
NEED_TLS = ['538 5.7.11 Encryption required for requested authentication mechanism']
TOO_MANY_AUTH = ['421 4.7.0 Too many authentication failures']
TOO_MANY_ERRORS = ['421 4.7.0 Too many errors']
IDLE = ['421 4.4.2 gw.test Timeout']
SHUTDOWN = ['421 4.3.2 gw.test Service shutting down']
BYE = ['221 2.0.0 gw.test Bye']
USER_PROMPT = ['334 VXNlcm5hbWU6']
PASS_PROMPT = ['334 UGFzc3dvcmQ6']

EHLO_KEYWORDS_AUTH = {'PIPELINING', 'SIZE', '8BITMIME', 'AUTH PLAIN LOGIN', 'ENHANCEDSTATUSCODES'}
EHLO_KEYWORDS_NOAUTH = EHLO_KEYWORDS_AUTH - {'AUTH PLAIN LOGIN'}


# ------------------------------------------------------------ gateway under test

class Gateway(FrontEnd):
    def __init__(self, tmp, daemons, name, listener, gatehouse, backend_port, valgrind):
        keys = {'require_auth': 'yes', 'plaintext_auth': 'always', 'idle_timeout': '30'}
        keys.update(listener)
        super().__init__(tmp, daemons, name, 'smtp', 'sub', USERS, keys, {'login': 'none'}, gatehouse,
                         backend_port, valgrind)

    def client(self, greet=True):
        c = SmtpClient(self.port, self.secrets, greet=greet)
        if greet:
            assert c.greeting == GREETING
        return c

    def assert_alive(self):
        """The daemon runs and a fresh session works."""
        assert self.daemon.proc.poll() is None, 'gatehoused exited: %s' % self.daemon.text()[-3000:]
        with self.client() as c:
            assert c.cmd('EHLO fresh.test')[0] == '250-gw.test'
            assert c.cmd('NOOP') == OK
            assert c.cmd('QUIT') == BYE
            c.expect_close()


@pytest.fixture
def backend():
    b = SmtpServer()
    yield b
    b.close()


@pytest.fixture
def start_gw(tmp, daemons):
    """start_gw(listener={...}, gatehouse={...}, backend_port=N) -> Gateway.
    Without backend_port the backend is a port with nothing listening."""
    yield from front_ends(lambda *a: Gateway(tmp, daemons, *a))


@pytest.fixture
def gw(start_gw):
    """A submission listener: require_auth = yes, plaintext_auth = always,
    the backend down."""
    return start_gw()


@pytest.fixture
def gw_up(start_gw, backend):
    """As gw, with a working (fake) backend."""
    return start_gw(backend_port=backend.port)


@pytest.fixture
def mx(start_gw):
    """An MX listener: require_auth = no."""
    return start_gw(listener={'require_auth': 'no'})


# ------------------------------------------------------------ greeting and limits

def test_greeting(gw):
    with gw.client(greet=False) as c:
        assert c.reply() == GREETING
        c.nothing_pending()


def test_max_connections(start_gw):
    gw = start_gw(listener={'max_connections': '2'})
    c1, c2 = gw.client(), gw.client()
    try:
        with SmtpClient(gw.port) as c3:
            assert c3.reply() == ['421 4.7.0 gw.test Too many connections']
            c3.expect_close()
        # the two admitted sessions still work
        assert c1.cmd('NOOP') == OK
        assert c2.cmd('NOOP') == OK
        assert c1.cmd('QUIT') == BYE
        c1.expect_close()
    finally:
        c1.close()
    # a slot is free again once the server has seen the close

    def admitted():
        with SmtpClient(gw.port) as c:
            r = c.reply()
            if r == GREETING:
                assert c.cmd('QUIT') == BYE
                return True
            return False
    try:
        wait_for(admitted, timeout=15, interval=0.2, what='a free connection slot')
    finally:
        c2.close()


# ------------------------------------------------------------ HELO / EHLO

def test_helo(gw):
    with gw.client() as c:
        assert c.cmd('HELO x') == ['250 gw.test']


def check_ehlo(lines, with_auth):
    assert lines[0] == '250-gw.test', lines
    assert lines[-1] == '250 ENHANCEDSTATUSCODES', lines
    assert all(l.startswith('250-') for l in lines[:-1]), lines
    keywords = {l[4:] for l in lines[1:]}
    assert len(keywords) == len(lines) - 1, 'duplicate keywords: %r' % lines
    assert keywords == (EHLO_KEYWORDS_AUTH if with_auth else EHLO_KEYWORDS_NOAUTH), lines
    assert not any(k.startswith('STARTTLS') for k in keywords)


@pytest.mark.parametrize('plaintext,trusted_networks,with_auth', [
    ('always', None, True),
    ('trusted', None, True),            # 127.0.0.1 is in the default trusted networks
    (None, None, True),                 # the default is trusted
    ('always', '10.0.0.0/8', True),
    ('trusted', '10.0.0.0/8', False),
    ('tls', '10.0.0.0/8', False),
    (None, '10.0.0.0/8', False),
], ids=['always', 'trusted-client', 'default-trusted-client', 'always-untrusted',
        'trusted-untrusted', 'tls-untrusted', 'default-untrusted'])
def test_ehlo_keywords(start_gw, plaintext, trusted_networks, with_auth):
    gh = {'trusted_networks': trusted_networks} if trusted_networks else {}
    gw = start_gw(listener={'plaintext_auth': plaintext}, gatehouse=gh)
    with gw.client() as c:
        check_ehlo(c.cmd('EHLO client.test'), with_auth)


@pytest.mark.parametrize('line', ['HELO', 'EHLO', 'HELO ', 'EHLO '])
def test_helo_ehlo_without_argument(gw, line):
    with gw.client() as c:
        assert c.cmd(line) == ['501 5.5.4 Syntax: %s hostname' % line.strip()]
        # the session goes on
        assert c.cmd('NOOP') == OK


# ------------------------------------------------------------ AUTH exchanges

def test_auth_login_prompts(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('AUTH LOGIN') == USER_PROMPT
        assert c.cmd(b64('alice')) == PASS_PROMPT
        c.secret(b64('wrong-password'))
        assert c.cmd(b64('wrong-password')) == BAD_CREDS


def test_auth_login_with_initial_user(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('AUTH LOGIN ' + b64('alice')) == PASS_PROMPT
        assert c.cmd(b64('wrong-password')) == BAD_CREDS


def test_auth_plain_prompt(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('AUTH PLAIN') == ['334 ']
        assert c.cmd(plain_blob('alice', 'wrong')) == BAD_CREDS


def auth_exchange(c, how, user, password, authzid=''):
    """Run one AUTH in the given style; return the final reply."""
    if how == 'plain-initial':
        return c.cmd('AUTH PLAIN ' + plain_blob(user, password, authzid))
    if how == 'plain-continued':
        assert c.cmd('AUTH PLAIN') == ['334 ']
        return c.cmd(plain_blob(user, password, authzid))
    if how == 'login':
        assert c.cmd('AUTH LOGIN') == USER_PROMPT
        assert c.cmd(b64(user)) == PASS_PROMPT
        return c.cmd(b64(password))
    if how == 'login-initial':
        assert c.cmd('AUTH LOGIN ' + b64(user)) == PASS_PROMPT
        return c.cmd(b64(password))
    raise ValueError(how)


STYLES = ['plain-initial', 'plain-continued', 'login', 'login-initial']


@pytest.mark.parametrize('how', STYLES)
@pytest.mark.parametrize('user', sorted(USERS))
def test_auth_good_credentials(gw_up, backend, how, user):
    with gw_up.client() as c:
        c.cmd('EHLO client.test')
        assert auth_exchange(c, how, user, USERS[user]) == AUTH_OK
    assert backend.connections >= 1


def test_auth_plain_authzid_equal_to_user(gw_up):
    with gw_up.client() as c:
        c.cmd('EHLO client.test')
        assert auth_exchange(c, 'plain-initial', 'alice', USERS['alice'], 'alice') == AUTH_OK


def test_after_auth_commands_reach_backend(gw_up, backend):
    """Not a pre-login row; shows that 235 really leads to the backend."""
    with gw_up.client() as c:
        c.cmd('EHLO client.test')
        assert auth_exchange(c, 'plain-initial', 'alice', USERS['alice']) == AUTH_OK
        assert c.cmd('NOOP') == ['250 2.0.0 backend NOOP']
        assert c.cmd('QUIT') == ['221 2.0.0 fake Bye']
        c.expect_close()


@pytest.mark.parametrize('how', STYLES)
@pytest.mark.parametrize('user,password', [('alice', 'not-her-password'),
                                           ('nosuchuser', 'whatever'),
                                           ('alice', '')],
                         ids=['wrong-password', 'unknown-user', 'empty-password'])
def test_auth_bad_credentials(gw_up, how, user, password):
    # with a working backend, so that nothing but the credentials can fail
    with gw_up.client() as c:
        c.cmd('EHLO client.test')
        assert auth_exchange(c, how, user, password) == BAD_CREDS
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('how', STYLES)
def test_auth_backend_down(gw, how):
    with gw.client() as c:
        c.cmd('EHLO client.test')
        assert auth_exchange(c, how, 'alice', USERS['alice']) == TEMPFAIL
        # still in the login state
        assert c.cmd('NOOP') == OK
        assert c.cmd('QUIT') == BYE
        c.expect_close()


@pytest.mark.parametrize('steps', [
    ['AUTH LOGIN', '*'],
    ['AUTH LOGIN', 'b64:alice', '*'],
    ['AUTH LOGIN b64:alice', '*'],
    ['AUTH PLAIN', '*'],
], ids=['login-user', 'login-password', 'login-initial', 'plain'])
def test_auth_cancel(gw, steps):
    with gw.client() as c:
        c.cmd('EHLO x')
        for step in steps[:-1]:
            c.cmd(step.replace('b64:alice', b64('alice')))
        assert c.cmd('*') == CANCELLED
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('steps', [
    ['AUTH LOGIN', '!!!notbase64'],
    ['AUTH LOGIN', b64('alice'), '@@@@'],
    ['AUTH PLAIN', 'abc$'],
    ['AUTH PLAIN %%%%'],
    ['AUTH LOGIN ~~~~'],
], ids=['login-user', 'login-password', 'plain-continued', 'plain-initial', 'login-initial'])
def test_auth_undecodable(gw, steps):
    with gw.client() as c:
        c.cmd('EHLO x')
        for step in steps[:-1]:
            c.cmd(step)
        assert c.cmd(steps[-1]) == UNDECODABLE
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('line', ['AUTH CRAM-MD5', 'AUTH DIGEST-MD5', 'AUTH XOAUTH2 abc',
                                  'AUTH GSSAPI'])
def test_auth_unknown_mechanism(gw, line):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd(line) == ['504 5.5.4 Unrecognized authentication type']
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('line', ['AUTH', 'AUTH '])
def test_auth_without_mechanism(gw, line):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd(line) == ['501 5.5.4 Syntax: AUTH mechanism']


@pytest.mark.parametrize('how', ['plain-initial', 'plain-continued'])
def test_auth_plain_foreign_authzid(gw_up, how):
    with gw_up.client() as c:
        c.cmd('EHLO x')
        assert auth_exchange(c, how, 'alice', USERS['alice'], authzid='bob') == BAD_CREDS


@pytest.mark.parametrize('plaintext', ['trusted', 'tls', None])
@pytest.mark.parametrize('line', ['AUTH PLAIN', 'AUTH LOGIN', 'AUTH PLAIN init', 'AUTH LOGIN init'])
def test_auth_plaintext_not_allowed(start_gw, backend, plaintext, line):
    gw = start_gw(listener={'plaintext_auth': plaintext},
                  gatehouse={'trusted_networks': '10.0.0.0/8'}, backend_port=backend.port)
    if line == 'AUTH PLAIN init':
        line = 'AUTH PLAIN ' + plain_blob('alice', USERS['alice'])
    elif line == 'AUTH LOGIN init':
        line = 'AUTH LOGIN ' + b64('alice')
    with gw.client() as c:
        check_ehlo(c.cmd('EHLO x'), with_auth=False)
        assert c.cmd(line) == NEED_TLS
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('limit', [None, 1, 3, 5])
def test_too_many_auth_failures(start_gw, backend, limit):
    listener = {'max_auth_failures': str(limit)} if limit is not None else {}
    gw = start_gw(listener=listener, backend_port=backend.port)
    n = limit or 3
    styles = STYLES * 2
    with gw.client() as c:
        c.cmd('EHLO x')
        for i in range(n - 1):
            assert auth_exchange(c, styles[i], 'alice', 'wrong%d' % i) == BAD_CREDS, i
        assert c.cmd('NOOP') == OK
        # the Nth failure: 535, then 421, then the close
        assert auth_exchange(c, styles[n - 1], 'alice', 'wrong-last') == BAD_CREDS
        assert c.reply() == TOO_MANY_AUTH
        c.expect_close()


# ------------------------------------------------------------ mail commands before login

@pytest.mark.parametrize('line', ['MAIL FROM:<a@example.com>', 'MAIL FROM:<>',
                                  'mail from:<a@example.com>'])
def test_mail_before_auth(gw, line):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd(line) == NEED_AUTH


@pytest.mark.parametrize('role', ['submission', 'mx'])
@pytest.mark.parametrize('line', ['RCPT TO:<a@example.com>', 'DATA'])
def test_bad_sequence(start_gw, role, line):
    gw = start_gw(listener={'require_auth': 'yes' if role == 'submission' else 'no'})
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd(line) == BAD_SEQUENCE
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('line', ['MAIL FROM', 'MAIL TO:<x>', 'MAIL FROM:<a b>', 'MAIL',
                                  'MAIL FROM:'])
def test_mail_bad_syntax(mx, line):
    with mx.client() as c:
        c.cmd('EHLO x')
        assert c.cmd(line) == ['501 5.5.4 Syntax: MAIL FROM:<address>']
        assert c.cmd('NOOP') == OK


# ------------------------------------------------------------ other commands

def test_starttls_not_available(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('STARTTLS') == ['454 4.7.0 TLS not available']
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('line', ['NOOP', 'RSET'])
def test_noop_rset(gw, line):
    with gw.client() as c:
        assert c.cmd(line) == OK
        c.cmd('EHLO x')
        assert c.cmd(line) == OK


def test_help(gw):
    with gw.client() as c:
        r = c.cmd('HELP')
        assert r[0].startswith('214') and r[-1].startswith('214 '), r
        assert r[0].startswith('214 2.0.0') or r[0].startswith('214-2.0.0'), r
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('line', ['VRFY x', 'VRFY alice', 'VRFY <alice@gw.test>'])
def test_vrfy(gw, line):
    with gw.client() as c:
        assert c.cmd(line) == ['252 2.5.2 Cannot VRFY user']


@pytest.mark.parametrize('line', ['EXPN staff', 'EXPN', 'SEND FROM:<a@b>', 'SOML FROM:<a@b>',
                                  'SAML FROM:<a@b>', 'TURN'])
def test_not_implemented(gw, line):
    with gw.client() as c:
        assert c.cmd(line) == ['502 5.5.1 Command not implemented']
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('line', ['FOO', 'FOO bar', 'XYZZY', 'EHLOX x', 'NOOPNOOP', '  '])
def test_unknown_command(gw, line):
    with gw.client() as c:
        assert c.cmd(line) == UNRECOGNIZED
        assert c.cmd('NOOP') == OK


def test_quit(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('QUIT') == BYE
        c.expect_close()


# ------------------------------------------------------------ line lengths

def test_line_limit_boundary(gw):
    with gw.client() as c:
        # 512 octets with the CRLF: fine
        line = 'VRFY ' + 'a' * (512 - 2 - 5)
        assert len(line) + 2 == 512
        assert c.cmd(line) == ['252 2.5.2 Cannot VRFY user']
        # 513: too long, once
        assert c.cmd(line + 'a') == TOO_LONG
        assert c.cmd('NOOP') == OK


@pytest.mark.parametrize('size', [513, 600, 4096, 100 * 1024])
def test_line_too_long_once(gw, size):
    with gw.client() as c:
        c.cmd('EHLO x')
        c.send('NOOP ' + 'x' * (size - 7) + '\r\n')
        assert c.reply() == TOO_LONG
        # exactly one reply for the long line: the next one is NOOP's
        assert c.cmd('NOOP') == OK
        c.nothing_pending()


def test_line_too_long_bare_lf(gw):
    with gw.client() as c:
        c.send('NOOP ' + 'x' * 600 + '\n')
        assert c.reply() == TOO_LONG
        assert c.cmd('NOOP', eol='\n') == OK
        c.nothing_pending()


def test_line_too_long_dripped(gw):
    """A 100 KB line arriving in 100 pieces still gets one reply."""
    with gw.client() as c:
        for _ in range(100):
            c.send('y' * 1024)
            time.sleep(0.005)
        c.send('\r\n')
        assert c.reply() == TOO_LONG
        assert c.cmd('NOOP') == OK
        c.nothing_pending()


def test_auth_continuation_too_long(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('AUTH PLAIN') == ['334 ']
        c.send('A' * 12300 + '\r\n')
        assert c.reply() == TOO_LONG
    gw.assert_alive()


def test_auth_continuation_long_but_allowed(gw_up):
    """A continuation line under 12288 octets is read and judged, not refused
    as too long (the auth core caps passwords at 1024 octets, so a longer one
    is "Cannot decode"; either judgement is fine, "Line too long" is not)."""
    blob = plain_blob('alice', 'x' * 8000)
    assert len(blob) + 2 < 12288
    with gw_up.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('AUTH PLAIN') == ['334 ']
        assert c.cmd(blob) in (BAD_CREDS, UNDECODABLE)
        # the longest password the auth core takes is judged as a password
        assert c.cmd('AUTH PLAIN') == ['334 ']
        assert c.cmd(plain_blob('alice', 'x' * 1024)) == BAD_CREDS
        assert c.cmd('NOOP') == OK


def test_auth_login_continuation_too_long(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        assert c.cmd('AUTH LOGIN') == USER_PROMPT
        c.send('QUFB' * 4000 + '\r\n')  # 16000 octets
        assert c.reply() == TOO_LONG
    gw.assert_alive()


# ------------------------------------------------------------ session limits

@pytest.mark.parametrize('when', ['greeting', 'after-ehlo', 'mid-auth'])
def test_idle_timeout(start_gw, when):
    gw = start_gw(listener={'idle_timeout': '2'})
    with gw.client() as c:
        if when != 'greeting':
            c.cmd('EHLO x')
        if when == 'mid-auth':
            c.cmd('AUTH LOGIN')
        t0 = time.monotonic()
        # the upper bound is the read's 30 s, generous for a busy machine
        assert c.reply(timeout=30) == IDLE
        elapsed = time.monotonic() - t0
        # not before idle_timeout; the timer was armed at the last read, a
        # little before t0, and GLib's whole-second timers round, so 0.9 s
        assert elapsed >= 0.9, elapsed
        c.expect_close()


def test_idle_timer_restarts_on_each_command(start_gw):
    """Five NOOPs a second apart outlive an idle_timeout of 3 s: each command
    restarts the timer.  Each pause leaves 2 s for the NOOP's round trip."""
    gw = start_gw(listener={'idle_timeout': '3'})
    with gw.client() as c:
        for _ in range(5):
            time.sleep(1)
            assert c.cmd('NOOP') == OK
        assert c.reply(timeout=30) == IDLE
        c.expect_close()


ERROR_COMMANDS = [
    ('FOO', UNRECOGNIZED),
    ('HELO', ['501 5.5.4 Syntax: HELO hostname']),
    ('EXPN x', ['502 5.5.1 Command not implemented']),
    ('RCPT TO:<a@b>', BAD_SEQUENCE),
    ('AUTH CRAM-MD5', ['504 5.5.4 Unrecognized authentication type']),
]


@pytest.mark.parametrize('mix', ['500-only', 'all-kinds'])
def test_too_many_errors(gw, mix):
    cmds = [ERROR_COMMANDS[0]] * 10 if mix == '500-only' else ERROR_COMMANDS * 2
    with gw.client() as c:
        c.cmd('EHLO x')
        for i, (line, expected) in enumerate(cmds):
            assert c.cmd(line) == expected, 'error %d' % (i + 1)
        # the 10th error reply is followed by 421 and the close, unasked
        try:
            r = c.reply(timeout=15)
        except AssertionError as e:
            c.line('NOOP')
            raise AssertionError('no 421 after the 10th error reply (%s); an 11th command '
                                 '(NOOP) got %r' % (e, c.reply())) from None
        assert r == TOO_MANY_ERRORS
        c.expect_close()


def test_errors_below_the_limit_are_fine(gw):
    with gw.client() as c:
        for _ in range(9):
            assert c.cmd('FOO') == UNRECOGNIZED
        assert c.cmd('NOOP') == OK
        assert c.cmd('QUIT') == BYE
        c.expect_close()


def test_shutdown_tells_clients(gw):
    waiting = gw.client()
    ehloed = gw.client()
    mid_auth = gw.client()
    try:
        check_ehlo(ehloed.cmd('EHLO x'), with_auth=True)
        assert mid_auth.cmd('AUTH LOGIN') == USER_PROMPT
        gw.daemon.signal(signal.SIGTERM)
        for c in (waiting, ehloed, mid_auth):
            assert c.reply() == SHUTDOWN
            c.expect_close()
        assert gw.daemon.proc.wait(15) == 0, gw.daemon.text()[-3000:]
    finally:
        for c in (waiting, ehloed, mid_auth):
            c.close()


# ------------------------------------------------------------ leniency

def test_lower_case_commands(gw):
    with gw.client() as c:
        assert c.cmd('helo x') == ['250 gw.test']
        check_ehlo(c.cmd('ehlo x'), with_auth=True)
        assert c.cmd('noop') == OK
        assert c.cmd('rset') == OK
        assert c.cmd('vrfy x') == ['252 2.5.2 Cannot VRFY user']
        assert c.cmd('auth login') == USER_PROMPT
        assert c.cmd('*') == CANCELLED
        assert c.cmd('auth plain') == ['334 ']
        assert c.cmd('*') == CANCELLED
        assert c.cmd('Auth Cram-Md5') == ['504 5.5.4 Unrecognized authentication type']
        assert c.cmd('mail from:<a@b>') == NEED_AUTH
        assert c.cmd('quit') == BYE
        c.expect_close()


def test_auth_before_ehlo(gw_up):
    with gw_up.client() as c:
        assert c.cmd('AUTH LOGIN') == USER_PROMPT
        assert c.cmd(b64('alice')) == PASS_PROMPT
        assert c.cmd(b64(USERS['alice'])) == AUTH_OK


def test_auth_plain_before_ehlo_bad(gw):
    with gw.client() as c:
        assert c.cmd('AUTH PLAIN ' + plain_blob('alice', 'nope')) == BAD_CREDS


def test_bare_lf(gw_up):
    with gw_up.client() as c:
        assert c.cmd('HELO x', eol='\n') == ['250 gw.test']
        check_ehlo(c.cmd('EHLO x', eol='\n'), with_auth=True)
        assert c.cmd('NOOP', eol='\n') == OK
        assert c.cmd('FOO', eol='\n') == UNRECOGNIZED
        assert c.cmd('AUTH LOGIN', eol='\n') == USER_PROMPT
        assert c.cmd(b64('alice'), eol='\n') == PASS_PROMPT
        assert c.cmd(b64('wrong'), eol='\n') == BAD_CREDS
        assert c.cmd('AUTH PLAIN', eol='\n') == ['334 ']
        assert c.cmd(plain_blob('alice', USERS['alice']), eol='\n') == AUTH_OK


def test_bare_lf_quit(gw):
    with gw.client() as c:
        c.send('NOOP\nRSET\nQUIT\n')
        assert [c.reply(), c.reply(), c.reply()] == [OK, OK, BYE]
        c.expect_close()


# ------------------------------------------------------------ pipelining

def test_pipelined_group(gw):
    with gw.client() as c:
        c.send('EHLO x\r\nNOOP\r\nRSET\r\nVRFY a\r\n')
        check_ehlo(c.reply(), with_auth=True)
        assert c.reply() == OK
        assert c.reply() == OK
        assert c.reply() == ['252 2.5.2 Cannot VRFY user']
        c.nothing_pending()


def test_pipelined_thousand_noops(gw):
    with gw.client() as c:
        c.send('NOOP\r\n' * 1000)
        for i in range(1000):
            assert c.reply() == OK, i
        assert c.cmd('QUIT') == BYE
        c.expect_close()


def test_pipelined_auth_failure_then_commands(gw):
    """Commands pipelined behind an AUTH are served in order after it fails."""
    with gw.client() as c:
        c.cmd('EHLO x')
        c.send('AUTH PLAIN %s\r\nNOOP\r\nVRFY x\r\n' % plain_blob('alice', 'bad'))
        assert c.reply() == BAD_CREDS
        assert c.reply() == OK
        assert c.reply() == ['252 2.5.2 Cannot VRFY user']


def test_pipelined_after_backend_down(gw):
    with gw.client() as c:
        c.cmd('EHLO x')
        c.send('AUTH PLAIN %s\r\nNOOP\r\nQUIT\r\n' % plain_blob('alice', USERS['alice']))
        assert c.reply() == TEMPFAIL
        assert c.reply() == OK
        assert c.reply() == BYE
        c.expect_close()


def test_pipelined_after_auth_success_goes_to_backend(gw_up):
    """What follows a good AUTH in the same send() is the backend's."""
    with gw_up.client() as c:
        c.cmd('EHLO x')
        c.send('AUTH PLAIN %s\r\nNOOP\r\nQUIT\r\n' % plain_blob('alice', USERS['alice']))
        assert c.reply() == AUTH_OK
        assert c.reply() == ['250 2.0.0 backend NOOP']
        assert c.reply() == ['221 2.0.0 fake Bye']
        c.expect_close()


def test_pipelined_many_noops_read_while_sending(gw):
    """20,000 NOOPs (120 KB) sent by one thread while the replies are read."""
    n = 20000
    with gw.client() as c:
        sender = threading.Thread(target=c.send, args=('NOOP\r\n' * n,), daemon=True)
        sender.start()
        for i in range(n):
            assert c.reply() == OK, i
        sender.join(10)
        assert c.cmd('QUIT') == BYE
        c.expect_close()


def test_command_split_across_sends(gw):
    with gw.client() as c:
        for ch in 'EHLO x\r\n':
            c.send(ch)
            time.sleep(0.01)
        check_ehlo(c.reply(), with_auth=True)
        c.send('NOOP\r')
        time.sleep(0.2)
        c.send('\nRS')
        assert c.reply() == OK
        c.send('ET\r\n')
        assert c.reply() == OK
        c.nothing_pending()


# ------------------------------------------------------------ bad input

@pytest.mark.parametrize('data', [b'NO\0OP\r\n', b'\0\r\n', b'NOOP\0\r\n', b'EHLO a\0b\r\n',
                                  b'\0\0\0\0\0\0\0\0\r\n'],
                         ids=['inside', 'alone', 'after', 'argument', 'many'])
def test_nul_bytes(gw, data):
    with gw.client() as c:
        c.send(data)
        r = c.reply()
        assert len(r) == 1 and r[0].startswith('500 '), r
        assert c.cmd('NOOP') == OK
    gw.assert_alive()


def test_binary_garbage(gw):
    with gw.client() as c:
        c.send(bytes(b for b in range(256) if b not in (10, 13)) + b'\r\n')
        r = c.reply()
        assert r[0][:3] in ('500', '501', '502'), r
        assert c.cmd('NOOP') == OK
    gw.assert_alive()


def test_silent_client(start_gw):
    gw = start_gw(listener={'idle_timeout': '2'})
    with gw.client(greet=False) as c:
        assert c.reply() == GREETING
        assert c.reply(timeout=30) == IDLE
        c.expect_close()
    gw.assert_alive()


@pytest.mark.parametrize('where', ['after-user', 'after-auth-plain', 'mid-line', 'at-greeting'])
def test_disconnect_mid_auth(gw, where):
    for _ in range(10):
        c = gw.client()
        if where == 'after-user':
            c.cmd('AUTH LOGIN')
            c.cmd(b64('alice'))
        elif where == 'after-auth-plain':
            c.cmd('AUTH PLAIN')
        elif where == 'mid-line':
            c.cmd('AUTH LOGIN')
            c.send(b64('alice')[:3])
        c.close()
    gw.assert_alive()


def test_disconnect_during_verification(gw_up):
    """Gone while the login is being checked and the backend joined."""
    for _ in range(10):
        c = gw_up.client()
        c.send('AUTH PLAIN %s\r\n' % plain_blob('alice', USERS['alice']))
        c.close()
    gw_up.assert_alive()


def test_reset_by_client(gw):
    for _ in range(5):
        c = gw.client()
        c.cmd('AUTH LOGIN')
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\1\0\0\0\0\0\0\0')
        c.close()  # RST
    gw.assert_alive()


def test_many_concurrent_sessions(gw):
    clients = [gw.client() for _ in range(50)]
    try:
        for c in clients:
            c.line('EHLO many.test')
        for c in clients:
            check_ehlo(c.reply(), with_auth=True)
        for c in clients:
            assert c.cmd('QUIT') == BYE
    finally:
        for c in clients:
            c.close()
    gw.assert_alive()


def test_bad_input_sequence_leaves_daemon_serving(start_gw, backend):
    """All the bad input against one daemon; then it still serves, and the
    log holds none of the passwords."""
    gw = start_gw(listener={'idle_timeout': '2'}, backend_port=backend.port)
    with gw.client() as c:
        c.send('NOOP ' + 'x' * 100 * 1024 + '\r\n')
        assert c.reply() == TOO_LONG
        assert c.cmd('NOOP') == OK
        c.send(b'NO\0OP\r\n')
        assert c.reply()[0].startswith('500 ')
        assert c.cmd('NOOP') == OK
        assert c.cmd('AUTH PLAIN') == ['334 ']
        c.send('A' * 13000 + '\r\n')
        assert c.reply() == TOO_LONG
    with gw.client() as c:
        assert c.reply(timeout=30) == IDLE
        c.expect_close()
    for _ in range(5):
        c = gw.client()
        c.cmd('AUTH LOGIN')
        c.cmd(b64('alice'))
        c.close()
        c = gw.client()
        c.cmd('AUTH LOGIN ' + b64('bob'))
        c.send(b64(USERS['bob'])[:5])
        c.close()
    with gw.client() as c:
        c.send('NOOP\r\n' * 1000)
        for i in range(1000):
            assert c.reply() == OK, i
    with gw.client() as c:
        assert auth_exchange(c, 'login', 'bob', 'bad-' + USERS['bob']) == BAD_CREDS
        assert auth_exchange(c, 'plain-continued', 'bob', USERS['bob']) == AUTH_OK
    gw.assert_alive()
    gw.assert_no_secrets()


# ------------------------------------------------------------ valgrind

def test_session_under_valgrind(start_gw, backend):
    gw = start_gw(backend_port=backend.port, valgrind=True, listener={'idle_timeout': '10'})
    with gw.client() as c:
        check_ehlo(c.cmd('EHLO client.test'), with_auth=True)
        assert c.cmd('NOOP') == OK
        assert c.cmd('FOO') == UNRECOGNIZED
        assert c.cmd('VRFY x') == ['252 2.5.2 Cannot VRFY user']
        assert c.cmd('MAIL FROM:<a@b>') == NEED_AUTH
        assert c.cmd('AUTH CRAM-MD5') == ['504 5.5.4 Unrecognized authentication type']
        assert auth_exchange(c, 'plain-initial', 'alice', 'bad') == BAD_CREDS
        assert c.cmd('AUTH LOGIN') == USER_PROMPT
        assert c.cmd('*') == CANCELLED
        c.send('NOOP ' + 'x' * 2000 + '\r\n')
        assert c.reply() == TOO_LONG
        c.send(b'NO\0OP\r\n')
        assert c.reply()[0].startswith('500 ')
        assert c.cmd('QUIT') == BYE
        c.expect_close()
    with gw.client() as c:
        c.cmd('AUTH LOGIN')
        c.cmd(b64('alice'))
    with gw.client() as c:
        assert auth_exchange(c, 'login', 'alice', USERS['alice']) == AUTH_OK
        assert c.cmd('NOOP') == ['250 2.0.0 backend NOOP']
        assert c.cmd('QUIT') == ['221 2.0.0 fake Bye']
    # backend down for a second login: the tempfail path
    backend.close()
    with gw.client() as c:
        assert auth_exchange(c, 'plain-initial', 'bob', USERS['bob']) == TEMPFAIL
        waiting = gw.client()
    try:
        gw.daemon.signal(signal.SIGTERM)
        assert waiting.reply(timeout=30) == SHUTDOWN
        rc = gw.daemon.proc.wait(60)
    finally:
        waiting.close()
    assert rc == 0, gw.daemon.text()[-5000:]
    assert '==' not in gw.daemon.text(), gw.daemon.text()[-5000:]
