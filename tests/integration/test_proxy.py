"""PROXY protocol headers straight to gatehoused's listeners (proxy_protocol =
yes, proxy_trusted_networks = 127.0.0.1/32), over raw sockets from
127.0.0.1: headers good and bad, whole and in pieces, and from an address
the balancers are not at.

A bad header, a missing one or an untrusted source: not one byte of a
greeting, the connection closed, exactly one log line saying why, and the
daemon alive after (one gatehoused serves the whole module, so each case
also finds it still serving what came before).  A good one, even a byte at
a time: the greeting, a login, and the header's address in the login line.
"""
import re
import shutil
import socket
import struct
import time

import pytest

from lib.clients import ImapClient
from lib.gateway import start_gateway
from lib.net import TIMEOUT
from lib.proc import make_tmpdir
from lib.scripted import ImapServer, SmtpServer

USERS = {'alice': 'alicepw'}
IMAP_GREETING = re.compile(rb'\* OK \[CAPABILITY [^\]]*\] gw\.test ready\.\r\n')
SMTP_GREETING = b'220 gw.test ESMTP\r\n'

V2_SIG = b'\r\n\r\n\x00\r\nQUIT\n'


def v2(command=0x21, family=0x11, block=None, length=None):
    """A v2 header: version/command, family, the length field (`length`, else
    len(block)) and the address block (default: TCP4 127.0.0.66:4711 to
    127.0.0.1:143)."""
    if block is None:
        block = socket.inet_aton('127.0.0.66') + socket.inet_aton('127.0.0.1') + \
            struct.pack('!HH', 4711, 143)
    return V2_SIG + bytes([command, family]) + struct.pack(
        '!H', len(block) if length is None else length) + block


V1_GOOD = b'PROXY TCP4 127.0.0.66 127.0.0.1 4711 143\r\n'
V2_GOOD = v2()


# ---------- the module's gatehoused ----------

@pytest.fixture(scope='module')
def gw():
    """One gatehoused (under valgrind with GH_IT_VALGRIND=1) with listeners
    imap and smtp, proxy_protocol = yes, in front of scripted servers."""
    imap_backend, smtp_backend = ImapServer(), SmtpServer()
    d = make_tmpdir('gh-proxy-')
    g = start_gateway(
        d, {'imap': dict(protocol='imap', proxy_protocol=True, backend='imap'),
            'smtp': dict(protocol='smtp', proxy_protocol=True, backend='smtp')},
        {'imap': dict(protocol='imap', servers='127.0.0.1:%d' % imap_backend.port),
         'smtp': dict(protocol='smtp', servers='127.0.0.1:%d' % smtp_backend.port,
                      login='none')},
        users=USERS, gatehouse={'proxy_trusted_networks': '127.0.0.1/32'})
    try:
        yield g
    finally:
        alive = g.alive()
        log = g.log()
        try:
            g.daemon.stop()      # fails the module when valgrind found errors
        finally:
            imap_backend.close()
            smtp_backend.close()
            shutil.rmtree(d, ignore_errors=True)
        assert alive, 'gatehoused died:\n' + log[-3000:]


# ---------- the checks ----------

def connect(port, source=None):
    s = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT,
                                 source_address=(source, 0) if source else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def received_before_close(s):
    """Every byte the server sends until it closes (a reset counts as a
    close); fails when it is still open after TIMEOUT."""
    got = b''
    s.settimeout(TIMEOUT)
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            return got
        except socket.timeout:
            raise AssertionError('still open after %.0f s; received %r' % (TIMEOUT, got))
        if not chunk:
            return got
        got += chunk


def assert_serving(gw):
    """The daemon is alive and greets a good header on both listeners."""
    assert gw.alive(), 'gatehoused died:\n' + gw.log()[-3000:]
    for listener, header, greeting in (('imap', V2_GOOD, IMAP_GREETING),
                                       ('smtp', V1_GOOD, re.compile(re.escape(SMTP_GREETING)))):
        with connect(gw.port(listener)) as s:
            s.sendall(header)
            f = s.makefile('rb')
            line = f.readline()
            assert greeting.fullmatch(line), (listener, line, gw.log()[-2000:])


def refused(gw, data, why, listener='imap', source=None, shut=False, pause=0.0):
    """Send `data` (bytes, or a list of writes `pause` s apart) to the
    listener from `source`, then (shut) half-close.  Nothing comes back
    before the server closes; the log gets exactly one line about the
    connection, and it matches `why` (after 'session ID: '); the daemon
    still serves."""
    mark = gw.mark()
    writes = data if isinstance(data, list) else [data]
    with connect(gw.port(listener), source) as s:
        for i, w in enumerate(writes):
            if i and pause:
                time.sleep(pause)
            try:
                s.sendall(w)
            except (BrokenPipeError, ConnectionResetError):
                break       # closed already: what it said is checked below
        if shut:
            s.shutdown(socket.SHUT_WR)
        got = received_before_close(s)
    assert got == b'', 'bytes before the close: %r' % got
    m = gw.wait_since(mark, r'session (\S+): ' + why + r'\n')
    assert_serving(gw)
    about = [ln for ln in gw.since(mark).splitlines() if 'session %s' % m.group(1) in ln]
    assert len(about) == 1, about


def bad(reason, source='127.0.0.1'):
    """The log line of a bad header, from its 'IP: '."""
    return re.escape('%s: bad PROXY header (%s); closing' % (source, reason))


# ---------- bad headers ----------

V1_BAD = [
    ('source-out-of-range', b'PROXY TCP4 256.0.0.1 127.0.0.1 4711 143\r\n', 'v1: bad source address'),
    ('source-a-name', b'PROXY TCP4 localhost 127.0.0.1 4711 143\r\n', 'v1: bad source address'),
    ('source-ipv6-in-tcp4', b'PROXY TCP4 ::1 127.0.0.1 4711 143\r\n', 'v1: bad source address'),
    ('source-ipv4-in-tcp6', b'PROXY TCP6 127.0.0.66 ::1 4711 143\r\n', 'v1: bad source address'),
    ('destination-three-parts', b'PROXY TCP4 127.0.0.66 127.0.0 4711 143\r\n',
     'v1: bad destination address'),
    ('destination-empty', b'PROXY TCP4 127.0.0.66  4711 143\r\n', 'v1: bad destination address'),
    ('port-too-big', b'PROXY TCP4 127.0.0.66 127.0.0.1 65536 143\r\n', 'v1: bad source port'),
    ('port-leading-zero', b'PROXY TCP4 127.0.0.66 127.0.0.1 4711 0143\r\n',
     'v1: bad destination port'),
    ('protocol', b'PROXY UDP4 127.0.0.66 127.0.0.1 4711 143\r\n', 'v1: bad protocol'),
    ('lower-case', b'proxy TCP4 127.0.0.66 127.0.0.1 4711 143\r\n', 'not a PROXY header'),
    ('bare-lf', b'PROXY TCP4 127.0.0.66 127.0.0.1 4711 143\n', 'v1: line ends in a bare LF'),
    ('field-after-ports', b'PROXY TCP4 127.0.0.66 127.0.0.1 4711 143 x\r\n',
     'v1: bytes after the destination port'),
    # 108 bytes with its CRLF: UNKNOWN lets anything stand before the CRLF
    ('line-108-bytes', b'PROXY UNKNOWN ' + b'x' * 92 + b'\r\n', 'v1 line longer than 107 bytes'),
    ('line-without-end', b'PROXY UNKNOWN ' + b'x' * 400, 'v1 line longer than 107 bytes'),
]


@pytest.mark.parametrize('data,why', [c[1:] for c in V1_BAD], ids=[c[0] for c in V1_BAD])
def test_v1_bad(gw, data, why):
    refused(gw, data, bad(why))


TCP4_BLOCK = socket.inet_aton('127.0.0.66') + socket.inet_aton('127.0.0.1') + \
    struct.pack('!HH', 4711, 143)

V2_BAD = [
    ('signature', V2_SIG[:11] + b'\x0b' + V2_GOOD[12:], 'v2: bad signature'),
    ('signature-short', V2_SIG[:6] + b'X', 'v2: bad signature'),
    ('version-1', v2(command=0x11), 'v2: unknown version'),
    ('command-2', v2(command=0x22), 'v2: unknown command'),
    ('af-unix-stream', v2(family=0x31, block=b'/tmp/a'.ljust(108, b'\0') + b'/tmp/b'.ljust(108, b'\0')),
     'v2: unsupported family'),
    ('af-unix-dgram', v2(family=0x32, block=b'\0' * 216), 'v2: unsupported family'),
    ('udp4', v2(family=0x12), 'v2: unsupported family'),
    ('udp6', v2(family=0x22, block=b'\0' * 36), 'v2: unsupported family'),
    ('family-0x41', v2(family=0x41), 'v2: unknown family'),
    ('length-65535', v2(length=0xFFFF), 'v2: header too long'),
    # 16 + 1009 bytes: one past the longest header taken
    ('length-1009', v2(block=TCP4_BLOCK + b'\0' * 997), 'v2: header too long'),
    ('tcp4-block-8', v2(block=TCP4_BLOCK[:8]), 'v2: address block too short'),
    ('tcp6-block-12', v2(family=0x21, block=TCP4_BLOCK), 'v2: address block too short'),
]


@pytest.mark.parametrize('data,why', [c[1:] for c in V2_BAD], ids=[c[0] for c in V2_BAD])
def test_v2_bad(gw, data, why):
    refused(gw, data, bad(why))


def test_no_header_but_a_command(gw):
    refused(gw, b'a1 LOGIN alice alicepw\r\n', bad('not a PROXY header'))


def test_smtp_listener_bad_header(gw):
    refused(gw, b'EHLO client.example.org\r\n', bad('not a PROXY header'), listener='smtp')


def test_bad_header_in_pieces(gw):
    """The bad byte comes in the fifth of single-byte writes: closed then."""
    data = b'PROXY TCP4 127.0.0.x 127.0.0.1 4711 143\r\n'
    refused(gw, [bytes([b]) for b in data], bad('v1: bad source address'), pause=0.02)


# ---------- headers that never end ----------

@pytest.mark.parametrize('data', [
    v2(length=100),                     # says 100 bytes, sends 12
    b'PROXY TCP4 127.0.0.66 127.0.0.1', # a line cut short
    V2_GOOD[:10],                       # the signature cut short
], ids=['v2-length-past-the-end', 'v1-cut', 'v2-signature-cut'])
def test_header_cut_by_close(gw, data):
    refused(gw, data, re.escape('127.0.0.1: connection closed before its PROXY header; closing'),
            shut=True)


@pytest.mark.parametrize('data', [v2(length=100), b''], ids=['v2-length-past-the-end', 'nothing'])
def test_header_never_completed(gw, data):
    """Five seconds of waiting (the server's), then the close."""
    refused(gw, data, re.escape('127.0.0.1 sent no PROXY header within 5 s; closing'))


# ---------- from where no balancer is ----------

@pytest.mark.parametrize('listener', ['imap', 'smtp'])
def test_untrusted_source(gw, listener):
    """A good header from 127.0.0.2, when only 127.0.0.1/32 is trusted:
    closed at once, the header not read."""
    refused(gw, V2_GOOD, re.escape('127.0.0.2 is not in proxy_trusted_networks: no PROXY '
                                   'header taken from it; closing'),
            listener=listener, source='127.0.0.2')


# ---------- good headers ----------

def login_line(gw, mark, remote):
    return gw.wait_since(mark, r'login: session=\S+ proto=imap listener=imap remote=(\S+) '
                               r'user="alice" .* verdict=ok ').group(1)


def imap_session(gw, writes, pause=0.0, remote='127.0.0.66', then=None):
    """Connect, send the header `writes`, read the greeting, LOGIN (unless
    `then` already went with the header), LOGOUT; the login line's remote
    must be `remote`."""
    mark = gw.mark()
    c = ImapClient(gw.port('imap'), gw=gw, nodelay=True)
    try:
        for i, w in enumerate(writes):
            if i and pause:
                time.sleep(pause)
            c.send(w)
        if then is not None:
            c.send(then)
        if not IMAP_GREETING.fullmatch(c.raw_line()):
            c.fail('no greeting')
        if then is None:
            c.line('a1 LOGIN alice alicepw')
        _, tagged = c.tagged('a1')
        if not tagged.startswith('a1 OK'):
            c.fail('login refused')
        c.expect('a2 LOGOUT', re.compile(r'^a2 OK'))
    finally:
        c.close()
    assert login_line(gw, mark, remote) == remote
    assert 'closing' not in gw.since(mark), gw.since(mark)


@pytest.mark.parametrize('header', [V1_GOOD, V2_GOOD], ids=['v1', 'v2'])
def test_header_one_byte_at_a_time(gw, header):
    """Every byte in a write of its own (TCP_NODELAY, 20 ms apart): the
    header is taken, and the login says remote=127.0.0.66."""
    imap_session(gw, [bytes([b]) for b in header], pause=0.02)


@pytest.mark.parametrize('header', [V1_GOOD, V2_GOOD], ids=['v1', 'v2'])
def test_header_and_command_in_one_write(gw, header):
    """The client's first command right behind the header, in the same
    segment: the header is taken, and not a byte of the command."""
    imap_session(gw, [header], then=b'a1 LOGIN alice alicepw\r\n')


def test_v2_longest_header_taken(gw):
    """16 + 1008 bytes (TLVs after the addresses): the longest taken."""
    imap_session(gw, [v2(block=TCP4_BLOCK + b'\0' * 996)])


def test_v2_tcp6(gw):
    """A TCP6 header: the login line says remote=::1."""
    block = socket.inet_pton(socket.AF_INET6, '::1') * 2 + struct.pack('!HH', 4711, 143)
    imap_session(gw, [v2(family=0x21, block=block)], remote='::1')


def test_trusted_networks_from_the_header(gw):
    """From 127.0.0.1 (in trusted_networks) with a header naming 192.0.2.7
    (not in it): the greeting says LOGINDISABLED and a plaintext LOGIN is
    refused, as for a client at 192.0.2.7."""
    block = socket.inet_aton('192.0.2.7') + socket.inet_aton('127.0.0.1') + \
        struct.pack('!HH', 4711, 143)
    c = ImapClient(gw.port('imap'), gw=gw)
    try:
        c.send(v2(block=block))
        caps = c.greeting_caps()
        assert 'LOGINDISABLED' in caps and 'AUTH=PLAIN' not in caps, caps
        c.expect('a1 LOGIN alice alicepw',
                 'NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS.')
    finally:
        c.close()


@pytest.mark.parametrize('header', [v2(command=0x20, family=0, block=b''),
                                    b'PROXY UNKNOWN\r\n',
                                    b'PROXY UNKNOWN 192.0.2.1 192.0.2.2 1 2\r\n'],
                         ids=['v2-local', 'v1-unknown', 'v1-unknown-with-fields'])
def test_balancer_own_connection(gw, header):
    """LOCAL / UNKNOWN: the balancer's own connection, served as one from
    127.0.0.1."""
    imap_session(gw, [header], remote='127.0.0.1')
