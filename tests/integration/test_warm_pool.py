"""[backend] warm_connections: parked backend connections, opened before
any client asks, so that a login's backend part is one round trip.

Real Dovecot (IMAP and submission) sits behind a relay that records, per
connection and in the order they were accepted, every byte the gateway
sends.  One I/O thread (workers = 1), so every login meets the same pool.
Shown: the first login to a server fills the pool; the next one logs in
over a connection that was opened before that client connected, and the
ID it sends names that client; the pool dials again once the backend has
answered the login that took a connection and the client's next command
has gone to it, or the client has gone (at once when none is left); a
failed login sends nothing on a warm connection; an idle pool says LOGOUT and closes after warm_lifetime, and
is not refilled while nobody logs in; after a reload the old
configuration's warm connections are never taken and go within
warm_lifetime; a backend that drops the warm
connections costs the next client nothing; SMTP with forward_client = no
the same; the configuration refuses a pool where the backend would be told
about a client before there is one.
"""
import json
import re
import signal
import time

import pytest

from backends import USERS
from lib.clients import ImapClient, SmtpClient, imap_quote, plain_blob
from lib.config import check_backend
from lib.gateway import ctl
from lib.net import wait_for

IMAP_FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed.'


def gateway(gateways, port, protocol='imap', **backend):
    keys = {'protocol': protocol, 'login': 'passthrough', 'servers': '127.0.0.1:%d' % port,
            'warm_connections': '2'}
    keys.update(backend)
    listener = {'plaintext_auth': 'always'}
    if protocol == 'smtp':
        listener['require_auth'] = 'yes'
    return gateways.start({'gw': dict(listener, backend='b')}, {'b': keys}, protocol=protocol,
                          users={'alice': USERS['alice']},
                          gatehouse={'workers': '1', 'auth_cache_size': '0'})


def imap_login(gw, password=None):
    """A logged-in ImapClient (the caller closes it), or the reply line."""
    c = ImapClient(gw.port(), greet=True)
    reply = c.cmd('a1 LOGIN alice %s' % imap_quote(password or USERS['alice']))[-1]
    return c, reply


def test_next_login_goes_over_a_warm_connection(gateways, imap_relay):
    gw = gateway(gateways, imap_relay.port)
    first, reply = imap_login(gw)
    assert reply.startswith('a1 OK'), reply
    first.close()
    # the first login asked for the server: two warm connections, parked
    # after Dovecot's greeting (which lists the capabilities): sent nothing
    wait_for(lambda: imap_relay.connections() == 3, what='two warm connections')
    warm = [i for i in range(3) if b'a1 ' not in imap_relay.text(i)]
    time.sleep(0.2)  # would a warm connection send anything unasked?
    assert [imap_relay.text(i) for i in warm] == [b'', b'']

    c = ImapClient(gw.port(), greet=True)
    client_port = c.sock.getsockname()[1]
    reply = c.cmd('a2 LOGIN alice %s' % imap_quote(USERS['alice']))[-1]
    assert reply.startswith('a2 OK'), reply
    assert c.cmd('a3 SELECT INBOX')[-1].startswith('a3 OK')
    c.close()
    used = [i for i in warm if b'a2 ' in imap_relay.text(i)]
    assert len(used) == 1, [imap_relay.text(i) for i in warm]
    sent = imap_relay.text(used[0]).decode()
    # this client's address went with the login, in Dovecot's ID fields
    assert '"x-originating-port" "%d"' % client_port in sent, sent
    assert re.search(r'^a2 AUTHENTICATE PLAIN ', sent, re.M), sent
    # the pool refills what was taken
    wait_for(lambda: imap_relay.connections() == 4, what='the pool refilled')
    assert 'backend=127.0.0.1:%d' % imap_relay.port in gw.log()
    # gatehousectl stats counts the first login's miss and this one's hit
    r = ctl('-c', gw.conf, 'stats', '--json')
    assert r.returncode == 0, r.stderr
    assert sorted((x['backend'], x['result'], x['count'])
                  for x in json.loads(r.stdout)['warm_takes']) == [('b', 'hit', 1),
                                                                   ('b', 'miss', 1)], r.stdout


def login_held(gw, imap_relay, warm):
    """After a first login has filled the pool (`warm` connections parked,
    their greetings through), a second client's LOGIN with Dovecot's
    answers held; the client, its answer still to come."""
    first, reply = imap_login(gw)
    assert reply.startswith('a1 OK'), reply
    first.close()
    # its end may refill the pool (it sent no command after its login):
    # done before the next take, as the tests count the dials after it
    wait_for(lambda: 'session end:' in gw.log(), what='the first session ended')
    wait_for(lambda: imap_relay.connections() == 1 + warm, what='the warm connections')
    wait_for(lambda: all(b'\n' in imap_relay.from_server(i) for i in range(1 + warm)),
             what='the greetings relayed')
    imap_relay.hold()
    c = ImapClient(gw.port(), greet=True)
    c.line('a2 LOGIN alice %s' % imap_quote(USERS['alice']))
    # (connections in order: the first login's own, then the warm ones)
    wait_for(lambda: any(b'a2 AUTHENTICATE' in imap_relay.text(i) for i in range(1, 1 + warm)),
             what='the login sent on a warm connection')
    return c


def test_pool_dials_again_once_the_clients_next_command_is_out(gateways, imap_relay):
    """A take that leaves a warm connection parked does not dial the
    backend while the backend is logging the taker in, nor right after its
    answer (the client's next command is on its way then); once that
    command has gone to the backend, the pool makes up the one taken."""
    gw = gateway(gateways, imap_relay.port)
    c = login_held(gw, imap_relay, 2)
    # Dovecot's answer is held: the pool still has one parked, and waits
    time.sleep(0.5)
    assert imap_relay.connections() == 3
    imap_relay.release()
    assert c.response('a2')[-1].startswith('a2 OK')
    time.sleep(0.5)  # would the pool dial before the client's next command?
    assert imap_relay.connections() == 3
    c.line('a3 NOOP')
    wait_for(lambda: imap_relay.connections() == 4, what='the pool refilled')
    assert c.response('a3')[-1].startswith('a3 OK')
    assert b'a3 NOOP' in imap_relay.text(1) + imap_relay.text(2)
    c.close()


def test_pool_dials_again_when_a_client_leaves_without_a_command(gateways, imap_relay):
    """A client that logs in and goes without another command: the pool
    makes up the connection it took when its session ends."""
    gw = gateway(gateways, imap_relay.port)
    c = login_held(gw, imap_relay, 2)
    imap_relay.release()
    assert c.response('a2')[-1].startswith('a2 OK')
    time.sleep(0.5)
    assert imap_relay.connections() == 3
    c.close()
    wait_for(lambda: imap_relay.connections() == 4, what='the pool refilled')


def test_pool_left_empty_dials_again_at_once(gateways, imap_relay):
    """With warm_connections = 1 a take leaves none: the pool dials again
    at once, while the taker's login is still with the backend."""
    gw = gateway(gateways, imap_relay.port, warm_connections='1')
    c = login_held(gw, imap_relay, 1)
    wait_for(lambda: imap_relay.connections() == 3, what='the refill while the login is held')
    assert imap_relay.text(2) == b''
    imap_relay.release()
    assert c.response('a2')[-1].startswith('a2 OK')
    c.close()


def test_failed_login_sends_nothing_on_warm_connections(gateways, imap_relay):
    gw = gateway(gateways, imap_relay.port)
    first, reply = imap_login(gw)
    first.close()
    wait_for(lambda: imap_relay.connections() == 3, what='two warm connections')
    c, reply = imap_login(gw, password='wrong')
    assert reply == 'a1 ' + IMAP_FAILED
    c.close()
    texts = [imap_relay.text(i) for i in range(imap_relay.connections())]
    # the first login's AUTHENTICATE, and no other
    assert sum(b'AUTHENTICATE' in t for t in texts) == 1, texts
    assert sum(b' LOGIN ' in t for t in texts) == 0, texts


def test_idle_pool_says_logout_and_is_not_refilled(gateways, imap_relay):
    gw = gateway(gateways, imap_relay.port, warm_lifetime='1')
    first, reply = imap_login(gw)
    assert reply.startswith('a1 OK')
    first.close()
    wait_for(lambda: imap_relay.connections() == 3, what='two warm connections')
    # nobody logs in: after warm_lifetime each is told goodbye and closed
    wait_for(lambda: imap_relay.ended == 3, timeout=30, what='the warm connections closed')
    goodbyes = [imap_relay.text(i) for i in range(3) if b'a1 ' not in imap_relay.text(i)]
    assert goodbyes == [b'ghb LOGOUT\r\n'] * 2
    # and, asked for by nobody, not replaced (three lifetimes and more)
    time.sleep(4)
    assert imap_relay.connections() == 3
    # the next login fills it again
    c, reply = imap_login(gw)
    assert reply.startswith('a1 OK'), reply
    c.close()
    wait_for(lambda: imap_relay.connections() == 6, what='the pool refilled')


def test_reload_leaves_old_warm_connections_to_expire(gateways, imap_relay):
    """After a reload the pool serves the new configuration only; the old
    configuration's warm connections are not taken, and go (LOGOUT) within
    warm_lifetime."""
    gw = gateway(gateways, imap_relay.port, warm_lifetime='2')
    first, reply = imap_login(gw)
    first.close()
    wait_for(lambda: imap_relay.connections() == 3, what='two warm connections')
    old = [i for i in range(3) if b'a1 ' not in imap_relay.text(i)]
    gw.daemon.signal(signal.SIGHUP)
    gw.daemon.wait_log('configuration reloaded from')
    c, reply = imap_login(gw)
    assert reply.startswith('a1 OK'), reply
    c.close()
    # a fresh connection for the new configuration, and two warm ones
    wait_for(lambda: imap_relay.connections() == 6, what='the new pool')
    wait_for(lambda: all(imap_relay.text(i) == b'ghb LOGOUT\r\n' for i in old), timeout=30,
             what='the old warm connections told goodbye')
    assert not any(b'a1 ' in imap_relay.text(i) for i in old)


def test_backend_dropping_warm_connections_costs_nothing(gateways, imap_relay):
    gw = gateway(gateways, imap_relay.port)
    first, reply = imap_login(gw)
    first.close()
    wait_for(lambda: imap_relay.connections() == 3, what='two warm connections')
    # each relay has its server once that server's greeting came through
    wait_for(lambda: all(b'\n' in imap_relay.from_server(i) for i in range(3)),
             what='the greetings relayed')
    imap_relay.cut()
    wait_for(lambda: imap_relay.ended == 3, what='the connections cut')
    c, reply = imap_login(gw)
    assert reply.startswith('a1 OK'), reply
    assert c.cmd('a2 NOOP')[-1].startswith('a2 OK')
    c.close()
    assert 'tempfail' not in gw.log()


def test_smtp_auth_goes_over_a_warm_connection(gateways, submission_relay):
    gw = gateway(gateways, submission_relay.port, protocol='smtp', forward_client='no')
    blob = plain_blob('alice', USERS['alice'])
    for n in range(2):
        with SmtpClient(gw.port(), greet=True) as c:
            c.cmd('EHLO client.test')
            reply = c.cmd('AUTH PLAIN %s' % blob)[-1]
            assert reply.startswith('235'), reply
            c.cmd('QUIT')
        if n == 0:
            wait_for(lambda: submission_relay.connections() == 3, what='two warm connections')
            warm = [i for i in range(3) if b'AUTH' not in submission_relay.text(i)]
            # a warm SMTP connection says EHLO once the greeting is in
            # (the last one may just have connected), and nothing more
            wait_for(lambda: all(submission_relay.text(i) for i in warm),
                     what='the warm connections\' EHLO')
            for i in warm:
                assert submission_relay.text(i) == b'EHLO gw.test\r\n'
    used = [i for i in warm if b'AUTH PLAIN' in submission_relay.text(i)]
    assert len(used) == 1


@pytest.mark.parametrize('keys, why', [
    ({'proxy_protocol': 'v2'}, 'needs proxy_protocol = no'),
    ({'protocol': 'smtp'}, 'needs forward_client = no on an smtp backend'),
])
def test_config_refuses_a_pool_that_would_name_no_client(tmp, keys, why):
    backend = dict({'protocol': 'imap', 'servers': '127.0.0.1:1', 'warm_connections': '2'},
                   **keys)
    r = check_backend(tmp, backend)
    assert r.returncode != 0
    assert '[backend b] warm_connections' in r.stderr and why in r.stderr, r.stderr
