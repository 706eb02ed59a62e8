"""The IMAP front end before login, as a client meets it: every reply of the
specification table, exact; leniency (lower case, bare LF); literals (sync and
LITERAL+); pipelining; bad input (long lines, huge literals, NUL bytes,
silent and vanishing clients); the session limits (idle, invalid commands,
auth failures, connections); shutdown; and a short session under valgrind.
The daemon log never holds a password.

Each test starts its own gatehoused on 127.0.0.1 with a config written here.
Where a login must succeed, a tiny IMAP server (lib.scripted.ImapServer)
stands in for the backend; where the backend must be down, the config points
at a port with nothing listening."""
import re
import signal
import socket
import threading
import time

import pytest

from lib.clients import ImapClient, assert_no_secrets, b64, imap_quote, plain_blob
from lib.gateway import FrontEnd, front_ends
from lib.net import wait_for
from lib.scripted import ImapServer


USERS = {
    'alice': 'alice-Secret.1',
    'bob': 'bob pw with spaces',
    'carol': 'carol"q\\uote',  # a quote and a backslash: quoted-string escapes
}
CAPS = 'IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN'
CAPS_NOAUTH = 'IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ LOGINDISABLED'
GREETING = '* OK [CAPABILITY %s] gw.test ready.' % CAPS
GREETING_NOAUTH = '* OK [CAPABILITY %s] gw.test ready.' % CAPS_NOAUTH
BACKEND_LOGIN_OK = 'OK [CAPABILITY IMAP4rev1 IDLE] Logged in'
AUTH_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'
TEMPFAIL = 'NO [UNAVAILABLE] Temporary authentication failure.'
PRIVACY = 'NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS.'
CANCELLED = 'BAD Authentication cancelled.'
UNDECODABLE = 'BAD Cannot decode response.'
UNSUPPORTED = 'NO Unsupported authentication mechanism.'
SYNTAX = 'BAD Syntax error.'
NOT_ALLOWED = 'BAD Command not allowed before login.'
NOOP_OK = 'OK NOOP completed.'
INVALID_TAG = '* BAD Invalid tag.'
MISSING_COMMAND = 'BAD Missing command.'
TOO_MANY_BAD = '* BYE Too many invalid commands.'
TOO_MANY_AUTH = '* BYE Too many authentication failures.'
IDLE_BYE = '* BYE Disconnected for inactivity.'
LINE_TOO_LONG = '* BYE Line too long.'
LITERAL_TOO_LONG = '* BYE Literal too long.'
SHUTDOWN = '* BYE Server shutting down.'
TOO_MANY_CONN = '* BYE [UNAVAILABLE] Too many connections'
CONTINUE = '+ OK'
PLAIN_PROMPT = '+ '
USER_PROMPT = '+ VXNlcm5hbWU6'
PASS_PROMPT = '+ UGFzc3dvcmQ6'
ID_REPLY = '* ID ("name" "gatehouse")'
MAX_LINE = 8192


def t(tag, text):
    return '%s %s' % (tag, text)


# ------------------------------------------------------------ gateway under test

class Gateway(FrontEnd):
    def __init__(self, tmp, daemons, name, listener, gatehouse, backend_port, valgrind):
        keys = {'plaintext_auth': 'always', 'idle_timeout': '30'}
        keys.update(listener)
        super().__init__(tmp, daemons, name, 'imap', 'imap', USERS, keys, {'login': 'passthrough'}, gatehouse,
                         backend_port, valgrind)

    def client(self, greet=True, greeting=GREETING):
        c = ImapClient(self.port, self.secrets, greet=greet)
        if greet:
            assert c.greeting == greeting
        return c

    def assert_alive(self):
        """The daemon runs and a fresh session works."""
        assert self.daemon.proc.poll() is None, 'gatehoused exited: %s' % self.daemon.text()[-3000:]
        with self.client() as c:
            assert c.cmd('f1 NOOP') == [t('f1', NOOP_OK)]
            assert c.cmd('f2 CAPABILITY') == ['* CAPABILITY ' + CAPS,
                                              'f2 OK Capability completed.']
            assert c.cmd('f3 LOGOUT') == ['* BYE Logging out', 'f3 OK LOGOUT completed.']
            assert c.until_close() == []

    def assert_no_secrets(self):
        # a password the client sent in a literal may reach a log in base64
        secrets = [form for s in self.secrets if s for form in (s, b64(s))]
        assert_no_secrets(self.daemon.text(), USERS.items(), secrets=secrets)


@pytest.fixture
def backend():
    b = ImapServer(refuse={'carol'})
    yield b
    b.close()


@pytest.fixture
def start_gw(tmp, daemons):
    """start_gw(listener={...}, gatehouse={...}, backend_port=N) -> Gateway.
    Without backend_port the backend is a port with nothing listening."""
    yield from front_ends(lambda *a: Gateway(tmp, daemons, *a))


@pytest.fixture
def gw(start_gw):
    """An IMAP listener: plaintext_auth = always, the backend down."""
    return start_gw()


@pytest.fixture
def gw_up(start_gw, backend):
    """As gw, with a working (fake) backend that refuses carol."""
    return start_gw(backend_port=backend.port)


# ------------------------------------------------------------ login helpers

def login_exchange(c, how, user, password, tag='a', authzid=''):
    """Run one login in the given style; return the final response lines."""
    c.secret(password)
    if how == 'login-atoms':
        return c.cmd('%s LOGIN %s %s' % (tag, user, password))
    if how == 'login-quoted':
        return c.cmd('%s LOGIN %s %s' % (tag, imap_quote(user), imap_quote(password)))
    if how == 'login-literal':
        assert c.cmd('%s LOGIN {%d}' % (tag, len(user))) == [CONTINUE]
        c.line('%s {%d}' % (user, len(password.encode())))
        assert c.response(tag) == [CONTINUE]
        c.send(password + '\r\n')
        return c.response(tag)
    if how == 'login-literal+':
        c.send('%s LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n'
               % (tag, len(user), user, len(password.encode()), password))
        return c.response(tag)
    if how == 'plain-ir':
        c.secret(plain_blob(user, password, authzid))
        return c.cmd('%s AUTHENTICATE PLAIN %s' % (tag, plain_blob(user, password, authzid)))
    if how == 'plain':
        assert c.cmd('%s AUTHENTICATE PLAIN' % tag) == [PLAIN_PROMPT]
        c.line(plain_blob(user, password, authzid))
        return c.response(tag)
    if how == 'login':
        assert c.cmd('%s AUTHENTICATE LOGIN' % tag) == [USER_PROMPT]
        c.line(b64(user))
        assert c.response(tag) == [PASS_PROMPT]
        c.line(b64(password))
        return c.response(tag)
    if how == 'login-ir':
        assert c.cmd('%s AUTHENTICATE LOGIN %s' % (tag, b64(user))) == [PASS_PROMPT]
        c.line(b64(password))
        return c.response(tag)
    raise ValueError(how)


LOGIN_STYLES = ['login-quoted', 'login-literal', 'login-literal+']
AUTH_STYLES = ['plain-ir', 'plain', 'login', 'login-ir']
ALL_STYLES = ['login-atoms'] + LOGIN_STYLES + AUTH_STYLES


def styles_for(password):
    return ALL_STYLES if re.fullmatch(r'[A-Za-z0-9.\-]+', password) else LOGIN_STYLES + AUTH_STYLES


# ------------------------------------------------------------ greeting and limits

def test_greeting(gw):
    with gw.client(greet=False) as c:
        assert c.read_line() == GREETING
        c.nothing_pending()


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
def test_greeting_and_capability(start_gw, plaintext, trusted_networks, with_auth):
    gh = {'trusted_networks': trusted_networks} if trusted_networks else {}
    gw = start_gw(listener={'plaintext_auth': plaintext}, gatehouse=gh)
    greeting, caps = (GREETING, CAPS) if with_auth else (GREETING_NOAUTH, CAPS_NOAUTH)
    with gw.client(greeting=greeting) as c:
        assert c.cmd('a CAPABILITY') == ['* CAPABILITY ' + caps, 'a OK Capability completed.']
        assert 'STARTTLS' not in caps


def test_max_connections(start_gw):
    gw = start_gw(listener={'max_connections': '2'})
    c1, c2 = gw.client(), gw.client()
    try:
        with ImapClient(gw.port) as c3:
            assert c3.until_close() == [TOO_MANY_CONN]
        # the two admitted sessions still work
        assert c1.cmd('a NOOP') == [t('a', NOOP_OK)]
        assert c2.cmd('a NOOP') == [t('a', NOOP_OK)]
        assert c1.cmd('b LOGOUT') == ['* BYE Logging out', 'b OK LOGOUT completed.']
        assert c1.until_close() == []
    finally:
        c1.close()

    def admitted():
        with ImapClient(gw.port) as c:
            if c.read_line() == GREETING:
                assert c.cmd('z LOGOUT')[-1] == 'z OK LOGOUT completed.'
                return True
            return False
    try:
        wait_for(admitted, timeout=15, interval=0.2, what='a free connection slot')
    finally:
        c2.close()


# ------------------------------------------------------------ simple commands

def test_capability(gw):
    with gw.client() as c:
        assert c.cmd('a CAPABILITY') == ['* CAPABILITY ' + CAPS, 'a OK Capability completed.']
        c.nothing_pending()


def test_noop(gw):
    with gw.client() as c:
        assert c.cmd('a NOOP') == [t('a', NOOP_OK)]
        assert c.cmd('A0001 NOOP') == [t('A0001', NOOP_OK)]
        c.nothing_pending()


@pytest.mark.parametrize('args', ['("name" "x")', 'NIL', '("name" "x" "version" "1.0")',
                                  'nil'])
def test_id(gw, args):
    with gw.client() as c:
        assert c.cmd('a ID ' + args) == [ID_REPLY, 'a OK ID completed.']
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


def test_logout(gw):
    with gw.client() as c:
        c.line('a LOGOUT')
        assert c.until_close() == ['* BYE Logging out', 'a OK LOGOUT completed.']


def test_starttls_not_available(gw):
    with gw.client() as c:
        assert c.cmd('a STARTTLS') == ['a NO TLS not available.']
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


@pytest.mark.parametrize('line', ['SELECT INBOX', 'ENABLE X', 'FOO', 'ENABLE CONDSTORE',
                                  'EXAMINE INBOX', 'LIST "" "*"', 'IDLE', 'STATUS INBOX (MESSAGES)',
                                  'UID FETCH 1:* (FLAGS)', 'FETCH 1 (FLAGS BODY[])',
                                  'APPEND INBOX {3+}\r\nabc', 'UNAUTHENTICATE', 'CHECK'])
def test_not_allowed_before_login(gw, line):
    with gw.client() as c:
        assert c.cmd('a ' + line) == [t('a', NOT_ALLOWED)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


@pytest.mark.parametrize('line', ['+ NOOP', '   ', 'a"b NOOP', '+'])
def test_invalid_tag(gw, line):
    with gw.client() as c:
        c.line(line)
        assert c.read_line() == INVALID_TAG
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
        c.nothing_pending()


def test_tag_too_long(gw):
    """Not in the table: the parser caps tags at 64 octets; whatever the text,
    the reply is an untagged BAD and the session goes on."""
    with gw.client() as c:
        assert c.cmd('t' * 64 + ' NOOP') == [t('t' * 64, NOOP_OK)]
        c.line('t' * 65 + ' NOOP')
        r = c.read_line()
        assert r.startswith('* BAD '), r
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


@pytest.mark.parametrize('line', ['a', 'a '])
def test_missing_command(gw, line):
    with gw.client() as c:
        assert c.cmd(line) == [t('a', MISSING_COMMAND)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


# ------------------------------------------------------------ LOGIN and AUTHENTICATE

@pytest.mark.parametrize('user,how', [(u, h) for u in sorted(USERS) if u != 'carol'
                                      for h in styles_for(USERS[u])])
def test_login_good(gw_up, backend, user, how):
    with gw_up.client() as c:
        assert login_exchange(c, how, user, USERS[user]) == [t('a', BACKEND_LOGIN_OK)]
        c.nothing_pending()
    # passthrough: the backend got the client's own credentials
    assert [(u, p) for _, _, u, p in backend.logins] == [(user.encode(), USERS[user].encode())]


@pytest.mark.parametrize('how', LOGIN_STYLES + AUTH_STYLES)
def test_login_escapes(start_gw, how):
    """carol's password holds '"' and '\\': it takes quoted-string escapes or
    a literal.  The backend here refuses nobody."""
    b = ImapServer()
    try:
        gw = start_gw(backend_port=b.port)
        with gw.client() as c:
            assert login_exchange(c, how, 'carol', USERS['carol']) == [t('a', BACKEND_LOGIN_OK)]
        assert [(u, p) for _, _, u, p in b.logins] == [(b'carol', USERS['carol'].encode())]
    finally:
        b.close()


def test_login_then_session_is_the_backends(gw_up, backend):
    with gw_up.client() as c:
        assert login_exchange(c, 'login-quoted', 'bob', USERS['bob']) == [t('a', BACKEND_LOGIN_OK)]
        assert c.cmd('b SELECT INBOX') == ['b OK fake SELECT INBOX']
        assert c.cmd('c NOOP') == ['c OK fake NOOP']
        c.line('d LOGOUT')
        assert c.until_close() == ['* BYE fake bye', 'd OK fake LOGOUT']
    assert backend.after_login == ['b SELECT INBOX', 'c NOOP', 'd LOGOUT']


def test_login_tag_is_the_clients(gw_up):
    with gw_up.client() as c:
        c.secret(USERS['alice'])
        assert c.cmd('X.17 LOGIN alice %s' % USERS['alice']) == [t('X.17', BACKEND_LOGIN_OK)]


def test_authenticate_plain_authzid_equal_to_user(gw_up):
    with gw_up.client() as c:
        assert (login_exchange(c, 'plain-ir', 'alice', USERS['alice'], authzid='alice')
                == [t('a', BACKEND_LOGIN_OK)])


@pytest.mark.parametrize('how', ['plain-ir', 'plain'])
def test_authenticate_plain_foreign_authzid(gw_up, how):
    with gw_up.client() as c:
        assert (login_exchange(c, how, 'alice', USERS['alice'], authzid='bob')
                == [t('a', AUTH_FAILED)])


BAD_CREDENTIALS = [('wrong-password', 'alice', 'not-her-password'),
                   ('unknown-user', 'nosuchuser', 'whatever-pw-77'),
                   ('empty-password', 'alice', '')]


# (an empty password cannot be sent as an atom: that combination is left out)
@pytest.mark.parametrize('how,user,password', [
    pytest.param(how, user, password, id='%s-%s' % (what, how))
    for how in ALL_STYLES for what, user, password in BAD_CREDENTIALS
    if not (how == 'login-atoms' and password == '')])
def test_login_bad_credentials(gw_up, backend, how, user, password):
    with gw_up.client() as c:
        assert login_exchange(c, how, user, password) == [t('a', AUTH_FAILED)]
        # still before login
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
        assert c.cmd('c SELECT INBOX') == [t('c', NOT_ALLOWED)]
    assert backend.logins == []


@pytest.mark.parametrize('how', ['login-atoms', 'login-literal', 'plain-ir', 'login'])
def test_login_backend_down(gw, how):
    with gw.client() as c:
        assert login_exchange(c, how, 'alice', USERS['alice']) == [t('a', TEMPFAIL)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
        assert c.cmd('c SELECT INBOX') == [t('c', NOT_ALLOWED)]
        c.line('d LOGOUT')
        assert c.until_close() == ['* BYE Logging out', 'd OK LOGOUT completed.']


@pytest.mark.parametrize('how', ['login-quoted', 'plain-ir', 'login'])
def test_login_backend_refuses(gw_up, backend, how):
    """The gateway accepts carol's password, the backend says NO."""
    with gw_up.client() as c:
        assert login_exchange(c, how, 'carol', USERS['carol']) == [t('a', AUTH_FAILED)]
        # the session stays the gateway's, before login
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
        assert c.cmd('c CAPABILITY') == ['* CAPABILITY ' + CAPS, 'c OK Capability completed.']
        assert c.cmd('d SELECT INBOX') == [t('d', NOT_ALLOWED)]
        # and a good login afterwards works
        assert login_exchange(c, 'login-quoted', 'alice', USERS['alice'], tag='e') \
            == [t('e', BACKEND_LOGIN_OK)]
    assert [u for _, _, u, _ in backend.logins] == [b'carol', b'alice']


@pytest.mark.parametrize('plaintext', ['trusted', 'tls', None])
@pytest.mark.parametrize('line', ['LOGIN alice PW', 'AUTHENTICATE PLAIN', 'AUTHENTICATE LOGIN',
                                  'AUTHENTICATE PLAIN IR', 'AUTHENTICATE LOGIN IR'])
def test_plaintext_not_allowed(start_gw, backend, plaintext, line):
    gw = start_gw(listener={'plaintext_auth': plaintext},
                  gatehouse={'trusted_networks': '10.0.0.0/8'}, backend_port=backend.port)
    line = line.replace('PW', USERS['alice'])
    line = line.replace('PLAIN IR', 'PLAIN ' + plain_blob('alice', USERS['alice']))
    line = line.replace('LOGIN IR', 'LOGIN ' + b64('alice'))
    with gw.client(greeting=GREETING_NOAUTH) as c:
        assert c.cmd('a ' + line) == [t('a', PRIVACY)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
    assert backend.logins == []


def test_authenticate_plain_prompt(gw):
    with gw.client() as c:
        assert c.cmd('a AUTHENTICATE PLAIN') == [PLAIN_PROMPT]
        c.secret('wrong-pw-1')
        c.line(plain_blob('alice', 'wrong-pw-1'))
        assert c.response('a') == [t('a', AUTH_FAILED)]


def test_authenticate_login_prompts(gw):
    with gw.client() as c:
        assert c.cmd('a AUTHENTICATE LOGIN') == [USER_PROMPT]
        c.line(b64('alice'))
        assert c.response('a') == [PASS_PROMPT]
        c.secret('wrong-pw-2')
        c.line(b64('wrong-pw-2'))
        assert c.response('a') == [t('a', AUTH_FAILED)]


def test_authenticate_login_initial_response(gw):
    with gw.client() as c:
        assert c.cmd('a AUTHENTICATE LOGIN ' + b64('alice')) == [PASS_PROMPT]
        c.secret('wrong-pw-3')
        c.line(b64('wrong-pw-3'))
        assert c.response('a') == [t('a', AUTH_FAILED)]


@pytest.mark.parametrize('steps', [
    ['AUTHENTICATE LOGIN'],
    ['AUTHENTICATE LOGIN', 'b64:alice'],
    ['AUTHENTICATE LOGIN b64:alice'],
    ['AUTHENTICATE PLAIN'],
], ids=['login-user', 'login-password', 'login-initial', 'plain'])
def test_authenticate_cancel(gw, steps):
    with gw.client() as c:
        assert c.cmd('a ' + steps[0].replace('b64:alice', b64('alice')))[0].startswith('+')
        for step in steps[1:]:
            c.line(step.replace('b64:alice', b64('alice')))
            assert c.response('a')[0].startswith('+')
        c.line('*')
        assert c.response('a') == [t('a', CANCELLED)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


@pytest.mark.parametrize('steps', [
    ['AUTHENTICATE LOGIN', '!!!notbase64'],
    ['AUTHENTICATE LOGIN', b64('alice'), '@@@@'],
    ['AUTHENTICATE PLAIN', 'abc$'],
    ['AUTHENTICATE PLAIN %%%%'],
    ['AUTHENTICATE LOGIN ~~~~'],
], ids=['login-user', 'login-password', 'plain-continued', 'plain-initial', 'login-initial'])
def test_authenticate_undecodable(gw, steps):
    with gw.client() as c:
        if len(steps) == 1:
            assert c.cmd('a ' + steps[0]) == [t('a', UNDECODABLE)]
        else:
            assert c.cmd('a ' + steps[0])[0].startswith('+')
            for step in steps[1:-1]:
                c.line(step)
                assert c.response('a')[0].startswith('+')
            c.line(steps[-1])
            assert c.response('a') == [t('a', UNDECODABLE)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


@pytest.mark.parametrize('line', ['AUTHENTICATE CRAM-MD5', 'AUTHENTICATE DIGEST-MD5',
                                  'AUTHENTICATE XOAUTH2 abc', 'AUTHENTICATE GSSAPI',
                                  'AUTHENTICATE EXTERNAL ='])
def test_authenticate_unknown_mechanism(gw, line):
    with gw.client() as c:
        assert c.cmd('a ' + line) == [t('a', UNSUPPORTED)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


@pytest.mark.parametrize('line', ['LOGIN', 'LOGIN alice', 'LOGIN alice pw extra',
                                  'AUTHENTICATE', 'AUTHENTICATE PLAIN AAAA BBBB'])
def test_wrong_argument_count(gw, line):
    with gw.client() as c:
        assert c.cmd('a ' + line) == [t('a', SYNTAX)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]


@pytest.mark.parametrize('limit', [None, 1, 3, 5])
def test_too_many_auth_failures(start_gw, backend, limit):
    listener = {'max_auth_failures': str(limit)} if limit is not None else {}
    gw = start_gw(listener=listener, backend_port=backend.port)
    n = limit or 3
    styles = ['login-atoms', 'plain-ir', 'login', 'login-literal', 'plain']
    with gw.client() as c:
        for i in range(n - 1):
            tag = 'a%d' % i
            assert login_exchange(c, styles[i], 'alice', 'wrong%d' % i, tag=tag) \
                == [t(tag, AUTH_FAILED)], i
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
        # the Nth failure: NO, then BYE, then the close
        assert login_exchange(c, styles[n - 1], 'alice', 'wrong-last', tag='z') \
            == [t('z', AUTH_FAILED)]
        assert c.until_close() == [TOO_MANY_AUTH]


# ------------------------------------------------------------ literals

def test_sync_literal_continuation(gw_up):
    with gw_up.client() as c:
        assert c.cmd('a LOGIN {5}') == [CONTINUE]
        c.nothing_pending()
        c.line('alice {%d}' % len(USERS['alice']))
        assert c.response('a') == [CONTINUE]
        c.secret(USERS['alice'])
        c.send(USERS['alice'] + '\r\n')
        assert c.response('a') == [t('a', BACKEND_LOGIN_OK)]


def test_literal_in_id(gw):
    with gw.client() as c:
        assert c.cmd('a ID ("name" {4}') == [CONTINUE]
        c.send('test)\r\n')
        assert c.response('a') == [ID_REPLY, 'a OK ID completed.']
        c.send('b ID ("name" {4+}\r\ntest)\r\n')
        assert c.response('b') == [ID_REPLY, 'b OK ID completed.']


def test_literal_at_limit(gw):
    """A literal of exactly 8192 octets is not over the limit."""
    with gw.client() as c:
        assert c.cmd('a SELECT {%d}' % MAX_LINE) == [CONTINUE]
        c.send('n' * MAX_LINE + '\r\n')
        assert c.response('a') == [t('a', NOT_ALLOWED)]
        c.send('b SELECT {%d+}\r\n%s\r\n' % (MAX_LINE, 'n' * MAX_LINE))
        assert c.response('b') == [t('b', NOT_ALLOWED)]
        assert c.cmd('c NOOP') == [t('c', NOOP_OK)]


@pytest.mark.parametrize('line', ['a LOGIN {9000}', 'a LOGIN {4294967296}', 'a LOGIN {9000+}',
                                  'a LOGIN {%d}' % (MAX_LINE + 1),
                                  'a LOGIN alice {99999999999999999999}',
                                  'a ID ("name" {9000}'])
def test_literal_too_long(gw, line):
    with gw.client() as c:
        c.line(line)
        assert c.until_close() == [LITERAL_TOO_LONG]
    gw.assert_alive()


@pytest.mark.parametrize('data', ['+ LOGIN {5+}\r\nalice\r\n', 'a"b NOOP {5+}\r\nhello\r\n',
                                  '+ NOOP {5+}\r\n'])
def test_invalid_line_ending_in_nonsync_literal(gw, data):
    with gw.client() as c:
        c.send(data)
        r = c.until_close()
        assert len(r) == 1 and r[0].startswith('* BYE'), r
    gw.assert_alive()


# ------------------------------------------------------------ line lengths

def test_line_limit_boundary(gw):
    with gw.client() as c:
        # 8192 octets with the CRLF: fine
        line = 'a SELECT ' + 'x' * (MAX_LINE - 2 - 9)
        assert len(line) + 2 == MAX_LINE
        assert c.cmd(line) == [t('a', NOT_ALLOWED)]
    with gw.client() as c:
        # 8193 octets without the CRLF: over the limit whichever way it counts
        line = 'a SELECT ' + 'x' * (MAX_LINE + 1 - 9)
        c.line(line)
        assert c.until_close() == [LINE_TOO_LONG]


@pytest.mark.parametrize('size', [MAX_LINE + 100, 100 * 1024, 1024 * 1024])
def test_line_too_long(gw, size):
    with gw.client() as c:
        try:
            c.send('a NOOP ' + 'x' * (size - 9) + '\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before it has read everything
        assert c.until_close() == [LINE_TOO_LONG]
    gw.assert_alive()


def test_line_too_long_no_newline(gw):
    """Bytes without any line end: refused once they pass the limit."""
    with gw.client() as c:
        try:
            c.send('y' * (4 * MAX_LINE))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.until_close() == [LINE_TOO_LONG]


def test_line_too_long_dripped(gw):
    with gw.client() as c:
        try:
            for _ in range(20):
                c.send('y' * 1024)
                time.sleep(0.005)
            c.send('\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.until_close() == [LINE_TOO_LONG]


def test_authenticate_continuation_too_long(gw):
    with gw.client() as c:
        assert c.cmd('a AUTHENTICATE PLAIN') == [PLAIN_PROMPT]
        try:
            c.send('A' * (MAX_LINE + 200) + '\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.until_close() == [LINE_TOO_LONG]
    gw.assert_alive()


def test_authenticate_login_continuation_too_long(gw):
    with gw.client() as c:
        assert c.cmd('a AUTHENTICATE LOGIN') == [USER_PROMPT]
        try:
            c.send('QUFB' * 4000 + '\r\n')  # 16000 octets
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.until_close() == [LINE_TOO_LONG]
    gw.assert_alive()


# ------------------------------------------------------------ session limits

@pytest.mark.parametrize('when', ['greeting', 'after-command', 'mid-authenticate',
                                  'mid-literal', 'mid-line'])
def test_idle_timeout(start_gw, when):
    gw = start_gw(listener={'idle_timeout': '2'})
    with gw.client() as c:
        if when == 'after-command':
            assert c.cmd('a NOOP') == [t('a', NOOP_OK)]
        elif when == 'mid-authenticate':
            assert c.cmd('a AUTHENTICATE LOGIN') == [USER_PROMPT]
        elif when == 'mid-literal':
            assert c.cmd('a LOGIN {5}') == [CONTINUE]
        elif when == 'mid-line':
            c.send('a LOG')
        t0 = time.monotonic()
        # the upper bound is the read's 30 s, generous for a busy machine
        assert c.until_close(timeout=30) == [IDLE_BYE]
        elapsed = time.monotonic() - t0
        # not before idle_timeout; the timer was armed at the last read, a
        # little before t0, and GLib's whole-second timers round, so 0.9 s
        assert elapsed >= 0.9, elapsed


def test_idle_timer_restarts_on_each_command(start_gw):
    """Five NOOPs a second apart outlive an idle_timeout of 3 s: each command
    restarts the timer.  Each pause leaves 2 s for the NOOP's round trip."""
    gw = start_gw(listener={'idle_timeout': '3'})
    with gw.client() as c:
        for i in range(5):
            time.sleep(1)
            assert c.cmd('a%d NOOP' % i) == [t('a%d' % i, NOOP_OK)]
        assert c.until_close(timeout=30) == [IDLE_BYE]


BAD_COMMANDS = [
    ('a FOO', [t('a', NOT_ALLOWED)]),
    ('+ NOOP', [INVALID_TAG]),
    ('a', [t('a', MISSING_COMMAND)]),
    ('a LOGIN', [t('a', SYNTAX)]),
    ('a SELECT INBOX', [t('a', NOT_ALLOWED)]),
]


def _bad_cmd(c, line, expected):
    c.line(line)
    if expected[0].startswith('* '):
        return [c.read_line()]
    return c.response(line.split(' ', 1)[0])


@pytest.mark.parametrize('mix', ['not-allowed-only', 'all-kinds', 'with-authenticate-bads'])
def test_too_many_bad_commands(gw, mix):
    if mix == 'not-allowed-only':
        cmds = [BAD_COMMANDS[0]] * 10
    elif mix == 'all-kinds':
        cmds = BAD_COMMANDS * 2
    else:
        cmds = BAD_COMMANDS[:4] * 2
    with gw.client() as c:
        for i, (line, expected) in enumerate(cmds):
            assert _bad_cmd(c, line, expected) == expected, 'BAD %d' % (i + 1)
        if mix == 'with-authenticate-bads':
            # the 9th and 10th BAD: a cancelled and an undecodable AUTHENTICATE
            assert c.cmd('c AUTHENTICATE PLAIN') == [PLAIN_PROMPT]
            c.line('*')
            assert c.response('c') == [t('c', CANCELLED)], 'BAD 9'
            assert c.cmd('d AUTHENTICATE PLAIN %%%%') == [t('d', UNDECODABLE)], 'BAD 10'
        # the 10th BAD is followed by BYE and the close, unasked
        try:
            r = c.until_close(timeout=15)
        except AssertionError as e:
            c.line('x NOOP')
            raise AssertionError('no BYE/close after the 10th BAD (%s); an 11th command '
                                 '(x NOOP) got %r' % (e, c.response('x'))) from None
        assert r == [TOO_MANY_BAD]


def test_bad_below_the_limit_is_fine(gw):
    with gw.client() as c:
        for i in range(9):
            assert c.cmd('a%d FOO' % i) == [t('a%d' % i, NOT_ALLOWED)]
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
        c.line('c LOGOUT')
        assert c.until_close() == ['* BYE Logging out', 'c OK LOGOUT completed.']


def test_shutdown_tells_clients(gw):
    waiting = gw.client()
    after_cmd = gw.client()
    mid_auth = gw.client()
    mid_literal = gw.client()
    clients = (waiting, after_cmd, mid_auth, mid_literal)
    try:
        assert after_cmd.cmd('a NOOP') == [t('a', NOOP_OK)]
        assert mid_auth.cmd('a AUTHENTICATE LOGIN') == [USER_PROMPT]
        assert mid_literal.cmd('a LOGIN {5}') == [CONTINUE]
        gw.daemon.signal(signal.SIGTERM)
        got = [c.until_close() for c in clients]
        assert got == [[SHUTDOWN]] * len(clients)
        assert gw.daemon.proc.wait(15) == 0, gw.daemon.text()[-3000:]
    finally:
        for c in clients:
            c.close()


def test_stop_refuses_new_connections_while_proxied_ones_drain(gw_up):
    """SIGTERM: the listening socket stops listening at once (a balancer or
    a client is refused and goes elsewhere, instead of waiting in the
    backlog until shutdown_timeout), while a proxied session goes on."""
    c = gw_up.client()
    try:
        c.secret(USERS['alice'])
        assert c.cmd('a LOGIN alice %s' % USERS['alice']) == [t('a', BACKEND_LOGIN_OK)]
        mark = len(gw_up.daemon.text())
        gw_up.daemon.signal(signal.SIGTERM)
        gw_up.daemon.wait_log('stopping: 1 session open')

        def refused():
            try:
                socket.create_connection(('127.0.0.1', gw_up.port), timeout=5).close()
                return False
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:
                # caught half-way in the backlog as the socket stopped
                # listening: reset, which a balancer takes as well; the
                # next try shows the refusal
                return False
        wait_for(refused, what='the listener to refuse connections')
        # the proxied session is still served
        assert c.cmd('b NOOP') == ['b OK fake NOOP']
        assert gw_up.daemon.proc.poll() is None
        assert 'session end' not in gw_up.daemon.text()[mark:]
        c.line('c LOGOUT')
        assert c.until_close() == ['* BYE fake bye', 'c OK fake LOGOUT']
        assert gw_up.daemon.proc.wait(30) == 0, gw_up.daemon.text()[-3000:]
    finally:
        c.close()


# ------------------------------------------------------------ leniency

def test_lower_case_commands(gw_up):
    with gw_up.client() as c:
        assert c.cmd('a capability') == ['* CAPABILITY ' + CAPS, 'a OK Capability completed.']
        assert c.cmd('b noop') == [t('b', NOOP_OK)]
        assert c.cmd('c id nil') == [ID_REPLY, 'c OK ID completed.']
        assert c.cmd('d select INBOX') == [t('d', NOT_ALLOWED)]
        assert c.cmd('e starttls') == ['e NO TLS not available.']
        assert c.cmd('f authenticate login') == [USER_PROMPT]
        c.line('*')
        assert c.response('f') == [t('f', CANCELLED)]
        assert c.cmd('g Authenticate Cram-Md5') == [t('g', UNSUPPORTED)]
        assert c.cmd('h authenticate plain') == [PLAIN_PROMPT]
        c.line('*')
        assert c.response('h') == [t('h', CANCELLED)]
        c.secret('wrong-lower')
        assert c.cmd('i login alice wrong-lower') == [t('i', AUTH_FAILED)]
        c.secret(USERS['alice'])
        assert c.cmd('j login alice %s' % USERS['alice']) == [t('j', BACKEND_LOGIN_OK)]


def test_lower_case_mechanism_ir(gw_up):
    with gw_up.client() as c:
        c.secret(plain_blob('bob', USERS['bob']))
        assert c.cmd('a authenticate plain %s' % plain_blob('bob', USERS['bob'])) \
            == [t('a', BACKEND_LOGIN_OK)]


def test_lower_case_logout(gw):
    with gw.client() as c:
        c.line('a logout')
        assert c.until_close() == ['* BYE Logging out', 'a OK LOGOUT completed.']


def test_bare_lf(gw_up):
    with gw_up.client() as c:
        assert c.cmd('a NOOP', eol='\n') == [t('a', NOOP_OK)]
        assert c.cmd('b CAPABILITY', eol='\n') == ['* CAPABILITY ' + CAPS,
                                                   'b OK Capability completed.']
        assert c.cmd('c FOO', eol='\n') == [t('c', NOT_ALLOWED)]
        assert c.cmd('d AUTHENTICATE LOGIN', eol='\n') == [USER_PROMPT]
        c.line(b64('alice'), eol='\n')
        assert c.response('d') == [PASS_PROMPT]
        c.secret('wrong-lf')
        c.line(b64('wrong-lf'), eol='\n')
        assert c.response('d') == [t('d', AUTH_FAILED)]
        assert c.cmd('e LOGIN {5}', eol='\n') == [CONTINUE]
        c.secret(USERS['alice'])
        c.send('alice %s\n' % imap_quote(USERS['alice']))
        assert c.response('e') == [t('e', BACKEND_LOGIN_OK)]


def test_bare_lf_logout(gw):
    with gw.client() as c:
        c.send('a NOOP\nb ID NIL\nc LOGOUT\n')
        assert c.until_close() == [t('a', NOOP_OK), ID_REPLY, 'b OK ID completed.',
                                   '* BYE Logging out', 'c OK LOGOUT completed.']


# ------------------------------------------------------------ pipelining

def test_pipelined_group(gw):
    with gw.client() as c:
        c.send('a NOOP\r\nb CAPABILITY\r\nc ID NIL\r\n')
        assert c.response('a') == [t('a', NOOP_OK)]
        assert c.response('b') == ['* CAPABILITY ' + CAPS, 'b OK Capability completed.']
        assert c.response('c') == [ID_REPLY, 'c OK ID completed.']
        c.nothing_pending()


def test_pipelined_thousand_noops(gw):
    with gw.client() as c:
        c.send(''.join('n%d NOOP\r\n' % i for i in range(1000)))
        for i in range(1000):
            assert c.response('n%d' % i) == [t('n%d' % i, NOOP_OK)], i
        c.nothing_pending()


def test_pipelined_thousand_bad_commands(gw):
    with gw.client() as c:
        try:
            c.send('a FOO\r\n' * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.until_close() == [t('a', NOT_ALLOWED)] * 10 + [TOO_MANY_BAD]
    gw.assert_alive()


def test_pipelined_failed_login_then_commands(gw_up):
    with gw_up.client() as c:
        c.secret('bad-pipelined')
        c.send('a LOGIN alice bad-pipelined\r\nb NOOP\r\nc SELECT INBOX\r\n')
        assert c.response('a') == [t('a', AUTH_FAILED)]
        assert c.response('b') == [t('b', NOOP_OK)]
        assert c.response('c') == [t('c', NOT_ALLOWED)]


def test_pipelined_backend_down_then_commands(gw):
    with gw.client() as c:
        c.secret(USERS['alice'])
        c.send('a LOGIN alice %s\r\nb NOOP\r\nc LOGOUT\r\n' % USERS['alice'])
        assert c.until_close() == [t('a', TEMPFAIL), t('b', NOOP_OK), '* BYE Logging out',
                                   'c OK LOGOUT completed.']


@pytest.mark.parametrize('how', ['login', 'literal+', 'authenticate-ir'])
def test_pipelined_after_login_goes_to_backend(gw_up, backend, how):
    """What follows a good LOGIN in the same send() is the backend's."""
    with gw_up.client() as c:
        c.secret(USERS['bob'])
        if how == 'login':
            first = 'a LOGIN bob %s\r\n' % imap_quote(USERS['bob'])
        elif how == 'literal+':
            first = 'a LOGIN {3+}\r\nbob {%d+}\r\n%s\r\n' % (len(USERS['bob']), USERS['bob'])
        else:
            first = 'a AUTHENTICATE PLAIN %s\r\n' % plain_blob('bob', USERS['bob'])
        c.send(first + 'b SELECT INBOX\r\nc FETCH 1 (FLAGS)\r\nd LOGOUT\r\n')
        assert c.until_close() == [t('a', BACKEND_LOGIN_OK), 'b OK fake SELECT INBOX',
                                   'c OK fake FETCH 1 (FLAGS)', '* BYE fake bye',
                                   'd OK fake LOGOUT']
    assert backend.after_login == ['b SELECT INBOX', 'c FETCH 1 (FLAGS)', 'd LOGOUT']


def test_pipelined_many_noops_read_while_sending(gw):
    n = 20000
    with gw.client() as c:
        sender = threading.Thread(target=c.send, args=('n NOOP\r\n' * n,), daemon=True)
        sender.start()
        for i in range(n):
            assert c.read_line() == t('n', NOOP_OK), i
        sender.join(10)
        assert c.cmd('z NOOP') == [t('z', NOOP_OK)]


def test_command_split_across_sends(gw):
    with gw.client() as c:
        for ch in 'a CAPABILITY\r\n':
            c.send(ch)
            time.sleep(0.01)
        assert c.response('a') == ['* CAPABILITY ' + CAPS, 'a OK Capability completed.']
        c.send('b NOOP\r')
        time.sleep(0.2)
        c.send('\nc NO')
        assert c.response('b') == [t('b', NOOP_OK)]
        c.send('OP\r\n')
        assert c.response('c') == [t('c', NOOP_OK)]
        c.nothing_pending()


# ------------------------------------------------------------ bad input

@pytest.mark.parametrize('data', [b'a NO\0OP\r\n', b'\0\r\n', b'a NOOP\0\r\n',
                                  b'a ID ("name" "x\0y")\r\n', b'a LOGIN alice p\0w\r\n',
                                  b'\0\0\0\0\0\0\0\0\r\n'],
                         ids=['inside', 'alone', 'after', 'in-quoted', 'in-login', 'many'])
def test_nul_bytes(gw, data):
    with gw.client() as c:
        c.send(data)
        r = c.read_line()
        assert r.startswith('a BAD ') or r.startswith('* BAD ') or r.startswith('* BYE'), r
        if r.startswith('* BYE'):
            assert c.until_close() == []
        else:
            assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
    gw.assert_alive()


def test_binary_garbage(gw):
    with gw.client() as c:
        c.send(b'a ' + bytes(b for b in range(256) if b not in (10, 13)) + b'\r\n')
        r = c.read_line()
        assert r.startswith('a BAD ') or r.startswith('* BAD ') or r.startswith('* BYE'), r
    gw.assert_alive()


def test_silent_client(start_gw):
    gw = start_gw(listener={'idle_timeout': '2'})
    with gw.client(greet=False) as c:
        assert c.read_line() == GREETING
        assert c.until_close(timeout=30) == [IDLE_BYE]
    gw.assert_alive()


@pytest.mark.parametrize('where', ['mid-literal', 'mid-literal-bytes', 'mid-literal+',
                                   'after-user', 'after-authenticate-plain', 'mid-line',
                                   'at-greeting'])
def test_disconnect_mid_login(gw, where):
    for _ in range(10):
        c = gw.client()
        if where == 'mid-literal':
            c.cmd('a LOGIN {5}')
        elif where == 'mid-literal-bytes':
            c.cmd('a LOGIN alice {20}')
            c.send('secret-')
        elif where == 'mid-literal+':
            c.send('a LOGIN alice {20+}\r\nsecret-')
        elif where == 'after-user':
            c.cmd('a AUTHENTICATE LOGIN')
            c.line(b64('alice'))
            c.response('a')
        elif where == 'after-authenticate-plain':
            c.cmd('a AUTHENTICATE PLAIN')
        elif where == 'mid-line':
            c.send('a LOGIN alice ' + USERS['alice'][:4])
        c.close()
    gw.assert_alive()


def test_disconnect_during_verification(gw_up):
    """Gone while the login is being checked and the backend joined."""
    for i in range(10):
        c = gw_up.client()
        if i % 2:
            c.secret(USERS['alice'])
            c.send('a LOGIN alice %s\r\n' % USERS['alice'])
        else:
            c.send('a AUTHENTICATE PLAIN %s\r\n' % plain_blob('bob', USERS['bob']))
        c.close()
    gw_up.assert_alive()


def test_reset_by_client(gw):
    for _ in range(5):
        c = gw.client()
        c.cmd('a AUTHENTICATE LOGIN')
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\1\0\0\0\0\0\0\0')
        c.close()  # RST
    gw.assert_alive()


def test_many_concurrent_sessions(gw):
    clients = [gw.client() for _ in range(50)]
    try:
        for c in clients:
            c.line('a ID NIL')
        for c in clients:
            assert c.response('a') == [ID_REPLY, 'a OK ID completed.']
        for c in clients:
            c.line('b LOGOUT')
        for c in clients:
            assert c.until_close() == ['* BYE Logging out', 'b OK LOGOUT completed.']
    finally:
        for c in clients:
            c.close()
    gw.assert_alive()


def test_bad_input_sequence_leaves_daemon_serving(start_gw, backend):
    """All the bad input against one daemon; then it still serves, and the
    log holds none of the passwords."""
    gw = start_gw(listener={'idle_timeout': '2'}, backend_port=backend.port)
    # a 1 MB line
    with gw.client() as c:
        try:
            c.send('a NOOP ' + 'x' * 1024 * 1024 + '\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.until_close() == [LINE_TOO_LONG]
    # a 4 GB literal announced
    with gw.client() as c:
        c.line('a LOGIN alice {4294967296}')
        assert c.until_close() == [LITERAL_TOO_LONG]
    # NUL bytes
    with gw.client() as c:
        c.send(b'a NO\0OP\r\n')
        r = c.read_line()
        assert r.startswith('a BAD ') or r.startswith('* BYE'), r
    # 1,000 pipelined bad commands
    with gw.client() as c:
        try:
            c.send('a FOO\r\n' * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.until_close() == [t('a', NOT_ALLOWED)] * 10 + [TOO_MANY_BAD]
    # an idle client
    with gw.client() as c:
        assert c.until_close(timeout=30) == [IDLE_BYE]
    # clients gone mid-literal and mid-login
    for _ in range(5):
        c = gw.client()
        c.secret(USERS['bob'])
        assert c.cmd('a LOGIN bob {%d}' % len(USERS['bob'])) == [CONTINUE]
        c.send(USERS['bob'][:5])
        c.close()
        c = gw.client()
        c.send('a LOGIN alice %s\r\n' % USERS['alice'])
        c.close()
        c = gw.client()
        c.send('a AUTHENTICATE PLAIN %s\r\n' % plain_blob('carol', USERS['carol']))
        c.close()
    # the daemon still serves: a failed and a good login
    with gw.client() as c:
        assert login_exchange(c, 'login', 'bob', 'bad-' + USERS['bob']) == [t('a', AUTH_FAILED)]
        assert login_exchange(c, 'plain', 'bob', USERS['bob'], tag='b') \
            == [t('b', BACKEND_LOGIN_OK)]
        assert c.cmd('c NOOP') == ['c OK fake NOOP']
    gw.assert_alive()
    gw.assert_no_secrets()


# ------------------------------------------------------------ valgrind

def test_session_under_valgrind(start_gw, backend):
    gw = start_gw(backend_port=backend.port, valgrind=True, listener={'idle_timeout': '10'})
    with gw.client() as c:
        assert c.cmd('a CAPABILITY') == ['* CAPABILITY ' + CAPS, 'a OK Capability completed.']
        assert c.cmd('b NOOP') == [t('b', NOOP_OK)]
        assert c.cmd('c ID ("name" "x")') == [ID_REPLY, 'c OK ID completed.']
        assert c.cmd('d SELECT INBOX') == [t('d', NOT_ALLOWED)]
        assert c.cmd('e STARTTLS') == ['e NO TLS not available.']
        assert c.cmd('f AUTHENTICATE CRAM-MD5') == [t('f', UNSUPPORTED)]
        assert c.cmd('g LOGIN') == [t('g', SYNTAX)]
        c.line('+ NOOP')
        assert c.read_line() == INVALID_TAG
        assert login_exchange(c, 'plain-ir', 'alice', 'bad-vg', tag='h') == [t('h', AUTH_FAILED)]
        assert c.cmd('i AUTHENTICATE LOGIN') == [USER_PROMPT]
        c.line('*')
        assert c.response('i') == [t('i', CANCELLED)]
        assert c.cmd('j AUTHENTICATE PLAIN %%%%') == [t('j', UNDECODABLE)]
        c.line('z LOGOUT')
        assert c.until_close() == ['* BYE Logging out', 'z OK LOGOUT completed.']
    with gw.client() as c:
        c.send(b'k NO\0OP\r\n')
        r = c.read_line()
        assert r.startswith('k BAD ') or r.startswith('* BYE'), r
    with gw.client() as c:
        c.send('a NOOP ' + 'x' * 10000 + '\r\n')
        assert c.until_close() == [LINE_TOO_LONG]
    with gw.client() as c:
        c.line('a LOGIN {9000}')
        assert c.until_close() == [LITERAL_TOO_LONG]
    with gw.client() as c:
        c.cmd('a LOGIN {5}')
        c.send('ali')
    with gw.client() as c:
        assert login_exchange(c, 'login-literal', 'alice', USERS['alice']) \
            == [t('a', BACKEND_LOGIN_OK)]
        assert c.cmd('b NOOP') == ['b OK fake NOOP']
        c.line('c LOGOUT')
        assert c.until_close() == ['* BYE fake bye', 'c OK fake LOGOUT']
    with gw.client() as c:
        assert login_exchange(c, 'login-quoted', 'carol', USERS['carol']) == [t('a', AUTH_FAILED)]
    # backend down for another login: the tempfail path
    backend.close()
    with gw.client() as c:
        assert login_exchange(c, 'login', 'bob', USERS['bob']) == [t('a', TEMPFAIL)]
        waiting = gw.client()
    try:
        gw.daemon.signal(signal.SIGTERM)
        assert waiting.until_close(timeout=30) == [SHUTDOWN]
        rc = gw.daemon.proc.wait(60)
    finally:
        waiting.close()
    assert rc == 0, gw.daemon.text()[-5000:]
    assert '==' not in gw.daemon.text(), gw.daemon.text()[-5000:]
