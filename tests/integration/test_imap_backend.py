"""IMAP through gatehoused to a real Dovecot, end to end: the telnet session
over a raw socket (CRLF and bare LF), imaplib (with a 10 MB message) and curl
clients, every way of sending LOGIN (quoted strings with escapes, synchronising
and non-synchronising literals, one byte at a time, pipelined), AUTHENTICATE
PLAIN (with and without SASL-IR) and LOGIN, the two backend login methods
(passthrough and master user), the client's address and session id forwarded
with ID, a dead backend, fail-over to the next server, and clients that vanish
in the middle of a literal or a login.  Beyond those: Dovecots with fewer
capabilities (no SASL-IR, with and without LITERAL+: the gateway's LOGIN with
literals), a relay that hides the greeting's capabilities (the gateway's own
CAPABILITY), fake servers that stay silent, say BYE, hang up, offer PREAUTH or
refuse the login with BAD, client tags like the gateway's own, and either side
going away after the login.

The gateway checks the password itself, then logs in to Dovecot; from the
backend's tagged reply to the login on, every byte the client gets is
Dovecot's.  Dovecot's users are bare names (alice, bob, carol); this module's
own Dovecot (a subclass of backends.Dovecot) adds a user "dave" whose password
holds spaces, a double quote and a backslash, and logs the ID fields clients
send (imap_id_log = *)."""
import hashlib
import imaplib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from backends import MASTER_PASSWORD, MASTER_USER, USERS, Dovecot, marker, running
from lib.clients import ImapClient, b64, imap_quote
from lib.net import TIMEOUT, free_port, wait_for
from lib.proc import make_tmpdir
from lib.scripted import Relay, Server, lines_of, silent
# a password that needs quoting and escaping in IMAP: spaces, " and \
DAVE, DAVE_PW = 'dave', 's3 cr"et\\pw x'
GW_USERS = dict(USERS, dave=DAVE_PW)

GREETING = ('* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ '
            'AUTH=PLAIN AUTH=LOGIN] gw.test ready.')
AUTH_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'
TEMPFAIL = 'NO [UNAVAILABLE] Temporary authentication failure.'


# ---------- this module's Dovecot ----------

class ImapDovecot(Dovecot):
    """backends.Dovecot plus the user dave (a password with spaces, " and \\)
    and imap_id_log = * (imap-login logs "ID sent: key=value, ..." for every
    ID command, with the session id the connection ends up with)."""

    def write_config(self):
        super().write_config()
        with open(self.dir / 'users', 'a') as f:
            f.write('%s:{PLAIN}%s::::::\n' % (DAVE, DAVE_PW))
        with open(self.conf, 'a') as f:
            f.write('imap_id_log = *\n')


@pytest.fixture(scope='module')
def dovecot(postfix):
    with running(ImapDovecot(postfix.port)) as dc:
        yield dc


# ---------- the gateway ----------

@pytest.fixture
def gateway(gateways):
    """gateway(listeners, backends, users=None) -> a running gatehoused
    (lib.gateway.start_gateway(): listeners without listen, protocol imap
    unless given); stopped, and checked to be still alive, at the end of
    the test."""
    def start(listeners, backends, users=None):
        return gateways.start(listeners, backends, users=GW_USERS if users is None else users,
                              protocol='imap')
    return start


def dc_backend(dovecot, **extra):
    keys = dict(protocol='imap', servers='127.0.0.1:%d' % dovecot.imap_port, login='passthrough')
    keys.update(extra)
    return keys


@pytest.fixture
def gw(gateway, dovecot):
    """The usual gateway: listener imap -> Dovecot, login = passthrough."""
    return gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dovecot)})


# ---------- checks on a raw IMAP client (lib.clients.ImapClient) ----------

# what Dovecot's post-login tagged OK holds (its post-login capabilities,
# not the gateway's pre-login list)
LOGIN_REPLY_HAS = ('UIDPLUS', 'NAMESPACE')


def backend_login_ok(c, tag, untagged, tagged, has=LOGIN_REPLY_HAS, caps_untagged=False):
    """The login's reply is Dovecot's own tagged OK under the client's tag, with
    nothing before it (no untagged lines leaked from the gateway's backend
    handshake, e.g. Dovecot's '* ID' or '* CAPABILITY'), and `has` in it.
    caps_untagged: the backend's greeting had no [CAPABILITY]."""
    assert tagged.startswith(tag + ' OK') and 'Logged in' in tagged, \
        'want Dovecot\'s %r OK [CAPABILITY ...] Logged in, got %r\n%s' % (tag, tagged, c.ctx())
    if caps_untagged:
        # the gateway asked Dovecot CAPABILITY before the login, so Dovecot
        # sends its post-login capabilities untagged instead of in the OK
        assert tagged == tag + ' OK Logged in', '%r\n%s' % (tagged, c.ctx())
        assert len(untagged) == 1 and untagged[0].startswith('* CAPABILITY IMAP4rev1 ') and \
            all(w in untagged[0] for w in has), \
            'want Dovecot\'s untagged post-login CAPABILITY, got %r\n%s' % (untagged, c.ctx())
        return
    assert all(w in tagged for w in has), \
        'not Dovecot\'s post-login reply (want %r in it): %r\n%s' % (has, tagged, c.ctx())
    assert untagged == [], 'untagged lines before the login reply: %r\n%s' % (untagged, c.ctx())


def login_ok(c, line, tag=None, **kw):
    """Send line (unless None) and check that the reply tagged `tag` (default:
    the line's first word) is Dovecot's login OK (backend_login_ok(), with
    kw)."""
    if line is not None:
        c.line(line)
    if tag is None:
        tag = line.split(' ', 1)[0]
    untagged, tagged = c.tagged(tag)
    backend_login_ok(c, tag, untagged, tagged, **kw)
    return tagged


SELECT_OK = re.compile(r'^\S+ OK \[READ-WRITE\] Select completed')
LOGOUT_OK = re.compile(r'^\S+ OK Logout completed')


def select_inbox(c, tag='a002'):
    untagged, _ = c.expect('%s select INBOX' % tag, SELECT_OK)
    assert any(re.match(r'^\* \d+ EXISTS$', u) for u in untagged), untagged
    assert any(u.startswith('* OK [UIDVALIDITY ') for u in untagged), untagged
    return untagged


def logout(c, tag='a003'):
    """Dovecot's logout: '* BYE Logging out', 'TAG OK Logout completed...',
    then the connection closes."""
    untagged, _ = c.expect('%s logout' % tag, LOGOUT_OK)
    assert untagged == ['* BYE Logging out'], '%r\n%s' % (untagged, c.ctx())
    assert c.eof(), 'connection not closed after LOGOUT\n%s' % c.ctx()


def greet(c):
    g = c.read_line()
    assert g == GREETING, 'greeting %r, want %r\n%s' % (g, GREETING, c.ctx())


EOLS = pytest.mark.parametrize('eol', [b'\r\n', b'\n'], ids=['crlf', 'lf'])


def imap_session_works(port, user='alice', pw=None, ctx=lambda: ''):
    """A full imaplib session through the gateway: login, select, noop, logout."""
    pw = pw if pw is not None else GW_USERS[user]
    with imaplib.IMAP4('127.0.0.1', port, timeout=TIMEOUT) as m:
        try:
            typ, data = m.login(user, pw)
        except imaplib.IMAP4.error as e:
            raise AssertionError('login %s through the gateway: %s\n%s' % (user, e, ctx()))
        assert typ == 'OK' and b'Logged in' in data[0], (typ, data, ctx())
        typ, data = m.select('INBOX')
        assert typ == 'OK', (typ, data)
        assert m.noop()[0] == 'OK'
        assert m.logout()[0] == 'BYE'


# ---------- Dovecot alone (tell a broken fixture from a broken gateway) ----------

@EOLS
def test_backend_dovecot_direct(dovecot, eol):
    """Dovecot's own replies: the quoted-password login (dave), select, logout,
    also with bare LF line ends."""
    c = ImapClient(dovecot.imap_port, eol=eol)
    try:
        assert c.read_line().startswith('* OK [CAPABILITY IMAP4rev1 ')
        login_ok(c, 'a001 LOGIN %s %s' % (DAVE, imap_quote(DAVE_PW)))
        select_inbox(c)
        logout(c)
    finally:
        c.close()


def test_backend_dovecot_master_and_id(dovecot):
    """The master user (SASL PLAIN authzid) and the trusted ID fields work
    against Dovecot directly, and show in its log as the tests expect."""
    mark = dovecot.mark()
    c = ImapClient(dovecot.imap_port)
    try:
        c.read_line()
        untagged, _ = c.expect('g1 ID ("x-originating-ip" "127.0.0.1" "x-originating-port" "4711" '
                               '"x-session-id" "abcdefgh2345" "name" "direct")', re.compile(r'^g1 OK'))
        login_ok(c, 'g2 AUTHENTICATE PLAIN ' + b64('bob\0%s\0%s' % (MASTER_USER, MASTER_PASSWORD)))
        logout(c, 'g3')
    finally:
        c.close()
    dovecot.wait_log(r'ID sent: x-originating-ip=127\.0\.0\.1, x-originating-port=4711, '
                     r'x-session-id=abcdefgh2345, name=direct', mark)
    dovecot.wait_log(r'Master user logging in as bob', mark)
    dovecot.wait_log(r'Login: user=<bob>, method=PLAIN, rip=127\.0\.0\.1, .*session=<abcdefgh2345>', mark)


# ---------- the telnet session ----------

@EOLS
def test_telnet_login_logout(gw, dovecot, eol):
    """a001 login alice alicepw / a001 logout, one line at a time."""
    c = ImapClient(gw.port(), eol=eol, gw=gw)
    try:
        greet(c)
        login_ok(c, 'a001 login alice alicepw')
        untagged, tagged = c.expect('a001 logout', LOGOUT_OK)
        assert untagged == ['* BYE Logging out'], '%r\n%s' % (untagged, c.ctx())
        assert c.eof(), 'connection not closed after logout\n%s' % c.ctx()
    finally:
        c.close()


@EOLS
def test_telnet_select(gw, dovecot, eol):
    c = ImapClient(gw.port(), eol=eol, gw=gw)
    try:
        greet(c)
        login_ok(c, 'a001 login alice alicepw')
        untagged = select_inbox(c)
        assert untagged[0].startswith('* FLAGS ('), untagged
        logout(c)
    finally:
        c.close()


@EOLS
def test_wrong_password_then_right(gw, dovecot, eol):
    mark = dovecot.mark()
    c = ImapClient(gw.port(), eol=eol, gw=gw)
    try:
        greet(c)
        c.expect('a001 LOGIN alice wrongpw', AUTH_FAILED)
        c.expect('a002 LOGIN nosuchuser whatever', AUTH_FAILED)
        login_ok(c, 'a003 LOGIN alice alicepw')
        select_inbox(c, 'a004')
        logout(c, 'a005')
    finally:
        c.close()
    # the gateway refused the wrong password itself: Dovecot saw one login only
    dovecot.wait_log(r'Login: user=<alice>', mark)
    since = dovecot.since(mark)
    assert 'passwd-file(alice,' not in since and 'nosuchuser' not in since, since


def test_prelogin_commands(gw, dovecot):
    """CAPABILITY, NOOP and ID before login are the gateway's, then LOGOUT."""
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        untagged, _ = c.expect('c1 CAPABILITY', re.compile(r'^c1 OK'))
        assert len(untagged) == 1 and untagged[0].startswith('* CAPABILITY IMAP4rev1 '), untagged
        assert 'AUTH=PLAIN' in untagged[0] and 'LITERAL+' in untagged[0], untagged
        untagged, _ = c.expect('c2 NOOP', re.compile(r'^c2 OK'))
        untagged, _ = c.expect('c3 ID ("name" "mytestclient")', re.compile(r'^c3 OK'))
        assert len(untagged) == 1 and untagged[0].startswith('* ID ('), untagged
        untagged, _ = c.expect('c4 LOGOUT', re.compile(r'^c4 OK'))
        assert len(untagged) == 1 and untagged[0].startswith('* BYE'), untagged
        assert c.eof()
    finally:
        c.close()


# ---------- LOGIN variants ----------

def test_login_quoted_password(gw, dovecot):
    """A password with spaces, " and \\ as a quoted string: the gateway
    unescapes it, checks it, and logs in to Dovecot with it."""
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('a000 LOGIN "%s" %s' % (DAVE, imap_quote(DAVE_PW + 'x')), AUTH_FAILED)
        login_ok(c, 'a001 LOGIN "%s" %s' % (DAVE, imap_quote(DAVE_PW)))
        select_inbox(c)
        logout(c)
    finally:
        c.close()


@EOLS
def test_login_sync_literals(gw, dovecot, eol):
    """{n} literals for both arguments; each waits for the + continuation."""
    c = ImapClient(gw.port(), eol=eol, gw=gw)
    pw = DAVE_PW.encode()
    try:
        greet(c)
        c.send(b'a001 LOGIN {%d}' % len(DAVE) + eol)
        c.continuation()
        c.send(DAVE.encode() + b' {%d}' % len(pw) + eol)
        c.continuation()
        c.send(pw + eol)
        login_ok(c, None, 'a001')
        select_inbox(c)
        logout(c)
    finally:
        c.close()


def test_login_nonsync_literals(gw, dovecot):
    """{n+} literals (LITERAL+): everything in one write, no continuation."""
    c = ImapClient(gw.port(), gw=gw)
    pw = DAVE_PW.encode()
    try:
        greet(c)
        c.send(b'a001 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n' % (len(DAVE), DAVE.encode(), len(pw), pw))
        login_ok(c, None, 'a001')     # no '+' line first
        select_inbox(c)
        logout(c)
    finally:
        c.close()


def test_login_mixed_literal_and_quoted(gw, dovecot):
    """User as a {n+} literal, password quoted; then user quoted, password {n}."""
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.send(b'a001 LOGIN {5+}\r\nalice "wrong"\r\n')
        c.expect(None, AUTH_FAILED, 'a001')
        c.send(b'a002 LOGIN "alice" {7}\r\n')
        c.continuation()
        c.send(b'alicepw\r\n')
        login_ok(c, None, 'a002')
        logout(c)
    finally:
        c.close()


def test_login_one_byte_writes(gw, dovecot):
    c = ImapClient(gw.port(), gw=gw, nodelay=True)
    try:
        greet(c)
        cmd = ('a001 LOGIN %s %s\r\n' % (DAVE, imap_quote(DAVE_PW))).encode()
        c.transcript.append('C: %r (one byte per write)' % cmd)
        for i in range(len(cmd)):
            c.sock.sendall(cmd[i:i + 1])
            time.sleep(0.005)
        login_ok(c, None, 'a001')
        select_inbox(c)
        logout(c)
    finally:
        c.close()


@EOLS
def test_login_pipelined(gw, dovecot, eol):
    """LOGIN, SELECT and LOGOUT in one write: the bytes after LOGIN go to
    Dovecot once the backend login is done; all three replies, in order."""
    c = ImapClient(gw.port(), eol=eol, gw=gw)
    try:
        greet(c)
        c.send(eol.join([b'a001 LOGIN alice alicepw', b'a002 SELECT INBOX', b'a003 LOGOUT', b'']))
        untagged, tagged = c.tagged('a001')
        backend_login_ok(c, 'a001', untagged, tagged)
        untagged, tagged = c.tagged('a002')
        assert SELECT_OK.match(tagged), '%r\n%s' % (tagged, c.ctx())
        untagged, tagged = c.tagged('a003')
        assert LOGOUT_OK.match(tagged) and untagged == ['* BYE Logging out'], \
            '%r %r\n%s' % (untagged, tagged, c.ctx())
        assert c.eof()
    finally:
        c.close()


def test_login_pipelined_failed_login(gw, dovecot):
    """A failed LOGIN pipelined with SELECT and LOGOUT: the commands after it
    are the gateway's again (SELECT refused before login, LOGOUT answered),
    nothing reaches Dovecot."""
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.send(b'a001 LOGIN alice wrong\r\na002 SELECT INBOX\r\na003 LOGOUT\r\n')
        c.expect(None, AUTH_FAILED, 'a001')
        untagged, tagged = c.tagged('a002')
        assert untagged == [] and re.match(r'^a002 (BAD|NO) ', tagged), '%r\n%s' % (tagged, c.ctx())
        untagged, tagged = c.tagged('a003')
        assert tagged.startswith('a003 OK') and len(untagged) == 1 and untagged[0].startswith('* BYE'), \
            '%r %r\n%s' % (untagged, tagged, c.ctx())
        assert c.eof()
    finally:
        c.close()
    time.sleep(0.2)
    assert 'user=<alice>' not in dovecot.since(mark), dovecot.since(mark)


def test_login_pipelined_with_big_append(gw, dovecot):
    """LOGIN, then APPEND with a 4 MB non-synchronising literal and LOGOUT,
    all in one write: the gateway holds (or stops reading) what follows the
    LOGIN until the backend login is done, then passes it on intact."""
    subj = marker('pipelined-append')
    body = b''.join(b'%07d pipelined append line ......................................\r\n' % i
                    for i in range(4 * 1024 * 1024 // 72))
    msg = b'Subject: %s\r\n\r\n' % subj.encode() + body
    data = (b'a001 LOGIN alice alicepw\r\na002 APPEND INBOX {%d+}\r\n' % len(msg) + msg +
            b'\r\na003 LOGOUT\r\n')
    c = ImapClient(gw.port(), gw=gw)
    errors = []

    def send():
        try:
            c.sock.sendall(data)
        except OSError as e:
            errors.append(e)
    try:
        greet(c)
        c.transcript.append('C: LOGIN + APPEND {%d+} + LOGOUT in one write (%d bytes)' % (len(msg), len(data)))
        t = threading.Thread(target=send, daemon=True)
        t.start()
        untagged, tagged = c.tagged('a001')
        backend_login_ok(c, 'a001', untagged, tagged)
        untagged, tagged = c.tagged('a002')
        assert re.match(r'^a002 OK \[APPENDUID \d+ \d+\] Append completed', tagged), '%r\n%s' % (tagged, c.ctx())
        untagged, tagged = c.tagged('a003')
        assert LOGOUT_OK.match(tagged), '%r\n%s' % (tagged, c.ctx())
        assert c.eof()
        t.join(TIMEOUT)
        assert not errors, errors
    finally:
        c.close()
    with imaplib.IMAP4('127.0.0.1', dovecot.imap_port, timeout=TIMEOUT) as m:
        m.login('alice', 'alicepw')
        m.select('INBOX', readonly=True)
        typ, data = m.search(None, 'SUBJECT', '"%s"' % subj)
        assert typ == 'OK' and len(data[0].split()) == 1, data
        typ, data = m.fetch(data[0], '(BODY.PEEK[])')
        assert hashlib.sha256(data[0][1]).hexdigest() == hashlib.sha256(msg).hexdigest()
        m.logout()


# ---------- AUTHENTICATE ----------

def test_authenticate_plain_sasl_ir(gw, dovecot):
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, 'x1 AUTHENTICATE PLAIN ' + b64('\0alice\0alicepw'))
        select_inbox(c, 'x2')
        logout(c, 'x3')
    finally:
        c.close()


@EOLS
def test_authenticate_plain_continuation(gw, dovecot, eol):
    c = ImapClient(gw.port(), eol=eol, gw=gw)
    try:
        greet(c)
        c.line('A1 authenticate plain')
        c.continuation('+ ')
        c.line(b64('\0%s\0%s' % (DAVE, DAVE_PW)))
        login_ok(c, None, 'A1')
        select_inbox(c, 'A2')
        logout(c, 'A3')
    finally:
        c.close()


@EOLS
def test_authenticate_login(gw, dovecot, eol):
    c = ImapClient(gw.port(), eol=eol, gw=gw)
    try:
        greet(c)
        c.line('a001 AUTHENTICATE LOGIN')
        c.continuation('+ VXNlcm5hbWU6')
        c.line(b64('bob'))
        c.continuation('+ UGFzc3dvcmQ6')
        c.line(b64('bobpw'))
        login_ok(c, None, 'a001')
        select_inbox(c)
        logout(c)
    finally:
        c.close()


def test_authenticate_login_initial_response(gw, dovecot):
    """AUTHENTICATE LOGIN with the user name as SASL-IR (what curl sends):
    only the password is asked for."""
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.line('a001 AUTHENTICATE LOGIN ' + b64('carol'))
        c.continuation('+ UGFzc3dvcmQ6')
        c.line(b64('carolpw'))
        login_ok(c, None, 'a001')
        logout(c, 'a002')
    finally:
        c.close()


def test_authenticate_wrong_password_then_right(gw, dovecot):
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('a1 AUTHENTICATE PLAIN ' + b64('\0carol\0nope'), AUTH_FAILED)
        c.line('a2 AUTHENTICATE LOGIN')
        c.continuation('+ VXNlcm5hbWU6')
        c.line(b64('carol'))
        c.continuation('+ UGFzc3dvcmQ6')
        c.line(b64('nope'))
        c.expect(None, AUTH_FAILED, 'a2')
        login_ok(c, 'a3 AUTHENTICATE PLAIN ' + b64('\0carol\0carolpw'))
        logout(c, 'a4')
    finally:
        c.close()


# ---------- real clients ----------

def test_imaplib(gw, dovecot):
    mbox = marker('imaplib')
    subj = marker('imaplib-subj')
    msg = ('From: alice@example.com\r\nTo: bob@example.com\r\nSubject: %s\r\n'
           'Message-ID: <%s@example.com>\r\n\r\nline one\r\nline two\r\n' % (subj, subj)).encode()
    with imaplib.IMAP4('127.0.0.1', gw.port(), timeout=TIMEOUT) as m:
        typ, data = m.login('alice', 'alicepw')
        assert typ == 'OK' and b'Logged in' in data[0], (typ, data)
        assert m.create(mbox)[0] == 'OK'
        typ, data = m.select(mbox)
        assert typ == 'OK' and data == [b'0'], (typ, data)
        typ, data = m.append(mbox, r'(\Flagged)', None, msg)
        assert typ == 'OK', (typ, data)
        uid = re.search(rb'\[APPENDUID \d+ (\d+)\]', data[0]).group(1).decode()
        assert m.noop()[0] == 'OK'
        typ, data = m.uid('FETCH', uid, '(FLAGS BODY.PEEK[])')
        assert typ == 'OK', (typ, data)
        assert data[0][1] == msg, data
        assert b'\\Flagged' in data[0][0], data
        typ, data = m.search(None, 'SUBJECT', '"%s"' % subj)
        assert typ == 'OK' and data == [b'1'], data
        assert m.close()[0] == 'OK'
        typ, data = m.logout()
        assert typ == 'BYE', (typ, data)
    # Dovecot stored it in its own maildir
    files = list((dovecot.dir / 'mail' / 'alice' / 'Maildir' / ('.' + mbox)).glob('*/*'))
    assert any(subj.encode() in Path(f).read_bytes() for f in files if f.is_file()), files


def test_imaplib_10mb(gw, dovecot):
    mbox = marker('big')
    subj = marker('big-subj')
    line = b'0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n'
    head = ('From: alice@example.com\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\n' % subj).encode()
    # distinct lines (a counter in each), 10 MB in all
    body = []
    size = len(head)
    i = 0
    while size < 10 * 1024 * 1024:
        ln = b'%08d ' % i + line
        body.append(ln)
        size += len(ln)
        i += 1
    msg = head + b''.join(body)
    want = hashlib.sha256(msg).hexdigest()
    with imaplib.IMAP4('127.0.0.1', gw.port(), timeout=TIMEOUT) as m:
        m.login('alice', 'alicepw')
        assert m.create(mbox)[0] == 'OK'
        typ, data = m.append(mbox, None, None, msg)
        assert typ == 'OK', (typ, data)
        uid = re.search(rb'\[APPENDUID \d+ (\d+)\]', data[0]).group(1).decode()
        assert m.select(mbox)[0] == 'OK'
        typ, data = m.uid('FETCH', uid, '(RFC822.SIZE BODY.PEEK[])')
        assert typ == 'OK', (typ, data[:1])
        got = data[0][1]
        assert b'RFC822.SIZE %d' % len(msg) in data[0][0], data[0][0]
        assert len(got) == len(msg) and hashlib.sha256(got).hexdigest() == want, \
            'fetched %d bytes sha256 %s, appended %d bytes sha256 %s' % (
                len(got), hashlib.sha256(got).hexdigest(), len(msg), want)
        m.logout()
    # and Dovecot has it in its maildir (stored with LF line ends)
    files = [f for f in (dovecot.dir / 'mail' / 'alice' / 'Maildir' / ('.' + mbox)).glob('*/*') if f.is_file()]
    assert len(files) == 1, files
    stored = files[0].read_bytes()
    assert hashlib.sha256(stored.replace(b'\r\n', b'\n')).hexdigest() == \
        hashlib.sha256(msg.replace(b'\r\n', b'\n')).hexdigest()


def test_imaplib_quoted_password(gw, dovecot):
    """imaplib's LOGIN quotes the password (escaping " and \\)."""
    imap_session_works(gw.port(), DAVE, ctx=gw.log)


@pytest.fixture(scope='module')
def curl_message(dovecot):
    """A message with a unique subject in carol's INBOX, put there through
    Dovecot directly: (uid, subject)."""
    subj = marker('curl')
    msg = ('From: carol@example.com\r\nSubject: %s\r\n\r\ncurl body %s\r\n' % (subj, subj)).encode()
    with imaplib.IMAP4('127.0.0.1', dovecot.imap_port, timeout=TIMEOUT) as m:
        m.login('carol', 'carolpw')
        typ, data = m.append('INBOX', None, None, msg)
        assert typ == 'OK', data
        uid = int(re.search(rb'\[APPENDUID \d+ (\d+)\]', data[0]).group(1))
        m.logout()
    return uid, subj


CURL_LOGINS = pytest.mark.parametrize('opts', [
    [],
    ['--login-options', 'AUTH=PLAIN'],
    ['--login-options', 'AUTH=PLAIN', '--sasl-ir'],
    ['--login-options', 'AUTH=LOGIN'],
    ['--login-options', 'AUTH=*'],
], ids=['default', 'auth-plain', 'auth-plain-sasl-ir', 'auth-login', 'auth-any'])
# curl 7.88 (Debian 12) has no way to make it send the LOGIN command while
# the server offers AUTH= mechanisms (AUTH=+LOGIN came later: "URL using
# bad/illegal format"); with SASL-IR offered it always sends an initial
# response: "AUTHENTICATE PLAIN <b64>", "AUTHENTICATE LOGIN <b64 user>".
# LOGIN itself is covered by imaplib and the raw tests.


def curl(url, *args, user='carol:carolpw'):
    return subprocess.run(['curl', '-sS', '-v', '--max-time', '20', '-u', user, url] + list(args),
                          capture_output=True, text=True, timeout=30)


@CURL_LOGINS
def test_curl_fetch(gw, dovecot, curl_message, opts):
    uid, subj = curl_message
    r = curl('imap://127.0.0.1:%d/INBOX/;UID=%d' % (gw.port(), uid), *opts)
    assert r.returncode == 0, r.stdout + r.stderr + '\n--- gatehoused log:\n' + gw.log()[-2500:]
    assert 'Subject: %s' % subj in r.stdout and 'curl body %s' % subj in r.stdout, r.stdout + r.stderr


@CURL_LOGINS
def test_curl_list(gw, dovecot, opts):
    r = curl('imap://127.0.0.1:%d/' % gw.port(), *opts)
    assert r.returncode == 0, r.stdout + r.stderr + '\n--- gatehoused log:\n' + gw.log()[-2500:]
    assert re.search(r'^\* LIST \([^)]*\) "[./]" INBOX\r?$', r.stdout, re.M), r.stdout + r.stderr


def test_curl_wrong_password(gw):
    r = curl('imap://127.0.0.1:%d/' % gw.port(), user='carol:nope')
    assert r.returncode == 67, r.stdout + r.stderr     # CURLE_LOGIN_DENIED
    assert 'NO [AUTHENTICATIONFAILED] Authentication failed.' in r.stderr, r.stderr


# ---------- backend login methods ----------

def test_login_passthrough(gateway, dovecot):
    gw = gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dovecot, login='passthrough')})
    mark = dovecot.mark()
    imap_session_works(gw.port(), 'carol', ctx=gw.log)
    dovecot.wait_log(r'Login: user=<carol>, method=PLAIN, rip=127\.0\.0\.1', mark)
    assert 'Master user logging in' not in dovecot.since(mark), dovecot.since(mark)


@pytest.fixture
def master_pwfile():
    d = make_tmpdir('gh-master-')
    pwfile = d / 'master-password'
    pwfile.write_text(MASTER_PASSWORD + '\n')
    yield pwfile
    shutil.rmtree(d, ignore_errors=True)


def test_login_master(gateway, dovecot, master_pwfile):
    """login = master: the gateway logs in to Dovecot as proxy with authzid =
    the user.  The users' gateway passwords differ from Dovecot's, so a
    passthrough login could not succeed."""
    gw = gateway({'imap': dict(backend='dc')},
                 {'dc': dc_backend(dovecot, login='master', master_user=MASTER_USER,
                                   master_password_file=str(master_pwfile))},
                 users={'bob': 'bob-gateway-only-pw', 'carol': 'carol-gateway-only-pw'})
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('m1 LOGIN bob bobpw', AUTH_FAILED)    # Dovecot's password is not the gateway's
        login_ok(c, 'm2 LOGIN bob bob-gateway-only-pw')
        select_inbox(c, 'm3')
        logout(c, 'm4')
    finally:
        c.close()
    dovecot.wait_log(r'Master user logging in as bob', mark)
    dovecot.wait_log(r'Login: user=<bob>, method=PLAIN, rip=127\.0\.0\.1', mark)
    # AUTHENTICATE PLAIN from the client, master login to Dovecot
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, 'm1 AUTHENTICATE PLAIN ' + b64('\0carol\0carol-gateway-only-pw'))
        logout(c, 'm2')
    finally:
        c.close()
    dovecot.wait_log(r'Master user logging in as carol', mark)
    dovecot.wait_log(r'Login: user=<carol>', mark)


def test_backend_refuses_login(gateway, dovecot):
    """passthrough, the gateway's password is not Dovecot's: the gateway
    accepts it, Dovecot refuses; the client gets an authentication failure
    (not a temporary one) and the session stays usable."""
    gw = gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dovecot)},
                 users=dict(GW_USERS, alice='alice-gateway-only-pw'))
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('a001 LOGIN alice alice-gateway-only-pw', AUTH_FAILED)
        dovecot.wait_log(r'passwd-file\(alice,[^)]*\): Password mismatch', mark)
        login_ok(c, 'a002 LOGIN carol carolpw')
        select_inbox(c, 'a003')
        logout(c, 'a004')
    finally:
        c.close()


def test_authenticate_plain_authzid(gw, dovecot):
    """SASL PLAIN with an authzid: another user's is refused (the gateway
    does not let alice's password log in as bob); the user's own is fine."""
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('z1 AUTHENTICATE PLAIN ' + b64('bob\0alice\0alicepw'), AUTH_FAILED)
        login_ok(c, 'z2 AUTHENTICATE PLAIN ' + b64('alice\0alice\0alicepw'))
        logout(c, 'z3')
    finally:
        c.close()


def test_too_many_failures(gw, dovecot):
    """max_auth_failures (default 3): the third failure is answered, then
    '* BYE Too many authentication failures.' and the connection closes."""
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('t1 LOGIN bob wrong1', AUTH_FAILED)
        c.expect('t2 AUTHENTICATE PLAIN ' + b64('\0bob\0wrong2'), AUTH_FAILED)
        c.expect('t3 LOGIN bob wrong3', AUTH_FAILED)
        assert c.read_line() == '* BYE Too many authentication failures.', c.ctx()
        assert c.eof(), c.ctx()
    finally:
        c.close()


def test_login_log_backend_field(gateway, dovecot):
    """The gateway's login log line names the backend only for an attempt
    that went to one: a later attempt in the same session refused by the
    gateway itself (unknown user, wrong password) logs backend=-."""
    gw = gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dovecot)},
                 users=dict(GW_USERS, alice='alice-gateway-only-pw'))
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('a001 LOGIN alice alice-gateway-only-pw', AUTH_FAILED)    # refused by Dovecot
        c.expect('a002 LOGIN nosuchuser x', AUTH_FAILED)                   # by the gateway
        login_ok(c, 'a003 LOGIN bob bobpw')
        logout(c, 'a004')
    finally:
        c.close()
    lines = wait_for(lambda: re.findall(r'login: session=.* user="(\S+)" .* verdict=(\S+) .* backend=(\S+) ',
                                        gw.log()) if 'user="bob"' in gw.log() else None,
                     what='three login lines')
    got = {u: (v, b) for u, v, b in lines}
    dc = '127.0.0.1:%d' % dovecot.imap_port
    assert got['alice'][1] == dc and got['bob'] == ('ok', dc), lines
    assert got['nosuchuser'] == ('unknown-user', '-'), \
        'login line for nosuchuser: verdict=%s backend=%s, want unknown-user and backend=-\n%s' % (
            got['nosuchuser'] + (gw.log()[-2000:],))


# ---------- ID: the client's address and the session id ----------

def gateway_session_ids(gw, user):
    return re.findall(r'login: session=(\S+) proto=imap .*user="%s".*verdict=ok' % re.escape(user), gw.log())


def test_id_forwarding(gateway, dovecot):
    """forward_client = yes: before the login the gateway sends Dovecot an ID
    with x-originating-ip/port (the client's) and x-session-id (its session
    id); Dovecot, trusting 127.0.0.0/8, logs the login with rip= and that
    session id.  The client's own pre-login ID is answered by the gateway."""
    gw = gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dovecot, forward_client=True)})
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    cport = c.local_port
    try:
        greet(c)
        untagged, _ = c.expect('a0 ID ("name" "mytestclient")', re.compile(r'^a0 OK'))
        assert len(untagged) == 1 and untagged[0].startswith('* ID ('), '%r\n%s' % (untagged, c.ctx())
        login_ok(c, 'a001 LOGIN alice alicepw')
        logout(c, 'a002')
    finally:
        c.close()
    login = dovecot.wait_log(r'Login: user=<alice>, method=\S+, rip=(\S+), lip=\S+, .*session=<([^>]*)>', mark)
    assert login.group(1) == '127.0.0.1', login.group(0)
    ids = wait_for(lambda: gateway_session_ids(gw, 'alice'), what='gateway login line')
    assert len(ids) == 1, ids
    assert login.group(2) == ids[0], 'Dovecot logged session=<%s>, the gateway\'s session is %s:\n%s' % (
        login.group(2), ids[0], dovecot.since(mark))
    idline = dovecot.wait_log(r'ID sent: (.*): user=<>, rip=127\.0\.0\.1, lip=127\.0\.0\.1, .*session=<([^>]*)>', mark)
    fields = idline.group(1)
    assert 'x-originating-ip=127.0.0.1' in fields, idline.group(0)
    assert 'x-originating-port=%d' % cport in fields, idline.group(0)
    assert 'x-session-id=%s' % ids[0] in fields, idline.group(0)
    # the address and port the client connected to (Dovecot's lip=)
    assert 'x-connected-ip=127.0.0.1' in fields, idline.group(0)
    assert 'x-connected-port=%d' % gw.port() in fields, idline.group(0)


def test_id_client_fields_reach_dovecot(gateway, dovecot):
    """The client's own ID fields ride along in the gateway's ID to Dovecot
    (Dovecot logs them with imap_id_log = *), but its x- fields do not: a
    client cannot pass for another address or session."""
    gw = gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dovecot, forward_client=True)})
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    cport = c.local_port
    try:
        greet(c)
        untagged, _ = c.expect('a0 ID ("name" "mytestclient" "x-originating-ip" "192.0.2.66" '
                               '"x-session-id" "spoofed2345" "version" "1.2")', re.compile(r'^a0 OK'))
        assert len(untagged) == 1 and untagged[0].startswith('* ID ('), '%r\n%s' % (untagged, c.ctx())
        login_ok(c, 'a001 LOGIN alice alicepw')
        logout(c, 'a002')
    finally:
        c.close()
    login = dovecot.wait_log(r'Login: user=<alice>, method=\S+, rip=(\S+), lip=\S+, .*session=<([^>]*)>', mark)
    idline = dovecot.wait_log(r'ID sent: (.*): user=<>, rip=127\.0\.0\.1, ', mark)
    fields = idline.group(1)
    assert 'name=mytestclient' in fields and 'version=1.2' in fields, idline.group(0)
    assert 'x-originating-port=%d' % cport in fields, idline.group(0)
    since = dovecot.since(mark)
    assert '192.0.2.66' not in since and 'spoofed2345' not in since, since
    assert login.group(1) == '127.0.0.1' and login.group(2) != 'spoofed2345', login.group(0)


def test_id_not_forwarded(gateway, dovecot):
    """forward_client = no: no ID from the gateway, Dovecot picks its own
    session id."""
    gw = gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dovecot, forward_client=False)})
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    cport = c.local_port
    try:
        greet(c)
        login_ok(c, 'a001 LOGIN bob bobpw')
        logout(c, 'a002')
    finally:
        c.close()
    login = dovecot.wait_log(r'Login: user=<bob>, .*session=<([^>]*)>', mark)
    ids = gateway_session_ids(gw, 'bob')
    assert ids and login.group(1) != ids[0], (ids, login.group(0))
    assert 'x-originating-port=%d' % cport not in dovecot.since(mark), dovecot.since(mark)


# ---------- failures ----------

def test_backend_down(gateway, dovecot):
    dead = free_port()        # bound and closed: connections are refused
    gw = gateway({'down': dict(backend='dead'), 'up': dict(backend='dc')},
                 {'dead': dict(protocol='imap', servers='127.0.0.1:%d' % dead, login='passthrough'),
                  'dc': dc_backend(dovecot)})
    c = ImapClient(gw.port('down'), gw=gw)
    try:
        greet(c)
        c.expect('a001 LOGIN alice alicepw', TEMPFAIL)
        # the password is checked before the backend is tried
        c.expect('a002 LOGIN alice wrong', AUTH_FAILED)
        c.expect('a003 AUTHENTICATE PLAIN ' + b64('\0bob\0bobpw'), TEMPFAIL)
        c.line('a004 AUTHENTICATE LOGIN')
        c.continuation('+ VXNlcm5hbWU6')
        c.line(b64('carol'))
        c.continuation('+ UGFzc3dvcmQ6')
        c.line(b64('carolpw'))
        c.expect(None, TEMPFAIL, 'a004')
        untagged, _ = c.expect('a005 LOGOUT', re.compile(r'^a005 OK'))
        assert len(untagged) == 1 and untagged[0].startswith('* BYE'), untagged
        assert c.eof()
    finally:
        c.close()
    # right after: the same gateway serves a working listener
    imap_session_works(gw.port('up'), 'alice', ctx=gw.log)
    assert '127.0.0.1:%d' % dead in gw.log(), gw.log()[-3000:]


def test_first_server_down_next_is_used(gateway, dovecot):
    """servers = DEAD DC and DC DEAD: each user's hash picks its first server,
    so for every user one of the two orders starts with the dead one."""
    dead = free_port()
    dc = '127.0.0.1:%d' % dovecot.imap_port
    gw = gateway({'ab': dict(backend='ab'), 'ba': dict(backend='ba')},
                 {'ab': dc_backend(dovecot, servers='127.0.0.1:%d %s' % (dead, dc)),
                  'ba': dc_backend(dovecot, servers='%s 127.0.0.1:%d' % (dc, dead))})
    for listener in ('ab', 'ba'):
        for user in ('alice', 'bob', 'carol', DAVE):
            c = ImapClient(gw.port(listener), gw=gw)
            try:
                greet(c)
                login_ok(c, 'f1 LOGIN %s %s' % (user, imap_quote(GW_USERS[user])))
                select_inbox(c, 'f2')
                logout(c, 'f3')
            finally:
                c.close()
    # the dead server really was tried (and failed over from)
    assert '127.0.0.1:%d' % dead in gw.log(), gw.log()[-3000:]


def test_users_file_route_without_port(gateway, dovecot):
    """route=127.0.0.1 in the users file (no port): the backend's `port` is
    dialled, not its servers (a dead one here); a user without a route gets
    the servers.  The login line names the port used."""
    dead = free_port()
    users = dict(GW_USERS, alice='{PLAIN}%s:route=127.0.0.1' % GW_USERS['alice'])
    gw = gateway({'imap': dict(backend='dc')},
                 {'dc': dc_backend(dovecot, servers='127.0.0.1:%d' % dead,
                                   port=dovecot.imap_port)},
                 users=users)
    imap_session_works(gw.port(), 'alice', ctx=gw.log)
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('r1 LOGIN bob bobpw', TEMPFAIL)
        c.expect('r2 LOGOUT', re.compile(r'^r2 OK'))
    finally:
        c.close()
    lines = wait_for(lambda: re.findall(r'login: session=.* user="(\S+)" .* backend=(\S+) ',
                                        gw.log()) if 'user="bob"' in gw.log() else None,
                     what='the login lines of alice and bob')
    assert ('alice', '127.0.0.1:%d' % dovecot.imap_port) in lines, lines
    assert ('bob', '127.0.0.1:%d' % dead) in lines, lines


def cpu_seconds(pid):
    """User and system CPU time of a process so far, in seconds."""
    fields = Path('/proc/%d/stat' % pid).read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def test_backend_by_host_name_idles(gateway, dovecot):
    """servers = localhost:PORT: the name is looked up and dialled through
    GIO, and the session then relays on a copy of GIO's socket.  An idle
    session costs no CPU (gatehoused used to keep GIO's connect watch on
    that socket and spin on it for as long as the session lasted), and the
    session still works after the pause."""
    gw = gateway({'imap': dict(backend='dc')},
                 {'dc': dc_backend(dovecot, servers='localhost:%d' % dovecot.imap_port)})
    pid = gw.daemon.proc.pid
    with imaplib.IMAP4('127.0.0.1', gw.port(), timeout=TIMEOUT) as m:
        typ, data = m.login('alice', GW_USERS['alice'])
        assert typ == 'OK' and b'Logged in' in data[0], (typ, data, gw.log())
        before = cpu_seconds(pid)
        time.sleep(2.0)
        used = cpu_seconds(pid) - before
        # idle is about nothing; a spinning thread takes the whole 2 s
        assert used < 0.5, 'gatehoused used %.2f s of CPU in 2 s with one idle session' % used
        assert m.noop()[0] == 'OK'
        assert m.logout()[0] == 'BYE'
    assert re.search(r'login: .* user="alice" .* backend=localhost:%d ' % dovecot.imap_port,
                     gw.log()), gw.log()


def vanish_scenarios():
    """(name, steps): steps(c) talks to the gateway, then the client closes."""
    def mid_sync_literal(c):
        c.send(b'v1 LOGIN {5}\r\n')
        c.continuation()
        c.send(b'ali')

    def mid_nonsync_literal(c):
        c.send(b'v1 LOGIN alice {7+}\r\nalic')

    def mid_line(c):
        c.send(b'v1 LOGIN alice "alic')

    def mid_login(c):
        c.send(b'v1 LOGIN alice alicepw\r\n')

    def mid_authenticate(c):
        c.send(b'v1 AUTHENTICATE PLAIN\r\n')
        c.continuation()

    def after_login_pipelined(c):
        c.send(b'v1 LOGIN alice alicepw\r\nv2 SELECT INBOX\r\nv3 NOOP\r\n')

    return [mid_sync_literal, mid_nonsync_literal, mid_line, mid_login, mid_authenticate,
            after_login_pipelined]


@pytest.mark.parametrize('reset', [False, True], ids=['close', 'reset'])
def test_client_vanishes(gw, dovecot, reset):
    """Clients that go away in the middle of a literal, a line, a login (the
    backend connection being set up) or an AUTHENTICATE exchange: the gateway
    goes on serving the next session."""
    for steps in vanish_scenarios():
        c = ImapClient(gw.port(), gw=gw)
        try:
            greet(c)
            steps(c)
        finally:
            c.close(reset=reset)
        time.sleep(0.1)
        assert gw.alive(), '%s: gatehoused died:\n%s' % (steps.__name__, gw.log()[-3000:])
        try:
            imap_session_works(gw.port(), 'bob', ctx=gw.log)
        except Exception as e:
            raise AssertionError('after a client vanished %s: %s' % (steps.__name__, e))
    assert gw.alive()


# ---------- other backend handshakes: fewer capabilities, no capabilities
# in the greeting, misbehaving servers ----------

class RestrictedDovecot(ImapDovecot):
    """An ImapDovecot whose CAPABILITY is exactly `caps` (before and after
    login; Dovecot still adds AUTH=PLAIN AUTH=LOGIN before login): without
    SASL-IR the gateway logs in with LOGIN and literals ({n+} with LITERAL+,
    else {n} waiting for '+'), and a master login needs AUTHENTICATE PLAIN
    with a continuation."""

    def __init__(self, relay_port, caps):
        super().__init__(relay_port)
        self.caps = caps

    def write_config(self):
        super().write_config()
        with open(self.conf, 'a') as f:
            f.write('imap_capability = %s\n' % self.caps)


@pytest.fixture(scope='module', params=['IMAP4rev1 ID', 'IMAP4rev1 ID LITERAL+'],
                ids=['no-sasl-ir-no-literal-plus', 'no-sasl-ir-literal-plus'])
def dovecot_caps(request, postfix):
    with running(RestrictedDovecot(postfix.port, request.param)) as dc:
        yield dc


def test_restricted_backend_passthrough(gateway, dovecot_caps):
    dc = dovecot_caps
    gw = gateway({'imap': dict(backend='dc')}, {'dc': dc_backend(dc)})
    mark = dc.mark()
    for user, cmd in ((DAVE, 'a001 LOGIN %s %s' % (DAVE, imap_quote(DAVE_PW))),
                      ('alice', 'a001 AUTHENTICATE PLAIN ' + b64('\0alice\0alicepw'))):
        c = ImapClient(gw.port(), gw=gw)
        try:
            greet(c)
            login_ok(c, cmd, has=('[CAPABILITY %s] Logged in' % dc.caps,))
            select_inbox(c)
            logout(c)
        finally:
            c.close()
        dc.wait_log(r'Login: user=<%s>, method=PLAIN, rip=127\.0\.0\.1' % user, mark)
    assert 'Password mismatch' not in dc.since(mark), dc.since(mark)


def test_restricted_backend_master(gateway, dovecot_caps, master_pwfile):
    dc = dovecot_caps
    gw = gateway({'imap': dict(backend='dc')},
                 {'dc': dc_backend(dc, login='master', master_user=MASTER_USER,
                                   master_password_file=str(master_pwfile))},
                 users={'bob': 'bob-gateway-only-pw'})
    mark = dc.mark()
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, 'a001 LOGIN bob bob-gateway-only-pw',
                 has=('[CAPABILITY %s] Logged in' % dc.caps,))
        select_inbox(c)
        logout(c)
    finally:
        c.close()
    dc.wait_log(r'Master user logging in as bob', mark)
    dc.wait_log(r'Login: user=<bob>, ', mark)


def fake_bye(conn):
    conn.sendall(b'* BYE Server is shutting down.\r\n')


def fake_hangup(conn):
    pass


def fake_preauth(conn):
    conn.sendall(b'* PREAUTH [CAPABILITY IMAP4rev1] someone is logged in already\r\n')
    silent(conn)


def fake_bad_login(conn):
    """Greets, then answers every command with BAD."""
    conn.sendall(b'* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN] fake ready.\r\n')
    for line in lines_of(conn):
        tag = line.split(b' ', 1)[0]
        conn.sendall(tag + b' BAD Not today.\r\n')


def relay_without_greeting_caps(dovecot_port):
    """A relay to Dovecot, its greeting replaced by a plain '* OK fake
    ready.' (no [CAPABILITY]): the gateway must ask CAPABILITY."""
    return Relay(dovecot_port, greeting=b'* OK fake ready.\r\n')


@pytest.fixture
def fake_backend():
    """fake_backend(handler) -> a lib.scripted.Server running handler(conn)
    for each connection (15 s socket timeout), closed at the end."""
    started = []

    def start(handler):
        fb = Server(handler, timeout=15)
        started.append(fb)
        return fb
    yield start
    for fb in started:
        fb.close()


def fake_long_deferral(conn):
    """Greets, then puts every login off with a tagged NO [UNAVAILABLE]
    whose text is longer than any reply gatehoused makes itself."""
    conn.sendall(b'* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN] fake ready.\r\n')
    for line in lines_of(conn):
        tag = line.split(b' ', 1)[0]
        conn.sendall(tag + b' NO [UNAVAILABLE] ' + LONG_DEFERRAL.encode() + b'\r\n')


LONG_DEFERRAL = 'Try again later: ' + 'the mailbox is being moved. ' * 40


def test_long_backend_answer_reaches_the_client_whole(gateway, dovecot, fake_backend):
    """A backend's answer that puts the login off reaches the client as it
    was said, however long (here over a thousand octets: longer than gatehoused's
    own replies, which it formats on the stack), and the session goes on."""
    fb = fake_backend(fake_long_deferral)
    gw = gateway({'fake': dict(backend='fake')},
                 {'fake': dc_backend(dovecot, servers='127.0.0.1:%d' % fb.port)})
    c = ImapClient(gw.port('fake'), gw=gw)
    try:
        greet(c)
        c.expect('a001 LOGIN alice alicepw', 'NO [UNAVAILABLE] ' + LONG_DEFERRAL)
        c.expect('a002 NOOP', re.compile(r'^a002 OK'))
    finally:
        c.close()
    assert 'verdict=tempfail' in gw.log()


FAKES = {'silent': silent, 'bye': fake_bye, 'hangup': fake_hangup,
         'preauth': fake_preauth, 'bad-login': fake_bad_login}


@pytest.mark.parametrize('kind', sorted(FAKES))
def test_backend_misbehaves(gateway, dovecot, fake_backend, kind):
    """The only server is silent, says BYE, hangs up, offers PREAUTH, or
    answers the login with BAD: the client gets the temporary failure
    (within connect_timeout = 2), the password is not given to a PREAUTH
    server, and the gateway goes on serving."""
    fb = fake_backend(FAKES[kind])
    gw = gateway({'fake': dict(backend='fake'), 'up': dict(backend='dc')},
                 {'fake': dc_backend(dovecot, servers='127.0.0.1:%d' % fb.port, connect_timeout=2),
                  'dc': dc_backend(dovecot)})
    c = ImapClient(gw.port('fake'), gw=gw)
    try:
        greet(c)
        # bounded by the client's read timeout (30 s, fifteen times the
        # connect_timeout): without the gateway's timer a silent server
        # would hold the login for ever
        c.expect('a001 LOGIN alice alicepw', TEMPFAIL)
        logout_pre = c.expect('a002 LOGOUT', re.compile(r'^a002 OK'))
        assert logout_pre[0] and logout_pre[0][0].startswith('* BYE'), logout_pre
    finally:
        c.close()
    assert fb.connections >= 1
    imap_session_works(gw.port('up'), 'bob', ctx=gw.log)


@pytest.mark.parametrize('kind', ['silent', 'bye', 'hangup'])
def test_failover_from_misbehaving_server(gateway, dovecot, fake_backend, kind):
    """servers = FAKE DC and DC FAKE: a server that does not greet within
    connect_timeout, greets with BYE or hangs up is passed over for the next
    (gatehouse.conf(5): "does not answer within connect_timeout")."""
    fb = fake_backend(FAKES[kind])
    fake, dc = '127.0.0.1:%d' % fb.port, '127.0.0.1:%d' % dovecot.imap_port
    gw = gateway({'ab': dict(backend='ab'), 'ba': dict(backend='ba')},
                 {'ab': dc_backend(dovecot, servers='%s %s' % (fake, dc), connect_timeout=2),
                  'ba': dc_backend(dovecot, servers='%s %s' % (dc, fake), connect_timeout=2)})
    for listener in ('ab', 'ba'):
        for user in ('alice', 'bob', 'carol', DAVE):
            c = ImapClient(gw.port(listener), gw=gw)
            try:
                greet(c)
                login_ok(c, 'f1 LOGIN %s %s' % (user, imap_quote(GW_USERS[user])))
                logout(c, 'f2')
            finally:
                c.close()
    assert fb.connections >= 1, 'the fake server was never tried'


def test_backend_greeting_without_capabilities(gateway, dovecot, fake_backend):
    """Dovecot behind a relay that drops [CAPABILITY] from its greeting: the
    gateway asks CAPABILITY itself, and the client sees none of that."""
    fb = fake_backend(relay_without_greeting_caps(dovecot.imap_port))
    gw = gateway({'imap': dict(backend='r')},
                 {'r': dc_backend(dovecot, servers='127.0.0.1:%d' % fb.port, connect_timeout=3)})
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, 'a001 LOGIN carol carolpw', caps_untagged=True)
        select_inbox(c)
        logout(c)
    finally:
        c.close()
    dovecot.wait_log(r'Login: user=<carol>', mark)


def test_backend_capabilities_oddly_written(gateway, dovecot, fake_backend):
    """A greeting whose [CAPABILITY] code has lower-case atoms, runs of
    spaces and tabs and a blank before the bracket: the gateway still reads
    SASL-IR and AUTH=PLAIN from it (it logs in with AUTHENTICATE PLAIN and
    an initial response, and asks no CAPABILITY)."""
    sent = []
    fb = fake_backend(Relay(
        dovecot.imap_port,
        greeting=b'* OK [CAPABILITY  imap4rev1 \t sasl-ir   id\tauth=plain  ] fake ready.\r\n',
        sent=sent))
    gw = gateway({'imap': dict(backend='r')},
                 {'r': dc_backend(dovecot, servers='127.0.0.1:%d' % fb.port, connect_timeout=3)})
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, 'a001 LOGIN carol carolpw')
        logout(c)
    finally:
        c.close()
    commands = b''.join(sent)
    assert b' AUTHENTICATE PLAIN %s\r\n' % b64('\0carol\0carolpw').encode() in commands, commands
    assert b' CAPABILITY' not in commands.upper(), commands


def test_backend_logindisabled_oddly_written(gateway, dovecot, fake_backend):
    """A greeting offering only `logindisabled` (lower case, tab-separated),
    no AUTH=PLAIN: the gateway must not send the password in a LOGIN; the
    client gets the temporary failure."""
    sent = []
    fb = fake_backend(Relay(
        dovecot.imap_port, greeting=b'* OK [CAPABILITY imap4rev1\tlogindisabled] fake ready.\r\n',
        sent=sent))
    gw = gateway({'imap': dict(backend='r')},
                 {'r': dc_backend(dovecot, servers='127.0.0.1:%d' % fb.port, connect_timeout=3)})
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        c.expect('a001 LOGIN carol carolpw', TEMPFAIL)
    finally:
        c.close()
    commands = b''.join(sent)
    assert b'carolpw' not in commands and b64('\0carol\0carolpw').encode() not in commands, \
        commands
    assert 'LOGINDISABLED' in gw.log(), gw.log()[-2000:]


@pytest.mark.parametrize('backend', ['dovecot', 'dovecot-no-id', 'no-greeting-caps'])
@pytest.mark.parametrize('tag', ['ghi', 'ghc', 'GHI', 'GHC', 'Ghi', 'ghi2'])
def test_client_tag_like_the_gateways(gateway, dovecot, fake_backend, tag, backend):
    """The gateway's own backend commands (ID, CAPABILITY) use tags of their
    own (ghi, ghc; ghi2, ghc2 when the client's tag is ghi, ghc); a client
    whose tag looks like one of them, in any case (the gateway matches the
    backend's tagged replies case-insensitively), still gets Dovecot's login
    reply under its tag, not a timeout."""
    servers = '127.0.0.1:%d' % dovecot.imap_port
    relay = backend == 'no-greeting-caps'
    if relay:
        servers = '127.0.0.1:%d' % fake_backend(relay_without_greeting_caps(dovecot.imap_port)).port
    gw = gateway({'imap': dict(backend='dc')},
                 {'dc': dc_backend(dovecot, servers=servers, connect_timeout=3,
                                   forward_client=backend != 'dovecot-no-id')})
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, '%s LOGIN alice alicepw' % tag, caps_untagged=relay)
        logout(c, tag + 'x')
    finally:
        c.close()


# ---------- after the login: either side going away ----------

def test_backend_goes_away_after_login(gateway, dovecot, fake_backend):
    """The backend connection breaks in the middle of a session: the client's
    connection is closed too (at most after a '* BYE' line), and the gateway
    goes on serving."""
    relay = Relay(dovecot.imap_port)
    fb = fake_backend(relay)
    gw = gateway({'imap': dict(backend='r')},
                 {'r': dc_backend(dovecot, servers='127.0.0.1:%d' % fb.port)})
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, 'a001 LOGIN alice alicepw')
        select_inbox(c)
        relay.cut()
        lines = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = c.raw_line()
            except ConnectionResetError:
                break
            except socket.timeout:
                # silence is not a close: the client would hang
                raise AssertionError('client connection still open %.0f s after the backend '
                                     'went away; got %r' % (TIMEOUT, lines))
            if not line:
                break
            lines.append(line)
        else:
            raise AssertionError('client connection still open %.0f s after the backend went away' % TIMEOUT)
        assert all(ln.startswith(b'* BYE') for ln in lines), lines
    finally:
        c.close()
    wait_for(lambda: 'session end:' in gw.log(), what='session end in the gateway log:\n' + gw.log()[-2000:])
    imap_session_works(gw.port(), 'bob', ctx=gw.log)


@pytest.fixture(scope='module')
def big_mailbox(dovecot):
    """A mailbox of carol's holding one 8 MB message, put there directly."""
    mbox = marker('bigbox')
    msg = b'Subject: big\r\n\r\n' + b''.join(b'%07d big message line ........................................\r\n' % i
                                            for i in range(8 * 1024 * 1024 // 72))
    with imaplib.IMAP4('127.0.0.1', dovecot.imap_port, timeout=TIMEOUT) as m:
        m.login('carol', 'carolpw')
        assert m.create(mbox)[0] == 'OK'
        assert m.append(mbox, None, None, msg)[0] == 'OK'
        m.logout()
    return mbox


@pytest.mark.parametrize('reset', [False, True], ids=['close', 'reset'])
def test_client_vanishes_mid_fetch(gw, dovecot, big_mailbox, reset):
    """A client that goes away while Dovecot is sending it 8 MB: the gateway
    ends the session (both connections) and goes on serving."""
    mark = dovecot.mark()
    c = ImapClient(gw.port(), gw=gw)
    try:
        greet(c)
        login_ok(c, 'a001 LOGIN carol carolpw')
        c.expect('a002 SELECT %s' % big_mailbox, SELECT_OK)
        c.line('a003 FETCH 1 BODY.PEEK[]')
        assert c.read_line().startswith('* 1 FETCH (BODY[] {')
        c.read_bytes(65536)
    finally:
        c.close(reset=reset)
    # Dovecot sees its connection close: the gateway did not keep it open
    dovecot.wait_log(r'imap\(carol\)<[^>]*><[^>]*>: Info: Disconnected', mark, timeout=15)
    wait_for(lambda: 'session end:' in gw.log(), what='session end in the gateway log:\n' + gw.log()[-2000:])
    imap_session_works(gw.port(), 'carol', ctx=gw.log)
