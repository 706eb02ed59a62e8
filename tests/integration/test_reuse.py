"""[backend] reuse_connections: an SMTP session whose client says QUIT with
its backend at rest gets the goodbye from gatehoused, and its connection
to the backend goes back to the warm pool for the next login, as
Postfix's own client caches connections.

Real Postfix sits behind a relay that records, connection by connection,
every byte the gateway sends it.  One I/O thread (workers = 1), so every
login meets the same pool.  Shown: several sessions in a row, each with a
message that Postfix delivers, go over one backend connection with
nothing said to Postfix between them (a message it accepted ended the
transaction), and the clients hear gatehoused's 221; with login =
xclient, each session's XCLIENT names its own HELO and user, and each
message's Received line says so; a connection
carries at most 20 sessions, and then the QUIT goes to Postfix; a session
that leaves the backend anything but at rest (EHLO or a second AUTH after
login, a refused recipient, no message, a NOOP or a refusal after the
message, a body with a bare LF, a QUIT pipelined behind the body, a QUIT
split across two sends) has its QUIT answered by Postfix and its
connection closed; a kept connection that gives out as the next login
goes on it is replaced, and that client still logs in; the
configuration refuses reuse where a
connection would carry one client's identity to the next (AUTH to the
backend, or an XCLIENT naming an address: Postfix checks the next XCLIENT
against it).
"""
import json
import time

import pytest

from backends import USERS, received
from lib.clients import SmtpClient, plain_blob
from lib.config import check_backend
from lib.gateway import ctl
from lib.net import wait_for
from lib.scripted import RecordingRelay

OUR_BYE = '221 2.0.0 gw.test Bye'
POSTFIX_BYE = '221 2.0.0 Bye'
KEPT = 'client quit, backend connection kept'


@pytest.fixture
def postfix_relay(postfix):
    """A RecordingRelay in front of the module's Postfix."""
    r = RecordingRelay(postfix.port)
    yield r
    r.close()


def gateway(gateways, port, **backend):
    keys = {'protocol': 'smtp', 'login': 'none', 'forward_client': 'no',
            'servers': '127.0.0.1:%d' % port, 'warm_connections': '2',
            'reuse_connections': 'yes'}
    keys.update(backend)
    return gateways.start({'gw': {'require_auth': 'yes', 'plaintext_auth': 'always',
                                  'backend': 'b'}},
                          {'b': keys}, protocol='smtp', users=USERS,
                          gatehouse={'workers': '1', 'auth_cache_size': '0'})


def login(gw, user='alice', source=None, helo='client.example.org'):
    c = SmtpClient(gw.port(), greet=True, source=source)
    c.ehlo(helo)
    c.expect('AUTH PLAIN ' + plain_blob(user, USERS[user]), 235)
    return c


def send_message(c, subject, rcpt='bob@example.com', body_eol=b'\r\n', sender='alice'):
    c.expect('MAIL FROM:<%s@example.com>' % sender, 250)
    c.expect('RCPT TO:<%s>' % rcpt, 250)
    c.expect('DATA', 354)
    body = b'Subject: %s\r\n\r\nhello%sfrom the reuse test\r\n.\r\n' % (subject.encode(),
                                                                     body_eol)
    c.send(body)
    return c.reply()


def quit_reply(c):
    reply = c.cmd('QUIT')
    assert c.closed_within(), 'the session did not end after QUIT'
    return reply[-1]


GW_EHLO = b'EHLO gw.test\r\n'


def wait_parked(gw, kept):
    """gatehoused has kept a connection `kept` times; then a moment for the
    kept link to park again (one loop turn)."""
    wait_for(lambda: gw.log().count(KEPT) == kept, what='%d kept connection(s)' % kept)
    time.sleep(0.3)


def kept_session(gw, kept, subject, user='alice', source=None, helo='client.example.org',
                 rcpt='bob@example.com'):
    """One session that sends a message and quits at rest: Postfix queues
    the message, gatehoused says the goodbye and keeps the connection (the
    `kept`-th time)."""
    c = login(gw, user, source, helo)
    reply = send_message(c, subject, rcpt=rcpt, sender=user)
    assert reply[-1].startswith('250 2.0.0 Ok: queued'), reply
    assert quit_reply(c) == OUR_BYE
    c.close()
    wait_parked(gw, kept)


def sessions_on(relay, i):
    return relay.text(i).count(b'MAIL FROM:')


def test_sessions_in_a_row_share_one_backend_connection(gateways, postfix, postfix_relay):
    gw = gateway(gateways, postfix_relay.port)
    subjects = ['reuse-%d-%f' % (n, time.time()) for n in range(4)]
    for n, subject in enumerate(subjects):
        kept_session(gw, n + 1, subject)
    # one connection carried all four, with nothing between them: the warm
    # link's EHLO, then the sessions' commands only (no RSET or NOOP that
    # Postfix would count as junk commands against the connection)
    assert postfix_relay.connections() == 1
    sent = postfix_relay.text(0).decode()
    assert sent.count('MAIL FROM:<alice@example.com>') == 4, sent
    assert sent.count(GW_EHLO.decode()) == 1 and 'QUIT' not in sent, sent
    assert 'RSET' not in sent and 'NOOP' not in sent, sent
    assert sent.count('\r\n.\r\nMAIL FROM:') == 3, sent
    for subject in subjects:
        postfix.wait_message('bob', subject)
    log = gw.log()
    assert log.count(KEPT) == 4, log
    r = ctl('-c', gw.conf, 'stats', '--json')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['kept'] == [{'backend': 'b', 'count': 4}], r.stdout


def test_a_connection_carries_at_most_twenty_sessions(gateways, postfix, postfix_relay):
    gw = gateway(gateways, postfix_relay.port)
    byes = []
    for n in range(21):
        c = login(gw)
        reply = send_message(c, 'twenty-%d-%f' % (n, time.time()))
        assert reply[-1].startswith('250 2.0.0 Ok: queued'), reply
        byes.append(quit_reply(c))
        c.close()
        if n < 19:
            wait_parked(gw, n + 1)
        else:
            wait_for(lambda: postfix_relay.ended >= 1 or postfix_relay.connections() > 1,
                     what='the twentieth session')
            time.sleep(0.3)
    assert byes[:19] == [OUR_BYE] * 19, byes
    # the twentieth: the connection goes, Postfix says goodbye itself
    assert byes[19] == POSTFIX_BYE, byes
    sent = postfix_relay.text(0).decode()
    assert sent.count('MAIL FROM:') == 20 and sent.endswith('\r\n.\r\nQUIT\r\n'), sent
    # the twenty-first is on a connection of its own
    assert postfix_relay.connections() == 2
    assert postfix_relay.text(1).count(b'MAIL FROM:') == 1


def ehlo_again(c):
    c.expect('EHLO again.example.org', 250)


def second_auth(c):
    # Postfix has no AUTH here (login = none): its refusal, whatever it is
    c.cmd('AUTH PLAIN ' + plain_blob('alice', USERS['alice']))


def refused_rcpt(c):
    c.expect('MAIL FROM:<alice@example.com>', 250)
    c.expect('RCPT TO:<nobody@example.com>', 550)
    c.expect('RSET', 250)


def no_message(c):
    pass


def noop_after_message(c):
    send_message(c, 'noop-%f' % time.time())
    c.expect('NOOP', 250)


def refused_after_message(c):
    send_message(c, 'refused-%f' % time.time())
    c.expect('MAIL FROM:<alice@example.com>', 250)
    c.expect('RCPT TO:<nobody@example.com>', 550)


def bare_lf_body(c):
    reply = send_message(c, 'bare-lf-%f' % time.time(), body_eol=b'\n')
    assert reply[-1].startswith('250'), reply


def pipelined_quit(c):
    c.expect('MAIL FROM:<alice@example.com>', 250)
    c.expect('RCPT TO:<bob@example.com>', 250)
    c.expect('DATA', 354)
    c.send(b'Subject: piped\r\n\r\nhello\r\n.\r\nQUIT\r\n')
    assert c.reply()[-1].startswith('250 2.0.0 Ok: queued')
    return c.reply()[-1]


def split_quit(c):
    send_message(c, 'split-%f' % time.time())
    c.send(b'QU')
    time.sleep(0.2)
    c.send(b'IT\r\n')
    return c.reply()[-1]


@pytest.mark.parametrize('before, ending', [
    (ehlo_again, None),
    (second_auth, None),
    (refused_rcpt, None),
    (no_message, None),
    (noop_after_message, None),
    (refused_after_message, None),
    (bare_lf_body, None),
    (None, pipelined_quit),
    (None, split_quit),
])
def test_a_session_not_at_rest_is_not_kept(gateways, postfix, postfix_relay, before, ending):
    gw = gateway(gateways, postfix_relay.port)
    c = login(gw)
    if before is not None:
        before(c)
    bye = ending(c) if ending is not None else c.cmd('QUIT')[-1]
    assert c.closed_within()
    c.close()
    # Postfix answered the QUIT and the connection ended
    assert bye == POSTFIX_BYE
    wait_for(lambda: postfix_relay.ended == 1, what='the backend connection closed')
    assert postfix_relay.text(0).endswith(b'QUIT\r\n')
    assert KEPT not in gw.log()
    # the next session connects afresh, and is kept
    c = login(gw)
    send_message(c, 'next-%f' % time.time())
    assert quit_reply(c) == OUR_BYE
    c.close()
    assert postfix_relay.connections() == 2


def test_a_kept_connection_the_backend_drops_is_not_used(gateways, postfix, postfix_relay):
    """Nothing is said on a kept connection while it waits; one the backend
    closes meanwhile (a restart, its own idle timeout) leaves the pool as
    soon as it closes, and the next session connects afresh."""
    gw = gateway(gateways, postfix_relay.port, login='xclient', warm_connections='1')
    kept_session(gw, 1, 'drop-1-%f' % time.time())
    postfix_relay.cut()
    wait_for(lambda: postfix_relay.ended >= postfix_relay.connections(),
             what='the relayed connections cut')
    time.sleep(0.3)
    c = login(gw, 'bob')
    subject = 'drop-2-%f' % time.time()
    reply = send_message(c, subject, rcpt='alice@example.com', sender='bob')
    assert reply[-1].startswith('250 2.0.0 Ok: queued'), reply
    assert quit_reply(c) == OUR_BYE
    c.close()
    assert b'(Authenticated sender: bob)' in received(postfix.wait_message('alice', subject))
    # the second session went over a connection of its own
    assert postfix_relay.connections() >= 2
    assert b'LOGIN=bob' not in postfix_relay.text(0), postfix_relay.text(0)


def test_xclient_sessions_share_one_connection_each_as_its_own_client(
        gateways, postfix, postfix_relay):
    """login = xclient, forward_client = no: the second session's XCLIENT
    names its own user and HELO on the connection the first one used, and
    Postfix, which allows XCLIENT to gatehoused's address only (the suite's
    smtpd_authorized_xclient_hosts), takes it: no XCLIENT named another
    address."""
    gw = gateway(gateways, postfix_relay.port, login='xclient')
    sessions = [('alice', '127.0.0.2', 'first.example.org'),
                ('bob', '127.0.0.3', 'second.example.org'),
                ('carol', '127.0.0.2', 'third.example.org')]
    subjects = ['xreuse-%d-%f' % (n, time.time()) for n in range(len(sessions))]
    for n, (user, source, helo) in enumerate(sessions):
        kept_session(gw, n + 1, subjects[n], user, source, helo, rcpt='alice@example.com')
    assert postfix_relay.connections() == 1
    sent = postfix_relay.text(0).decode()
    xclients = [line for line in sent.split('\r\n') if line.startswith('XCLIENT ')]
    assert len(xclients) == 3 and 'QUIT' not in sent, sent
    for line, (user, source, helo) in zip(xclients, sessions):
        assert ' LOGIN=%s' % user in line and ' HELO=%s' % helo in line, line
        assert ' ADDR=' not in line and ' PORT=' not in line and ' NAME=' not in line, line
    # each message carries its own session's HELO and user, not the one
    # before, and gatehoused's address
    for subject, (user, source, helo) in zip(subjects, sessions):
        rcv = received(postfix.wait_message('alice', subject))
        assert rcv.startswith(b'Received: from %s (' % helo.encode()), rcv
        assert b'[127.0.0.1]' in rcv and b'[%s]' % source.encode() not in rcv, rcv
        assert b'(Authenticated sender: %s)' % user.encode() in rcv, rcv
        assert b'with ESMTPA' in rcv, rcv
    assert gw.log().count(KEPT) == 3


def test_xclient_names_an_unknown_client_on_a_reusing_backend(gateways, postfix, postfix_relay):
    """On a backend whose connections may go from one client to the next,
    every XCLIENT names LOGIN and HELO, as [UNAVAILABLE] when the session
    has none (a client that sends mail without AUTH, or without HELO), so
    nothing is ever left over from an earlier XCLIENT; Postfix takes it
    and delivers the message as unauthenticated."""
    keys = {'protocol': 'smtp', 'login': 'xclient', 'servers': '127.0.0.1:%d' % postfix_relay.port,
            'forward_client': 'no', 'warm_connections': '2', 'reuse_connections': 'yes'}
    gw = gateways.start({'mx': {'require_auth': 'no', 'backend': 'b'}}, {'b': keys},
                        protocol='smtp', users=USERS, gatehouse={'workers': '1'})
    subjects = []
    for source, helo in (('127.0.0.4', 'mx-client.example.org'), ('127.0.0.5', None)):
        c = SmtpClient(gw.port(), greet=True, source=source)
        if helo is not None:
            c.ehlo(helo)
        subjects.append('xanon-%s-%f' % (source, time.time()))
        reply = send_message(c, subjects[-1], rcpt='alice@example.com', sender='someone')
        assert reply[-1].startswith('250 2.0.0 Ok: queued'), reply
        c.cmd('QUIT')
        c.close()
    for subject, source in zip(subjects, ('127.0.0.4', '127.0.0.5')):
        rcv = received(postfix.wait_message('alice', subject))
        assert b'[127.0.0.1]' in rcv and b'Authenticated sender' not in rcv, rcv
    assert received(postfix.wait_message('alice', subjects[0])).startswith(
        b'Received: from mx-client.example.org (')
    xclients = [line for text in (postfix_relay.text(i).decode()
                                  for i in range(postfix_relay.connections()))
                for line in text.split('\r\n') if line.startswith('XCLIENT ')]
    assert len(xclients) == 2, xclients
    assert ' LOGIN=[UNAVAILABLE]' in xclients[0] and ' HELO=mx-client' in xclients[0], xclients
    assert ' LOGIN=[UNAVAILABLE]' in xclients[1] and ' HELO=[UNAVAILABLE]' in xclients[1], xclients


def test_a_kept_connection_that_fails_at_the_login_is_replaced(gateways, postfix, postfix_relay):
    """A kept connection can still give out after the verdict, as the
    login goes on it (the server restarts between its XCLIENT and its
    answer).  The verdict stands: the login goes on a connection of its
    own, and the client hears 235, not a temporary failure."""
    gw = gateway(gateways, postfix_relay.port, login='xclient', warm_connections='1')
    kept_session(gw, 1, 'late-1-%f' % time.time())
    postfix_relay.hold()
    c = SmtpClient(gw.port(), greet=True)
    c.ehlo('late.example.org')
    c.send(b'AUTH PLAIN %s\r\n' % plain_blob('bob', USERS['bob']).encode())
    # bob's XCLIENT went on the kept connection; Postfix's answer waits
    wait_for(lambda: b'LOGIN=bob' in postfix_relay.text(0), what="bob's XCLIENT on it")
    postfix_relay.cut()
    wait_for(lambda: 'connecting afresh' in gw.log(), what='the login on a new connection')
    postfix_relay.release()
    reply = c.reply()
    assert reply[-1].startswith('235 '), reply
    subject = 'late-2-%f' % time.time()
    reply = send_message(c, subject, rcpt='alice@example.com', sender='bob')
    assert reply[-1].startswith('250 2.0.0 Ok: queued'), reply
    assert quit_reply(c) == OUR_BYE
    c.close()
    rcv = received(postfix.wait_message('alice', subject))
    assert rcv.startswith(b'Received: from late.example.org ('), rcv
    assert b'(Authenticated sender: bob)' in rcv, rcv
    assert any(b'LOGIN=bob' in postfix_relay.text(i)
               for i in range(1, postfix_relay.connections())), postfix_relay.text()
    log = gw.log()
    assert 'backend connection lost at the login (127.0.0.1:%d: closed the connection)' % (
        postfix_relay.port) in log, log
    assert 'verdict=tempfail' not in log and 'user="bob"' in log, log


@pytest.mark.parametrize('keys, why', [
    ({'login': 'passthrough'}, 'needs login = none or xclient'),
    ({'login': 'master', 'master_user': 'gw', 'master_password_file': '/dev/null'},
     'needs login = none or xclient'),
    ({'forward_client': 'yes'}, 'needs forward_client = no with login = none'),
    ({'login': 'xclient', 'forward_client': 'yes'},
     'Postfix allows the next XCLIENT only if that address is in its '
     'smtpd_authorized_xclient_hosts'),
    ({'warm_connections': '0'}, 'needs warm_connections'),
    ({'protocol': 'imap'}, 'is for smtp backends only'),
])
def test_config_refuses_reuse_that_would_carry_a_client(tmp, keys, why):
    backend = dict({'protocol': 'smtp', 'servers': '127.0.0.1:1', 'login': 'none',
                    'forward_client': 'no', 'warm_connections': '2',
                    'reuse_connections': 'yes'}, **keys)
    r = check_backend(tmp, backend)
    assert r.returncode != 0
    assert '[backend b] reuse_connections' in r.stderr and why in r.stderr, r.stderr
