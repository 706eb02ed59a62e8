"""The `pam` auth module: through `gatehousectl auth-test` and through
gatehoused's SMTP and IMAP listeners, against a private PAM configuration
(pam_wrapper + pam_matrix, see pamfix.py), and once against the real
/etc/pam.d + pam_unix stack with a throwaway local user (root only).

Covered: right / wrong / unknown / empty passwords; the account stage and
`account = no`; the mapping of every PAM result to a verdict; the
conversation (messages logged at debug, other prompts refused); the keys
and their errors with file:line; a chain of the file module and PAM; the
failure delay of pam_unix taken over; `max_concurrent` and `timeout`; 200
concurrent logins against a PAM stack that takes 1 s while another session
is served at once; the password never in a log; valgrind.
"""
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lib.clients import ImapClient, SmtpClient, assert_no_secrets, plain_blob
from lib.config import line_of, write_config
from lib.gateway import auth_test_fields
from lib.net import free_port, wait_for
from lib.paths import GATEHOUSECTL, SRCDIR
from lib.scripted import ImapServer, SmtpServer
from pamfix import PamGate, PamWrapper, auth_test, find_pam_wrapper, start_gatehoused

pytestmark = pytest.mark.skipif(find_pam_wrapper() is None,
                                reason='pam_wrapper is not installed (libpam-wrapper)')

AUTH_OK = '235 2.7.0 Authentication successful'
BAD_CREDS = '535 5.7.8 Authentication credentials invalid'
TEMPFAIL = '454 4.7.0 Temporary authentication failure'
IMAP_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'

USERS = {
    'alice': 'alice-Secret.1',
    'bob': 'bob pw with spaces',
    'carol': 'c4rol"q\\uote!',
}
# only the file module knows dave; both know erin, with different passwords
FILE_USERS = {'dave': 'dave-file-pw', 'erin': 'erin-file-pw'}
PAM_ONLY = {'erin': 'erin-pam-pw'}

ALL_SECRETS = list(USERS.items()) + list(FILE_USERS.items()) + list(PAM_ONLY.items()) + \
    [('alice', 'wrong-alice-pw'), ('nobody', 'nobody-pw-x')]


@pytest.fixture
def pw(tmp):
    return PamWrapper(tmp / 'pam')


def smtp_listener(port, auth='pam'):
    return {'protocol': 'smtp', 'listen': '127.0.0.1:%d' % port, 'require_auth': 'yes',
            'plaintext_auth': 'always', 'auth': auth, 'backend': 'smtp'}


def imap_listener(port, auth='pam'):
    return {'protocol': 'imap', 'listen': '127.0.0.1:%d' % port, 'plaintext_auth': 'always',
            'auth': auth, 'backend': 'imap'}


# backends that are down: the tests through auth-test never reach them
DOWN_BACKENDS = {
    'smtp': {'protocol': 'smtp', 'servers': '127.0.0.1:1', 'login': 'none'},
    'imap': {'protocol': 'imap', 'servers': '127.0.0.1:1', 'login': 'passthrough'},
}


def simple_conf(tmp, auths, auth='pam', name='gh.conf', gatehouse=None):
    """An SMTP listener `sub` (port 1: auth-test never binds it) using
    `auth`, and the given [auth NAME] groups."""
    return write_config(tmp / name, {'sub': smtp_listener(1, auth)}, auths, DOWN_BACKENDS,
                        gatehouse=gatehouse)


def smtp_gateway_conf(tmp, port, backend_port, pam=None, gatehouse=None, login='none'):
    """gh.conf for an SMTP listener `sub` on `port` with `auth = pam` (the
    [auth pam] keys beyond `module` in `pam`), proxying to one SMTP
    backend on 127.0.0.1:`backend_port`."""
    return write_config(tmp / 'gh.conf', {'sub': smtp_listener(port)},
                        {'pam': dict({'module': 'pam'}, **(pam or {}))},
                        {'smtp': {'protocol': 'smtp', 'login': login,
                                  'servers': '127.0.0.1:%d' % backend_port}},
                        gatehouse=gatehouse)


def run(conf, user, password, env, **kw):
    r = auth_test(conf, user, password, env, **kw)
    out = auth_test_fields(r.stdout)
    return r, out


# ------------------------------------------------------------ auth-test

@pytest.mark.parametrize('user,password,code,verdict,reason', [
    ('alice', USERS['alice'], 0, 'ok', 'password accepted'),
    ('bob', USERS['bob'], 0, 'ok', 'password accepted'),
    ('carol', USERS['carol'], 0, 'ok', 'password accepted'),
    ('alice', 'wrong-alice-pw', 1, 'wrong-password',
     'wrong password (pam_authenticate: Authentication failure)'),
    ('alice', USERS['bob'], 1, 'wrong-password',
     'wrong password (pam_authenticate: Authentication failure)'),
    ('nobody', 'nobody-pw-x', 1, 'unknown-user',
     'unknown user (pam_authenticate: User not known to the underlying authentication module)'),
    ('alice', '', 1, 'wrong-password', 'empty password'),
    ('nobody', '', 1, 'wrong-password', 'empty password'),
], ids=['right', 'right-spaces', 'right-quotes', 'wrong', 'other-users-password', 'unknown',
        'empty', 'empty-unknown'])
def test_auth_test(tmp, pw, user, password, code, verdict, reason):
    # no `service` key: the default service is "gatehouse"
    pw.matrix_service('gatehouse', USERS)
    conf = simple_conf(tmp, {'pam': {'module': 'pam'}})
    r, out = run(conf, user, password, pw.env())
    assert r.returncode == code, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == 'verdict:  %s' % verdict, r.stdout
    assert out['module'] == 'pam (pam)'
    assert out['reason'] == reason
    assert out['user'] == (user if verdict == 'ok' else '-')
    assert_no_secrets(r.stdout + r.stderr, ALL_SECRETS, 'auth-test output')


def test_empty_password_never_reaches_pam(tmp, pw):
    """A stack that would let anyone in (pam_permit) still refuses an empty
    password; a non-empty one gets in without being asked for (logged)."""
    pw.service('permissive', ['auth required pam_permit.so', 'account required pam_permit.so'])
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': 'permissive'}})
    r, out = run(conf, 'anyone', '', pw.env())
    assert (r.returncode, out['verdict'], out['reason']) == (1, 'wrong-password',
                                                              'empty password'), r.stdout
    # only the set-up line of the module: PAM was never started
    assert r.stderr.count("PAM service 'permissive'") == 1, r.stderr
    r, out = run(conf, 'anyone', 'x', pw.env())
    assert (r.returncode, out['verdict']) == (0, 'ok'), r.stdout + r.stderr
    assert 'without asking for the password' in r.stderr


@pytest.mark.parametrize('value,code', [
    (None, 1), ('yes', 1), ('true', 1), ('YES', 1), ('no', 0), ('false', 0), ('No', 0)])
def test_account_stage(tmp, pw, value, code):
    """bob's passdb line allows another service: pam_matrix's account stage
    refuses him (PAM_PERM_DENIED) after a right password."""
    users = dict(USERS)
    users['bob'] = (USERS['bob'], 'some-other-service')
    pw.matrix_service('mail', users)
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': 'mail', 'account': value}})
    r, out = run(conf, 'bob', USERS['bob'], pw.env())
    assert r.returncode == code, r.stdout + r.stderr
    if code:
        assert out['verdict'] == 'wrong-password'
        assert out['reason'] == 'permission denied (pam_acct_mgmt: Permission denied)'
    # alice is allowed either way
    r, out = run(conf, 'alice', USERS['alice'], pw.env())
    assert (r.returncode, out['verdict']) == (0, 'ok'), r.stdout + r.stderr


# Every PAM result the module maps, from pam_debug (which returns what its
# arguments say), at the auth stage or (after pam_matrix let alice in) at
# the account stage.
AUTH_STAGE = [
    ('user_unknown', 1, 'unknown-user', 'unknown user'),
    ('auth_err', 1, 'wrong-password', 'wrong password'),
    ('maxtries', 1, 'wrong-password', 'wrong password'),
    ('perm_denied', 1, 'wrong-password', 'permission denied'),
    ('acct_expired', 1, 'wrong-password', 'account expired'),
    ('new_authtok_reqd', 1, 'wrong-password', 'password expired'),
    ('authtok_expired', 1, 'wrong-password', 'password expired'),
    ('authinfo_unavail', 2, 'tempfail', 'PAM failure'),
    ('system_err', 2, 'tempfail', 'PAM failure'),
    ('buf_err', 2, 'tempfail', 'PAM failure'),
    ('conv_err', 2, 'tempfail', 'PAM failure'),
    ('cred_insufficient', 2, 'tempfail', 'PAM failure'),
    ('service_err', 2, 'tempfail', 'PAM failure'),
    ('abort', 2, 'tempfail', 'PAM failure'),
    ('try_again', 2, 'tempfail', 'PAM failure'),
]
ACCOUNT_STAGE = [
    ('acct_expired', 1, 'wrong-password', 'account expired'),
    ('new_authtok_reqd', 1, 'wrong-password', 'password expired'),
    ('authtok_expired', 1, 'wrong-password', 'password expired'),
    ('perm_denied', 1, 'wrong-password', 'permission denied'),
    ('user_unknown', 1, 'unknown-user', 'unknown user'),
    ('authinfo_unavail', 2, 'tempfail', 'PAM failure'),
    ('system_err', 2, 'tempfail', 'PAM failure'),
]


def test_result_mapping(tmp, pw):
    """One config, one listener and [auth] group per case, so that each case
    is one quick auth-test run."""
    db = pw.passdb('mapping', {'alice': USERS['alice']}, 'acct-any')
    listeners, auths, cases = {}, {}, []
    for stage, table in (('auth', AUTH_STAGE), ('acct', ACCOUNT_STAGE)):
        for code_name, code, verdict, why in table:
            svc = '%s-%s' % (stage, code_name.replace('_', '-'))
            if stage == 'auth':
                lines = ['auth required pam_debug.so auth=%s' % code_name,
                         'account required pam_permit.so']
            else:
                lines = ['auth required %s passdb=%s' % (pw.matrix, db),
                         'account required pam_debug.so acct=%s' % code_name]
            pw.service(svc, lines)
            name = svc.replace('-', '_')
            listeners[name] = smtp_listener(1, name)
            auths[name] = {'module': 'pam', 'service': svc}
            cases.append((name, 'pam_authenticate' if stage == 'auth' else 'pam_acct_mgmt',
                          code, verdict, why))
    # account = no: the account stage's verdict does not matter
    pw.service('acct-skipped', ['auth required %s passdb=%s' % (pw.matrix, db),
                                'account required pam_debug.so acct=acct_expired'])
    listeners['skipped'] = smtp_listener(1, 'skipped')
    auths['skipped'] = {'module': 'pam', 'service': 'acct-skipped', 'account': 'no'}
    conf = write_config(tmp / 'gh.conf', listeners, auths, DOWN_BACKENDS)

    failures = []
    for name, stage, code, verdict, why in cases:
        r, out = run(conf, 'alice', USERS['alice'], pw.env(), listener=name, debug=False)
        got = (r.returncode, out.get('verdict'), out.get('reason', '').split(' (')[0])
        if got != (code, verdict, why) or '(%s: ' % stage not in out.get('reason', ''):
            failures.append('%s: got %r, reason %r; want %r' % (
                name, got, out.get('reason'), (code, verdict, why)))
    r, out = run(conf, 'alice', USERS['alice'], pw.env(), listener='skipped')
    if (r.returncode, out.get('verdict')) != (0, 'ok'):
        failures.append('account = no: %r' % (out,))
    assert not failures, '\n'.join(failures)


def test_tempfail_is_logged(tmp, pw):
    """A TEMPFAIL is the admin's business: logged without -d (gatehousectl
    shows the log lines with -v; without, its answer holds the reason)."""
    pw.service('broken', ['auth required pam_debug.so auth=authinfo_unavail'])
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': 'broken'}})
    r, out = run(conf, 'alice', USERS['alice'], pw.env(), debug=False)
    assert r.returncode == 2 and out['verdict'] == 'tempfail', r.stdout + r.stderr
    assert 'Authentication service cannot retrieve authentication info' in out['reason']
    assert r.stderr == '', r.stderr
    r, out = run(conf, 'alice', USERS['alice'], pw.env(), debug=False, verbose=True)
    assert r.returncode == 2 and out['verdict'] == 'tempfail', r.stdout + r.stderr
    assert "gh-auth-pam: session auth-test: PAM service 'broken': PAM failure " \
        "(pam_authenticate: Authentication service cannot retrieve authentication info)" \
        in r.stderr, r.stderr


def test_missing_service_file_uses_other(tmp, pw):
    """Linux-PAM falls back to the service `other` (here: pam_deny)."""
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': 'no-such-service'}})
    r, out = run(conf, 'alice', USERS['alice'], pw.env())
    assert r.returncode == 1 and out['verdict'] == 'wrong-password', r.stdout + r.stderr


def test_missing_service_file_warned(tmp):
    """Without pam_wrapper: a service with no file in /etc/pam.d is set up
    with a warning (PAM would use the service `other`).  Nothing is
    written to /etc; the verdict depends on the system's `other`."""
    if not Path('/etc/pam.d').is_dir():
        pytest.skip('no /etc/pam.d')
    service = 'ghpamtest-missing-%s' % secrets.token_hex(4)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('PAM_') and k != 'LD_PRELOAD'}
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': service}})
    r, out = run(conf, 'nobody', 'nobody-pw-x', env, debug=False)
    assert r.returncode in (1, 2), r.stdout + r.stderr
    assert "warning: gh-auth-pam: PAM service '%s': no file /etc/pam.d/%s; PAM will apply " \
        "the rules of the service 'other' instead" % (service, service) in r.stderr, r.stderr


# ------------------------------------------------------------ conversation

def test_conversation_messages_logged_at_debug(tmp, pw):
    """pam_chatty sends error and info messages: logged at debug, escaped,
    none with the password."""
    pw.matrix_service('chatty', USERS, before=[
        'auth optional %s num_lines=2 error' % pw.chatty,
        'auth optional %s num_lines=1 info' % pw.chatty,
    ])
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': 'chatty'}})
    r, out = run(conf, 'alice', USERS['alice'], pw.env())
    assert r.returncode == 0, r.stdout + r.stderr
    # (pam_chatty's num_lines= does not do what its name says in 1.1.4: the
    # count of its lines is its own business)
    assert 'debug: gh-auth-pam: session auth-test: PAM error message: ' \
        '"Authentication generated an error"' in r.stderr, r.stderr
    assert 'PAM info message: "Authentication succeeded"' in r.stderr, r.stderr
    r, out = run(conf, 'alice', 'wrong-alice-pw', pw.env())
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'PAM error message: "Authentication generated an error"' in r.stderr, r.stderr
    # without -d: nothing of the conversation
    r, out = run(conf, 'alice', USERS['alice'], pw.env(), debug=False)
    assert r.returncode == 0 and 'PAM error message' not in r.stderr, r.stderr
    assert_no_secrets(r.stdout + r.stderr, ALL_SECRETS, 'auth-test output')


def test_message_holding_the_password_is_withheld(tmp, pw):
    """pam_debug says "auth=ignore" in an info message; for a user whose
    password is just that, the message is not logged."""
    users = {'alice': USERS['alice'], 'mallory': 'auth=ignore'}
    pw.matrix_service('gatehouse', users, before=['auth optional pam_debug.so auth=ignore'])
    conf = simple_conf(tmp, {'pam': {'module': 'pam'}})
    r, out = run(conf, 'alice', USERS['alice'], pw.env())
    assert r.returncode == 0 and 'PAM info message: "auth=ignore"' in r.stderr, r.stderr
    r, out = run(conf, 'mallory', 'auth=ignore', pw.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'PAM info message withheld from the log: it holds the password' in r.stderr
    assert 'auth=ignore' not in r.stdout + r.stderr, r.stderr


def test_pam_fail_delay_taken_over(tmp, pw):
    """pam_faildelay asks PAM to sleep 3 s after a failure (Linux-PAM makes
    it 2.25-3.75 s; pamtester waits that long); the module's PAM_FAIL_DELAY
    function is called instead, which Linux-PAM then never sleeps, and says
    so at debug level; the core applies its own failure_delay instead."""
    pw.matrix_service('gatehouse', USERS, before=['auth optional pam_faildelay.so delay=3000000'])
    conf = simple_conf(tmp, {'pam': {'module': 'pam'}})
    for user, password, code in [('alice', 'wrong-alice-pw', 1), ('nobody', 'nobody-pw-x', 1),
                                 ('alice', USERS['alice'], 0)]:
        r, out = run(conf, user, password, pw.env())
        assert r.returncode == code, r.stdout + r.stderr
        asked = re.findall(r'PAM asked for a failure delay of (\d+) ms: not slept', r.stderr)
        if code == 0:
            assert asked == [], r.stderr
        else:
            assert len(asked) == 1 and 1500 <= int(asked[0]) <= 4500, r.stderr


def test_conversation_refuses_echo_on_prompt(tmp, pw):
    """pam_matrix `echo` asks for the password with echo on: refused with
    PAM_CONV_ERR, which pam_matrix turns into PAM_AUTHINFO_UNAVAIL."""
    pw.matrix_service('echo', USERS, matrix_args='echo')
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': 'echo'}})
    r, out = run(conf, 'alice', USERS['alice'], pw.env())
    assert r.returncode == 2 and out['verdict'] == 'tempfail', r.stdout + r.stderr
    assert 'PAM prompt with echo refused: "Password: "' in r.stderr, r.stderr


# ------------------------------------------------------------ keys

@pytest.mark.parametrize('key,value,message', [
    ('service', '../etc/shadow', "bad PAM service name '../etc/shadow'"),
    ('service', 'a b', "bad PAM service name 'a b'"),
    ('account', 'maybe', "bad value 'maybe': expected yes or no"),
    ('account', '1', "bad value '1': expected yes or no"),
    ('max_concurrent', '0', "bad value '0': expected a whole number from 1 to 1024"),
    ('max_concurrent', '1025', "bad value '1025': expected a whole number from 1 to 1024"),
    ('max_concurrent', '-1', "bad value '-1'"),
    ('max_concurrent', '8x', "bad value '8x'"),
    ('max_concurrent', '', "bad value ''"),
    ('timeout', '3601', "bad value '3601': expected a whole number of seconds from 0 to 3600"),
    ('timeout', '10s', "bad value '10s'"),
    ('timeout', '1.5', "bad value '1.5'"),
    ('helper_timeout', '0',
     "bad value '0': expected a whole number of seconds from 1 to 3599"),
    ('helper_timeout', '3600',
     "bad value '3600': expected a whole number of seconds from 1 to 3599"),
    ('helper_socket', 'run/pam.sock',
     "bad value 'run/pam.sock': expected the absolute path of a Unix socket"),
    ('helper_socket', '/' + 'x' * 120, "bad value '/%s': expected the absolute path of a Unix "
     "socket, shorter than 108 bytes" % ('x' * 120)),
    ('servce', 'gatehouse', "unknown key for module 'pam'"),
])
def test_bad_keys(tmp, pw, key, value, message):
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': 'gatehouse', key: value}})
    r, out = run(conf, 'alice', USERS['alice'], pw.env())
    assert r.returncode == 78, r.stdout + r.stderr
    want = '%s:%d: [auth pam] %s: %s' % (conf, line_of(conf, 'auth pam', key), key, message)
    assert want in r.stderr, r.stderr


def test_good_keys(tmp, pw):
    pw.matrix_service('mail-gw.test_1', USERS)
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': ' mail-gw.test_1 ',
                                        'account': 'TRUE', 'max_concurrent': '1024',
                                        'timeout': '0', 'helper_timeout': '3599',
                                        'helper_socket': ''}})
    r, out = run(conf, 'alice', USERS['alice'], pw.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PAM service 'mail-gw.test_1': account stage on, at most 1024 conversations at " \
        "once, 0 s wait for a slot, 3599 s for a helper's answer, helpers started by " \
        "gatehouse" in r.stderr


# ------------------------------------------------------------ chains

@pytest.mark.parametrize('chain,user,password,code,module', [
    ('users pam', 'alice', USERS['alice'], 0, 'pam (pam)'),          # file: unknown -> PAM
    ('users pam', 'nobody', 'nobody-pw-x', 1, 'pam (pam)'),          # unknown to both
    ('users pam', 'dave', FILE_USERS['dave'], 0, 'users (file)'),
    ('users pam', 'erin', FILE_USERS['erin'], 0, 'users (file)'),
    ('users pam', 'erin', PAM_ONLY['erin'], 1, 'users (file)'),      # file said wrong: stop
    ('pam users', 'dave', FILE_USERS['dave'], 0, 'users (file)'),    # PAM: unknown -> file
    ('pam users', 'erin', FILE_USERS['erin'], 1, 'pam (pam)'),       # PAM said wrong: stop
    ('pam users', 'erin', PAM_ONLY['erin'], 0, 'pam (pam)'),
])
def test_chain(tmp, pw, chain, user, password, code, module):
    users_file = tmp / 'users'
    users_file.write_text(''.join('%s:{PLAIN}%s\n' % kv for kv in FILE_USERS.items()))
    pam_users = dict(USERS)
    pam_users.update(PAM_ONLY)
    pw.matrix_service('gatehouse', pam_users)
    conf = simple_conf(tmp, {'users': {'module': 'file', 'path': str(users_file)},
                                'pam': {'module': 'pam'}}, auth=chain)
    r, out = run(conf, user, password, pw.env())
    assert (r.returncode, out['module']) == (code, module), r.stdout + r.stderr


# ------------------------------------------------------------ through gatehoused

@pytest.fixture
def smtp_backend():
    b = SmtpServer()
    yield b
    b.close()


@pytest.fixture
def imap_backend():
    b = ImapServer()
    yield b
    b.close()


def test_smtp_and_imap_logins(tmp, pw, daemons, smtp_backend, imap_backend):
    pw.matrix_service('gatehouse', USERS)
    users_file = tmp / 'users'
    users_file.write_text(''.join('%s:{PLAIN}%s\n' % kv for kv in FILE_USERS.items()))
    sport, iport = free_port(), free_port()
    conf = write_config(
        tmp / 'gh.conf',
        {'sub': smtp_listener(sport, 'users pam'), 'imap': imap_listener(iport, 'users pam')},
        {'users': {'module': 'file', 'path': str(users_file)}, 'pam': {'module': 'pam'}},
        {'smtp': {'protocol': 'smtp', 'servers': '127.0.0.1:%d' % smtp_backend.port,
                  'login': 'none'},
         'imap': {'protocol': 'imap', 'servers': '127.0.0.1:%d' % imap_backend.port,
                  'login': 'passthrough'}},
        gatehouse={'auth_cache_size': '0'})
    gw = start_gatehoused(tmp, daemons, conf, pw.env())

    cases = [('alice', USERS['alice'], True), ('carol', USERS['carol'], True),
             ('dave', FILE_USERS['dave'], True),       # the file module's user
             ('alice', 'wrong-alice-pw', False), ('nobody', 'nobody-pw-x', False)]
    for user, password, good in cases:
        with SmtpClient(sport, greet=True) as c:
            assert c.cmd('EHLO client.test')[0] == '250-gw.test'
            got = c.auth_plain(user, password)
            assert got == (AUTH_OK if good else BAD_CREDS), (user, got)
            if good:
                assert c.cmd('NOOP') == ['250 2.0.0 backend NOOP']
            c.cmd('QUIT')
        with ImapClient(iport, greet=True) as c:
            got = c.login(user, password, tag='a1')
            if good:
                assert got.startswith('OK'), (user, got)
            else:
                assert got == IMAP_FAILED, (user, got)
            c.cmd('a2 LOGOUT')
    assert sorted(imap_backend.users()) == ['alice', 'carol', 'dave']

    # the login log line names the module that decided, with PAM's reason
    log = gw.text()
    assert 'user="alice" mech=PLAIN tls=no module=pam(pam) verdict=ok' in log
    assert 'user="dave" mech=PLAIN tls=no module=users(file) verdict=ok' in log
    assert 'module=pam(pam) verdict=wrong-password reason="wrong password ' \
        '(pam_authenticate: Authentication failure)"' in log
    assert 'module=pam(pam) verdict=unknown-user' in log
    assert gw.stop() == 0
    assert_no_secrets(gw.text(), ALL_SECRETS, 'daemon log')


def test_password_never_logged(tmp, pw, daemons, smtp_backend):
    """With -d, a chatty stack and every outcome, the daemon log holds no
    form of any password tried (also checked by the other daemon tests)."""
    pw.matrix_service('gatehouse', USERS, before=[
        'auth optional %s num_lines=3 error' % pw.chatty])
    port = free_port()
    conf = smtp_gateway_conf(tmp, port, smtp_backend.port, gatehouse={'auth_cache_size': '0'})
    gw = start_gatehoused(tmp, daemons, conf, pw.env())
    tried = []
    for user, password in list(USERS.items()) + [('alice', 'wrong-alice-pw'),
                                                 ('nobody', 'nobody-pw-x'),
                                                 ('bob', USERS['carol'])]:
        tried.append((user, password))
        with SmtpClient(port, greet=True) as c:
            c.cmd('EHLO client.test')
            c.auth_plain(user, password)
    assert gw.stop() == 0
    log = gw.text()
    assert 'gh-auth-pam' in log and 'PAM error message' in log, log[-2000:]
    assert_no_secrets(log, tried + ALL_SECRETS, 'daemon log')


# ------------------------------------------------------------ concurrency

def _login_worker(port, user, password, barrier, results, i):
    try:
        with SmtpClient(port, greet=True, timeout=150) as c:
            c.cmd('EHLO c%d.test' % i)
            barrier.wait(60)
            sent = time.monotonic()
            got = c.auth_plain(user, password, timeout=150)
            answered = time.monotonic()
            # (reply, when it came, how long after the AUTH)
            results[i] = (got, answered, answered - sent)
            c.line('QUIT')
    except Exception as e:  # noqa: BLE001 - reported by the test
        results[i] = ('error: %r' % e, time.monotonic(), 0)


def test_200_concurrent_logins_with_slow_pam(tmp, pw, daemons, smtp_backend):
    """200 logins at once against a stack that holds every conversation until
    the test lets go (pam_exec forks a waiting script for each): as many as
    there are PAM helpers (max_concurrent = 40) are inside PAM at the same
    time, and meanwhile another session gets its NOOPs answered while not
    one login has been: PAM never blocks an I/O thread.  Then every answer
    is right.  Shown by order of events, not by a clock (bench/run measures
    the NOOP latency during such a storm).  40, not 200: pam_wrapper gives
    every process that loads it one of 62 private directories, so a test
    under it cannot run more helpers than that."""
    n = 200
    helpers = 40
    users = {'u%03d' % i: 'pw-%03d-Secret' % i for i in range(50)}
    gate = PamGate(tmp)
    pw.matrix_service('gatehouse', users, before=[gate.pam_line()])
    port = free_port()
    conf = smtp_gateway_conf(tmp, port, smtp_backend.port,
                             pam={'max_concurrent': str(helpers), 'timeout': '60'},
                             gatehouse={'auth_workers': '256', 'auth_cache_size': '0',
                                        'workers': '2'})
    gw = start_gatehoused(tmp, daemons, conf, pw.env(), debug=False, valgrind=False)

    plan = []
    for i in range(n):
        user = 'u%03d' % (i % 50)
        good = i % 4 != 0
        plan.append((user, users[user] if good else 'not-' + users[user], good))
    results = [None] * n
    barrier = threading.Barrier(n + 1)
    threads = [threading.Thread(target=_login_worker, daemon=True,
                                args=(port, plan[i][0], plan[i][1], barrier, results, i))
               for i in range(n)]
    try:
        with SmtpClient(port, greet=True, timeout=30) as probe:
            probe.cmd('EHLO probe.test')
            for t in threads:
                t.start()
            barrier.wait(60)
            # NOOPs are answered while the conversations pile up in PAM...
            noops = 0
            while gate.count() < helpers:
                assert probe.cmd('NOOP', timeout=30) == ['250 2.0.0 OK']
                noops += 1
                assert noops < 3000, 'only %d of %d logins reached PAM' % (gate.count(),
                                                                            helpers)
                time.sleep(0.02)
            # ... and once every helper is busy, with not one login answered
            for _ in range(3):
                assert probe.cmd('NOOP', timeout=30) == ['250 2.0.0 OK']
            answered = [(i, plan[i][0], r) for i, r in enumerate(results) if r is not None]
            # seen once in a check, not reproduced: say what gatehoused
            # made of those logins, and how many had entered the gate
            assert answered == [], 'answered before PAM let go: %r\n%d in the gate\n%s' % (
                answered[:5], gate.count(),
                '\n'.join(ln for ln in gw.text().splitlines()
                          if ' login: ' in ln or 'pam' in ln.lower())[-4000:])
            released = time.monotonic()
            gate.release()
            for t in threads:
                t.join(150)
            assert probe.cmd('NOOP') == ['250 2.0.0 OK']
    finally:
        gate.release()

    assert all(r is not None for r in results), 'some logins got no answer in time'
    wrong = [(i, plan[i], results[i][0]) for i in range(n)
             if results[i][0] != (AUTH_OK if plan[i][2] else BAD_CREDS)]
    assert not wrong, 'wrong answers: %r' % wrong[:10]
    assert min(r[1] for r in results) >= released
    assert gate.count() == n  # one conversation each: no retry, no cache
    assert gw.stop() == 0
    assert_no_secrets(gw.text(), [(u, p) for u, p, _ in plan], 'daemon log')


def test_max_concurrent_and_timeout(tmp, pw, daemons, smtp_backend):
    """max_concurrent = 2 and timeout = 1 against a stack that holds every
    conversation until the test lets go: of 5 logins at once, 2 get in, and
    3 wait 1 s (not less) for a slot and get "try later" while those 2 are
    still held; once let go, the 2 log in.  The warning about busy slots is
    logged once."""
    gate = PamGate(tmp)
    pw.matrix_service('gatehouse', USERS, before=[gate.pam_line()])
    port = free_port()
    conf = smtp_gateway_conf(tmp, port, smtp_backend.port,
                             pam={'max_concurrent': '2', 'timeout': '1'},
                             gatehouse={'auth_workers': '8', 'auth_cache_size': '0'})
    gw = start_gatehoused(tmp, daemons, conf, pw.env(), debug=False, valgrind=False)
    n = 5
    results = [None] * n
    barrier = threading.Barrier(n + 1)
    threads = [threading.Thread(target=_login_worker, daemon=True,
                                args=(port, 'alice', USERS['alice'], barrier, results, i))
               for i in range(n)]
    try:
        for t in threads:
            t.start()
        barrier.wait(60)
        wait_for(lambda: sum(r is not None for r in results) >= 3, timeout=60,
                 what='the three logins without a slot answered')
        answered = [r for r in results if r is not None]
        assert [r[0] for r in answered] == [TEMPFAIL] * 3, results
        # they waited the slot timeout, not less
        assert all(r[2] >= 0.9 for r in answered), results
        assert gate.count() == 2, 'conversations in PAM: %d' % gate.count()
        released = time.monotonic()
        gate.release()
        for t in threads:
            t.join(60)
    finally:
        gate.release()
    ok = [r for r in results if r is not None and r[0] == AUTH_OK]
    assert len(ok) == 2 and all(r[1] >= released for r in ok), results
    assert gate.count() == 2
    log = gw.text()
    assert log.count("PAM service 'gatehouse': all 2 conversation slots stayed busy for 1 s") \
        == 1, log
    assert log.count('too many PAM conversations in progress (max_concurrent = 2, waited 1 s)') \
        == 3, log
    assert gw.stop() == 0


def test_identical_logins_in_flight_share_one_conversation(tmp, pw, daemons, smtp_backend):
    """With the verdict cache on, identical logins that come while one is
    inside PAM wait for it: 8 with alice's password and 4 with one wrong
    password, all sent while PAM holds every conversation, make exactly 2
    conversations (one per password), and each client gets the right
    answer once PAM lets go.  Ordered, not timed: one I/O thread, and a
    probe's NOOP sent after every AUTH line had been sent is answered only
    after that thread has read them all."""
    gate = PamGate(tmp)
    pw.matrix_service('gatehouse', USERS, before=[gate.pam_line()])
    port = free_port()
    conf = smtp_gateway_conf(tmp, port, smtp_backend.port,
                             pam={'max_concurrent': '20', 'timeout': '60'},
                             gatehouse={'auth_workers': '16', 'auth_cache_size': '100',
                                        'workers': '1', 'failure_delay': '0'})
    gw = start_gatehoused(tmp, daemons, conf, pw.env(), debug=False, valgrind=False)
    plan = [USERS['alice']] * 8 + ['not-' + USERS['alice']] * 4
    clients = []
    try:
        with SmtpClient(port, greet=True, timeout=30) as probe:
            probe.cmd('EHLO probe.test')
            for i, password in enumerate(plan):
                c = SmtpClient(port, greet=True, timeout=150)
                clients.append(c)
                c.cmd('EHLO c%d.test' % i)
                c.line('AUTH PLAIN ' + plain_blob('alice', password))
            # every AUTH line is out; the one thread has read them once it
            # answers this
            assert probe.cmd('NOOP', timeout=30) == ['250 2.0.0 OK']
            wait_for(lambda: gate.count() >= 2, timeout=60, what='two conversations in PAM')
            assert probe.cmd('NOOP', timeout=30) == ['250 2.0.0 OK']
            assert gate.count() == 2, 'conversations in PAM: %d' % gate.count()
            gate.release()
            answers = [c.reply(timeout=150)[-1] for c in clients]
    finally:
        gate.release()
        for c in clients:
            c.close()
    assert answers == [AUTH_OK] * 8 + [BAD_CREDS] * 4, answers
    assert gate.count() == 2
    # each login has its own log line, none from the cache: they waited
    lines = re.findall(r'login: session=\S+ .*? user="alice" .*? verdict=(\S+) .*? cached=(yes|no) ',
                       gw.text())
    assert sorted(lines) == sorted([('ok', 'no')] * 8 + [('wrong-password', 'no')] * 4), lines
    assert gw.stop() == 0


# ------------------------------------------------------------ valgrind

def test_valgrind_auth_test(tmp, pw):
    """auth-test with PAM under valgrind: no error, no definite or indirect
    leak, for each outcome.  tests/valgrind-pam.supp holds the suppressions
    for third-party PAM modules' own leaks (pam_chatty's)."""
    if shutil.which('valgrind') is None:
        pytest.skip('valgrind is not installed')
    pw.matrix_service('gatehouse', USERS, before=['auth optional %s num_lines=1 info'
                                                  % pw.chatty])
    pw.service('broken', ['auth required pam_debug.so auth=system_err'])
    conf = write_config(tmp / 'gh.conf', {'sub': smtp_listener(1), 'b': smtp_listener(1, 'b')},
                        {'pam': {'module': 'pam'}, 'b': {'module': 'pam', 'service': 'broken'}},
                        DOWN_BACKENDS)
    for user, password, listener, code in [('alice', USERS['alice'], 'sub', 0),
                                           ('alice', 'wrong-alice-pw', 'sub', 1),
                                           ('nobody', 'nobody-pw-x', 'sub', 1),
                                           ('alice', '', 'sub', 1),
                                           ('alice', USERS['alice'], 'b', 2)]:
        r = auth_test(conf, user, password, pw.env(), listener=listener, valgrind=True,
                      timeout=120)
        assert r.returncode == code, '%s/%s: rc %d\n%s' % (user, listener, r.returncode,
                                                           r.stderr[-6000:])
        assert not re.search(r'^==\d+==', r.stderr, re.M), r.stderr[-6000:]


# ------------------------------------------------------------ real PAM

def _run_root(argv, attempts=10):
    """Run a user-management command; retry while another process holds
    the lock on /etc/passwd (exit 10)."""
    for _ in range(attempts):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 10:
            return r
        time.sleep(0.5)
    return r


@pytest.fixture
def real_user():
    """A throwaway local user with a password, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip('needs root (useradd, /etc/pam.d)')
    for tool in ('useradd', 'userdel', 'chpasswd', 'chage'):
        if shutil.which(tool) is None:
            pytest.skip('%s is not installed' % tool)
    name = 'ghpamtest%s' % secrets.token_hex(4)
    password = 'Real-%s-pw' % secrets.token_hex(6)
    created = False
    try:
        r = _run_root(['useradd', '--system', '--no-create-home', '--shell',
                       '/usr/sbin/nologin', name])
        assert r.returncode == 0, r.stderr
        created = True
        r = subprocess.run(['chpasswd'], input='%s:%s\n' % (name, password), text=True,
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        yield name, password
    finally:
        if created:
            r = _run_root(['userdel', '-r', name])
            # 12: no home directory to remove, which is expected here
            assert r.returncode in (0, 12), r.stderr
            with pytest.raises(KeyError):
                pwd.getpwnam(name)


@pytest.fixture
def real_service():
    """/etc/pam.d/<random>, a copy of etc/pam.d/gatehouse, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip('needs root (useradd, /etc/pam.d)')
    name = 'ghpamtest-%s' % secrets.token_hex(4)
    path = Path('/etc/pam.d') / name
    try:
        shutil.copyfile(SRCDIR / 'etc' / 'pam.d' / 'gatehouse', path)
        os.chmod(path, 0o644)
        yield name
    finally:
        path.unlink(missing_ok=True)


def test_real_pam_unix(tmp, real_user, real_service):
    """The shipped service file, pam_unix, a real user: no pam_wrapper."""
    user, password = real_user
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('PAM_') and k != 'LD_PRELOAD'}
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': real_service}})

    r, out = run(conf, user, password, env)
    assert (r.returncode, out['verdict']) == (0, 'ok'), r.stdout + r.stderr
    assert 'no file /etc/pam.d' not in r.stderr

    # pam_unix asks for a ~2 s failure delay (1.5-2.5 s): PAM_FAIL_DELAY
    # takes it over, and Linux-PAM never sleeps when that function is set
    r, out = run(conf, user, 'wrong-' + password, env)
    assert (r.returncode, out['verdict']) == (1, 'wrong-password'), r.stdout + r.stderr
    asked = re.findall(r'PAM asked for a failure delay of (\d+) ms: not slept', r.stderr)
    assert len(asked) == 1 and 1000 <= int(asked[0]) <= 3000, r.stderr

    r, out = run(conf, 'ghpamnosuchuser%s' % secrets.token_hex(3), 'x-pw', env)
    assert (r.returncode, out['verdict']) == (1, 'unknown-user'), r.stdout + r.stderr

    # an expired password, then an expired account: refused after a right password
    assert subprocess.run(['chage', '-d', '0', user], timeout=30).returncode == 0
    r, out = run(conf, user, password, env)
    assert (r.returncode, out['verdict']) == (1, 'wrong-password'), r.stdout + r.stderr
    assert out['reason'].startswith('password expired (pam_acct_mgmt: '), out
    assert subprocess.run(['chage', '-d', '-1', '-E', '1', user], timeout=30).returncode == 0
    r, out = run(conf, user, password, env)
    assert (r.returncode, out['verdict']) == (1, 'wrong-password'), r.stdout + r.stderr
    assert out['reason'].startswith('account expired (pam_acct_mgmt: '), out
    conf_no_acct = simple_conf(tmp, {'pam': {'module': 'pam', 'service': real_service,
                                                'account': 'no'}}, name='noacct.conf')
    r, out = run(conf_no_acct, user, password, env)
    assert (r.returncode, out['verdict']) == (0, 'ok'), r.stdout + r.stderr
    assert_no_secrets(r.stdout + r.stderr, [real_user], 'auth-test output')


def test_real_pam_unix_unprivileged(tmp, real_user, real_service):
    """Not root and not in group shadow: pam_unix cannot read other users'
    hashes (PAM_AUTHINFO_UNAVAIL): "try later", not "wrong password"."""
    if shutil.which('setpriv') is None:
        pytest.skip('setpriv is not installed')
    user, password = real_user
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('PAM_') and k != 'LD_PRELOAD'}
    conf = simple_conf(tmp, {'pam': {'module': 'pam', 'service': real_service}})
    argv = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
            str(GATEHOUSECTL),
            '-c', str(conf), 'auth-test', user, '--service', 'smtp']
    r = subprocess.run(argv, input=password + '\n', capture_output=True, text=True, env=env,
                       timeout=60)
    out = auth_test_fields(r.stdout)
    assert (r.returncode, out.get('verdict')) == (2, 'tempfail'), r.stdout + r.stderr


def test_sessions_closing_while_pam_forks(tmp, pw, daemons, postfix):
    """pam_exec forks for every login; a child holds copies of the daemon's
    sockets until it execs.  Sessions that end in that window must leave the
    I/O loop's watch list even so (a socket only left there by close(2) once
    outlived its session: the daemon crashed on the next event).  Logins that
    fork (60), and short sessions that open and close (200 or more), side by
    side: the daemon stays up and answers."""
    users = {'u%02d' % i: 'pw-%02d-Secret' % i for i in range(20)}
    pw.matrix_service('gatehouse', users, before=['auth required pam_exec.so quiet /bin/true'])
    port = free_port()
    conf = smtp_gateway_conf(tmp, port, postfix.port,
                             pam={'max_concurrent': '64', 'timeout': '30'},
                             gatehouse={'auth_workers': '64', 'auth_cache_size': '0',
                                        'workers': '2'},
                             login='xclient')
    gw = start_gatehoused(tmp, daemons, conf, pw.env(), debug=False, valgrind=False)
    # counted, not timed: 3 logins per thread, and short sessions side by side
    # until the logins are done and at least 200 were made; the deadline only
    # keeps a hang from hanging the suite
    logins_each, short_min = 3, 200
    deadline = time.monotonic() + 300
    counts = {'logins': 0, 'short': 0, 'errors': []}
    lock = threading.Lock()
    logins_done = threading.Event()

    def logins(i):
        user = 'u%02d' % i
        for _ in range(logins_each):
            if time.monotonic() > deadline:
                return
            try:
                with SmtpClient(port, greet=True) as c:
                    c.cmd('EHLO forks.test')
                    got = c.auth_plain(user, users[user], timeout=30)
                with lock:
                    if got == AUTH_OK:
                        counts['logins'] += 1
                    else:
                        counts['errors'].append(got)
            except OSError as e:
                with lock:
                    counts['errors'].append(repr(e))
                return

    def short(_):
        while time.monotonic() < deadline:
            with lock:
                if logins_done.is_set() and counts['short'] >= short_min:
                    return
            try:
                s = socket.create_connection(('127.0.0.1', port), timeout=10)
                s.recv(512)  # the banner; then close while logins fork
                s.close()
                with lock:
                    counts['short'] += 1
            except OSError as e:
                with lock:
                    counts['errors'].append(repr(e))
                return

    login_threads = [threading.Thread(target=logins, args=(i,), daemon=True) for i in range(20)]
    short_threads = [threading.Thread(target=short, args=(i,), daemon=True) for i in range(8)]
    for t in login_threads + short_threads:
        t.start()
    for t in login_threads:
        t.join(max(1, deadline - time.monotonic()))
    logins_done.set()
    for t in short_threads:
        t.join(max(1, deadline - time.monotonic()))
    assert not counts['errors'], counts['errors'][:5]
    assert counts['logins'] == 20 * logins_each and counts['short'] >= short_min, counts
    with SmtpClient(port, greet=True) as c:
        assert c.cmd('EHLO after.test')[0].startswith('250')
    assert gw.stop() == 0
