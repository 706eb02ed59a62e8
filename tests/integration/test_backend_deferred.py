"""A backend that puts a login off, and one that refuses it, against a real
Dovecot whose mail_max_userip_connections is 1.

With one session of alice's open, Dovecot answers her second login "not
now": IMAP `NO [LIMIT] Maximum number of connections ...`, POP3 `-ERR
[IN-USE] ...`.  Through gatehoused the second client hears exactly that
answer (its code tells a client to try later, not to ask for a new
password), the login line says verdict=tempfail and why, the session goes
on, the server is not counted as a failed backend (gatehousectl stats'
backend_failures), and once the first session ends the same client logs in.
Each over a backend connection dialled for the login and over a warm one.
A login the backend refuses (Dovecot's submission with another password
than ours: 535) is our own "credentials invalid" and verdict=backend-refused,
not a temporary failure, and is not a backend failure either.  A scripted
submission server shows the rest of SMTP's sorting: 454 and 432 put the
login off; 421 and a 504 are the server's failure, counted.
"""
import json
import os
import re
import subprocess

import pytest

from backends import Dovecot, USERS, running
from lib.clients import ImapClient, Pop3Client, SmtpClient
from lib.gateway import ctl
from lib.scripted import SmtpServer
from lib.net import TIMEOUT, wait_for

AUTH_BAD = '535 5.7.8 Authentication credentials invalid'
AUTH_TEMPFAIL = '454 4.7.0 Temporary authentication failure'
LIMIT = 'Maximum number of connections from user+IP exceeded (mail_max_userip_connections=1)'


class LimitedDovecot(Dovecot):
    """backends.Dovecot that lets a user have one session at a time (per
    address: through gatehoused, whose address Dovecot sees, per user)."""

    def write_config(self):
        super().write_config()
        with open(self.conf, 'a') as f:
            f.write('mail_max_userip_connections = 1\n')


@pytest.fixture(scope='module')
def dovecot(postfix):
    with running(LimitedDovecot(postfix.port)) as d:
        yield d


@pytest.fixture(params=[0, 2], ids=['dialled', 'warm'])
def gw(request, gateways, dovecot):
    """Listeners imap, pop3 and sub (submission) -> the limited Dovecot,
    login = passthrough, forward_client = no (Dovecot sees gatehoused's
    address); bob's password at gatehoused is not Dovecot's.  IMAP and
    POP3 logins go over a connection dialled for them, or over a warm one
    (warm_connections = 2): the answer comes back the same way."""
    users = dict(USERS, bob='gatehouse-only-pw')
    backends = {}
    for proto, port in (('imap', dovecot.imap_port), ('pop3', dovecot.pop3_port),
                        ('smtp', dovecot.submission_port)):
        backends[proto] = dict(protocol=proto, servers='127.0.0.1:%d' % port,
                               login='passthrough', forward_client='no')
        if proto != 'smtp' and request.param:
            backends[proto]['warm_connections'] = str(request.param)
    return gateways.start({'imap': dict(protocol='imap', backend='imap'),
                           'pop3': dict(protocol='pop3', backend='pop3'),
                           'sub': dict(protocol='smtp', backend='smtp', require_auth='yes',
                                       plaintext_auth='always')},
                          backends, users=users)


def counted(dovecot, user, proto):
    """Wait until Dovecot counts a session of `user` (`doveadm who`: what
    its limit is checked against; a mail process registers a moment after
    its login answer, so a quick second login could still get in)."""
    def listed():
        r = subprocess.run(['doveadm', '-c', str(dovecot.conf), 'who', '-1', user],
                           capture_output=True, text=True, timeout=TIMEOUT)
        return r.returncode == 0 and re.search(r'^%s\s+%s\s' % (user, proto), r.stdout, re.M)
    wait_for(listed, TIMEOUT, what='Dovecot to count the session of %s' % user)


def stats(gw):
    r = ctl('stats', '--json', config=gw.conf)
    assert r.returncode == 0 and r.stderr == '', (r, gw.log()[-3000:])
    return json.loads(r.stdout)


def login_line(gw, user, verdict):
    """The one login line of `user` with `verdict` (its text)."""
    lines = [ln for ln in gw.log().splitlines()
             if ' login: ' in ln and 'user="%s"' % user in ln and 'verdict=%s ' % verdict in ln]
    assert len(lines) == 1, gw.log()[-3000:]
    return lines[0]


def imap_client(gw):
    c = ImapClient(gw.port('imap'), gw=gw)
    c.greeting_caps()
    return c


def pop3_client(gw):
    c = Pop3Client(gw.port('pop3'), gw=gw)
    c.expect(None, '+OK gw.test ready.')
    return c


def test_imap_limit_is_said_as_dovecot_says_it(gw, dovecot):
    first = imap_client(gw)
    second = imap_client(gw)
    try:
        assert first.login('alice', USERS['alice']).startswith('OK '), first.ctx()
        counted(dovecot, 'alice', 'imap')
        assert second.login('alice', USERS['alice'], tag='b') == 'NO [LIMIT] ' + LIMIT, \
            second.ctx()
        # the session goes on, in login state
        second.expect('c NOOP', 'OK NOOP completed.')
        line = login_line(gw, 'alice', 'tempfail')
        assert re.search(r'reason="backend deferred the login: 127\.0\.0\.1:%d: answered '
                         r'\\x22b NO \[LIMIT\] Maximum number' % dovecot.imap_port, line), line
        st = stats(gw)
        assert st['backend_failures'] == [], st
        assert ('imap', 'tempfail', 1) in [(x['listener'], x['verdict'], x['count'])
                                          for x in st['logins']], st
        mark = dovecot.mark()
        first.expect('z LOGOUT', re.compile(r'z OK Logout completed.*'))
        first.close()
        # once Dovecot has counted the first session out, the same client
        # gets in
        dovecot.wait_log(r'imap\(alice\).*Logged out', after=mark)
        answers = []

        def logged_in():  # (Dovecot's count may trail its log line)
            answers.append(second.login('alice', USERS['alice'], tag='d%d' % len(answers)))
            return not answers[-1].startswith('NO [LIMIT]')
        wait_for(logged_in, TIMEOUT, what='a login once the first session is out')
        assert answers[-1].startswith('OK ') and 'Logged in' in answers[-1], second.ctx()
    finally:
        first.close()
        second.close()


def test_pop3_in_use_is_said_as_dovecot_says_it(gw, dovecot):
    first = pop3_client(gw)
    second = pop3_client(gw)
    try:
        assert first.user_pass('carol', USERS['carol']) == '+OK Logged in.', first.ctx()
        counted(dovecot, 'carol', 'pop3')
        assert second.user_pass('carol', USERS['carol']) == '-ERR [IN-USE] ' + LIMIT, \
            second.ctx()
        second.expect('NOOP', '+OK')  # still before login
        line = login_line(gw, 'carol', 'tempfail')
        assert 'backend deferred the login: 127.0.0.1:%d: answered' % dovecot.pop3_port \
            in line, line
        assert stats(gw)['backend_failures'] == []
    finally:
        first.close()
        second.close()


def test_submission_535_is_a_refusal_not_a_failure(gw, dovecot):
    """bob's password is right for gatehoused, wrong for Dovecot."""
    c = SmtpClient(gw.port('sub'), gw=gw, greet=True)
    try:
        c.ehlo()
        assert c.auth_plain('bob', 'gatehouse-only-pw') == \
            '535 5.7.8 Authentication credentials invalid', c.ctx()
        c.expect('NOOP', 250)
    finally:
        c.close()
    line = login_line(gw, 'bob', 'backend-refused')
    assert 'AUTH refused: 535' in line, line
    assert stats(gw)['backend_failures'] == []


def test_fetchmail_hears_the_lock(gw, dovecot, tmp):
    """fetchmail, a real client, reads the code: with carol's mailbox busy
    it says so and exits 9 (PS_LOCKBUSY), not 3 (PS_AUTHFAIL: a password
    to fix)."""
    first = pop3_client(gw)
    try:
        assert first.user_pass('carol', USERS['carol']) == '+OK Logged in.', first.ctx()
        counted(dovecot, 'carol', 'pop3')
        home = tmp / 'fetchmail'
        home.mkdir()
        rc = home / 'fetchmailrc'
        rc.write_text('set no bouncemail\n'
                      'poll localhost via 127.0.0.1 service %d protocol pop3 auth password\n'
                      '  user "carol" there with password "%s" is root here\n'
                      '  keep fetchall sslproto ""\n'
                      '  mda "/bin/cat"\n' % (gw.port('pop3'), USERS['carol']))
        rc.chmod(0o600)
        env = dict(os.environ, FETCHMAILHOME=str(home), HOME=str(home))
        r = subprocess.run(['fetchmail', '--nodetach', '--nosyslog', '-f', str(rc)], env=env,
                           capture_output=True, text=True, timeout=TIMEOUT * 2)
        assert r.returncode == 9, (r.returncode, r.stdout, r.stderr)
    finally:
        first.close()


DEFERRED = 'reason="backend deferred the login: 127.0.0.1:%d: answered AUTH with \\x22'
FAILED = 'reason="backend unavailable: 127.0.0.1:%d: AUTH refused: '
REFUSED = 'reason="127.0.0.1:%d: AUTH refused: '


@pytest.mark.parametrize('answer,client_sees,verdict,reason,failure', [
    (b'454 4.7.0 Temporary authentication failure: lookup', AUTH_TEMPFAIL, 'tempfail',
     DEFERRED, False),
    (b'432 4.7.12 A password transition is needed', AUTH_TEMPFAIL, 'tempfail', DEFERRED, False),
    (b'535 5.7.8 Error: authentication failed', AUTH_BAD, 'backend-refused', REFUSED, False),
    (b'421 4.3.2 Shutting down', AUTH_TEMPFAIL, 'tempfail', FAILED, True),
    (b'504 5.5.4 Unrecognized authentication type', AUTH_TEMPFAIL, 'tempfail', FAILED, True),
], ids=['454', '432', '535', '421', '504'])
def test_submission_auth_answers(gateways, answer, client_sees, verdict, reason, failure):
    """What a submission backend answers to our AUTH (login = passthrough):
    a 4xx but 421 puts the login off (not a failed server), 535 refuses
    it; 421 (the server is going away) and other answers are the
    server's failure, counted."""
    srv = SmtpServer(auth=answer)
    try:
        gw = gateways.start({'sub': dict(protocol='smtp', backend='b', require_auth='yes',
                                         plaintext_auth='always')},
                            {'b': dict(protocol='smtp', servers='127.0.0.1:%d' % srv.port,
                                       login='passthrough', forward_client='no')},
                            users=USERS)
        c = SmtpClient(gw.port('sub'), gw=gw, greet=True)
        try:
            c.ehlo()
            assert c.auth_plain('alice', USERS['alice']) == client_sees, c.ctx()
            c.expect('NOOP', 250)
        finally:
            c.close()
        line = login_line(gw, 'alice', verdict)
        assert (reason % srv.port) + answer.decode()[:3] in line, line
        failures = stats(gw)['backend_failures']
        assert failures == ([{'backend': 'b', 'server': '127.0.0.1:%d' % srv.port,
                              'count': 1}] if failure else []), failures
    finally:
        srv.close()
