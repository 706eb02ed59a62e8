"""A password does not outlive its use in gatehoused's heap.

gatehoused runs with tests/integration/lib/freescan.c preloaded: every
block it frees or moves is searched for the user's password and its base64
forms (lib.clients.secret_forms).  Clients log in through every way in to
a real Dovecot (IMAP over a warm and a dialled connection, in the clear,
over implicit TLS and after STARTTLS; POP3; submission; login =
passthrough, so the password also goes on to the backend): LOGIN
pipelined behind a NOOP, LOGIN with literals, AUTHENTICATE PLAIN with and
without an initial response, USER/PASS, AUTH PLAIN, AUTH LOGIN, a wrong
password, and logins the verdict cache answers.  Once with a short
password, once with a long one (245 octets), whose lines grow their
buffers several times over.  Then gatehoused stops, and not one block it freed
held the password.  The shim also says when it saw a block holding the
user name, which shows that it watched the daemon's frees at all.

The ldap module is checked the same way against a private slapd, for the
user's password and the search account's, and the pam module under
pam_wrapper, with the shim in its helper processes too.

One exception, outside gatehouse: GnuTLS frees the buffers of the TLS
records it has decrypted without wiping them, so the LOGIN line of a TLS
session lies in freed memory until the allocator hands that memory out
again (GnuTLS has no option to wipe them, and gnutls_global_set_mem_functions
does nothing since 3.3).  The shim names the code that freed each block
(the first object on the stack below the C library and GLib), and those
freed by libgnutls are left out of the verdict; so are libldap's and
PAM's in their tests.

Not under a sanitizer or valgrind: each brings its own allocator, and
the preloaded one would not see their frees.
"""
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from backends import USERS, Dovecot, running
from lib.clients import ImapClient, Pop3Client, SmtpClient, b64, plain_blob, secret_forms
from lib.config import write_config
from lib.gateway import Daemon, ctl, start_gateway
from lib.net import free_port
from lib.paths import GATEHOUSED, SANITIZED, SRCDIR
from lib.pki import client_context
from lib.proc import make_tmpdir
from pamfix import PamWrapper, start_gatehoused
from slapdfix import SEARCH_DN, SEARCH_PW, SUFFIX, Slapd
from slapdfix import USERS as LDAP_USERS

pytestmark = pytest.mark.skipif(
    SANITIZED or bool(os.environ.get('GH_IT_VALGRIND')),
    reason='a sanitizer or valgrind replaces the allocator that the shim wraps')

AUTH_OK = '235 2.7.0 Authentication successful'
# no run of it repeats, so that a piece of it is found as itself
LONG_USER, LONG_PASSWORD = 'dave', 'Long-' + ''.join(
    hashlib.sha256(b'%d' % i).hexdigest()[:40] for i in range(6))
ACCOUNTS = {'short': ('alice', USERS['alice']), 'long': (LONG_USER, LONG_PASSWORD)}


class LongPasswordDovecot(Dovecot):
    """backends.Dovecot that also knows dave, whose password is long."""

    def write_config(self):
        super().write_config()
        with open(self.dir / 'users', 'a') as f:
            f.write('%s:{PLAIN}%s::::::\n' % (LONG_USER, LONG_PASSWORD))


@pytest.fixture(scope='module')
def dovecot(postfix):
    with running(LongPasswordDovecot(postfix.port)) as d:
        yield d


@pytest.fixture(scope='module')
def shim():
    """freescan.so, built from its source for this run."""
    d = Path(make_tmpdir('gh-freescan-'))
    so = d / 'freescan.so'
    src = Path(SRCDIR) / 'tests' / 'integration' / 'lib' / 'freescan.c'
    r = subprocess.run(['cc', '-O2', '-Wall', '-Werror', '-shared', '-fPIC', '-o', str(so),
                        str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    yield so
    shutil.rmtree(d, ignore_errors=True)


def pieces(password):
    """The first and the last 32 octets of a long password: a block that
    holds part of it is found too."""
    return [password[:32], password[-32:]] if len(password) >= 96 else []


@pytest.fixture(params=sorted(ACCOUNTS))
def account(request):
    """(user, password): alice's short one, or dave's long one."""
    return ACCOUNTS[request.param]


@pytest.fixture
def gw(dovecot, shim, pki, account):
    """Listeners imap (warm_connections = 2), imap_dial (none), imaps
    (implicit TLS), imap_starttls, pop3 and sub, all to the module's
    Dovecot with login = passthrough.  The user's password at gatehoused is
    a yescrypt hash, so that the users file holds nothing the shim looks
    for.  The test stops it."""
    user, password = account
    h = ctl('hash-password', stdin=password + '\n')
    assert h.returncode == 0, h.stderr
    d = Path(make_tmpdir('gh-gw-'))
    log = d / 'freed.log'
    env = dict(os.environ, LD_PRELOAD=str(shim), FREESCAN_LOG=str(log),
               FREESCAN_SECRETS='|'.join(sorted(secret_forms(user, password)) + pieces(password)),
               FREESCAN_CONTROL=user)

    def backend(proto, port, **extra):
        return dict(protocol=proto, servers='127.0.0.1:%d' % port, login='passthrough',
                    forward_client='no', **extra)
    g = start_gateway(
        d,
        {'imap': dict(protocol='imap', backend='imap_warm'),
         'imap_dial': dict(protocol='imap', backend='imap'),
         'imaps': dict(protocol='imap', backend='imap_warm', tls='implicit'),
         'imap_starttls': dict(protocol='imap', backend='imap', tls='starttls'),
         'pop3': dict(protocol='pop3', backend='pop3'),
         'sub': dict(protocol='smtp', backend='sub', require_auth='yes',
                     plaintext_auth='always')},
        {'imap_warm': backend('imap', dovecot.imap_port, warm_connections='2'),
         'imap': backend('imap', dovecot.imap_port),
         'pop3': backend('pop3', dovecot.pop3_port),
         'sub': backend('smtp', dovecot.submission_port)},
        users={user: h.stdout.strip()}, env=env, valgrind=False,
        tls=dict(certificate=pki.server_crt, key=pki.server_key))
    g.freed_log = log
    try:
        yield g
    finally:
        g.daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


def imap_session(gw, listener, login, account, tls):
    """Greeting (and TLS: implicit on imaps, STARTTLS on imap_starttls),
    login(client, user, password), which must log in, and LOGOUT."""
    c = ImapClient(gw.port(listener), gw=gw, tls=tls if listener == 'imaps' else None)
    try:
        c.greeting_caps()
        if listener == 'imap_starttls':
            c.expect('s STARTTLS', re.compile(r's OK .*'))
            c.starttls(tls)
        login(c, *account)
        c.expect('z LOGOUT', re.compile(r'z OK .*'))
    finally:
        c.close()


def pipelined(c, user, password):
    # each command's answer moves what follows to the front of the input
    # buffer, the LOGIN line among it: no copy may stay behind the end (an
    # ID command longer than the LOGIN line moves it past its old place)
    ident = 'a ID ("name" "%s")\r\n' % ('x' * 400)
    c.send((ident + 'a NOOP\r\n' * 4 + 'b LOGIN %s %s\r\n' % (user, password)).encode())
    for _ in range(5):
        c.tagged('a')
    assert c.tagged('b')[1].startswith('b OK '), c.ctx()


def literals(c, user, password):
    c.line('a LOGIN {%d}' % len(user))
    c.continuation()
    c.line('%s {%d}' % (user, len(password)))
    c.continuation()
    # in two reads of gatehoused's, the second after the first is parsed
    half = len(password) // 2
    c.send(password[:half].encode())
    time.sleep(0.05)
    c.line(password[half:])
    assert c.tagged('a')[1].startswith('a OK '), c.ctx()


def sasl_ir(c, user, password):
    assert c.authenticate_plain(user, password).startswith('OK '), c.ctx()


def sasl_continued(c, user, password):
    c.line('a AUTHENTICATE PLAIN')
    c.continuation()
    c.line(plain_blob(user, password))
    assert c.tagged('a')[1].startswith('a OK '), c.ctx()


def wrong_then_right(c, user, password):
    # the wrong one holds the right one in it
    assert c.login(user, password + 'x', tag='w').startswith('NO '), c.ctx()
    assert c.login(user, password).startswith('OK '), c.ctx()


def test_no_freed_block_holds_the_password(gw, pki, account):
    user, password = account
    tls = client_context(pki, check_hostname=False)
    for listener in ('imap', 'imap_dial', 'imaps', 'imap_starttls'):
        for login in (pipelined, literals, sasl_ir, sasl_continued, wrong_then_right, sasl_ir):
            imap_session(gw, listener, login, account, tls)

    for how in ('user-pass', 'auth-plain'):
        c = Pop3Client(gw.port('pop3'), gw=gw)
        try:
            c.expect(None, '+OK gw.test ready.')
            if how == 'user-pass':
                got = c.user_pass(user, password)
            else:
                got = c.cmd('AUTH PLAIN ' + plain_blob(user, password))
            assert got.startswith('+OK'), c.ctx()
            c.expect('QUIT', re.compile(r'\+OK.*'))
        finally:
            c.close()

    for how in ('plain', 'login', 'plain'):
        c = SmtpClient(gw.port('sub'), greet=True, gw=gw)
        try:
            c.expect('EHLO client.test', 250)
            if how == 'plain':
                assert c.auth_plain(user, password) == AUTH_OK, c.ctx()
            else:
                c.expect('AUTH LOGIN', 334)
                c.expect(b64(user), 334)
                c.expect(b64(password), AUTH_OK)
            c.expect('QUIT', 221)
        finally:
            c.close()

    log = gw.log()
    # 4 listeners x 7 IMAP logins (one of them refused), 2 POP3, 3 SMTP
    assert log.count(' login: ') == 33 and log.count('verdict=ok') == 29, log[-3000:]
    assert gw.daemon.stop() == 0, gw.log()[-3000:]
    freed = gw.freed_log.read_text() if gw.freed_log.exists() else ''
    assert 'control' in freed.splitlines(), 'the shim saw none of the daemon\'s frees'
    # GnuTLS frees its record buffers unwiped, the decrypted lines of a
    # TLS session in them (see the module's docstring): counted apart
    ours = [ln for ln in freed.splitlines()
            if ln.startswith('secret') and ' freed by libgnutls.' not in ln]
    assert ours == [], 'freed blocks held the password:\n' + '\n'.join(ours[:20])


# ------------------------------------------------------------ the ldap module

@pytest.fixture(scope='module')
def slapd():
    """A slapd of the module's (slapdfix), without TLS."""
    root = Path(make_tmpdir('gh-slapd-'))
    s = Slapd(root / 'slapd', free_port()).start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_ldap_module_leaves_no_password_in_freed_memory(slapd, shim):
    """The ldap module, search-then-bind with a search account whose
    password is in bind_password_file: a login that binds as the user, a
    wrong password, an SMTP AUTH PLAIN (the backends are down: the verdict
    is what counts here).  Neither the user's password nor the search
    account's lies in a block gatehoused freed.  libldap and liblber keep
    their own copies of what they send (the BER of each bind request) and
    free them unwiped: those frees are left out, as GnuTLS's above."""
    user, password = 'bob', LDAP_USERS['bob']
    d = Path(make_tmpdir('gh-gw-'))
    try:
        pwfile = d / 'search.secret'
        pwfile.write_text(SEARCH_PW + '\n')
        os.chmod(pwfile, 0o600)
        log = d / 'freed.log'
        imap, smtp = free_port(), free_port()
        conf = write_config(
            d / 'gatehouse.conf',
            {'imap': {'protocol': 'imap', 'listen': '127.0.0.1:%d' % imap,
                      'plaintext_auth': 'always', 'auth': 'ldap', 'backend': 'imap'},
             'sub': {'protocol': 'smtp', 'listen': '127.0.0.1:%d' % smtp,
                     'plaintext_auth': 'always', 'auth': 'ldap', 'backend': 'smtp'}},
            {'ldap': {'module': 'ldap', 'uri': slapd.uri, 'base': SUFFIX, 'bind_dn': SEARCH_DN,
                      'bind_password_file': str(pwfile)}},
            {'imap': {'protocol': 'imap', 'servers': '127.0.0.1:1'},
             'smtp': {'protocol': 'smtp', 'servers': '127.0.0.1:1', 'login': 'none'}},
            gatehouse={'auth_cache_size': '0'})
        env = dict(os.environ, LD_PRELOAD=str(shim), FREESCAN_LOG=str(log),
                   FREESCAN_SECRETS='|'.join(sorted(secret_forms(user, password) | {SEARCH_PW})),
                   FREESCAN_CONTROL=user)
        daemon = Daemon([GATEHOUSED, '-c', conf], d / 'gatehoused.log', env=env, valgrind=False)
        try:
            daemon.wait_ready()
            c = ImapClient(imap)
            try:
                c.read_line()
                refused = c.login(user, password + 'x', tag='w')
                assert refused.startswith('NO [AUTHENTICATIONFAILED]'), c.ctx()
                # the verdict is yes; the backend is down
                assert c.login(user, password).startswith('NO [UNAVAILABLE]'), c.ctx()
            finally:
                c.close()
            c = SmtpClient(smtp, greet=True)
            try:
                c.expect('EHLO client.test', 250)
                assert c.auth_plain(user, password).startswith('454 '), c.ctx()
            finally:
                c.close()
            text = daemon.text()
            # the ldap module said yes twice (the backend then failed) and no once
            assert text.count('verdict=tempfail reason="backend unavailable') == 2 and \
                text.count('verdict=wrong-password') == 1, text[-3000:]
        finally:
            assert daemon.stop() == 0, daemon.text()[-3000:]
        freed = log.read_text() if log.exists() else ''
        assert 'control' in freed.splitlines(), 'the shim saw none of the daemon\'s frees'
        ours = [ln for ln in freed.splitlines() if ln.startswith('secret') and not re.search(
            r' freed by (libldap|liblber|libgnutls)[-.]', ln)]
        assert ours == [], 'freed blocks held a password:\n' + '\n'.join(ours[:20])
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------ the pam module

def test_pam_module_leaves_no_password_in_freed_memory(tmp, daemons, shim):
    """The pam module through its helper processes, under pam_wrapper with
    pam_matrix: a wrong password and a right one over SMTP AUTH PLAIN
    (the backend is down).  The shim is preloaded in gatehoused and, by
    inheritance, in every PAM helper, and no block that gatehoused or a
    helper freed holds the password.  PAM itself and its modules keep
    copies of their own (pam_matrix, libpam): left out, as libraries."""
    user = 'erin'
    password = 'Pam-' + hashlib.sha256(b'pam').hexdigest()[:40]
    pw = PamWrapper(tmp / 'pam')
    pw.matrix_service('gatehouse', {user: password})
    log = tmp / 'freed.log'
    env = pw.env()
    env.update(LD_PRELOAD='%s:%s' % (env['LD_PRELOAD'], shim), FREESCAN_LOG=str(log),
               FREESCAN_SECRETS='|'.join(sorted(secret_forms(user, password))),
               FREESCAN_CONTROL=user)
    port = free_port()
    conf = write_config(
        tmp / 'gh.conf',
        {'sub': {'protocol': 'smtp', 'listen': '127.0.0.1:%d' % port, 'require_auth': 'yes',
                 'plaintext_auth': 'always', 'auth': 'pam', 'backend': 'smtp'}},
        {'pam': {'module': 'pam'}},
        {'smtp': {'protocol': 'smtp', 'servers': '127.0.0.1:1', 'login': 'none'}},
        gatehouse={'auth_cache_size': '0', 'failure_delay': '0'})
    gw = start_gatehoused(tmp, daemons, conf, env, debug=False, valgrind=False)
    for attempt, want in ((password + 'x', '535 '), (password, '454 ')):
        c = SmtpClient(port, greet=True)
        try:
            c.expect('EHLO client.test', 250)
            assert c.auth_plain(user, attempt).startswith(want), c.ctx()
        finally:
            c.close()
    text = gw.text()
    assert text.count('verdict=wrong-password') == 1 and \
        text.count('verdict=tempfail reason="backend unavailable') == 1, text[-3000:]
    gw.stop()
    freed = log.read_text() if log.exists() else ''
    assert 'control' in freed.splitlines(), 'the shim saw none of the daemon\'s frees'
    ours = [ln for ln in freed.splitlines() if ln.startswith('secret') and not re.search(
        r' freed by (libpam|pam_matrix|libpam_wrapper)[-.]', ln)]
    assert ours == [], 'freed blocks held the password:\n' + '\n'.join(ours[:20])
