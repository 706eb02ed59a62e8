"""POP3 through gatehoused: the reply table row by row from raw sockets (CRLF
and bare LF, lower case, pipelined, one byte at a time), every way of logging
in (USER/PASS, AUTH PLAIN and AUTH LOGIN with and without an initial
response, "*" to cancel), STLS and implicit TLS, the limits (line length,
errors, failed logins, idle time, connections), and then the backend side
against a real Dovecot POP3 (passthrough and master logins, the client's
address forwarded with XCLIENT, TLS to the backend, a backend that is down or
refuses) and scripted servers for what Dovecot never does (no CAPA, no SASL,
[SYS/TEMP] and [IN-USE] answers, an -ERR greeting, a long login that needs
the "+" continuation).  Real clients last: Python's poplib, curl and
fetchmail over POP3 and POP3S.

The gateway checks the password itself, then logs in to Dovecot; from the
backend's +OK to the login on, every byte the client gets is Dovecot's.
Dovecot's users are alice, bob, carol (passwords <user>pw) plus this module's
dave, whose password holds spaces; the gateway also knows erin, whom Dovecot
does not."""
import base64
import os
import poplib
import re
import shutil
import subprocess
import time

import pytest

from backends import MASTER_PASSWORD, MASTER_USER, USERS, Dovecot, running
from lib.clients import Pop3Client, assert_no_secrets, b64, plain_blob
from lib.gateway import ctl
from lib.net import TIMEOUT, free_port
from lib.paths import SRCDIR
from lib.pki import client_context
from lib.proc import make_tmpdir
from lib.scripted import Server, silent

DAVE, DAVE_PW = 'dave', 'two words  and more'
GW_USERS = dict(USERS, dave=DAVE_PW, erin='erinpw')

GREETING = '+OK gw.test ready.'
AUTH_FAILED = '-ERR [AUTH] Authentication failed.'
TEMPFAIL = '-ERR [SYS/TEMP] Temporary authentication failure, try again later.'
PLAINTEXT_REFUSED = '-ERR [AUTH] Plaintext authentication is not allowed without TLS.'
CAPA_BASE = ['CAPA', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING']
CAPA_PLAIN = CAPA_BASE + ['USER', 'SASL PLAIN LOGIN']
DOVECOT_LOGGED_IN = '+OK Logged in.'

EOLS = pytest.mark.parametrize('eol', ['\r\n', '\n'], ids=['crlf', 'lf'])


# ---------- this module's Dovecot ----------

class Pop3Dovecot(Dovecot):
    """backends.Dovecot plus the user dave, and deliver() into a maildir."""

    def write_config(self):
        super().write_config()
        with open(self.dir / 'users', 'a') as f:
            f.write('%s:{PLAIN}%s::::::\n' % (DAVE, DAVE_PW))

    def deliver(self, user, subject):
        """A message straight into the user's maildir (as Dovecot's own
        delivery would leave it); returns its bytes."""
        msg = ('From: sender@example.com\r\nTo: %s@example.com\r\nSubject: %s\r\n\r\n'
               'Hello %s.\r\n.a line that starts with a dot\r\n' % (user, subject, user)).encode()
        maildir = self.dir / 'mail' / user / 'Maildir'
        for sub in ('new', 'cur', 'tmp'):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        name = maildir / 'new' / ('%d.%s.gh-test' % (time.time_ns(), subject.replace(' ', '_')))
        name.write_bytes(msg)
        for dirpath, _, files in os.walk(self.dir / 'mail' / user):
            shutil.chown(dirpath, 'nobody', 'nogroup')
            for f in files:
                shutil.chown(os.path.join(dirpath, f), 'nobody', 'nogroup')
        return msg


@pytest.fixture(scope='module')
def dovecot():
    with running(Pop3Dovecot(relay_port=free_port())) as dc:
        yield dc


@pytest.fixture(scope='module')
def mailbox(dovecot):
    """carol's mailbox holds one message (its bytes)."""
    return dovecot.deliver('carol', 'hello carol')


# ---------- the gateway ----------

@pytest.fixture
def gateway(gateways):
    """gateway(listeners, backends, users=None, tls=None, gatehouse=None) ->
    a running gatehoused, protocol pop3 unless given."""
    def start(listeners, backends, users=None, **kw):
        return gateways.start(listeners, backends, users=GW_USERS if users is None else users,
                              protocol='pop3', **kw)
    return start


def dc_backend(dovecot, **extra):
    keys = dict(protocol='pop3', servers='127.0.0.1:%d' % dovecot.pop3_port, login='passthrough')
    keys.update(extra)
    return keys


@pytest.fixture
def gw(gateway, dovecot):
    """The usual gateway: listener pop3 -> Dovecot, login = passthrough."""
    return gateway({'pop3': dict(backend='dc')}, {'dc': dc_backend(dovecot)})


def client(gw, listener=None, **kw):
    c = Pop3Client(gw.port(listener), gw=gw, **kw)
    c.expect(None, GREETING)
    return c


def logged_in_session_works(c):
    """After a login: STAT and QUIT are Dovecot's."""
    c.expect('STAT', re.compile(r'\+OK \d+ \d+'))
    c.expect('QUIT', '+OK Logging out.')
    assert c.eof(), c.ctx()


def server_tls(pki):
    return dict(certificate=pki.server_crt, key=pki.server_key)


# ---------- Dovecot alone (tell a broken fixture from a broken gateway) ----------

def test_backend_dovecot_direct(dovecot):
    p = poplib.POP3('127.0.0.1', dovecot.pop3_port, timeout=TIMEOUT)
    try:
        assert p.user('alice').startswith(b'+OK')
        assert p.pass_('alicepw') == b'+OK Logged in.'
        p.stat()
    finally:
        p.quit()


# ---------- the reply table, before login ----------

@EOLS
def test_replies_before_login(gw, eol):
    c = client(gw, eol=eol)
    try:
        assert c.capa() == CAPA_PLAIN
        c.expect('NOOP', '+OK')
        c.expect('noop', '+OK')
        c.line('AUTH')
        assert c.read_line() == '+OK' and c.body() == ['PLAIN', 'LOGIN'], c.ctx()
        c.expect('AUTH CRAM-MD5', '-ERR Unsupported authentication mechanism.')
        c.expect('AUTH PLAIN a b', '-ERR Syntax: AUTH mechanism [initial-response].')
        c.expect('STAT', '-ERR Command not allowed before login.')
        c.expect('retr 1', '-ERR Command not allowed before login.')
        c.expect('APOP alice 0123456789abcdef0123456789abcdef',
                 '-ERR APOP is not supported; use USER/PASS or AUTH.')
        c.expect('XYZZY', '-ERR Unknown command.')
        c.expect('PASS alicepw', '-ERR No user name given (USER first).')
        c.expect('USER', '-ERR Syntax: USER name.')
        c.expect('STLS', '-ERR TLS not available.')
        c.expect('QUIT', '+OK Logging out.')
        assert c.eof(), c.ctx()
    finally:
        c.close()


@EOLS
def test_user_pass_login(gw, dovecot, eol):
    mark = dovecot.mark()
    c = client(gw, eol=eol)
    try:
        c.secret('alicepw')
        assert c.user_pass('alice', 'wrong') == AUTH_FAILED
        # a failed PASS forgets the USER (RFC 1939 7: start again with USER)
        c.expect('PASS alicepw', '-ERR No user name given (USER first).')
        assert c.user_pass('alice', 'alicepw') == DOVECOT_LOGGED_IN
        logged_in_session_works(c)
    finally:
        c.close()
    dovecot.wait_log(r'Login: user=<alice>, method=PLAIN', mark)
    gw.daemon.wait_log('user="alice" mech=LOGIN-CMD tls=no module=users(file) verdict=ok')
    assert_no_secrets(gw.log(), GW_USERS.items())


def test_lower_case_and_spaces(gw):
    c = client(gw, eol='\n')
    try:
        c.expect('user   bob  ', '+OK')
        assert c.cmd('pass bobpw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()


def test_password_with_spaces(gw):
    """PASS takes the rest of the line as sent, spaces and all."""
    c = client(gw)
    try:
        assert c.user_pass(DAVE, DAVE_PW.replace('  ', ' ')) == AUTH_FAILED
        assert c.user_pass(DAVE, ' ' + DAVE_PW) == AUTH_FAILED
        assert c.user_pass(DAVE, DAVE_PW) == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()


@EOLS
def test_auth_plain(gw, dovecot, eol):
    c = client(gw, eol=eol)
    try:
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'wrong'), AUTH_FAILED)
        c.expect('AUTH PLAIN', '+ ')
        c.expect('*', '-ERR Authentication cancelled.')
        c.expect('AUTH PLAIN', '+ ')
        c.expect('not base64!', '-ERR Cannot decode response.')
        c.expect('AUTH PLAIN =', '-ERR Cannot decode response.')
        c.expect('auth plain', '+ ')
        assert c.cmd(plain_blob('alice', 'alicepw')) == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    c = client(gw)
    try:
        assert c.cmd('AUTH PLAIN ' + plain_blob('bob', 'bobpw')) == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()


def test_auth_plain_authzid(gw):
    c = client(gw)
    try:
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw', authzid='bob'), AUTH_FAILED)
        assert c.cmd('AUTH PLAIN ' + plain_blob('alice', 'alicepw', authzid='alice')) \
            == DOVECOT_LOGGED_IN, c.ctx()
    finally:
        c.close()


@EOLS
def test_auth_login(gw, eol):
    c = client(gw, eol=eol)
    try:
        c.expect('AUTH LOGIN', '+ VXNlcm5hbWU6')
        c.expect(b64('carol'), '+ UGFzc3dvcmQ6')
        c.expect(b64('wrong'), AUTH_FAILED)
        c.expect('AUTH LOGIN ' + b64('carol'), '+ UGFzc3dvcmQ6')
        c.expect('*', '-ERR Authentication cancelled.')
        c.expect('AUTH LOGIN ' + b64('carol'), '+ UGFzc3dvcmQ6')
        assert c.cmd(b64('carolpw')) == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()


def test_pipelined(gw):
    """RFC 2449 6.6: commands sent in one write are answered in order, the
    ones after the login by Dovecot."""
    c = client(gw)
    try:
        c.send('CAPA\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS alicepw\r\n'
               'STAT\r\nNOOP\r\nQUIT\r\n')
        assert c.read_line() == '+OK Capability list follows.' and c.body() == CAPA_PLAIN
        assert [c.read_line() for _ in range(6)] == [
            '+OK', AUTH_FAILED, '+OK', DOVECOT_LOGGED_IN, '+OK 0 0', '+OK'], c.ctx()
        c.expect(None, '+OK Logging out.')
        assert c.eof(), c.ctx()
    finally:
        c.close()


def test_one_byte_at_a_time(gw):
    c = client(gw, nodelay=True)
    try:
        for b in b'USER bob\r\nPASS bobpw\r\n':
            c.send(bytes([b]))
            time.sleep(0.002)
        assert c.read_line() == '+OK'
        assert c.read_line() == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()


# ---------- limits and hostile input ----------

def test_line_too_long(gw):
    """A command line over 255 octets (RFC 2449 4) is refused and counted;
    an AUTH line may be longer; the session goes on."""
    c = client(gw)
    try:
        c.expect('USER ' + 'x' * 251, '-ERR Line too long.')
        c.expect('NOOP', '+OK')
        # 100 KB without a line end: dropped as it comes, answered once
        c.send(b'Y' * 100000)
        c.expect(None, '-ERR Line too long.')
        c.send(b'\r\n')
        c.expect('NOOP', '+OK')
        # exactly 255 with CRLF is fine
        c.expect('USER ' + 'u' * 248, '+OK')
        long_pw = 'p' * 300
        c.expect('AUTH PLAIN ' + plain_blob('alice', long_pw), AUTH_FAILED)
    finally:
        c.close()


def test_invalid_bytes(gw):
    c = client(gw)
    try:
        c.expect(b'US\0ER alice', '-ERR Invalid characters in command.')
        c.expect(b'USER al\rice', '-ERR Invalid characters in command.')
        c.expect(b'\xff\xfe\x00garbage', '-ERR Invalid characters in command.')
        c.expect('NOOP', '+OK')
    finally:
        c.close()


def test_too_many_errors(gw):
    c = client(gw)
    try:
        for _ in range(9):
            c.expect('BOGUS', '-ERR Unknown command.')
        c.expect('BOGUS', '-ERR Unknown command.')
        c.expect(None, '-ERR Too many invalid commands.')
        assert c.eof(), c.ctx()
    finally:
        c.close()


def test_too_many_auth_failures(gw):
    c = client(gw)
    try:
        assert c.user_pass('alice', 'wrong1') == AUTH_FAILED
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'wrong2'), AUTH_FAILED)
        assert c.user_pass('bob', 'wrong3') == AUTH_FAILED
        c.expect(None, '-ERR [AUTH] Too many authentication failures.')
        assert c.eof(), c.ctx()
    finally:
        c.close()


def test_idle_timeout_and_max_connections(gateway, dovecot):
    gw = gateway({'pop3': dict(backend='dc', idle_timeout=1, max_connections=1)},
                 {'dc': dc_backend(dovecot)})
    first = client(gw)
    try:
        second = Pop3Client(gw.port(), gw=gw)
        try:
            second.expect(None, '-ERR [SYS/TEMP] Too many connections, try again later.')
            assert second.eof(), second.ctx()
        finally:
            second.close()
        first.expect(None, '-ERR Disconnected for inactivity.')
        assert first.eof(), first.ctx()
    finally:
        first.close()


def test_shutdown_notice(gateway, dovecot):
    gw = gateway({'pop3': dict(backend='dc')}, {'dc': dc_backend(dovecot)})
    c = client(gw)
    try:
        gw.daemon.proc.send_signal(15)
        c.expect(None, '-ERR [SYS/TEMP] Server shutting down.')
        assert c.eof(), c.ctx()
    finally:
        c.close()


def test_plaintext_auth_policy(gateway, dovecot, pki):
    """plaintext_auth = tls on a STLS listener: no USER or SASL before TLS,
    and USER/AUTH are refused; STLS, then the list holds them and no STLS;
    what was said before TLS (USER) is forgotten."""
    gw = gateway({'pop3': dict(backend='dc', tls='starttls', plaintext_auth='tls')},
                 {'dc': dc_backend(dovecot)}, tls=server_tls(pki),
                 gatehouse={'trusted_networks': '192.0.2.0/24'})
    c = client(gw)
    try:
        assert c.capa() == CAPA_BASE + ['STLS']
        c.expect('USER alice', PLAINTEXT_REFUSED)
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), PLAINTEXT_REFUSED)
        c.line('AUTH')
        assert c.read_line() == '+OK' and c.body() == [], c.ctx()
        c.expect('STLS', '+OK Begin TLS negotiation now.')
        c.starttls(client_context(pki))
        assert c.capa() == CAPA_PLAIN
        c.expect('STLS', '-ERR TLS already active.')
        assert c.user_pass('alice', 'alicepw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    gw.wait_since(0, r'user="alice" mech=LOGIN-CMD tls=TLS1\.3/\S+ .*verdict=ok')


def test_stls_forgets_user(gateway, dovecot, pki):
    gw = gateway({'pop3': dict(backend='dc', tls='starttls', plaintext_auth='always')},
                 {'dc': dc_backend(dovecot)}, tls=server_tls(pki))
    c = client(gw)
    try:
        c.expect('USER alice', '+OK')
        # what comes after STLS in the same write is dropped (RFC 2595 4)
        c.send('STLS\r\nPASS alicepw\r\n')
        c.expect(None, '+OK Begin TLS negotiation now.')
        c.starttls(client_context(pki))
        c.expect('PASS alicepw', '-ERR No user name given (USER first).')
    finally:
        c.close()


def test_implicit_tls(gateway, dovecot, pki):
    gw = gateway({'pop3s': dict(backend='dc', tls='implicit', plaintext_auth='tls')},
                 {'dc': dc_backend(dovecot)}, tls=server_tls(pki),
                 gatehouse={'trusted_networks': '192.0.2.0/24'})
    c = Pop3Client(gw.port(), gw=gw, tls=client_context(pki))
    try:
        c.expect(None, GREETING)
        assert c.capa() == CAPA_PLAIN
        assert c.user_pass('bob', 'bobpw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()


# ---------- the backend side ----------

def test_forward_client_xclient(gateway, dovecot):
    """forward_client = yes: Dovecot (which says [XCLIENT] to its trusted
    networks) logs the client's own address and port; = no: ours."""
    gw = gateway({'fwd': dict(backend='fwd'), 'nofwd': dict(backend='nofwd')},
                 {'fwd': dc_backend(dovecot, forward_client='yes'),
                  'nofwd': dc_backend(dovecot, forward_client='no')})
    mark = dovecot.mark()
    c = client(gw, 'fwd', source='127.0.0.2')
    try:
        assert c.user_pass('alice', 'alicepw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    line = dovecot.wait_log(r'Login: user=<alice>, method=PLAIN, rip=([0-9.]+), ', mark)
    assert line.group(1) == '127.0.0.2', dovecot.since(mark)
    mark = dovecot.mark()
    c = client(gw, 'nofwd', source='127.0.0.2')
    try:
        assert c.user_pass('bob', 'bobpw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    line = dovecot.wait_log(r'Login: user=<bob>, method=PLAIN, rip=([0-9.]+), ', mark)
    assert line.group(1) == '127.0.0.1', dovecot.since(mark)


@pytest.fixture
def master_pwfile():
    d = make_tmpdir('gh-master-')
    pwfile = d / 'master-password'
    pwfile.write_text(MASTER_PASSWORD + '\n')
    yield pwfile
    shutil.rmtree(d, ignore_errors=True)


def test_login_master(gateway, dovecot, master_pwfile):
    """login = master: the gateway logs in to Dovecot as proxy with authzid =
    the user; the users' gateway passwords are not Dovecot's."""
    gw = gateway({'pop3': dict(backend='dc')},
                 {'dc': dc_backend(dovecot, login='master', master_user=MASTER_USER,
                                   master_password_file=str(master_pwfile))},
                 users={'bob': 'bob-gateway-only-pw'})
    mark = dovecot.mark()
    c = client(gw)
    try:
        assert c.user_pass('bob', 'bobpw') == AUTH_FAILED
        assert c.user_pass('bob', 'bob-gateway-only-pw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    dovecot.wait_log(r'Master user logging in as bob', mark)
    dovecot.wait_log(r'Login: user=<bob>, method=PLAIN', mark)


def test_backend_refuses_login(gw, dovecot):
    """erin is the gateway's but not Dovecot's: Dovecot's -ERR [AUTH] is an
    authentication failure for the client, and the session stays usable."""
    mark = dovecot.mark()
    c = client(gw)
    try:
        assert c.user_pass('erin', 'erinpw') == AUTH_FAILED
        dovecot.wait_log(r'erin', mark)
        assert c.user_pass('carol', 'carolpw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    gw.daemon.wait_log('user="erin"')
    assert re.search(r'user="erin" .*login refused', gw.log()), gw.log()[-3000:]


def test_backend_down(gateway, dovecot):
    dead = free_port()
    gw = gateway({'down': dict(backend='dead')},
                 {'dead': dict(protocol='pop3', servers='127.0.0.1:%d' % dead,
                               login='passthrough')})
    c = client(gw, 'down')
    try:
        assert c.user_pass('alice', 'alicepw') == TEMPFAIL
        # the password is checked before the backend is tried
        assert c.user_pass('alice', 'wrong') == AUTH_FAILED
        c.expect('AUTH PLAIN ' + plain_blob('bob', 'bobpw'), TEMPFAIL)
        c.expect('QUIT', '+OK Logging out.')
        assert c.eof()
    finally:
        c.close()
    assert re.search(r'user="alice" .*verdict=tempfail reason="backend unavailable: '
                     r'127\.0\.0\.1:%d' % dead, gw.log()), gw.log()[-3000:]


def test_failed_login_never_reaches_dovecot(gw, dovecot):
    """The backend may be dialled while the password is checked; after a
    no it hears QUIT, never a credential."""
    mark = dovecot.mark()
    c = client(gw)
    try:
        assert c.user_pass('alice', 'not-the-password') == AUTH_FAILED
        c.expect('QUIT', '+OK Logging out.')
    finally:
        c.close()
    time.sleep(0.5)
    log = dovecot.since(mark)
    assert 'auth failed' not in log and 'Login: user=<alice>' not in log, log
    assert 'not-the-password' not in log


@pytest.mark.parametrize('tls', ['starttls', 'implicit'])
def test_backend_tls(gateway, pki, dovecot_tls, tls):
    """tls = starttls to a Dovecot with TLS: STLS, then CAPA inside TLS and
    the login; tls = implicit to its pop3s port.  Dovecot logs the session as
    TLS; the certificate is checked against ca_file."""
    port = dovecot_tls.pop3_port if tls == 'starttls' else dovecot_tls.pop3s_port
    gw = gateway({'pop3': dict(backend='dc')},
                 {'dc': dict(protocol='pop3', servers='127.0.0.1:%d' % port,
                             login='passthrough', tls=tls, ca_file=pki.ca_crt)})
    mark = len(dovecot_tls.log_text())
    c = client(gw)
    try:
        assert c.user_pass('alice', 'alicepw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    dovecot_tls.wait_log(r'pop3-login: Info: Login: user=<alice>, .*, TLS', after=mark)


def test_warm_connections(gateway, dovecot):
    """warm_connections: the login goes over a connection opened before the
    client came, and XCLIENT still names the client."""
    gw = gateway({'pop3': dict(backend='dc')},
                 {'dc': dc_backend(dovecot, warm_connections=2, forward_client='yes')})
    time.sleep(0.5)
    mark = dovecot.mark()
    c = client(gw, source='127.0.0.3')
    try:
        assert c.user_pass('carol', 'carolpw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    dovecot.wait_log(r'Login: user=<carol>, method=PLAIN, rip=127\.0\.0\.3, ', mark)


# ---------- scripted backends: what Dovecot never does ----------

class ScriptedPop3(Server):
    """A POP3 server: `greeting`; CAPA answered with `capa` (None: -ERR);
    STLS refused; XCLIENT +OK; AUTH PLAIN with or without an initial
    response and USER/PASS checked against alice/alicepw (a long user name
    too), the login answered with `login_ok` or `login_err`; after the
    login +OK to everything.  Records every line (self.received)."""

    def __init__(self, greeting='+OK scripted ready.', capa=('USER', 'SASL PLAIN'),
                 login_err='-ERR [AUTH] Authentication failed.', refuse_all=False,
                 ok_without_response=False):
        self.ok_without_response = ok_without_response
        self.greeting = greeting
        self.capa = capa
        self.login_err = login_err
        self.refuse_all = refuse_all
        self.received = []
        super().__init__()

    def check(self, user, pw):
        return not self.refuse_all and pw == 'alicepw' and user.startswith('alice')

    def serve(self, conn):
        f = conn.makefile('rb')

        def say(text):
            conn.sendall(text.encode() + b'\r\n')
        say(self.greeting)
        if not self.greeting.startswith('+OK'):
            return
        user = None
        logged_in = False
        while True:
            raw = f.readline()
            if not raw:
                return
            line = raw.decode('latin-1').rstrip('\r\n')
            self.received.append(line)
            verb, _, arg = line.partition(' ')
            verb = verb.upper()
            if logged_in:
                say('+OK scripted after login')
            elif verb == 'CAPA':
                if self.capa is None:
                    say('-ERR Unknown command.')
                else:
                    say('+OK')
                    for cap in self.capa:
                        say(cap)
                    say('.')
            elif verb == 'USER':
                user = arg
                say('+OK')
            elif verb == 'PASS':
                ok = self.check(user or '', arg)
                say('+OK scripted logged in.' if ok else self.login_err)
                logged_in = ok
            elif verb == 'AUTH':
                parts = arg.split(' ')
                if len(parts) == 1 and self.ok_without_response:
                    say('+OK logged in without hearing a password')
                    logged_in = True
                    continue
                if len(parts) == 1:
                    say('+ ')
                    resp = f.readline().decode('latin-1').rstrip('\r\n')
                    self.received.append(resp)
                else:
                    resp = parts[1]
                _, u, p = base64.b64decode(resp).decode('latin-1').split('\0')
                ok = self.check(u, p)
                say('+OK scripted logged in.' if ok else self.login_err)
                logged_in = ok
            elif verb == 'QUIT':
                say('+OK bye')
                return
            else:
                say('-ERR Unknown command.')


@pytest.fixture
def scripted():
    made = []

    def make(**kw):
        s = ScriptedPop3(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def scripted_gw(gateway, server, users=None, **backend):
    keys = dict(protocol='pop3', servers='127.0.0.1:%d' % server.port, login='passthrough',
                forward_client='no')
    keys.update(backend)
    return gateway({'pop3': dict(backend='b')}, {'b': keys}, users=users)


def test_backend_without_capa_gets_user_pass(gateway, scripted):
    srv = scripted(capa=None)
    gw = scripted_gw(gateway, srv)
    c = client(gw)
    try:
        c.secret('alicepw')
        assert c.cmd('AUTH PLAIN ' + plain_blob('alice', 'alicepw')) == \
            '+OK scripted logged in.', c.ctx()
        c.expect('STAT', '+OK scripted after login')
    finally:
        c.close()
    assert srv.received[:3] == ['CAPA', 'USER alice', 'PASS alicepw'], srv.received


def test_backend_without_sasl_gets_user_pass(gateway, scripted):
    srv = scripted(capa=('USER', 'TOP'))
    gw = scripted_gw(gateway, srv)
    c = client(gw)
    try:
        assert c.user_pass('alice', 'alicepw') == '+OK scripted logged in.', c.ctx()
    finally:
        c.close()
    assert srv.received[:3] == ['CAPA', 'USER alice', 'PASS alicepw'], srv.received


def test_backend_long_login_uses_continuation(gateway, scripted):
    """AUTH PLAIN whose line would pass 255 octets: the response goes after
    the server's "+" (RFC 5034 4)."""
    srv = scripted()
    long_user = 'alice' + 'x' * 200
    gw = scripted_gw(gateway, srv, users={long_user: 'alicepw'})
    c = client(gw)
    try:
        assert c.user_pass(long_user, 'alicepw') == '+OK scripted logged in.', c.ctx()
    finally:
        c.close()
    assert srv.received[1] == 'AUTH PLAIN', srv.received
    assert srv.received[2] == plain_blob(long_user, 'alicepw'), srv.received


def test_backend_ok_without_the_response_is_not_a_login(gateway, scripted):
    """A server that says +OK to AUTH PLAIN before it had the response
    (the long-login case) has not checked anything: the client gets the
    temporary failure, and the password never went out."""
    srv = scripted(ok_without_response=True)
    long_user = 'alice' + 'x' * 200
    gw = scripted_gw(gateway, srv, users={long_user: 'alicepw'})
    c = client(gw)
    try:
        assert c.user_pass(long_user, 'alicepw') == TEMPFAIL, c.ctx()
    finally:
        c.close()
    assert 'AUTH PLAIN' in srv.received and \
        not any('alicepw' in ln or plain_blob(long_user, 'alicepw') in ln
                for ln in srv.received), srv.received
    assert 'unexpected answer to the login' in gw.log(), gw.log()[-2000:]


@pytest.mark.parametrize('answer,client_sees,verdict', [
    ('-ERR [SYS/TEMP] Storage is down', None, 'tempfail'),
    ('-ERR [IN-USE] Mailbox is locked', None, 'tempfail'),
    ('-ERR [LOGIN-DELAY] Not so often', None, 'tempfail'),
    ('-ERR [AUTH] No such user', AUTH_FAILED, 'backend-refused'),
    ('-ERR Nope', AUTH_FAILED, 'backend-refused'),
], ids=['sys-temp', 'in-use', 'login-delay', 'auth', 'plain-err'])
def test_backend_login_errors(gateway, scripted, answer, client_sees, verdict):
    """[AUTH] or no code: the credentials, our own -ERR [AUTH].  Any other
    code puts the login off: the client hears the server's own answer, code
    and all (RFC 3206, RFC 2449), and the server is not counted as failed."""
    srv = scripted(login_err=answer, refuse_all=True)
    gw = scripted_gw(gateway, srv)
    c = client(gw)
    try:
        assert c.user_pass('alice', 'alicepw') == (client_sees or answer), c.ctx()
        c.expect('NOOP', '+OK')
    finally:
        c.close()
    log = gw.log()
    assert re.search(r'user="alice" .*verdict=%s\b' % verdict, log), log[-3000:]
    assert 'login failed' not in log, log[-3000:]


def test_backend_err_greeting_fails_over(gateway, scripted, dovecot):
    bad = scripted(greeting='-ERR [SYS/TEMP] not today')
    gw = gateway({'pop3': dict(backend='b')},
                 {'b': dict(protocol='pop3', login='passthrough',
                            servers='127.0.0.1:%d 127.0.0.1:%d' % (bad.port, dovecot.pop3_port))})
    for user in ('alice', 'bob', 'carol'):
        c = client(gw)
        try:
            assert c.user_pass(user, USERS[user]) == DOVECOT_LOGGED_IN, c.ctx()
        finally:
            c.close()


@pytest.mark.parametrize('kind', ['silent', 'garbage', 'hangup'])
def test_backend_misbehaves(gateway, kind):
    def garbage(conn):
        conn.sendall(b'\x00\xffHELLO THERE\r\n')
        silent(conn)

    def hangup(conn):
        conn.sendall(b'+OK hi\r\n')
    handler = {'silent': silent, 'garbage': garbage, 'hangup': hangup}[kind]
    srv = Server(handler)
    try:
        gw = gateway({'pop3': dict(backend='b')},
                     {'b': dict(protocol='pop3', servers='127.0.0.1:%d' % srv.port,
                                login='passthrough', connect_timeout=2)})
        c = client(gw)
        try:
            assert c.user_pass('alice', 'alicepw') == TEMPFAIL, c.ctx()
            c.expect('NOOP', '+OK')
        finally:
            c.close()
    finally:
        srv.close()


# ---------- real clients ----------

def test_poplib(gw, mailbox):
    p = poplib.POP3('127.0.0.1', gw.port(), timeout=TIMEOUT)
    try:
        assert p.getwelcome() == GREETING.encode()
        assert set(p.capa()) >= {'USER', 'SASL', 'PIPELINING', 'UIDL'}
        with pytest.raises(poplib.error_proto, match=r'\[AUTH\]'):
            p.user('carol')
            p.pass_('wrong')
        p.user('carol')
        assert p.pass_('carolpw') == b'+OK Logged in.'
        count, _ = p.stat()
        assert count >= 1
        _, lines, _ = p.retr(1)
        assert b'Subject: hello carol' in lines
        assert b'.a line that starts with a dot' in lines
    finally:
        p.quit()


def test_poplib_stls_and_ssl(gateway, dovecot, pki, mailbox):
    gw = gateway({'pop3': dict(backend='dc', tls='starttls', plaintext_auth='tls'),
                  'pop3s': dict(backend='dc', tls='implicit')},
                 {'dc': dc_backend(dovecot)}, tls=server_tls(pki),
                 gatehouse={'trusted_networks': '192.0.2.0/24'})
    ctx = client_context(pki)
    p = poplib.POP3('127.0.0.1', gw.port('pop3'), timeout=TIMEOUT)
    try:
        assert 'STLS' in p.capa()
        p.stls(context=ctx)
        p.user('carol')
        assert p.pass_('carolpw') == b'+OK Logged in.'
        assert p.stat()[0] >= 1
    finally:
        p.quit()
    p = poplib.POP3_SSL('127.0.0.1', gw.port('pop3s'), context=ctx, timeout=TIMEOUT)
    try:
        p.user('carol')
        assert p.pass_('carolpw') == b'+OK Logged in.'
        _, lines, _ = p.retr(1)
        assert b'Subject: hello carol' in lines
    finally:
        p.quit()


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def test_curl(gateway, dovecot, pki, mailbox):
    gw = gateway({'pop3': dict(backend='dc'), 'pop3s': dict(backend='dc', tls='implicit')},
                 {'dc': dc_backend(dovecot)}, tls=server_tls(pki))
    r = run(['curl', '-sS', '--max-time', '20', '-u', 'carol:carolpw',
             'pop3://127.0.0.1:%d/' % gw.port('pop3')])
    assert r.returncode == 0 and re.match(r'1 \d+\r?\n', r.stdout), (r.stdout, r.stderr)
    r = run(['curl', '-sS', '--max-time', '20', '-u', 'carol:carolpw', '--cacert', pki.ca_crt,
             'pop3s://127.0.0.1:%d/1' % gw.port('pop3s')])
    assert r.returncode == 0 and 'Subject: hello carol' in r.stdout, (r.stdout, r.stderr)
    r = run(['curl', '-sS', '--max-time', '20', '-u', 'carol:wrong',
             'pop3://127.0.0.1:%d/' % gw.port('pop3')])
    assert r.returncode == 67, (r.returncode, r.stderr)    # CURLE_LOGIN_DENIED


def fetchmail(tmp, port, ssl_ca=None):
    """fetchmail --keep for carol from 127.0.0.1:port (over implicit TLS,
    checked against ssl_ca, when given); returns (result, what the MDA
    got)."""
    home = tmp / ('fetchmail-%d' % port)
    home.mkdir()
    out = home / 'mda-out'
    rc = home / 'fetchmailrc'
    tls = ('ssl sslcertck sslcertfile "%s" sslcommonname "localhost" sslproto "TLS1.2+"'
           % ssl_ca) if ssl_ca \
        else 'sslproto ""'
    rc.write_text('set no bouncemail\n'
                  'poll localhost via 127.0.0.1 service %d protocol pop3 auth password\n'
                  '  user "carol" there with password "carolpw" is root here\n'
                  '  keep fetchall %s\n'
                  '  mda "/bin/sh -c \'cat >> %s\'"\n' % (port, tls, out))
    rc.chmod(0o600)
    env = dict(os.environ, FETCHMAILHOME=str(home), HOME=str(home))
    r = run(['fetchmail', '--nodetach', '--nosyslog', '-f', str(rc)], env=env)
    return r, out.read_bytes() if out.exists() else b''


def test_fetchmail(gateway, dovecot, pki, mailbox, tmp):
    gw = gateway({'pop3': dict(backend='dc'), 'pop3s': dict(backend='dc', tls='implicit')},
                 {'dc': dc_backend(dovecot)}, tls=server_tls(pki))
    r, got = fetchmail(tmp, gw.port('pop3'))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert b'Subject: hello carol' in got, (got, r.stdout, r.stderr)
    r, got = fetchmail(tmp, gw.port('pop3s'), ssl_ca=pki.ca_crt)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert b'Subject: hello carol' in got, (got, r.stdout, r.stderr)
    assert gw.log().count('user="carol" mech=') >= 2


# ---------- fail2ban ----------

@pytest.mark.skipif(shutil.which('fail2ban-regex') is None, reason='needs fail2ban')
def test_fail2ban_filter_matches_pop3_failures(gw):
    """etc/fail2ban's filter, run by fail2ban-regex over the log of real
    POP3 logins: the wrong password (USER/PASS) and the unknown user (AUTH
    PLAIN) match with the client's address; a good login and one the
    backend refused do not."""
    mark = gw.mark()
    for source, user, pw, want in (('127.0.0.2', 'alice', 'wrong', AUTH_FAILED),
                                   ('127.0.0.3', 'mallory', 'guess', AUTH_FAILED),
                                   ('127.0.0.4', 'alice', 'alicepw', DOVECOT_LOGGED_IN),
                                   ('127.0.0.5', 'erin', 'erinpw', AUTH_FAILED)):
        c = client(gw, source=source)
        try:
            if source == '127.0.0.3':
                assert c.cmd('AUTH PLAIN ' + plain_blob(user, pw)) == want, c.ctx()
            else:
                assert c.user_pass(user, pw) == want, c.ctx()
        finally:
            c.close()
    gw.daemon.wait_log('gh-login: login: ', count=4)
    text = gw.since(mark)
    log = gw.dir / 'pop3-logins.log'
    log.write_text(text)
    filt = SRCDIR / 'etc' / 'fail2ban' / 'filter.d' / 'gatehouse.conf'
    r = subprocess.run(['fail2ban-regex', '-o', 'ip', str(log), str(filt)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [ln.strip() for ln in r.stdout.splitlines() if ln.strip()] == \
        ['127.0.0.2', '127.0.0.3'], (r.stdout, text)


# ---------- gatehousectl ----------

def test_ctl_auth_test_service_pop3(gateway, dovecot):
    """gatehousectl auth-test --service pop3 asks the chain of the pop3
    listener, as that listener's login would."""
    gw = gateway({'pop3': dict(backend='dc')}, {'dc': dc_backend(dovecot)})
    ok = ctl('-v', 'auth-test', 'alice', '--service', 'pop3', stdin='alicepw\n', config=gw.conf)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(r'login: .*proto=pop3 listener=pop3 .*user="alice" .*verdict=ok ',
                     ok.stderr), ok.stderr
    bad = ctl('auth-test', 'alice', '--service', 'pop3', stdin='nope\n', config=gw.conf)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    none = ctl('auth-test', 'alice', '--service', 'smtp', stdin='alicepw\n', config=gw.conf)
    assert none.returncode != 0 and 'has no smtp listener' in none.stderr, none.stderr


# ---------- valgrind ----------

def test_sessions_under_valgrind(gateways, dovecot, pki):
    """The front end and the backend dialogue under valgrind (errors and
    leaks fail the daemon's stop): the reply table, failed and good logins
    of every kind, STLS, hostile lines, a backend that is down."""
    dead = free_port()
    gw = gateways.start({'pop3': dict(backend='dc', tls='starttls', plaintext_auth='always'),
                         'down': dict(backend='dead')},
                        {'dc': dc_backend(dovecot, forward_client='yes'),
                         'dead': dict(protocol='pop3', servers='127.0.0.1:%d' % dead,
                                      login='passthrough')},
                        users=GW_USERS, protocol='pop3', tls=server_tls(pki), valgrind=True)
    c = client(gw, 'pop3')
    try:
        assert c.capa() == CAPA_PLAIN + ['STLS']
        c.expect('STAT', '-ERR Command not allowed before login.')
        c.expect(b'NO\0OP', '-ERR Invalid characters in command.')
        c.expect('USER ' + 'x' * 300, '-ERR Line too long.')
        assert c.user_pass('alice', 'wrong-vg') == AUTH_FAILED
        c.expect('AUTH LOGIN', '+ VXNlcm5hbWU6')
        c.expect('*', '-ERR Authentication cancelled.')
        c.expect('AUTH PLAIN %%%%', '-ERR Cannot decode response.')
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), DOVECOT_LOGGED_IN)
        logged_in_session_works(c)
    finally:
        c.close()
    c = client(gw, 'pop3')
    try:
        c.expect('STLS', '+OK Begin TLS negotiation now.')
        c.starttls(client_context(pki))
        assert c.user_pass('bob', 'bobpw') == DOVECOT_LOGGED_IN, c.ctx()
        logged_in_session_works(c)
    finally:
        c.close()
    c = client(gw, 'down')
    try:
        assert c.user_pass('carol', 'carolpw') == TEMPFAIL
        c.line('USER carol')       # and away, in the middle of a login
    finally:
        c.close()
    c = client(gw, 'pop3')
    try:
        c.send('USER carol\r\nPASS carolpw\r\n')     # gone before the verdict
    finally:
        c.close(reset=True)
