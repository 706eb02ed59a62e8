"""SMTP through gatehoused to real backends, end to end: the classic telnet
sessions over a raw socket (CRLF and bare LF), swaks, curl and smtplib
clients, the three backend login methods (XCLIENT to Postfix, passthrough and
master user to Dovecot submission), a dead backend, fail-over to the next
server, and a client that vanishes in the middle of DATA.  Delivery is checked
in Postfix's maildirs."""
import base64
import re
import shutil
import smtplib
import subprocess
import time

import pytest

from backends import MASTER_PASSWORD, MASTER_USER, header, headers_and_body, marker, received
from lib.clients import SmtpClient, b64
from lib.gateway import ctl
from lib.net import TIMEOUT, free_port, wait_for
from lib.proc import make_tmpdir

USER123_PW = 'user123-pw'
GW_USERS = {'alice': 'alicepw', 'bob': 'bobpw', 'carol': 'carolpw', 'user123': USER123_PW}

GREETING = '220 gw.test ESMTP'
AUTH_OK = '235 2.7.0 Authentication successful'
AUTH_BAD = '535 5.7.8 Authentication credentials invalid'
AUTH_NEEDED = '530 5.7.0 Authentication required'
AUTH_TEMPFAIL = '454 4.7.0 Temporary authentication failure'


@pytest.fixture(scope='module')
def user123_hash():
    """user123 gets a real (yescrypt) hash, the others {PLAIN}."""
    r = ctl('hash-password', stdin=USER123_PW + '\n')
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def gateway(gateways, user123_hash):
    """gateway(listeners, backends, users=None) -> a running gatehoused
    (lib.gateway.start_gateway(): listeners without listen, protocol smtp
    unless given); stopped, and checked to be still alive, at the end of
    the test."""
    def start(listeners, backends, users=None):
        if users is None:
            users = dict(GW_USERS, user123=user123_hash)
        return gateways.start(listeners, backends, users=users, protocol='smtp')
    return start


def xclient_backend(postfix, **extra):
    return dict(protocol='smtp', servers='127.0.0.1:%d' % postfix.port, login='xclient', **extra)


@pytest.fixture
def gw(gateway, postfix):
    """The usual gateway: mx (require_auth = no) and submission
    (require_auth = yes), both to Postfix with XCLIENT."""
    return gateway({'mx': dict(require_auth=False, backend='pf'),
                    'submission': dict(require_auth=True, backend='pf')},
                   {'pf': xclient_backend(postfix)})


EOLS = pytest.mark.parametrize('eol', [b'\r\n', b'\n'], ids=['crlf', 'lf'])


# ---------- the backends alone (tell a broken fixture from a broken gateway) ----------

def test_backend_postfix_xclient(postfix):
    subj = marker('pf-direct')
    with smtplib.SMTP('127.0.0.1', postfix.port, timeout=TIMEOUT) as s:
        s.ehlo('gw.test')
        assert 'LOGIN' in s.esmtp_features['xclient'].split()
        assert s.docmd('XCLIENT', 'ADDR=192.0.2.7 PORT=4711 HELO=client.example.org LOGIN=alice')[0] == 220
        s.ehlo('client.example.org')
        s.sendmail('x@example.com', ['bob@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
    rcv = received(postfix.wait_message('bob', 'Subject: ' + subj))
    assert b'[192.0.2.7]' in rcv and b'(Authenticated sender: alice)' in rcv, rcv


def test_backend_dovecot_submission(postfix, dovecot):
    """A user's own login and the master user's (SASL PLAIN authzid) both
    relay to Postfix; wrong master credentials are refused."""
    sent = []
    for authzid, authcid, pw in (('', 'alice', 'alicepw'), ('bob', MASTER_USER, MASTER_PASSWORD)):
        subj = marker('dc-direct')
        with smtplib.SMTP('127.0.0.1', dovecot.submission_port, timeout=TIMEOUT) as s:
            s.ehlo('gw.test')
            tok = base64.b64encode(('%s\0%s\0%s' % (authzid, authcid, pw)).encode()).decode()
            assert s.docmd('AUTH', 'PLAIN ' + tok)[0] == 235
            s.sendmail('x@example.com', ['carol@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
        sent.append((authzid or authcid, subj))
    for user, subj in sent:
        rcv = received(postfix.wait_message('carol', 'Subject: ' + subj))
        assert b'(Authenticated sender: %s)' % user.encode() in rcv, rcv
    with smtplib.SMTP('127.0.0.1', dovecot.submission_port, timeout=TIMEOUT) as s:
        s.ehlo('gw.test')
        tok = base64.b64encode(('bob\0%s\0wrong' % MASTER_USER).encode()).decode()
        assert s.docmd('AUTH', 'PLAIN ' + tok)[0] == 535


# ---------- the telnet sessions ----------

@EOLS
def test_telnet_mx_unauthenticated(gw, postfix, eol):
    """Session 1: require_auth = no; the backend session starts at MAIL."""
    c = SmtpClient(gw.port('mx'), eol=eol, gw=gw)
    try:
        c.expect(None, GREETING)
        c.expect('HELO user123.example.com', 250)
        c.expect('MAIL FROM: user123@example.com', 250)
        c.expect('RCPT TO: test@example.com', 250)
        c.expect('DATA', 354)
        c.line('Hello')
        queued = c.expect('.', 250)[-1]
        c.expect('QUIT', 221)
        assert c.eof()
    finally:
        c.close()
    msg = postfix.wait_queued('test', queued)
    assert header(msg, 'Return-Path') == b'<user123@example.com>'
    assert header(msg, 'X-Original-To') == b'test@example.com'
    assert header(msg, 'Delivered-To') == b'test@example.com'
    assert headers_and_body(msg)[1].strip() == b'Hello'
    rcv = received(msg)
    # XCLIENT HELO= and ADDR= from the client, not the gateway's own EHLO
    assert rcv.startswith(b'Received: from user123.example.com ('), rcv
    assert b'[127.0.0.1]' in rcv, rcv
    assert b'Authenticated sender' not in rcv, rcv


@EOLS
def test_telnet_submission_auth_login(gw, postfix, eol):
    """Session 2: require_auth = yes, AUTH LOGIN (lower case, no EHLO)."""
    c = SmtpClient(gw.port('submission'), eol=eol, gw=gw)
    try:
        c.expect(None, GREETING)
        c.expect('auth login', '334 VXNlcm5hbWU6')
        c.expect(b64('user123'), '334 UGFzc3dvcmQ6')
        c.expect(b64(USER123_PW), AUTH_OK)
        c.expect('MAIL FROM: user123@example.com', 250)
        c.expect('RCPT TO: test@example.com', 250)
        c.expect('DATA', 354)
        c.line('Hello')
        queued = c.expect('.', 250)[-1]
        c.expect('quit', 221)
        assert c.eof()
    finally:
        c.close()
    msg = postfix.wait_queued('test', queued)
    assert header(msg, 'Return-Path') == b'<user123@example.com>'
    assert header(msg, 'X-Original-To') == b'test@example.com'
    assert headers_and_body(msg)[1].strip() == b'Hello'
    rcv = received(msg)
    assert b'(Authenticated sender: user123)' in rcv, rcv
    assert b'[127.0.0.1]' in rcv, rcv
    assert b'with ESMTPA' in rcv, rcv


@EOLS
def test_telnet_submission_wrong_password(gw, postfix, eol):
    """Session 3: a wrong password is refused, and so is MAIL after it."""
    c = SmtpClient(gw.port('submission'), eol=eol, gw=gw)
    try:
        c.expect(None, GREETING)
        c.expect('auth login', '334 VXNlcm5hbWU6')
        c.expect(b64('user123'), '334 UGFzc3dvcmQ6')
        c.expect(b64(USER123_PW + 'x'), AUTH_BAD)
        c.expect('MAIL FROM: user123@example.com', AUTH_NEEDED)
        c.expect('QUIT', 221)
        assert c.eof()
    finally:
        c.close()


# ---------- real clients ----------

def swaks(port, *args, timeout=30):
    return subprocess.run(['swaks', '--server', '127.0.0.1:%d' % port, '--timeout', '10'] + list(args),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize('pipeline', [False, True], ids=['plain', 'pipeline'])
@pytest.mark.parametrize('mech', ['LOGIN', 'PLAIN'])
def test_swaks(gw, postfix, mech, pipeline):
    subj = marker('swaks-%s-%s' % (mech, pipeline))
    args = ['--to', 'alice@example.com', '--from', 'x@example.com', '--auth', mech,
            '--auth-user', 'bob', '--auth-password', 'bobpw', '--header', 'Subject: ' + subj]
    if pipeline:
        args.append('--pipeline')
    r = swaks(gw.port('submission'), *args)
    assert r.returncode == 0, r.stdout + r.stderr + '\n--- gatehoused log:\n' + gw.log()[-2500:]
    msg = postfix.wait_message('alice', 'Subject: ' + subj)
    assert b'(Authenticated sender: bob)' in received(msg)
    assert header(msg, 'Return-Path') == b'<x@example.com>'


def test_swaks_wrong_password(gw):
    r = swaks(gw.port('submission'), '--to', 'alice@example.com', '--from', 'x@example.com',
              '--auth', 'LOGIN', '--auth-user', 'bob', '--auth-password', 'nope')
    assert r.returncode == 28, r.stdout + r.stderr     # swaks: AUTH failed
    assert '535 5.7.8 Authentication credentials invalid' in r.stdout


def test_swaks_mx_pipeline(gw, postfix):
    """require_auth = no with MAIL, RCPT and DATA pipelined: the backend is
    joined at MAIL, and the rest follows."""
    subj = marker('swaks-mx')
    r = swaks(gw.port('mx'), '--to', 'carol@example.com', '--from', 'x@example.net',
              '--ehlo', 'mx-client.example.org', '--header', 'Subject: ' + subj, '--pipeline')
    assert r.returncode == 0, r.stdout + r.stderr + '\n--- gatehoused log:\n' + gw.log()[-2500:]
    rcv = received(postfix.wait_message('carol', 'Subject: ' + subj))
    assert rcv.startswith(b'Received: from mx-client.example.org ('), rcv
    assert b'Authenticated sender' not in rcv


def test_smtplib(gw, postfix):
    subj = marker('smtplib')
    with smtplib.SMTP('127.0.0.1', gw.port('submission'), timeout=TIMEOUT) as s:
        code, greet = s.ehlo('smtplib.example.org')
        assert code == 250
        assert 'auth' in s.esmtp_features
        s.login('carol', 'carolpw')
        refused = s.sendmail('carol@example.com', ['bob@example.com', 'alice@example.com'],
                             'Subject: %s\r\n\r\nbody\r\n' % subj)
        assert refused == {}
    for user in ('bob', 'alice'):
        msg = postfix.wait_message(user, 'Subject: ' + subj)
        rcv = received(msg)
        assert b'(Authenticated sender: carol)' in rcv, rcv
        assert rcv.startswith(b'Received: from smtplib.example.org ('), rcv
        assert header(msg, 'Return-Path') == b'<carol@example.com>'


def test_smtplib_refusals_are_backend_replies(gw, postfix):
    """After AUTH the replies are Postfix's own: an unknown mailbox is
    refused with Postfix's 550 5.1.1."""
    with smtplib.SMTP('127.0.0.1', gw.port('submission'), timeout=TIMEOUT) as s:
        s.ehlo('x.example.org')
        s.login('alice', 'alicepw')
        assert s.mail('alice@example.com')[0] == 250
        code, text = s.rcpt('nosuchuser@example.com')
        assert code == 550 and b'5.1.1' in text and b'User unknown in virtual mailbox table' in text
        assert s.noop()[0] == 250


@pytest.mark.parametrize('mech', ['LOGIN', 'PLAIN'])
def test_curl(gw, postfix, mech):
    subj = marker('curl-' + mech)
    f = gw.dir / 'mail.txt'
    f.write_text('From: alice@example.com\r\nTo: carol@example.com\r\nSubject: %s\r\n\r\ncurl body\r\n' % subj)
    r = subprocess.run(['curl', '-sS', '--max-time', '20', 'smtp://127.0.0.1:%d' % gw.port('submission'),
                        '--mail-from', 'alice@example.com', '--mail-rcpt', 'carol@example.com',
                        '--upload-file', str(f), '--user', 'alice:alicepw',
                        '--login-options', 'AUTH=' + mech],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr + '\n--- gatehoused log:\n' + gw.log()[-2500:]
    msg = postfix.wait_message('carol', 'Subject: ' + subj)
    assert b'(Authenticated sender: alice)' in received(msg)
    assert b'curl body' in headers_and_body(msg)[1]


# ---------- backend login methods ----------

def test_login_xclient_postfix(gateway, postfix):
    gw = gateway({'sub': dict(require_auth=True, backend='pf')}, {'pf': xclient_backend(postfix)})
    subj = marker('xclient')
    with smtplib.SMTP('127.0.0.1', gw.port('sub'), timeout=TIMEOUT) as s:
        s.ehlo('xc-client.example.org')
        s.login('carol', 'carolpw')
        s.sendmail('carol@example.com', ['alice@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
    rcv = received(postfix.wait_message('alice', 'Subject: ' + subj))
    # one hop only: Postfix saw the client (HELO, address) and the login via XCLIENT
    assert rcv.startswith(b'Received: from xc-client.example.org (')
    assert b'[127.0.0.1]' in rcv and b'(Authenticated sender: carol)' in rcv
    assert b'by backend-mta.example.test (Postfix) with ESMTPA' in rcv


def test_login_passthrough_dovecot(gateway, postfix, dovecot):
    gw = gateway({'sub': dict(require_auth=True, backend='dc')},
                 {'dc': dict(protocol='smtp', servers='127.0.0.1:%d' % dovecot.submission_port,
                             login='passthrough')})
    subj = marker('passthrough')
    with smtplib.SMTP('127.0.0.1', gw.port('sub'), timeout=TIMEOUT) as s:
        s.ehlo('pt-client.example.org')
        s.login('carol', 'carolpw')
        s.sendmail('carol@example.com', ['bob@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
    msg = postfix.wait_message('bob', 'Subject: ' + subj)
    head, _ = headers_and_body(msg)
    assert b'(Authenticated sender: carol)' in received(msg)     # Dovecot's XCLIENT to Postfix
    assert b'by backend.example.test with ESMTPA' in head          # Dovecot's own Received
    log = wait_for(lambda: 'Login: user=<carol>' in dovecot.log_text() and dovecot.log_text(),
                   what='carol logged in at dovecot')
    assert 'Master user logging in as carol' not in log


def test_login_master_dovecot(gateway, postfix, dovecot):
    """login = master: the gateway logs in to Dovecot as proxy (SASL authzid =
    the user).  The user's gateway password differs from the Dovecot one, so a
    passthrough login could not succeed."""
    d = make_tmpdir('gh-master-')
    try:
        pwfile = d / 'master-password'
        pwfile.write_text(MASTER_PASSWORD + '\n')
        gw = gateway({'sub': dict(require_auth=True, backend='dc')},
                     {'dc': dict(protocol='smtp', servers='127.0.0.1:%d' % dovecot.submission_port,
                                 login='master', master_user=MASTER_USER,
                                 master_password_file=str(pwfile))},
                     users={'bob': 'bob-gateway-only-pw'})
        subj = marker('master')
        with smtplib.SMTP('127.0.0.1', gw.port('sub'), timeout=TIMEOUT) as s:
            s.ehlo('m-client.example.org')
            s.login('bob', 'bob-gateway-only-pw')
            s.sendmail('bob@example.com', ['carol@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
        msg = postfix.wait_message('carol', 'Subject: ' + subj)
        assert b'(Authenticated sender: bob)' in received(msg)
        assert b'by backend.example.test with ESMTPA' in headers_and_body(msg)[0]
        # two processes' lines, so in either order
        wait_for(lambda: 'Master user logging in as bob' in dovecot.log_text()
                 and 'Login: user=<bob>' in dovecot.log_text(),
                 what='the master login of bob in the dovecot log')
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------- failures ----------

def test_backend_down(gateway, postfix):
    dead = free_port()        # bound and closed: connections are refused
    gw = gateway({'down': dict(require_auth=True, backend='dead'),
                  'up': dict(require_auth=True, backend='pf')},
                 {'dead': dict(protocol='smtp', servers='127.0.0.1:%d' % dead, login='xclient'),
                  'pf': xclient_backend(postfix)})
    for mech in ('PLAIN', 'LOGIN'):
        c = SmtpClient(gw.port('down'), gw=gw)
        try:
            c.expect(None, GREETING)
            c.expect('EHLO client.example.org', 250)
            if mech == 'PLAIN':
                c.expect('AUTH PLAIN ' + b64('\0alice\0alicepw'), AUTH_TEMPFAIL)
            else:
                c.expect('AUTH LOGIN', '334 VXNlcm5hbWU6')
                c.expect(b64('alice'), '334 UGFzc3dvcmQ6')
                c.expect(b64('alicepw'), AUTH_TEMPFAIL)
            c.expect('MAIL FROM:<alice@example.com>', AUTH_NEEDED)
            c.expect('QUIT', 221)
        finally:
            c.close()
    # right after: the gateway still serves a working listener
    subj = marker('after-down')
    with smtplib.SMTP('127.0.0.1', gw.port('up'), timeout=TIMEOUT) as s:
        s.ehlo('c.example.org')
        s.login('alice', 'alicepw')
        s.sendmail('alice@example.com', ['bob@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
    assert b'(Authenticated sender: alice)' in received(postfix.wait_message('bob', 'Subject: ' + subj))


def test_first_server_down_next_is_used(gateway, postfix):
    """servers = DEAD PF and PF DEAD: each user's hash picks its first server,
    so for every user one of the two orders starts with the dead one."""
    dead = free_port()
    gw = gateway({'ab': dict(require_auth=True, backend='ab'),
                  'ba': dict(require_auth=True, backend='ba')},
                 {'ab': xclient_backend(postfix) | dict(servers='127.0.0.1:%d 127.0.0.1:%d' % (dead, postfix.port)),
                  'ba': xclient_backend(postfix) | dict(servers='127.0.0.1:%d 127.0.0.1:%d' % (postfix.port, dead))})
    sent = []
    for listener in ('ab', 'ba'):
        for user in ('alice', 'bob', 'carol', 'user123'):
            pw = USER123_PW if user == 'user123' else GW_USERS[user]
            subj = marker('failover-%s-%s' % (listener, user))
            with smtplib.SMTP('127.0.0.1', gw.port(listener), timeout=TIMEOUT) as s:
                s.ehlo('f.example.org')
                s.login(user, pw)
                s.sendmail('%s@example.com' % user, ['carol@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
            sent.append((user, subj))
    for user, subj in sent:
        msg = postfix.wait_message('carol', 'Subject: ' + subj)
        assert b'(Authenticated sender: %s)' % user.encode() in received(msg)
    # the dead server really was tried (and failed over from)
    assert '127.0.0.1:%d' % dead in gw.log(), gw.log()[-3000:]


def test_users_file_route_without_port(gateway, postfix):
    """route=127.0.0.1 in the users file (no port): listener `routed` dials
    its backend's `port` (Postfix) instead of its servers (a dead one);
    listener `central` has follow_route = no and reaches Postfix through its
    servers although its `port` is the dead one."""
    dead = free_port()
    users = dict(GW_USERS, alice='{PLAIN}alicepw:route=127.0.0.1')
    gw = gateway({'routed': dict(require_auth=True, backend='routed'),
                  'central': dict(require_auth=True, backend='central')},
                 {'routed': xclient_backend(postfix, port=postfix.port)
                  | dict(servers='127.0.0.1:%d' % dead),
                  'central': xclient_backend(postfix, port=dead, follow_route=False)},
                 users=users)
    sent = []
    for listener in ('routed', 'central'):
        subj = marker('route-%s' % listener)
        with smtplib.SMTP('127.0.0.1', gw.port(listener), timeout=TIMEOUT) as s:
            s.ehlo('r.example.org')
            s.login('alice', 'alicepw')
            s.sendmail('alice@example.com', ['bob@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj)
        sent.append(subj)
    for subj in sent:
        assert b'(Authenticated sender: alice)' in received(postfix.wait_message('bob', 'Subject: ' + subj))

    def login_backends():
        got = re.findall(r'login: session=.* user="alice" .* backend=(\S+) ', gw.log())
        return got if len(got) == 2 else None
    backends = wait_for(login_backends, what='two login lines of alice')
    assert backends == ['127.0.0.1:%d' % postfix.port] * 2, backends
    assert not re.search(r'127\.0\.0\.1:%d\b' % dead, gw.log()), gw.log()[-3000:]


def test_client_vanishes_mid_data(gw, postfix):
    lost = re.compile(r'lost connection after DATA \(\d+ bytes\)')
    lost_before = len(lost.findall(postfix.log_text()))
    subj = marker('vanish')
    c = SmtpClient(gw.port('submission'), gw=gw)
    try:
        c.expect(None, GREETING)
        c.expect('EHLO v.example.org', 250)
        c.expect('AUTH PLAIN ' + b64('\0alice\0alicepw'), AUTH_OK)
        c.expect('MAIL FROM:<alice@example.com>', 250)
        c.expect('RCPT TO:<bob@example.com>', 250)
        c.expect('DATA', 354)
        c.sock.sendall(b'Subject: %s\r\n\r\nfirst line\r\nsecond line, no end' % subj.encode())
        time.sleep(0.2)
    finally:
        c.close()
    # Postfix sees the connection go away in DATA and discards the message
    wait_for(lambda: len(lost.findall(postfix.log_text())) > lost_before,
             timeout=15, what='postfix: lost connection after DATA\n' + postfix.log_text()[-2000:])
    # the gateway still works, and only the second message arrives
    subj2 = marker('after-vanish')
    with smtplib.SMTP('127.0.0.1', gw.port('submission'), timeout=TIMEOUT) as s:
        s.ehlo('c.example.org')
        s.login('alice', 'alicepw')
        s.sendmail('alice@example.com', ['bob@example.com'], 'Subject: %s\r\n\r\nx\r\n' % subj2)
    postfix.wait_message('bob', 'Subject: ' + subj2)
    time.sleep(1)
    assert postfix.find_messages(subj) == []
