"""Fixtures for gatehouse's integration tests.

Everything runs on 127.0.0.1 on ports chosen at run time; every process a test
starts is a child of pytest and is stopped by its PID.  The binaries come from
the build directory ($GH_BUILDDIR, default _build/ next to the sources).
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SRCDIR = Path(os.environ.get('GH_SRCDIR', Path(__file__).resolve().parents[2]))
BUILDDIR = Path(os.environ.get('GH_BUILDDIR', SRCDIR / '_build'))
GATEHOUSED = BUILDDIR / 'gatehoused'
GATEHOUSECTL = BUILDDIR / 'gatehousectl'
MODULE_DIR = BUILDDIR / 'modules' / 'all'  # every module, linked by make (all-local)
VALGRIND = ['valgrind', '--quiet', '--error-exitcode=99', '--leak-check=full',
            '--errors-for-leak-kinds=definite,indirect', '--show-leak-kinds=definite,indirect',
            '--suppressions=%s' % (SRCDIR / 'tests' / 'valgrind.supp')]


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


# what gatehoused logs once it serves (not "ready" alone: "Address already in
# use" holds that too)
READY_LINE = re.compile(r'gatehoused \S+ ready: ')


def wait_for(predicate, timeout=30.0, interval=0.02, what='condition'):
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


@pytest.fixture
def tmp():
    # not tmp_path: /tmp/pytest-of-root is 0700 and daemons of other users
    # (in later tests) must reach their files
    d = Path(tempfile.mkdtemp(prefix='gh-it-', dir='/tmp'))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def ctl(*args, stdin=None, config=None, valgrind=False, timeout=60):
    argv = [str(GATEHOUSECTL)]
    if config is not None:
        argv += ['-c', str(config)]
    argv += [str(a) for a in args]
    if valgrind:
        argv = VALGRIND + argv
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


class Daemon:
    """gatehoused (or a wrapper that execs it) as a child of the test, with its
    stderr in a log file the test can read."""

    def __init__(self, argv, log_path, env=None):
        argv = [str(a) for a in argv]
        # GH_IT_VALGRIND=1: every gatehoused the tests start runs under
        # valgrind; a memory error or leak makes it exit 99, which stop()
        # turns into a test failure
        self.valgrind = bool(os.environ.get('GH_IT_VALGRIND')) and argv[0] == str(GATEHOUSED)
        if self.valgrind:
            argv = VALGRIND + argv
        self.log_path = Path(log_path)
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, stdin=subprocess.DEVNULL)

    def text(self):
        return self.log_path.read_text(errors='replace')

    def wait_log(self, needle, timeout=30.0, count=1):
        return wait_for(lambda: self.text().count(needle) >= count, timeout,
                        what='%r in %s:\n%s' % (needle, self.log_path, self.text()[-3000:]))

    def wait_ready(self, timeout=None):
        """Until gatehoused logs "gatehoused VERSION ready: ..."; fails at once,
        with the log, if it exits first (a listener that cannot bind, say).
        Default: 30 s, 60 under valgrind."""
        if timeout is None:
            timeout = 60 if self.valgrind else 30
        def ready():
            if READY_LINE.search(self.text()):
                return True
            if self.proc.poll() is not None:
                raise AssertionError('gatehoused exited with %s before it was ready:\n%s'
                                     % (self.proc.returncode, self.text()[-3000:]))
            return False
        wait_for(ready, timeout, what='gatehoused ready in %s' % self.log_path)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * (4 if self.valgrind else 1))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        if self.valgrind and self.proc.returncode == 99:
            raise AssertionError('valgrind found errors in gatehoused:\n%s' % self.text()[-6000:])
        return self.proc.returncode


@pytest.fixture
def daemons():
    started = []
    yield started
    for d in reversed(started):
        d.stop()


def write_config(path, users_path, listeners, hostname='gw.test', extra_gatehouse=''):
    """A gatehouse.conf with the file module and the given listeners:
    a list of (name, protocol, listen) tuples; listen may be '' (systemd)."""
    parts = ['[gatehouse]', 'hostname = %s' % hostname, 'module_dir = %s' % MODULE_DIR,
             'failure_delay = 0', 'workers = 2', extra_gatehouse, '']
    for name, proto, listen in listeners:
        parts += ['[listener %s]' % name, 'protocol = %s' % proto]
        if listen:
            parts.append('listen = %s' % listen)
        parts += ['auth = users', 'backend = %s' % proto, '']
    parts += ['[auth users]', 'module = file', 'path = %s' % users_path, '',
              '[backend smtp]', 'protocol = smtp', 'servers = 127.0.0.1:1', 'login = xclient', '',
              '[backend imap]', 'protocol = imap', 'servers = 127.0.0.1:1', '']
    Path(path).write_text('\n'.join(parts))
    return Path(path)
