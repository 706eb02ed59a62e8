"""TLS in gatehoused (GnuTLS), end to end: STARTTLS and implicit TLS for SMTP
and IMAP clients (replies exact, capabilities before and inside TLS, plaintext
commands injected behind STARTTLS dropped), the plaintext_auth policy matrix
(always / tls / trusted, from a trusted address, an untrusted one and in
TLS), real clients (swaks, curl, smtplib, imaplib, gnutls-cli) logging in and
delivering or fetching through the gateway, TLS in the login log line, TLS
towards the backends (Postfix STARTTLS and smtps, Dovecot STARTTLS and imaps,
certificate checks with the test CA: good name, wrong name, verify = no),
10 MB messages byte for byte with TLS on either leg, bad handshakes (silent,
garbage, stopped half way, 200 at once), SNI, a new certificate picked up on
SIGHUP, and a short TLS session under valgrind.

The backends are the TLS variants of backends.py (backends.TlsPostfix,
backends.TlsDovecot), one of each for the module; the certificates come from
a throw-away PKI (lib.pki).  Most front-end tests share one gatehoused (the
`gw` fixture, restarted if a test killed it) with a listener for each
combination; tests that need their own configuration start their own
(the `gateway` fixture)."""
import hashlib
import imaplib
import queue
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from backends import Dovecot, marker, received, running
from lib.clients import ImapClient, RawClient, SmtpClient, b64, plain_blob
from lib.gateway import start_gateway
from lib.net import TIMEOUT, wait_for
from lib.pki import client_context, fingerprint
from lib.proc import make_tmpdir

GW_USERS = {'alice': 'alicepw', 'bob': 'bobpw', 'carol': 'carolpw'}

SMTP_GREETING = ['220 gw.test ESMTP']
READY_TLS = ['220 2.0.0 Ready to start TLS']
TLS_ACTIVE = ['503 5.5.1 TLS already active']
STARTTLS_SYNTAX = ['501 5.5.4 Syntax: STARTTLS']
NO_TLS = ['454 4.7.0 TLS not available']
NEED_TLS = ['538 5.7.11 Encryption required for requested authentication mechanism']
AUTH_OK = ['235 2.7.0 Authentication successful']
AUTH_BAD = ['535 5.7.8 Authentication credentials invalid']
AUTH_NEEDED = ['530 5.7.0 Authentication required']
SMTP_TEMPFAIL = ['454 4.7.0 Temporary authentication failure']
EHLO_BASE = {'PIPELINING', 'SIZE', '8BITMIME', 'ENHANCEDSTATUSCODES'}

IMAP_CAPS_BASE = {'IMAP4rev1', 'SASL-IR', 'LOGIN-REFERRALS', 'ID', 'ENABLE', 'IDLE', 'LITERAL+'}
IMAP_AUTH = {'AUTH=PLAIN', 'AUTH=LOGIN'}
IMAP_BEGIN_TLS = 'OK Begin TLS negotiation now.'
IMAP_TLS_ACTIVE = 'BAD TLS already active.'
IMAP_NO_TLS = 'NO TLS not available.'
IMAP_PRIVACY = 'NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS.'
IMAP_AUTH_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'
IMAP_TEMPFAIL = 'NO [UNAVAILABLE] Temporary authentication failure.'

TLS_LOG = re.compile(r'tls=TLS1\.3/\S+')


# ------------------------------------------------------------ the gateway

def server_tls(pki):
    """The [tls] keys of a gateway with the PKI's server certificate."""
    return dict(certificate=pki.server_crt, key=pki.server_key)


@pytest.fixture
def gateway(gateways, pki):
    """gateway(listeners, backends, tls=None) -> a running gatehoused of its
    own (lib.gateway.start_gateway(): listeners without listen, protocol
    smtp unless given; tls: the [tls] keys, by default server_tls(pki));
    stopped at the end of the test, which fails if the daemon died
    meanwhile."""
    def start(listeners, backends, tls=None):
        return gateways.start(listeners, backends, users=GW_USERS,
                              tls=server_tls(pki) if tls is None else tls)
    return start


def shared_listeners():
    """Every listener the shared gateway has.  SMTP ones go to Postfix (plain,
    XCLIENT), IMAP ones to Dovecot (plain, passthrough)."""
    ls = {}
    for proto, pre in (('smtp', 's'), ('imap', 'i')):
        common = dict(protocol=proto, backend='pf' if proto == 'smtp' else 'dc')
        if proto == 'smtp':
            common['require_auth'] = True
        for pa in ('always', 'tls', 'trusted'):
            ls['%s_%s' % (pre, pa)] = dict(common, tls='starttls', plaintext_auth=pa)
        ls[pre + '_none'] = dict(common, tls='none', plaintext_auth='always')
        ls[pre + '_implicit'] = dict(common, tls='implicit', plaintext_auth='tls')
        # the handshake is bounded by min(idle_timeout, 60) s
        ls[pre + '_short'] = dict(common, tls='implicit', plaintext_auth='tls', idle_timeout=2)
        ls[pre + '_short_starttls'] = dict(common, tls='starttls', plaintext_auth='tls',
                                           idle_timeout=2)
    return ls


def shared_backends(postfix_tls, dovecot_tls):
    return {'pf': dict(protocol='smtp', servers='127.0.0.1:%d' % postfix_tls.port, login='xclient'),
            'dc': dict(protocol='imap', servers='127.0.0.1:%d' % dovecot_tls.imap_port,
                       login='passthrough')}


class SharedGateway:
    def __init__(self, pki, postfix_tls, dovecot_tls):
        self.args = (pki, postfix_tls, dovecot_tls)
        self.dir = make_tmpdir('gh-tls-shared-')
        self.gw = None
        self.generation = 0

    def get(self):
        if self.gw is None or not self.gw.alive():
            if self.gw is not None:
                self.gw.daemon.stop()
            pki, pf, dc = self.args
            self.generation += 1
            d = self.dir / ('g%d' % self.generation)
            d.mkdir()
            d.chmod(0o755)
            self.gw = start_gateway(d, shared_listeners(), shared_backends(pf, dc), GW_USERS,
                                    gatehouse={'trusted_networks': '127.0.0.1/32'},
                                    tls=server_tls(pki))
        return self.gw

    def close(self):
        if self.gw is not None:
            self.gw.daemon.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope='module')
def shared_gw(pki, postfix_tls, dovecot_tls):
    s = SharedGateway(pki, postfix_tls, dovecot_tls)
    yield s
    s.close()


@pytest.fixture
def gw(shared_gw):
    """The shared gatehoused (trusted_networks = 127.0.0.1/32), listeners:
    {s,i}_{always,tls,trusted}: tls = starttls with that plaintext_auth;
    {s,i}_none: tls = none, plaintext_auth = always;
    {s,i}_implicit: tls = implicit, plaintext_auth = tls;
    {s,i}_short / {s,i}_short_starttls: implicit / starttls, idle_timeout = 2.
    A test that kills it fails; the next one gets a fresh one."""
    g = shared_gw.get()
    yield g
    if not g.alive():
        rc = g.daemon.proc.returncode
        raise AssertionError('gatehoused died during the test (rc %s):\n%s' % (rc, g.log()[-3000:]))


# ------------------------------------------------------------ helpers

def smtp_send_mail(c, sender, rcpt, subject, body='body\r\n'):
    """MAIL/RCPT/DATA on an authenticated SmtpClient; the queue reply."""
    c.expect('MAIL FROM:<%s>' % sender, 250)
    c.expect('RCPT TO:<%s>' % rcpt, 250)
    c.expect('DATA', 354)
    c.send('Subject: %s\r\n\r\n%s.\r\n' % (subject, body))
    return c.expect(None, 250)[-1]


def imap_close(m):
    """Close an imaplib client whether or not LOGOUT already did."""
    try:
        m.shutdown()
    except OSError:
        pass


def login_lines(gw, mark, user):
    return re.findall(r'^.*login: .*user="%s" .*$' % re.escape(user), gw.since(mark), re.M)


def wait_login_line(gw, mark, user, verdict='ok'):
    def find():
        return [ln for ln in login_lines(gw, mark, user) if ' verdict=%s ' % verdict in ln]
    try:
        return wait_for(find, 10, what='login line')[-1]
    except AssertionError:
        raise AssertionError('no login line for user="%s" verdict=%s; log since mark:\n%s'
                             % (user, verdict, gw.since(mark)[-3000:]))


# ------------------------------------------------------------ fixtures alone

def test_fixture_pki(pki):
    """The PKI as tlsutil made it: server cert for localhost and 127.0.0.1,
    the other one for other.example only."""
    text = subprocess.run(['openssl', 'x509', '-noout', '-ext', 'subjectAltName', '-in',
                           str(pki.server_crt)], capture_output=True, text=True).stdout
    assert 'DNS:localhost' in text and 'IP Address:127.0.0.1' in text, text
    text = subprocess.run(['openssl', 'x509', '-noout', '-ext', 'subjectAltName', '-in',
                           str(pki.other_crt)], capture_output=True, text=True).stdout
    assert 'DNS:other.example' in text and 'IP Address' not in text, text
    assert fingerprint(pki.server_crt) != fingerprint(pki.other_crt)
    assert re.fullmatch(r'[0-9a-f]{64}', fingerprint(pki.server_crt))


def test_fixture_postfix_tls(pki, postfix_tls):
    ctx = client_context(pki)
    with smtplib.SMTP('127.0.0.1', postfix_tls.port, timeout=TIMEOUT) as s:
        s.ehlo('x')
        assert 'starttls' in s.esmtp_features and 'xclient' in s.esmtp_features
        s.starttls(context=ctx)
        assert fingerprint(s.sock.getpeercert(True)) == fingerprint(pki.server_crt)
        s.ehlo('x')
    with smtplib.SMTP_SSL('127.0.0.1', postfix_tls.smtps_port, timeout=TIMEOUT, context=ctx) as s:
        assert s.ehlo('x')[0] == 250
    with pytest.raises(ssl.SSLCertVerificationError):
        with smtplib.SMTP_SSL('127.0.0.1', postfix_tls.other_smtps_port, timeout=TIMEOUT, context=ctx):
            pass
    with smtplib.SMTP('127.0.0.1', postfix_tls.other_port, timeout=TIMEOUT) as s:
        s.ehlo('x')
        s.starttls(context=client_context(pki, check_hostname=False))
        assert fingerprint(s.sock.getpeercert(True)) == fingerprint(pki.other_crt)


def test_fixture_dovecot_tls(pki, dovecot_tls):
    ctx = client_context(pki)
    m = imaplib.IMAP4('127.0.0.1', dovecot_tls.imap_port, timeout=TIMEOUT)
    try:
        assert 'STARTTLS' in m.capabilities
        m.starttls(ssl_context=ctx)
        assert m.login('alice', 'alicepw')[0] == 'OK'
    finally:
        imap_close(m)
    m = imaplib.IMAP4_SSL('127.0.0.1', dovecot_tls.imaps_port, ssl_context=ctx, timeout=TIMEOUT)
    try:
        assert fingerprint(m.sock.getpeercert(True)) == fingerprint(pki.server_crt)
        assert m.login('bob', 'bobpw')[0] == 'OK'
    finally:
        imap_close(m)


# ------------------------------------------------------------ SMTP front end

def test_smtp_ehlo_before_tls(gw):
    with SmtpClient(gw.port('s_tls'), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        kw = c.ehlo()
        if kw != EHLO_BASE | {'STARTTLS'}:
            c.fail('plaintext_auth = tls, before TLS: EHLO keywords %r, want %r'
                   % (sorted(kw), sorted(EHLO_BASE | {'STARTTLS'})))
    with SmtpClient(gw.port('s_always'), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        kw = c.ehlo()
        if kw != EHLO_BASE | {'STARTTLS', 'AUTH PLAIN LOGIN'}:
            c.fail('plaintext_auth = always, before TLS: EHLO keywords %r' % sorted(kw))


def test_smtp_starttls_session(gw, pki, postfix_tls):
    subj = marker('starttls')
    with SmtpClient(gw.port('s_tls'), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        c.ehlo('pre-tls.example.org')
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), NEED_TLS)
        c.expect('STARTTLS', READY_TLS)
        c.starttls(client_context(pki))
        assert c.peer_fingerprint() == fingerprint(pki.server_crt)
        kw = c.ehlo('post-tls.example.org')
        if kw != EHLO_BASE | {'AUTH PLAIN LOGIN'}:
            c.fail('inside TLS: EHLO keywords %r, want %r' % (sorted(kw), sorted(EHLO_BASE | {'AUTH PLAIN LOGIN'})))
        c.expect('STARTTLS', TLS_ACTIVE)
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), AUTH_OK)
        queued = smtp_send_mail(c, 'alice@example.com', 'bob@example.com', subj)
        c.expect('QUIT', 221)
    msg = postfix_tls.wait_queued('bob', queued)
    rcv = received(msg)
    assert rcv.startswith(b'Received: from post-tls.example.org ('), rcv
    assert b'(Authenticated sender: alice)' in rcv, rcv


def test_smtp_starttls_with_argument(gw, pki):
    with SmtpClient(gw.port('s_tls'), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        c.ehlo()
        c.expect('STARTTLS x', STARTTLS_SYNTAX)
        c.expect('STARTTLS', READY_TLS)
        c.starttls(client_context(pki))
        c.ehlo()
        c.expect('QUIT', 221)


def test_smtp_starttls_not_available(gw):
    with SmtpClient(gw.port('s_none'), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        kw = c.ehlo()
        if kw != EHLO_BASE | {'AUTH PLAIN LOGIN'}:
            c.fail('tls = none: EHLO keywords %r' % sorted(kw))
        c.expect('STARTTLS', NO_TLS)
        c.expect('NOOP', 250)
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'wrong'), AUTH_BAD)


@pytest.mark.parametrize('mech', ['PLAIN-IR', 'PLAIN', 'LOGIN', 'LOGIN-IR'])
def test_smtp_auth_needs_tls(gw, mech):
    line = {'PLAIN-IR': 'AUTH PLAIN ' + plain_blob('alice', 'alicepw'), 'PLAIN': 'AUTH PLAIN',
            'LOGIN': 'AUTH LOGIN', 'LOGIN-IR': 'AUTH LOGIN ' + b64('alice')}[mech]
    with SmtpClient(gw.port('s_tls'), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        c.ehlo()
        c.expect(line, NEED_TLS)
        c.expect('NOOP', 250)


def test_smtp_helo_forgotten_after_starttls(gw, pki, postfix_tls):
    """After STARTTLS no EHLO is needed to go on (AUTH and MAIL work), but the
    pre-TLS EHLO name is forgotten: it must not reach the backend."""
    subj = marker('forgotten')
    with SmtpClient(gw.port('s_tls'), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        c.ehlo('before-tls.example.org')
        c.expect('STARTTLS', READY_TLS)
        c.starttls(client_context(pki))
        c.expect('MAIL FROM:<alice@example.com>', AUTH_NEEDED)
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), AUTH_OK)
        queued = smtp_send_mail(c, 'alice@example.com', 'carol@example.com', subj)
        c.expect('QUIT', 221)
    rcv = received(postfix_tls.wait_queued('carol', queued))
    assert b'before-tls.example.org' not in rcv, \
        'the EHLO name given before STARTTLS reached the backend: %r' % rcv


@pytest.mark.parametrize('injected', ['RSET', 'AUTH'])
@pytest.mark.parametrize('listener', ['s_always', 's_tls'])
def test_smtp_starttls_injection(gw, pki, listener, injected):
    """STARTTLS and RSET (or a valid AUTH PLAIN) in one write: only the 220
    comes back in plaintext, and the injected command is never answered,
    neither in plaintext nor inside TLS, nor acted on (no login)."""
    line = 'RSET' if injected == 'RSET' else 'AUTH PLAIN ' + plain_blob('alice', 'alicepw')
    with SmtpClient(gw.port(listener), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        c.ehlo()
        c.send('STARTTLS\r\n%s\r\n' % line)
        c.expect(None, READY_TLS)
        c.nothing_pending(0.5)       # no plaintext answer to RSET before the handshake
        c.starttls(client_context(pki))
        c.nothing_pending(1.5)       # nor inside TLS
        kw = c.ehlo()
        assert 'AUTH PLAIN LOGIN' in kw and 'STARTTLS' not in kw, kw
        c.expect('NOOP', 250)
        c.expect('MAIL FROM:<alice@example.com>', AUTH_NEEDED)    # the injected AUTH did nothing


def test_smtp_implicit(gw, pki, postfix_tls):
    subj = marker('implicit')
    with SmtpClient(gw.port('s_implicit'), gw=gw, tls=client_context(pki)) as c:
        assert c.peer_fingerprint() == fingerprint(pki.server_crt)
        c.expect(None, SMTP_GREETING)
        kw = c.ehlo('implicit.example.org')
        if kw != EHLO_BASE | {'AUTH PLAIN LOGIN'}:
            c.fail('implicit TLS: EHLO keywords %r' % sorted(kw))
        c.expect('STARTTLS', TLS_ACTIVE)
        c.expect('AUTH LOGIN', ['334 VXNlcm5hbWU6'])
        c.expect(b64('carol'), ['334 UGFzc3dvcmQ6'])
        c.expect(b64('carolpw'), AUTH_OK)
        queued = smtp_send_mail(c, 'carol@example.com', 'alice@example.com', subj)
        c.expect('QUIT', 221)
    rcv = received(postfix_tls.wait_queued('alice', queued))
    assert b'(Authenticated sender: carol)' in rcv, rcv


def test_smtp_implicit_never_plaintext(gw):
    """On an implicit-TLS port the server says nothing before the client's
    ClientHello (no plaintext greeting)."""
    with RawClient(gw.port('s_implicit'), gw=gw) as c:
        c.nothing_pending(1.0)


# ------------------------------------------------------------ IMAP front end

def test_imap_greeting_before_tls(gw):
    with ImapClient(gw.port('i_tls'), gw=gw) as c:
        caps = c.greeting_caps()
        want = IMAP_CAPS_BASE | {'STARTTLS', 'LOGINDISABLED'}
        if set(caps) != want:
            c.fail('plaintext_auth = tls, greeting caps %r, want %r' % (caps, sorted(want)))
        caps = c.capability('a')
        if set(caps) != want:
            c.fail('plaintext_auth = tls, CAPABILITY %r, want %r' % (caps, sorted(want)))
    with ImapClient(gw.port('i_always'), gw=gw) as c:
        want = IMAP_CAPS_BASE | {'STARTTLS'} | IMAP_AUTH
        caps = c.greeting_caps()
        if set(caps) != want:
            c.fail('plaintext_auth = always, greeting caps %r, want %r' % (caps, sorted(want)))
        if set(c.capability('a')) != want:
            c.fail('plaintext_auth = always, CAPABILITY differs from %r' % sorted(want))


def test_imap_starttls_session(gw, pki):
    with ImapClient(gw.port('i_tls'), gw=gw) as c:
        c.greeting_caps()
        c.expect('a LOGIN alice alicepw', IMAP_PRIVACY, untagged=[])
        c.expect('b STARTTLS', IMAP_BEGIN_TLS, untagged=[])
        c.starttls(client_context(pki))
        assert c.peer_fingerprint() == fingerprint(pki.server_crt)
        caps = c.capability('c')
        want = IMAP_CAPS_BASE | IMAP_AUTH
        if set(caps) != want:
            c.fail('inside TLS: CAPABILITY %r, want %r' % (caps, sorted(want)))
        c.expect('d STARTTLS', IMAP_TLS_ACTIVE, untagged=[])
        got = c.cmd('e LOGIN alice wrongpw')
        if got != ['e ' + IMAP_AUTH_FAILED]:
            c.fail('wrong password inside TLS: %r' % got)
        got = c.cmd('f LOGIN alice alicepw')
        if not got[-1].startswith('f OK '):
            c.fail('LOGIN inside TLS: %r' % got)
        got = c.cmd('g SELECT INBOX')
        if not got[-1].startswith('g OK '):
            c.fail('SELECT after TLS login: %r' % got)
        c.line('h LOGOUT')
        c.response('h')


def test_imap_starttls_syntax(gw, pki):
    with ImapClient(gw.port('i_tls'), gw=gw) as c:
        c.greeting_caps()
        c.expect('a STARTTLS x', 'BAD Syntax error.', untagged=[])
        c.expect('b STARTTLS', IMAP_BEGIN_TLS, untagged=[])
        c.starttls(client_context(pki))
        c.expect('c NOOP', 'OK NOOP completed.', untagged=[])


def test_imap_starttls_not_available(gw):
    with ImapClient(gw.port('i_none'), gw=gw) as c:
        caps = c.greeting_caps()
        if 'STARTTLS' in caps:
            c.fail('tls = none, but the greeting offers STARTTLS: %r' % caps)
        c.expect('a STARTTLS', IMAP_NO_TLS, untagged=[])
        if 'STARTTLS' in c.capability('b'):
            c.fail('tls = none, but CAPABILITY offers STARTTLS')
        c.expect('c NOOP', 'OK NOOP completed.', untagged=[])


@pytest.mark.parametrize('line', ['LOGIN alice alicepw', 'AUTHENTICATE PLAIN',
                                  'AUTHENTICATE PLAIN IR', 'AUTHENTICATE LOGIN'])
def test_imap_login_needs_tls(gw, line):
    line = line.replace('PLAIN IR', 'PLAIN ' + plain_blob('alice', 'alicepw'))
    with ImapClient(gw.port('i_tls'), gw=gw) as c:
        c.greeting_caps()
        c.expect('a ' + line, IMAP_PRIVACY, untagged=[])
        c.expect('b NOOP', 'OK NOOP completed.', untagged=[])


@pytest.mark.parametrize('injected', ['CAPABILITY', 'LOGIN alice alicepw'])
def test_imap_starttls_injection(gw, pki, injected):
    with ImapClient(gw.port('i_always'), gw=gw) as c:
        c.greeting_caps()
        c.send('a STARTTLS\r\nb %s\r\n' % injected)
        got = c.response('a')
        if got != ['a ' + IMAP_BEGIN_TLS]:
            c.fail('STARTTLS + CAPABILITY in one write: got %r before the handshake' % got)
        c.nothing_pending(0.5)
        c.starttls(client_context(pki))
        c.nothing_pending(1.5)       # "b ..." is never answered
        caps = c.capability('c')
        assert 'STARTTLS' not in caps, caps
        c.expect('d SELECT INBOX', 'BAD Command not allowed before login.', untagged=[])   # no login


def test_imap_implicit(gw, pki):
    with ImapClient(gw.port('i_implicit'), gw=gw, tls=client_context(pki)) as c:
        assert c.peer_fingerprint() == fingerprint(pki.server_crt)
        caps = c.greeting_caps()
        want = IMAP_CAPS_BASE | IMAP_AUTH
        if set(caps) != want:
            c.fail('implicit TLS greeting caps %r, want %r' % (caps, sorted(want)))
        c.expect('a STARTTLS', IMAP_TLS_ACTIVE, untagged=[])
        got = c.cmd('b AUTHENTICATE PLAIN ' + plain_blob('bob', 'bobpw'))
        if not got[-1].startswith('b OK '):
            c.fail('AUTHENTICATE PLAIN over implicit TLS: %r' % got)
        got = c.cmd('c SELECT INBOX')
        if not got[-1].startswith('c OK '):
            c.fail('SELECT: %r' % got)


def test_imap_implicit_never_plaintext(gw):
    with RawClient(gw.port('i_implicit'), gw=gw) as c:
        c.nothing_pending(1.0)


# ------------------------------------------------------------ policy matrix

WHERE = ['trusted', 'untrusted', 'tls']
ALLOWED = {'always': {'trusted', 'untrusted', 'tls'}, 'tls': {'tls'}, 'trusted': {'trusted', 'tls'}}


@pytest.mark.parametrize('where', WHERE)
@pytest.mark.parametrize('policy', ['always', 'tls', 'trusted'])
def test_policy_smtp(gw, pki, policy, where):
    """trusted_networks = 127.0.0.1/32: 127.0.0.1 is trusted, 127.0.0.2 not;
    the TLS case connects from 127.0.0.2."""
    allowed = where in ALLOWED[policy]
    src = '127.0.0.1' if where == 'trusted' else '127.0.0.2'
    with SmtpClient(gw.port('s_' + policy), gw=gw, source=src) as c:
        c.expect(None, SMTP_GREETING)
        if where == 'tls':
            c.ehlo()
            c.expect('STARTTLS', READY_TLS)
            c.starttls(client_context(pki))
        kw = c.ehlo()
        if ('AUTH PLAIN LOGIN' in kw) != allowed:
            c.fail('plaintext_auth = %s, %s: EHLO %s AUTH (keywords %r)'
                   % (policy, where, 'lacks' if allowed else 'offers', sorted(kw)))
        if allowed:
            c.expect('AUTH PLAIN ' + plain_blob('alice', 'nope'), AUTH_BAD)
            c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), AUTH_OK)
        else:
            c.expect('AUTH PLAIN ' + plain_blob('alice', 'nope'), NEED_TLS)
            c.expect('AUTH LOGIN', NEED_TLS)
            c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), NEED_TLS)
            c.expect('MAIL FROM:<alice@example.com>', AUTH_NEEDED)
        c.expect('QUIT', 221)


@pytest.mark.parametrize('where', WHERE)
@pytest.mark.parametrize('policy', ['always', 'tls', 'trusted'])
def test_policy_imap(gw, pki, policy, where):
    allowed = where in ALLOWED[policy]
    src = '127.0.0.1' if where == 'trusted' else '127.0.0.2'
    with ImapClient(gw.port('i_' + policy), gw=gw, source=src) as c:
        greeting_caps = c.greeting_caps()
        if where == 'tls':
            c.expect('t STARTTLS', IMAP_BEGIN_TLS, untagged=[])
            c.starttls(client_context(pki))
        caps = set(c.capability('a'))
        if where != 'tls' and caps != set(greeting_caps):
            c.fail('greeting caps %r differ from CAPABILITY %r' % (greeting_caps, sorted(caps)))
        want = IMAP_AUTH if allowed else {'LOGINDISABLED'}
        if not want <= caps or (caps & (IMAP_AUTH | {'LOGINDISABLED'})) != want:
            c.fail('plaintext_auth = %s, %s: capabilities %r, want %r among them (and not the other)'
                   % (policy, where, sorted(caps), sorted(want)))
        if allowed:
            c.expect('b LOGIN alice nope', IMAP_AUTH_FAILED, untagged=[])
            got = c.cmd('c LOGIN alice alicepw')
            if not got[-1].startswith('c OK '):
                c.fail('LOGIN with the right password: %r' % got)
        else:
            c.expect('b LOGIN alice nope', IMAP_PRIVACY, untagged=[])
            c.expect('c AUTHENTICATE PLAIN ' + plain_blob('alice', 'alicepw'), IMAP_PRIVACY, untagged=[])
            c.expect('d LOGIN alice alicepw', IMAP_PRIVACY, untagged=[])


# ------------------------------------------------------------ the login log line

def test_login_log_tls(gw, pki):
    mark = gw.mark()
    with SmtpClient(gw.port('s_always'), gw=gw) as c:      # plain
        c.expect(None, SMTP_GREETING)
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), AUTH_OK)
    with SmtpClient(gw.port('s_tls'), gw=gw) as c:         # STARTTLS
        c.expect(None, SMTP_GREETING)
        c.expect('STARTTLS', READY_TLS)
        c.starttls(client_context(pki))
        c.expect('AUTH PLAIN ' + plain_blob('bob', 'bobpw'), AUTH_OK)
    with ImapClient(gw.port('i_implicit'), gw=gw, tls=client_context(pki)) as c:
        c.greeting_caps()
        got = c.cmd('a LOGIN carol carolpw')
        assert got[-1].startswith('a OK '), got
    plain = wait_login_line(gw, mark, 'alice')
    assert ' tls=no ' in plain, 'plaintext login, want tls=no: %s' % plain
    for user in ('bob', 'carol'):
        ln = wait_login_line(gw, mark, user)
        assert TLS_LOG.search(ln), 'TLS login (%s), want tls=TLS1.3/<cipher>: %s' % (user, ln)


# ------------------------------------------------------------ real clients

def run(argv, timeout=40, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)


def explain(r, gw):
    return 'rc %s\n--- stdout:\n%s\n--- stderr:\n%s\n--- gatehoused log:\n%s' % (
        r.returncode, r.stdout[-3000:], r.stderr[-3000:], gw.log()[-2500:])


@pytest.mark.parametrize('pipeline', [False, True], ids=['plain', 'pipeline'])
@pytest.mark.parametrize('mode', ['tls', 'tlsc'])
def test_swaks(gw, postfix_tls, mode, pipeline):
    listener = 's_tls' if mode == 'tls' else 's_implicit'
    subj = marker('swaks-' + mode)
    r = run(['swaks', '--server', '127.0.0.1:%d' % gw.port(listener), '--timeout', '10', '--' + mode,
             '--to', 'alice@example.com', '--from', 'bob@example.com', '--auth', 'LOGIN',
             '--auth-user', 'bob', '--auth-password', 'bobpw', '--header', 'Subject: ' + subj]
            + (['--pipeline'] if pipeline else []))
    assert r.returncode == 0, explain(r, gw)
    msg = postfix_tls.wait_message('alice', 'Subject: ' + subj)
    assert b'(Authenticated sender: bob)' in received(msg)


@pytest.mark.parametrize('scheme', ['smtp', 'smtps'])
def test_curl_smtp(gw, pki, postfix_tls, scheme):
    listener = 's_tls' if scheme == 'smtp' else 's_implicit'
    subj = marker('curl-' + scheme)
    f = gw.dir / ('%s.eml' % subj)
    f.write_text('From: carol@example.com\r\nTo: bob@example.com\r\nSubject: %s\r\n\r\ncurl %s\r\n'
                 % (subj, scheme))
    r = run(['curl', '-sS', '-v', '--max-time', '20', '--ssl-reqd', '--cacert', pki.ca_crt,
             '%s://127.0.0.1:%d' % (scheme, gw.port(listener)), '--mail-from', 'carol@example.com',
             '--mail-rcpt', 'bob@example.com', '--upload-file', f, '--user', 'carol:carolpw'])
    assert r.returncode == 0, explain(r, gw)
    msg = postfix_tls.wait_message('bob', 'Subject: ' + subj)
    assert b'(Authenticated sender: carol)' in received(msg)


@pytest.fixture(scope='module')
def inbox_message(dovecot_tls):
    """A message with a unique subject in carol's INBOX, stored through
    Dovecot directly: (uid, subject)."""
    subj = marker('fetch')
    msg = ('From: carol@example.com\r\nSubject: %s\r\n\r\nfetch body %s\r\n' % (subj, subj)).encode()
    with imaplib.IMAP4('127.0.0.1', dovecot_tls.imap_port, timeout=TIMEOUT) as m:
        m.login('carol', 'carolpw')
        typ, data = m.append('INBOX', None, None, msg)
        assert typ == 'OK', data
        uid = int(re.search(rb'\[APPENDUID \d+ (\d+)\]', data[0]).group(1))
        m.logout()
    return uid, subj


@pytest.mark.parametrize('scheme', ['imap', 'imaps'])
def test_curl_imap(gw, pki, inbox_message, scheme):
    uid, subj = inbox_message
    listener = 'i_tls' if scheme == 'imap' else 'i_implicit'
    r = run(['curl', '-sS', '-v', '--max-time', '20', '--ssl-reqd', '--cacert', pki.ca_crt,
             '-u', 'carol:carolpw', '%s://127.0.0.1:%d/INBOX/;UID=%d' % (scheme, gw.port(listener), uid)])
    assert r.returncode == 0, explain(r, gw)
    assert 'Subject: %s' % subj in r.stdout and 'fetch body %s' % subj in r.stdout, explain(r, gw)


@pytest.mark.parametrize('mode', ['starttls', 'ssl'])
def test_smtplib(gw, pki, postfix_tls, mode):
    subj = marker('smtplib-' + mode)
    ctx = client_context(pki)      # checks the name: 127.0.0.1 against the IP SAN
    if mode == 'starttls':
        s = smtplib.SMTP('127.0.0.1', gw.port('s_tls'), timeout=TIMEOUT)
        s.ehlo('smtplib.example.org')
        assert 'starttls' in s.esmtp_features and 'auth' not in s.esmtp_features, s.esmtp_features
        s.starttls(context=ctx)
        s.ehlo('smtplib.example.org')
    else:
        s = smtplib.SMTP_SSL('127.0.0.1', gw.port('s_implicit'), timeout=TIMEOUT, context=ctx)
        s.ehlo('smtplib.example.org')
    try:
        assert 'starttls' not in s.esmtp_features
        assert s.esmtp_features.get('auth', '').split() == ['PLAIN', 'LOGIN'], s.esmtp_features
        s.login('alice', 'alicepw')
        assert s.sendmail('alice@example.com', ['carol@example.com'],
                          'Subject: %s\r\n\r\nsmtplib\r\n' % subj) == {}
        s.quit()
    finally:
        s.close()
    rcv = received(postfix_tls.wait_message('carol', 'Subject: ' + subj))
    assert rcv.startswith(b'Received: from smtplib.example.org ('), rcv
    assert b'(Authenticated sender: alice)' in rcv


@pytest.mark.parametrize('mode', ['starttls', 'ssl'])
def test_imaplib(gw, pki, mode):
    ctx = client_context(pki)
    mbox = marker('imaplib-' + mode)
    msg = ('From: bob@example.com\r\nSubject: %s\r\n\r\nimaplib over TLS\r\n' % mbox).encode()
    if mode == 'starttls':
        m = imaplib.IMAP4('127.0.0.1', gw.port('i_tls'), timeout=TIMEOUT)
        assert 'STARTTLS' in m.capabilities and 'LOGINDISABLED' in m.capabilities, m.capabilities
        m.starttls(ssl_context=ctx)
        assert 'STARTTLS' not in m.capabilities and 'AUTH=PLAIN' in m.capabilities, m.capabilities
    else:
        m = imaplib.IMAP4_SSL('127.0.0.1', gw.port('i_implicit'), ssl_context=ctx, timeout=TIMEOUT)
    try:
        typ, data = m.login('bob', 'bobpw')
        assert typ == 'OK', (typ, data)
        assert m.create(mbox)[0] == 'OK'
        typ, data = m.append(mbox, None, None, msg)
        assert typ == 'OK', data
        assert m.select(mbox)[0] == 'OK'
        typ, data = m.fetch('1', '(BODY.PEEK[])')
        assert typ == 'OK' and data[0][1] == msg, data
        m.logout()
    finally:
        imap_close(m)


class Proc:
    """A child with stdin/stdout pipes, its output read by a thread."""

    def __init__(self, argv):
        self.p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.q = queue.Queue()
        self.out = []
        self.err = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.q), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.p.stderr,), daemon=True).start()

    def _pump(self, f, q):
        for line in iter(f.readline, b''):
            q.put(line)
        q.put(None)

    def _drain(self, f):
        for line in iter(f.readline, b''):
            self.err.append(line)

    def until(self, pattern, timeout=TIMEOUT):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('no %r within %.0f s' % (pattern, timeout))
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError('output ended before %r' % pattern)
            self.out.append(line)
            if rx.search(line.decode('latin-1')):
                return line

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def finish(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()

    def text(self):
        return ('--- stdout:\n%s\n--- stderr:\n%s' % (b''.join(self.out).decode('latin-1'),
                                                      b''.join(self.err).decode('latin-1')))


@pytest.mark.parametrize('proto', ['smtp', 'imap'])
def test_gnutls_cli_starttls(gw, pki, proto):
    listener = 's_tls' if proto == 'smtp' else 'i_tls'
    p = Proc(['gnutls-cli', '--starttls-proto=' + proto, '--x509cafile=%s' % pki.ca_crt,
              '--port=%d' % gw.port(listener), '127.0.0.1'])
    try:
        if proto == 'smtp':
            p.write(b'EHLO gnutls.example.org\r\n')
            p.until(r'^250 ')
            p.write(b'AUTH PLAIN %s\r\n' % plain_blob('alice', 'alicepw').encode())
            p.until(r'^235 2\.7\.0 ')
            p.write(b'QUIT\r\n')
            p.until(r'^221 ')
        else:
            p.write(b'x CAPABILITY\r\n')
            caps = p.until(r'^\* CAPABILITY ')
            assert b'STARTTLS' not in caps and b'AUTH=PLAIN' in caps, caps
            p.until(r'^x OK ')
            p.write(b'y LOGIN alice alicepw\r\n')
            p.until(r'^y OK ')
            p.write(b'z LOGOUT\r\n')
            p.until(r'^z OK ')
    except AssertionError as e:
        p.finish()
        raise AssertionError('%s\n%s\n--- gatehoused log:\n%s' % (e, p.text(), gw.log()[-2500:]))
    p.finish()
    assert 'Handshake was completed' in p.text(), p.text()


# ------------------------------------------------------------ TLS towards the backends

def smtp_login_and_send(gw, listener, user, subject, rcpt='bob@example.com'):
    """A plaintext SMTP client (plaintext_auth = always listener) logs in and
    sends; returns the queue reply, or the AUTH reply when it fails."""
    with SmtpClient(gw.port(listener), gw=gw) as c:
        c.expect(None, SMTP_GREETING)
        c.ehlo('backend-tls.example.org')
        r = c.cmd('AUTH PLAIN ' + plain_blob(user, GW_USERS[user]))
        if r != AUTH_OK:
            return r
        queued = smtp_send_mail(c, '%s@example.com' % user, rcpt, subject)
        c.expect('QUIT', 221)
        return queued


def smtp_backend(port, tls, pki=None, **kw):
    b = dict(protocol='smtp', servers='127.0.0.1:%d' % port, login='xclient', tls=tls)
    if pki is not None:
        b['ca_file'] = pki.ca_crt
    b.update(kw)
    return b


@pytest.mark.parametrize('mode', ['starttls', 'implicit'])
def test_backend_smtp_tls(gateway, pki, postfix_tls, mode):
    port = postfix_tls.port if mode == 'starttls' else postfix_tls.smtps_port
    gw = gateway({'sub': dict(plaintext_auth='always', backend='pf')},
                 {'pf': smtp_backend(port, mode, pki, verify=True)})
    subj = marker('backend-smtp-' + mode)
    queued = smtp_login_and_send(gw, 'sub', 'alice', subj)
    assert queued[:3] == '250', 'login/send through a TLS backend (%s): %r\n%s' % (mode, queued, gw.log()[-3000:])
    rcv = received(postfix_tls.wait_queued('bob', queued))
    assert b'(Authenticated sender: alice)' in rcv, rcv
    assert b'using TLSv1.3' in rcv or b'using TLSv1.2' in rcv, \
        'Postfix did not see TLS from the gateway: %r' % rcv


@pytest.mark.parametrize('mode', ['starttls', 'implicit'])
def test_backend_smtp_verify(gateway, pki, postfix_tls, mode):
    """The backend presents the other-name certificate: with verify = yes the
    login fails (tempfail) and the log names the problem; verify = no works."""
    port = postfix_tls.other_port if mode == 'starttls' else postfix_tls.other_smtps_port
    gw = gateway({'strict': dict(plaintext_auth='always', backend='strict'),
                  'lax': dict(plaintext_auth='always', backend='lax'),
                  'good': dict(plaintext_auth='always', backend='good')},
                 {'strict': smtp_backend(port, mode, pki, verify=True),
                  'lax': smtp_backend(port, mode, pki, verify=False),
                  'good': smtp_backend(postfix_tls.port if mode == 'starttls' else postfix_tls.smtps_port,
                                       mode, pki)})        # verify defaults to yes
    mark = gw.mark()
    r = smtp_login_and_send(gw, 'strict', 'alice', marker('strict'))
    assert r == SMTP_TEMPFAIL, 'other-name certificate, verify = yes: AUTH got %r, want %r\n%s' % (
        r, SMTP_TEMPFAIL, gw.since(mark)[-3000:])
    gw.wait_since(mark, r'(?i)certificate')
    subj = marker('lax')
    queued = smtp_login_and_send(gw, 'lax', 'alice', subj)
    assert queued[:3] == '250', 'verify = no: %r\n%s' % (queued, gw.since(mark)[-3000:])
    postfix_tls.wait_queued('bob', queued)
    subj = marker('good')
    queued = smtp_login_and_send(gw, 'good', 'bob', subj, rcpt='carol@example.com')
    assert queued[:3] == '250', 'right certificate, default verify: %r\n%s' % (queued, gw.since(mark)[-3000:])


def test_backend_smtp_untrusted_ca(gateway, pki, postfix_tls):
    """No ca_file: the system trust store does not know the test CA."""
    gw = gateway({'sub': dict(plaintext_auth='always', backend='pf')},
                 {'pf': smtp_backend(postfix_tls.smtps_port, 'implicit')})
    mark = gw.mark()
    r = smtp_login_and_send(gw, 'sub', 'alice', marker('untrusted'))
    assert r == SMTP_TEMPFAIL, '%r\n%s' % (r, gw.since(mark)[-3000:])
    gw.wait_since(mark, r'(?i)certificate')


@pytest.fixture(scope='module')
def dovecot_plain(postfix_tls):
    """A Dovecot without TLS (backends.Dovecot): no STARTTLS offered."""
    with running(Dovecot(postfix_tls.port)) as dc:
        yield dc


def test_backend_tls_not_offered(gateway, pki, postfix_tls, dovecot_plain):
    """tls = starttls towards a server that offers no STARTTLS, and tls =
    implicit towards a plaintext port: the login fails (tempfail), no
    credentials go out in plaintext, and the log says why."""
    gw = gateway({'s_st': dict(plaintext_auth='always', backend='s_st'),
                  's_imp': dict(plaintext_auth='always', backend='s_imp'),
                  'i_st': dict(protocol='imap', plaintext_auth='always', backend='i_st'),
                  'i_imp': dict(protocol='imap', plaintext_auth='always', backend='i_imp')},
                 {'s_st': smtp_backend(postfix_tls.notls_port, 'starttls', pki),
                  's_imp': smtp_backend(postfix_tls.notls_port, 'implicit', pki),
                  'i_st': imap_backend(dovecot_plain.imap_port, 'starttls', pki),
                  'i_imp': imap_backend(dovecot_plain.imap_port, 'implicit', pki)})
    dc_before = len(dovecot_logins(dovecot_plain, 'alice'))
    for listener, why in (('s_st', r'(?i)starttls'), ('s_imp', r'(?i)tls|handshake')):
        mark = gw.mark()
        r = smtp_login_and_send(gw, listener, 'alice', marker(listener))
        assert r == SMTP_TEMPFAIL, '%s: AUTH got %r, want %r\n%s' % (listener, r, SMTP_TEMPFAIL, gw.since(mark))
        gw.wait_since(mark, why)
    for listener, why in (('i_st', r'(?i)starttls'), ('i_imp', r'(?i)tls|handshake')):
        mark = gw.mark()
        reply, c = imap_login(gw, listener, 'alice')
        with c:
            if reply != 'a ' + IMAP_TEMPFAIL:
                c.fail('%s: got %r, want %r' % (listener, reply, 'a ' + IMAP_TEMPFAIL))
        gw.wait_since(mark, why)
    time.sleep(0.3)
    assert dovecot_logins(dovecot_plain, 'alice')[dc_before:] == [], 'a plaintext login reached Dovecot'


def imap_backend(port, tls, pki=None, **kw):
    b = dict(protocol='imap', servers='127.0.0.1:%d' % port, login='passthrough', tls=tls)
    if pki is not None:
        b['ca_file'] = pki.ca_crt
    b.update(kw)
    return b


def imap_login(gw, listener, user, tag='a'):
    """Plaintext IMAP LOGIN; the tagged reply (and the client, still open)."""
    c = ImapClient(gw.port(listener), gw=gw)
    c.greeting_caps()
    got = c.cmd('%s LOGIN %s %s' % (tag, user, GW_USERS[user]))
    return got[-1], c


def dovecot_logins(dc, user):
    return re.findall(r'^.*imap-login: (?:Info: )?Login: user=<%s>.*$' % user, dc.log_text(), re.M)


@pytest.mark.parametrize('mode', ['starttls', 'implicit'])
def test_backend_imap_tls(gateway, pki, dovecot_tls, mode):
    port = dovecot_tls.imap_port if mode == 'starttls' else dovecot_tls.imaps_port
    gw = gateway({'imap': dict(protocol='imap', plaintext_auth='always', backend='dc')},
                 {'dc': imap_backend(port, mode, pki, verify=True)})
    before = len(dovecot_logins(dovecot_tls, 'alice'))
    reply, c = imap_login(gw, 'imap', 'alice')
    with c:
        if not reply.startswith('a OK '):
            c.fail('login through a TLS backend (%s): %r' % (mode, reply))
        got = c.cmd('b SELECT INBOX')
        if not got[-1].startswith('b OK '):
            c.fail('SELECT: %r' % got)
    logins = wait_for(lambda: dovecot_logins(dovecot_tls, 'alice')[before:],
                      what='a Login line for alice in the dovecot log:\n' + dovecot_tls.log_text()[-2000:])
    assert ', TLS,' in logins[-1], 'Dovecot did not see TLS from the gateway: %s' % logins[-1]


@pytest.mark.parametrize('mode', ['starttls', 'implicit'])
def test_backend_imap_verify(gateway, pki, dovecot_tls, dovecot_tls_other, mode):
    other = dovecot_tls_other.imap_port if mode == 'starttls' else dovecot_tls_other.imaps_port
    good = dovecot_tls.imap_port if mode == 'starttls' else dovecot_tls.imaps_port
    gw = gateway({'strict': dict(protocol='imap', plaintext_auth='always', backend='strict'),
                  'lax': dict(protocol='imap', plaintext_auth='always', backend='lax'),
                  'good': dict(protocol='imap', plaintext_auth='always', backend='good')},
                 {'strict': imap_backend(other, mode, pki, verify=True),
                  'lax': imap_backend(other, mode, pki, verify=False),
                  'good': imap_backend(good, mode, pki)})
    mark = gw.mark()
    reply, c = imap_login(gw, 'strict', 'alice')
    with c:
        if reply != 'a ' + IMAP_TEMPFAIL:
            c.fail('other-name certificate, verify = yes: got %r, want %r' % (reply, 'a ' + IMAP_TEMPFAIL))
    gw.wait_since(mark, r'(?i)certificate')
    for listener in ('lax', 'good'):
        reply, c = imap_login(gw, listener, 'bob')
        with c:
            if not reply.startswith('a OK '):
                c.fail('%s: login got %r' % (listener, reply))


# ------------------------------------------------------------ 10 MB byte for byte

def big_body(size=10 * 1024 * 1024):
    """Distinct CRLF lines (a counter in each), `size` bytes."""
    line = b'0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n'
    out = []
    n = 0
    i = 0
    while n < size:
        ln = b'%08d ' % i + line
        out.append(ln)
        n += len(ln)
        i += 1
    return b''.join(out)


def wait_big_delivery(postfix, user, subj, timeout=60):
    """The delivered message (bytes) whose head holds the subject; reads only
    new files' first bytes while polling."""
    d = postfix.mail / user / 'new'
    needle = ('Subject: %s' % subj).encode()
    deadline = time.monotonic() + timeout
    while True:
        for f in sorted(d.glob('*')) if d.exists() else []:
            try:
                with open(f, 'rb') as fh:
                    if needle in fh.read(8192):
                        return f.read_bytes()
            except FileNotFoundError:
                continue
        if time.monotonic() > deadline:
            raise AssertionError('no message %s for %s after %d s; postfix log:\n%s'
                                 % (subj, user, timeout, postfix.log_text()[-3000:]))
        time.sleep(0.1)


def check_delivered_body(msg, body):
    """Postfix's maildir has LF line ends: compare in that form."""
    got = msg.partition(b'\n\n')[2]
    want = body.replace(b'\r\n', b'\n')
    assert len(got) == len(want) and hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest(), \
        'delivered body: %d bytes sha256 %s; sent %d bytes sha256 %s' % (
            len(got), hashlib.sha256(got).hexdigest(), len(want), hashlib.sha256(want).hexdigest())


def test_big_smtp_client_tls(gw, pki, postfix_tls):
    subj = marker('big-client-tls')
    body = big_body()
    with smtplib.SMTP('127.0.0.1', gw.port('s_tls'), timeout=30) as s:
        s.ehlo('big.example.org')
        s.starttls(context=client_context(pki))
        s.ehlo('big.example.org')
        s.login('alice', 'alicepw')
        assert s.sendmail('alice@example.com', ['test@example.com'],
                          b'Subject: %s\r\n\r\n' % subj.encode() + body) == {}
    check_delivered_body(wait_big_delivery(postfix_tls, 'test', subj), body)


def test_big_smtp_backend_tls(gateway, pki, postfix_tls):
    gw = gateway({'sub': dict(plaintext_auth='always', backend='pf')},
                 {'pf': smtp_backend(postfix_tls.port, 'starttls', pki)})
    subj = marker('big-backend-tls')
    body = big_body()
    with smtplib.SMTP('127.0.0.1', gw.port('sub'), timeout=30) as s:
        s.ehlo('big.example.org')
        s.login('bob', 'bobpw')
        assert s.sendmail('bob@example.com', ['test@example.com'],
                          b'Subject: %s\r\n\r\n' % subj.encode() + body) == {}
    msg = wait_big_delivery(postfix_tls, 'test', subj)
    assert b'using TLS' in received(msg), received(msg)
    check_delivered_body(msg, body)


def imap_big_roundtrip(m, user):
    mbox = marker('big')
    msg = b'From: %s@example.com\r\nSubject: %s\r\n\r\n' % (user.encode(), mbox.encode()) + big_body()
    want = hashlib.sha256(msg).hexdigest()
    typ, data = m.login(user, GW_USERS[user])
    assert typ == 'OK', data
    assert m.create(mbox)[0] == 'OK'
    typ, data = m.append(mbox, None, None, msg)
    assert typ == 'OK', data
    assert m.select(mbox)[0] == 'OK'
    typ, data = m.fetch('1', '(RFC822.SIZE BODY.PEEK[])')
    assert typ == 'OK', data[:1]
    got = data[0][1]
    assert len(got) == len(msg) and hashlib.sha256(got).hexdigest() == want, \
        'fetched %d bytes sha256 %s, appended %d bytes sha256 %s' % (
            len(got), hashlib.sha256(got).hexdigest(), len(msg), want)
    m.logout()


def test_big_imap_client_tls(gw, pki):
    m = imaplib.IMAP4_SSL('127.0.0.1', gw.port('i_implicit'), ssl_context=client_context(pki), timeout=30)
    try:
        imap_big_roundtrip(m, 'carol')
    finally:
        imap_close(m)


def socket_states(*ports):
    """`ss -tn` lines for connections on these ports (queues show where data
    is stuck)."""
    r = subprocess.run(['ss', '-tn'], capture_output=True, text=True)
    keep = [ln for ln in r.stdout.splitlines()
            if ln.startswith('State') or any(':%d ' % p in ln + ' ' for p in ports)]
    return '\n'.join(keep)


def test_big_imap_tls_repeated(gw, pki, dovecot_tls):
    """Ten megabytes up and down six times over implicit TLS in one session:
    the relay must never stall (an intermittent stall shows up here as a
    timeout, with the socket queues in the message)."""
    port = gw.port('i_implicit')
    m = imaplib.IMAP4_SSL('127.0.0.1', port, ssl_context=client_context(pki), timeout=TIMEOUT)
    mark = gw.mark()
    try:
        typ, data = m.login('alice', 'alicepw')
        assert typ == 'OK', data
        mbox = marker('rep')
        assert m.create(mbox)[0] == 'OK'
        assert m.select(mbox)[0] == 'OK'
        msg = b'Subject: %s\r\n\r\n' % mbox.encode() + big_body()
        want = hashlib.sha256(msg).hexdigest()
        for i in range(6):
            step = 'APPEND'
            try:
                typ, data = m.append(mbox, None, None, msg)
                assert typ == 'OK', data
                step = 'FETCH'
                typ, data = m.fetch(str(i + 1), '(BODY.PEEK[])')
                assert typ == 'OK', data[:1]
                assert hashlib.sha256(data[0][1]).hexdigest() == want, 'round %d: body differs' % i
            except (OSError, imaplib.IMAP4.abort) as e:
                raise AssertionError('round %d: %s of 10 MB over TLS stalled (%r); sockets (gateway %d, '
                                     'dovecot %d):\n%s\n--- gatehoused log:\n%s' % (
                                         i, step, e, port, dovecot_tls.imap_port,
                                         socket_states(port, dovecot_tls.imap_port), gw.since(mark)[-2000:]))
        m.logout()
    finally:
        imap_close(m)


def test_big_imap_backend_tls(gateway, pki, dovecot_tls):
    gw = gateway({'imap': dict(protocol='imap', plaintext_auth='always', backend='dc')},
                 {'dc': imap_backend(dovecot_tls.imaps_port, 'implicit', pki)})
    m = imaplib.IMAP4('127.0.0.1', gw.port('imap'), timeout=30)
    try:
        imap_big_roundtrip(m, 'alice')
    finally:
        imap_close(m)


# ------------------------------------------------------------ bad handshakes

def client_hello(server_hostname=None):
    """The bytes of a real ClientHello (Python's), without a socket."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read(), (ctx, inc, out, obj)


@pytest.mark.parametrize('listener', ['s_short', 'i_short'])
def test_handshake_silent_client(gw, listener):
    """Connect to an implicit-TLS port (idle_timeout = 2) and say nothing:
    closed after about 2 s, with a log line about the handshake/timeout."""
    with RawClient(gw.port(listener), gw=gw) as c:
        # not before idle_timeout (2 s, less GLib's rounding); the upper bound
        # is only closed_within's 30 s, generous for a busy machine and still
        # half the 60 s a listener without idle_timeout would wait
        took = c.closed_within(30)
        assert took >= 1.5, 'closed after %.1f s, before idle_timeout (2 s)\n%s' % (took, c.ctx())
        assert c.drained == b'', 'a silent client got %r' % c.drained
    gw.wait_since(c.mark, r'(?i)handshake|timeout')


@pytest.mark.parametrize('proto', ['smtp', 'imap'])
def test_handshake_silent_after_starttls(gw, proto):
    """STARTTLS accepted, then no ClientHello: closed after idle_timeout (2 s)."""
    with (SmtpClient if proto == 'smtp' else ImapClient)(gw.port(proto[0] + '_short_starttls'), gw=gw) as c:
        if proto == 'smtp':
            c.expect(None, SMTP_GREETING)
            c.expect('STARTTLS', READY_TLS)
        else:
            c.greeting_caps()
            c.expect('a STARTTLS', IMAP_BEGIN_TLS, untagged=[])
        took = c.closed_within(30)  # generous: see test_handshake_silent_client
        assert took >= 1.5, 'closed after %.1f s, before idle_timeout (2 s)\n%s' % (took, c.ctx())
    gw.wait_since(c.mark, r'(?i)handshake|timeout')


@pytest.mark.parametrize('listener', ['s_implicit', 'i_implicit', 's_tls'])
def test_handshake_garbage(gw, listener):
    """Plaintext instead of a ClientHello: closed at once (the handshake
    timeout of these listeners is 60 s), no plaintext answer, and the log
    line has GnuTLS's reason."""
    with SmtpClient(gw.port(listener), gw=gw) as c:
        if listener == 's_tls':
            c.expect(None, SMTP_GREETING)
            c.expect('STARTTLS', READY_TLS)
        c.send(b'EHLO garbage.example.org\r\nAUTH PLAIN %s\r\n' % plain_blob('alice', 'alicepw').encode()
               + b'\x00' * 64 + b'\r\n')
        # "at once": well before the 60 s handshake timeout; 30 s is
        # generous for a busy machine (closed_within fails past it)
        c.closed_within(30)
        assert b'220' not in c.drained and b'250' not in c.drained and b'OK' not in c.drained, \
            'plaintext answer to garbage in place of a ClientHello: %r' % c.drained
    line = gw.wait_since(c.mark, r'.*TLS handshake.*')
    assert re.search(r'TLS handshake: \S', line.group(0)), line.group(0)


@pytest.mark.parametrize('stop', ['half-hello', 'after-server-flight'])
def test_handshake_stops_midway(gw, stop):
    hello, state = client_hello()
    with RawClient(gw.port('s_short'), gw=gw) as c:
        if stop == 'half-hello':
            c.send(hello[:len(hello) // 2])
        else:
            c.send(hello)
            # the server's flight (ServerHello ... Finished) comes; we never answer
            c.raw.settimeout(TIMEOUT)
            first = c.raw.recv(65536)
            assert first[:1] == b'\x16', 'not a TLS handshake record: %r' % first[:20]
        took = c.closed_within(30)  # generous: see test_handshake_silent_client
        assert took >= 1.5, 'closed after %.1f s, before idle_timeout (2 s)' % took
    gw.wait_since(c.mark, r'(?i)handshake|timeout')


def test_many_handshakes(gw, pki, postfix_tls):
    """200 connections to an implicit-TLS port at once, saying nothing, some
    with half a ClientHello: a normal TLS login still works meanwhile and
    after they are closed, and the daemon lives."""
    hello, _ = client_hello()
    socks = []
    try:
        for i in range(200):
            s = socket.create_connection(('127.0.0.1', gw.port('s_implicit')), timeout=TIMEOUT)
            if i % 2:
                s.sendall(hello[:40])
            socks.append(s)
        subj = marker('many')
        with SmtpClient(gw.port('s_implicit'), gw=gw, tls=client_context(pki)) as c:
            c.expect(None, SMTP_GREETING)
            c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), AUTH_OK)
            queued = smtp_send_mail(c, 'alice@example.com', 'carol@example.com', subj)
            c.expect('QUIT', 221)
        postfix_tls.wait_queued('carol', queued)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    assert gw.alive()
    with ImapClient(gw.port('i_implicit'), gw=gw, tls=client_context(pki)) as c:
        c.greeting_caps()
        got = c.cmd('a LOGIN bob bobpw')
        assert got[-1].startswith('a OK '), c.ctx()


# ------------------------------------------------------------ priorities

def test_priorities(gateway, pki):
    """[tls] priorities is GnuTLS's priority string: without TLS 1.3 the
    session is TLS 1.2, and the login log line says so."""
    gw = gateway({'imp': dict(tls='implicit', plaintext_auth='tls', backend='pf')},
                 {'pf': dict(protocol='smtp', servers='127.0.0.1:1', login='xclient')},
                 tls=dict(certificate=pki.server_crt, key=pki.server_key,
                          priorities='NORMAL:-VERS-TLS1.3:-VERS-TLS1.0:-VERS-TLS1.1'))
    mark = gw.mark()
    with SmtpClient(gw.port('imp'), gw=gw, tls=client_context(pki)) as c:
        assert c.sock.version() == 'TLSv1.2', c.ctx()
        c.expect(None, SMTP_GREETING)
        c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), SMTP_TEMPFAIL)   # backend down
    ln = wait_login_line(gw, mark, 'alice', verdict='tempfail')
    assert re.search(r' tls=TLS1\.2/\S+ ', ln), ln


def test_default_priorities_refuse_old_tls(gw, pki):
    """The default priorities (NORMAL:-VERS-TLS1.0:-VERS-TLS1.1) refuse a
    TLS 1.1 client (gnutls-cli offering only TLS 1.1)."""
    r = subprocess.run(['gnutls-cli', '--priority=NORMAL:-VERS-ALL:+VERS-TLS1.1', '--insecure',
                        '--port=%d' % gw.port('s_implicit'), '127.0.0.1'],
                       input='', capture_output=True, text=True, timeout=20)
    out = r.stdout + r.stderr
    assert 'Handshake was completed' not in out, out
    assert r.returncode != 0, out


# ------------------------------------------------------------ SNI

def test_sni_selects_certificate(gateway, pki):
    gw = gateway({'imp': dict(tls='implicit', plaintext_auth='tls', backend='pf')},
                 {'pf': dict(protocol='smtp', servers='127.0.0.1:1', login='xclient')},
                 tls=dict(certificate='%s %s' % (pki.server_crt, pki.other_crt),
                          key='%s %s' % (pki.server_key, pki.other_key)))
    for name, want in (('other.example', pki.other_crt), ('localhost', pki.server_crt)):
        with SmtpClient(gw.port('imp'), gw=gw, tls=client_context(pki), server_hostname=name) as c:
            assert c.peer_fingerprint() == fingerprint(want), 'SNI %s: wrong certificate\n%s' % (name, c.ctx())
            c.expect(None, SMTP_GREETING)
    # no SNI (an IP address): the first pair
    with SmtpClient(gw.port('imp'), gw=gw, tls=client_context(pki)) as c:
        assert c.peer_fingerprint() == fingerprint(pki.server_crt), \
            'no SNI: got the certificate %s, want the first pair (server.crt %s)' % (
                c.peer_fingerprint(), fingerprint(pki.server_crt))


# ------------------------------------------------------------ SIGHUP

def test_sighup_new_certificate(gateway, pki, postfix_tls):
    d = make_tmpdir('gh-tls-hup-')
    try:
        crt, key = d / 'live.crt', d / 'live.key'
        shutil.copy(pki.server_crt, crt)
        shutil.copy(pki.server_key, key)
        crt.chmod(0o644)
        key.chmod(0o644)
        gw = gateway({'imp': dict(tls='implicit', plaintext_auth='tls', backend='pf'),
                      'sub': dict(tls='starttls', plaintext_auth='tls', backend='pf'),
                      'imap': dict(protocol='imap', tls='implicit', backend='dc')},
                     {'pf': dict(protocol='smtp', servers='127.0.0.1:%d' % postfix_tls.port, login='xclient'),
                      'dc': dict(protocol='imap', servers='127.0.0.1:1', login='passthrough')},
                     tls=dict(certificate=crt, key=key))
        old_fp = fingerprint(pki.server_crt)
        ctx = client_context(pki)
        # sessions opened before the reload: one implicit, one after STARTTLS
        a = SmtpClient(gw.port('imp'), gw=gw, tls=ctx)
        b = SmtpClient(gw.port('sub'), gw=gw)
        try:
            assert a.peer_fingerprint() == old_fp
            a.expect(None, SMTP_GREETING)
            a.ehlo()
            b.expect(None, SMTP_GREETING)
            b.expect('STARTTLS', READY_TLS)
            b.starttls(ctx)
            assert b.peer_fingerprint() == old_fp
            b.ehlo()
            # a new certificate at the same paths, then SIGHUP
            ncrt, nkey = pki.issue('renewed', directory=d)
            new_fp = fingerprint(ncrt)
            assert new_fp != old_fp
            shutil.copy(ncrt, d / 'live.crt.tmp')
            shutil.copy(nkey, d / 'live.key.tmp')
            (d / 'live.key.tmp').replace(key)
            (d / 'live.crt.tmp').replace(crt)
            mark = gw.mark()
            gw.daemon.signal(signal.SIGHUP)
            gw.wait_since(mark, r'configuration reloaded')
            # new connections see the new certificate
            with SmtpClient(gw.port('imp'), gw=gw, tls=ctx) as c:
                assert c.peer_fingerprint() == new_fp, \
                    'after SIGHUP an implicit-TLS connection still gets the old certificate\n' + c.ctx()
                c.expect(None, SMTP_GREETING)
            with SmtpClient(gw.port('sub'), gw=gw) as c:
                c.expect(None, SMTP_GREETING)
                c.expect('STARTTLS', READY_TLS)
                c.starttls(ctx)
                assert c.peer_fingerprint() == new_fp, \
                    'after SIGHUP a STARTTLS connection still gets the old certificate\n' + c.ctx()
            with ImapClient(gw.port('imap'), gw=gw, tls=ctx) as c:
                assert c.peer_fingerprint() == new_fp, c.ctx()
                c.greeting_caps()
            # the old sessions still work
            sent = []
            for conn, user in ((a, 'alice'), (b, 'bob')):
                subj = marker('hup-' + user)
                conn.expect('AUTH PLAIN ' + plain_blob(user, GW_USERS[user]), AUTH_OK)
                sent.append(smtp_send_mail(conn, '%s@example.com' % user, 'carol@example.com', subj))
                conn.expect('QUIT', 221)
            for queued in sent:
                postfix_tls.wait_queued('carol', queued)
        finally:
            a.close()
            b.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------ valgrind

def test_tls_under_valgrind(pki, postfix_tls, dovecot_tls):
    d = make_tmpdir('gh-tls-vg-')
    gw = None
    try:
        gw = start_gateway(d, {'sub': dict(tls='starttls', plaintext_auth='tls', backend='pf'),
                               'imp': dict(tls='implicit', plaintext_auth='tls', backend='pftls'),
                               'imap': dict(protocol='imap', tls='starttls', plaintext_auth='tls',
                                            backend='dctls')},
                           {'pf': smtp_backend(postfix_tls.port, 'none'),
                            'pftls': smtp_backend(postfix_tls.port, 'starttls', pki),
                            'dctls': imap_backend(dovecot_tls.imaps_port, 'implicit', pki)},
                           GW_USERS, tls=server_tls(pki), valgrind=True, ready_timeout=60)
        ctx = client_context(pki)
        sent = []
        with SmtpClient(gw.port('sub'), gw=gw, timeout=30) as c:
            c.expect(None, SMTP_GREETING)
            c.ehlo()
            c.expect('STARTTLS', READY_TLS)
            c.starttls(ctx)
            c.ehlo()
            c.expect('AUTH PLAIN ' + plain_blob('alice', 'alicepw'), AUTH_OK)
            sent.append(smtp_send_mail(c, 'alice@example.com', 'bob@example.com', marker('vg1')))
            c.expect('QUIT', 221)
        with SmtpClient(gw.port('imp'), gw=gw, tls=ctx, timeout=30) as c:
            c.expect(None, SMTP_GREETING)
            c.expect('AUTH PLAIN ' + plain_blob('bob', 'nope'), AUTH_BAD)
            c.expect('AUTH PLAIN ' + plain_blob('bob', 'bobpw'), AUTH_OK)
            sent.append(smtp_send_mail(c, 'bob@example.com', 'alice@example.com', marker('vg2')))
            c.expect('QUIT', 221)
        with ImapClient(gw.port('imap'), gw=gw, timeout=30) as c:     # IMAP STARTTLS, backend imaps
            c.greeting_caps()
            c.expect('a STARTTLS', IMAP_BEGIN_TLS, untagged=[])
            c.starttls(ctx)
            got = c.cmd('b LOGIN carol carolpw')
            assert got[-1].startswith('b OK '), c.ctx()
            got = c.cmd('c SELECT INBOX')
            assert got[-1].startswith('c OK '), c.ctx()
            c.line('d LOGOUT')
            c.response('d')
        with RawClient(gw.port('imp'), gw=gw, timeout=30) as c:      # a failed handshake
            c.send(b'garbage\r\n')
            c.closed_within(30)
        for q, user in zip(sent, ('bob', 'alice')):
            postfix_tls.wait_queued(user, q)
        open_one = SmtpClient(gw.port('sub'), gw=gw, timeout=30)        # open at shutdown
        try:
            open_one.expect(None, SMTP_GREETING)
            gw.daemon.signal(signal.SIGTERM)
            rc = gw.daemon.proc.wait(90)
        finally:
            open_one.close()
        assert rc == 0, 'gatehoused under valgrind exited %s:\n%s' % (rc, gw.log()[-6000:])
        assert '==' not in gw.log(), gw.log()[-6000:]
    finally:
        if gw is not None:
            gw.daemon.stop()
        shutil.rmtree(d, ignore_errors=True)
