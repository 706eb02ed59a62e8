"""Ports chosen at run time on 127.0.0.1, and waiting: for a condition, for a
port to accept connections."""
import fcntl
import random
import socket
import tempfile
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
_FIRST = 10000
_BLOCK = 500
_given_ports = set()
_blocks = []  # [(first port, open lock file)] this process holds


def _take_block():
    """Reserve a block of _BLOCK ports for this process: an flock on a file
    per block, held until the process ends (the kernel lets go of it even if
    the process is killed), so that two test processes on one machine (the
    two passes of ./quickstart check, or two checks) never pick the same
    port between one's choice and its server's bind."""
    lock_dir = Path(tempfile.gettempdir()) / 'gatehouse-test-ports'
    lock_dir.mkdir(mode=0o1777, exist_ok=True)
    starts = list(range(_FIRST, _EPHEMERAL_LOW - _BLOCK, _BLOCK))
    random.shuffle(starts)
    for start in starts:
        if any(b[0] == start for b in _blocks):
            continue
        f = open(lock_dir / ('%d.lock' % start), 'a')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _blocks.append((start, f))
        return start
    return None


def free_port():
    """A TCP port free on 127.0.0.1 right now, for a server a test starts.
    Chosen below the kernel's ephemeral range, so that no outgoing connection
    and no bind to port 0 can take it before that server binds it; from a
    block of ports this process holds (_take_block), so that no other test
    process picks it; never the same one twice in this process."""
    while True:
        for start, _ in list(_blocks):
            free = [p for p in range(start, start + _BLOCK) if p not in _given_ports]
            random.shuffle(free)
            for port in free:
                _given_ports.add(port)
                with socket.socket() as s:
                    try:
                        s.bind(('127.0.0.1', port))
                    except OSError:
                        continue  # someone else's (a daemon the machine runs)
                return port
        if _take_block() is None:
            break
    with socket.socket() as s:  # every block taken: let the kernel choose
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
