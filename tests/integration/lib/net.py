"""Ports chosen at run time on 127.0.0.1, and waiting: for a condition, for a
port to accept connections."""
import random
import socket
import time
from pathlib import Path

# every socket operation of a test client: generous, since only a failing
# test waits it out, and a busy machine (valgrind, a second check) is slow
TIMEOUT = 30.0


def _ephemeral_low():
    try:
        return int(Path('/proc/sys/net/ipv4/ip_local_port_range').read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_given_ports = set()


def free_port():
    """A TCP port free on 127.0.0.1 right now, for a server a test starts.
    Chosen at random below the kernel's ephemeral range, so that no outgoing
    connection and no bind to port 0 (this suite's, or a second check's on
    the same machine) can take it before that server binds it; never the
    same one twice in this process."""
    for _ in range(1000):
        port = random.randint(10000, _EPHEMERAL_LOW - 1)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    with socket.socket() as s:  # a crowded range: let the kernel choose
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, interval=0.02, what='condition'):
    """predicate()'s first true value, asked every `interval` seconds; fails
    after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(interval)


def connectable(port, host='127.0.0.1', timeout=1.0):
    """True when something accepts TCP connections on host:port now."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def wait_port(port, timeout=30.0, proc=None, what='server'):
    """Until 127.0.0.1:port accepts a connection; fails early if proc died."""
    deadline = time.monotonic() + timeout
    while not connectable(port):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('%s exited with %s before listening on %d'
                               % (what, proc.returncode, port))
        if time.monotonic() > deadline:
            raise RuntimeError('%s: port %d not up after %.0f s' % (what, port, timeout))
        time.sleep(0.02)


def read_line(host, port, timeout=30.0):
    """Connect and return the first line the server sends (bytes, with CRLF)."""
    with socket.create_connection((host, port), timeout=timeout) as c:
        buf = b''
        while not buf.endswith(b'\n'):
            chunk = c.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf
