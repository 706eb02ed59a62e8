"""Test fixtures for the `pam` auth module: a private PAM configuration run
through pam_wrapper, tiny SMTP and IMAP backends and clients, and helpers to
write gatehouse.conf and to run gatehousectl with an environment.

pam_wrapper (Debian package libpam-wrapper) is an LD_PRELOAD library that
makes libpam read its service files from $PAM_WRAPPER_SERVICE_DIR instead of
/etc/pam.d, so a test needs neither root nor system files.  pam_matrix, which
ships with it, checks passwords against a text file of `user:password:service`
lines (`service` is checked by the account stage only).  Three rules:

- set LD_PRELOAD, PAM_WRAPPER=1 and PAM_WRAPPER_SERVICE_DIR together, or none
  of them: the preload without PAM_WRAPPER=1 crashes or spins;
- module paths in the service files are absolute for pam_wrapper's own
  modules (pam_matrix, pam_chatty); Linux-PAM's own (pam_debug, pam_exec,
  pam_succeed_if) are found by name;
- pam_matrix answers PAM_AUTH_ERR for a user it does not know, so the
  stacks written here put a pam_succeed_if + pam_debug pair in front that
  answers PAM_USER_UNKNOWN for anyone not in the passdb.

Nothing here needs any file outside the repository, the installed packages and the
test's own temporary directory.
"""
import base64
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from conftest import GATEHOUSECTL, GATEHOUSED, MODULE_DIR, SRCDIR, VALGRIND, Daemon, free_port

# every socket operation of a test client: generous, since only a failing
# test waits it out, and a busy machine (valgrind, a second check) is slow
TIMEOUT = 30.0

_MULTIARCH_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64',
                   '/usr/lib']


def _dpkg_files(package):
    try:
        out = subprocess.run(['dpkg', '-L', package], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def find_pam_wrapper():
    """(path of libpam_wrapper.so, directory of pam_matrix.so and friends),
    or None when pam_wrapper is not installed."""
    files = _dpkg_files('libpam-wrapper')
    lib = next((f for f in files if f.endswith('/libpam_wrapper.so')), None)
    matrix = next((f for f in files if f.endswith('/pam_matrix.so')), None)
    if lib is None or matrix is None:
        for d in _MULTIARCH_DIRS:
            if Path(d, 'libpam_wrapper.so').exists() and \
                    Path(d, 'pam_wrapper', 'pam_matrix.so').exists():
                lib, matrix = str(Path(d, 'libpam_wrapper.so')), \
                    str(Path(d, 'pam_wrapper', 'pam_matrix.so'))
                break
    if lib is None or matrix is None:
        return None
    return lib, str(Path(matrix).parent)


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def plain_blob(user, password, authzid=''):
    return b64('%s\0%s\0%s' % (authzid, user, password))


def secret_forms(user, password):
    """Every form in which a password could leak into a log."""
    return {password, b64(password), plain_blob(user, password),
            plain_blob(user, password, user)}


def assert_no_secrets(text, pairs, where='log'):
    for user, password in pairs:
        if not password:
            continue
        for form in secret_forms(user, password):
            assert form not in text, 'the %s holds a secret %r:\n%s' % (where, form, text[-3000:])


# ------------------------------------------------------------ pam_wrapper

class PamWrapper:
    """A private PAM configuration directory for pam_wrapper."""

    def __init__(self, root):
        found = find_pam_wrapper()
        if found is None:
            raise RuntimeError('pam_wrapper is not installed (Debian package libpam-wrapper)')
        self.lib, self.moddir = found
        self.matrix = str(Path(self.moddir, 'pam_matrix.so'))
        self.chatty = str(Path(self.moddir, 'pam_chatty.so'))
        self.root = Path(root)
        self.dir = self.root / 'pam.d'
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.dir, 0o755)
        # without an `other` file pam_wrapper complains on every pam_start
        self.service('other', ['auth required pam_deny.so', 'account required pam_deny.so'])

    def service(self, name, lines):
        """Write the service file `name` from a list of lines."""
        path = self.dir / name
        path.write_text(''.join(line + '\n' for line in lines))
        os.chmod(path, 0o644)
        return path

    def passdb(self, name, users, service):
        """Write a pam_matrix passdb: users is {user: password}; every line
        allows `service` in the account stage unless the password is a
        (password, service) tuple."""
        path = self.root / ('passdb.%s' % name)
        lines = []
        for user, pw in users.items():
            svc = service
            if isinstance(pw, tuple):
                pw, svc = pw
            assert ':' not in user + pw + svc and '\n' not in user + pw + svc
            lines.append('%s:%s:%s\n' % (user, pw, svc))
        path.write_text(''.join(lines))
        os.chmod(path, 0o644)
        return path

    def matrix_service(self, name, users, before=(), account_before=(), matrix_args=''):
        """A service `name` checking `users` ({user: password}) with
        pam_matrix: unknown users get PAM_USER_UNKNOWN, wrong passwords
        PAM_AUTH_ERR.  `before` / `account_before`: lines put in front of the
        auth / account stage (a delay, a chatty module)."""
        db = self.passdb(name, users, name)
        known = ':'.join(users) or 'nobody-at-all'
        lines = list(before)
        lines += [
            # pam_succeed_if succeeds for a user not in the list: the next
            # line then ends the stack with PAM_USER_UNKNOWN; a known user
            # makes it fail and skips that line
            'auth [success=ignore default=1] pam_succeed_if.so quiet user notin %s' % known,
            'auth requisite pam_debug.so auth=user_unknown',
            'auth required %s passdb=%s %s' % (self.matrix, db, matrix_args),
        ]
        lines += list(account_before)
        lines += ['account required %s passdb=%s' % (self.matrix, db)]
        return self.service(name, lines)

    def env(self, base=None):
        """The environment for a process that should use this configuration:
        all of the pam_wrapper variables, never some of them."""
        env = dict(os.environ if base is None else base)
        env.update({'LD_PRELOAD': self.lib, 'PAM_WRAPPER': '1',
                    'PAM_WRAPPER_SERVICE_DIR': str(self.dir)})
        # the passdb comes from passdb= in the service files; unset any
        # inherited fallback so that it cannot mask a mistake
        env.pop('PAM_MATRIX_PASSWD', None)
        return env


# ------------------------------------------------------------ configuration

def write_conf(path, listeners, auths, gatehouse=None, backends=None):
    """A gatehouse.conf.  listeners: {name: {key: value}}; auths:
    {name: {key: value}}; backends: {name: {key: value}}; gatehouse: keys of
    [gatehouse] over the test defaults.  Values of None are left out.
    Returns (path, {(group, key): line number}) so tests can check the
    file:line of an error."""
    gh = {'hostname': 'gw.test', 'module_dir': str(MODULE_DIR), 'failure_delay': '0',
          'workers': '2'}
    gh.update(gatehouse or {})
    if backends is None:
        backends = {
            'smtp': {'protocol': 'smtp', 'servers': '127.0.0.1:1', 'login': 'none'},
            'imap': {'protocol': 'imap', 'servers': '127.0.0.1:1', 'login': 'passthrough'},
        }
    lines = []
    where = {}

    def group(header, keys):
        lines.append('[%s]' % header)
        where[(header, None)] = len(lines)
        for k, v in keys.items():
            if v is None:
                continue
            lines.append('%s = %s' % (k, v))
            where[(header, k)] = len(lines)
        lines.append('')

    group('gatehouse', gh)
    for name, keys in listeners.items():
        group('listener %s' % name, keys)
    for name, keys in auths.items():
        group('auth %s' % name, keys)
    for name, keys in backends.items():
        group('backend %s' % name, keys)
    Path(path).write_text('\n'.join(lines) + '\n')
    os.chmod(path, 0o644)
    return Path(path), where


def auth_test(conf, user, password, env, service='smtp', listener=None, valgrind=False,
              debug=True, timeout=60):
    """gatehousectl auth-test with an environment (conftest.ctl() passes
    none).  The password goes to stdin as one line.  valgrind: under
    conftest's valgrind options plus the PAM suppressions."""
    argv = [str(GATEHOUSECTL), '-c', str(conf)]
    if debug:
        argv.append('-d')
    argv += ['auth-test', user]
    if service is not None:
        argv += ['--service', service]
    if listener is not None:
        argv += ['--listener', listener]
    if valgrind:
        argv = VALGRIND_PAM + argv
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            out, err = proc.communicate(password + '\n', timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    if valgrind:
        reap_pam_wrapper_dirs(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def reap_pam_wrapper_dirs(pid):
    """Remove the directories pam_wrapper made for process `pid`, which has
    exited.  pam_wrapper copies the service files into /tmp/pam.X (one
    character X, so that the path is as long as /etc/pam.d, which it patches
    in a copy of libpam) with X's owner in X/pid, and removes it at exit;
    under valgrind it does not (the launcher, preloaded too, execs the tool
    without running destructors), and /tmp would fill up with them."""
    for d in Path('/tmp').glob('pam.?'):
        try:
            if (d / 'pid').read_text().strip() == str(pid):
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def parse_auth_test(stdout):
    """{'verdict': ..., 'module': ..., 'reason': ...} from auth-test's output."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r'^(\w+):\s+(.*)$', line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


PAM_SUPPRESSIONS = SRCDIR / 'tests' / 'valgrind-pam.supp'
# --keep-debuginfo: pam_end() dlclose()s the PAM modules, and the
# suppressions name them by their object
VALGRIND_PAM = VALGRIND + ['--keep-debuginfo=yes', '--suppressions=%s' % PAM_SUPPRESSIONS]


class PamDaemon(Daemon):
    """conftest.Daemon, but under GH_IT_VALGRIND=1 with the PAM suppressions
    (conftest's wrapper has no way to add them) and with pam_wrapper's
    directories cleaned up; and never under valgrind where the test's
    timing would not survive it."""

    def __init__(self, argv, log_path, env, valgrind):
        if valgrind:
            argv = VALGRIND_PAM + argv
        else:
            # conftest.Daemon wraps argv when argv[0] is GATEHOUSED and
            # GH_IT_VALGRIND is set: name the same file another way
            argv = [os.path.join(str(GATEHOUSED.parent), '.', GATEHOUSED.name)] + argv[1:]
        super().__init__(argv, log_path, env=env)
        self.valgrind = valgrind

    def stop(self, timeout=15):
        try:
            return super().stop(timeout)
        finally:
            if self.valgrind:
                reap_pam_wrapper_dirs(self.proc.pid)


def start_gatehoused(tmp, daemons, conf, env, name='gw', debug=True, valgrind=None):
    """gatehoused -c conf [-d] with env, a child of the test, stopped by the
    `daemons` fixture.  valgrind: None follows GH_IT_VALGRIND."""
    if valgrind is None:
        valgrind = bool(os.environ.get('GH_IT_VALGRIND'))
    argv = [str(GATEHOUSED), '-c', str(conf)] + (['-d'] if debug else [])
    d = PamDaemon(argv, Path(tmp) / ('%s.log' % name), env, valgrind)
    daemons.append(d)
    d.wait_ready(timeout=60 if valgrind else 30)
    return d


# ------------------------------------------------------------ backends

class _Server:
    """A thread per connection on 127.0.0.1, port chosen by the kernel."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(('127.0.0.1', 0))
        self.srv.listen(512)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.logins = []
        self.connections = 0
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        conn.settimeout(60)
        try:
            self.serve(conn, conn.makefile('rb'))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stopping = True
        self.srv.close()
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


class SmtpBackend(_Server):
    """220, 250 to EHLO and everything else, 221 to QUIT (a backend with
    `login = none`)."""

    def serve(self, conn, f):
        conn.sendall(b'220 fake.backend ESMTP\r\n')
        for raw in f:
            verb = raw.decode('latin-1').strip().split(' ', 1)[0].upper()
            if verb == 'EHLO':
                conn.sendall(b'250-fake.backend\r\n250 8BITMIME\r\n')
            elif verb == 'QUIT':
                conn.sendall(b'221 2.0.0 fake Bye\r\n')
                return
            elif verb == 'NOOP':
                conn.sendall(b'250 2.0.0 backend NOOP\r\n')
            else:
                conn.sendall(b'250 2.0.0 backend OK\r\n')


class ImapBackend(_Server):
    """Greets with SASL-IR and AUTH=PLAIN; takes ID, CAPABILITY, NOOP,
    AUTHENTICATE PLAIN (initial response or not) and LOGIN of simple atoms
    or quoted strings from anyone (the gateway has checked the password);
    after login answers OK to everything.  Records the users logged in."""

    CAPS = b'IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN ID'

    def serve(self, conn, f):
        conn.sendall(b'* OK [CAPABILITY ' + self.CAPS + b'] fake ready\r\n')
        authed = False
        while True:
            raw = f.readline()
            if not raw:
                return
            line = raw.rstrip(b'\r\n')
            parts = line.split(b' ')
            if len(parts) < 2:
                conn.sendall(b'* BAD fake: no command\r\n')
                continue
            tag, name, args = parts[0], parts[1].upper(), parts[2:]
            if name == b'LOGOUT':
                conn.sendall(b'* BYE fake bye\r\n%s OK LOGOUT done\r\n' % tag)
                return
            if authed:
                conn.sendall(b'%s OK fake %s\r\n' % (tag, name))
            elif name == b'CAPABILITY':
                conn.sendall(b'* CAPABILITY ' + self.CAPS + b'\r\n%s OK done\r\n' % tag)
            elif name == b'ID':
                conn.sendall(b'* ID NIL\r\n%s OK ID done\r\n' % tag)
            elif name == b'NOOP':
                conn.sendall(b'%s OK NOOP done\r\n' % tag)
            elif name == b'AUTHENTICATE' and args and args[0].upper() == b'PLAIN':
                blob = args[1] if len(args) > 1 else None
                if blob is None:
                    conn.sendall(b'+ \r\n')
                    blob = f.readline().rstrip(b'\r\n')
                try:
                    user = base64.b64decode(blob, validate=True).split(b'\0')[1]
                except Exception:
                    conn.sendall(b'%s BAD fake: bad PLAIN\r\n' % tag)
                    continue
                self._logged_in(conn, tag, user)
                authed = True
            elif name == b'LOGIN' and len(args) >= 1:
                self._logged_in(conn, tag, args[0].strip(b'"'))
                authed = True
            else:
                conn.sendall(b'%s BAD fake: not before login\r\n' % tag)

    def _logged_in(self, conn, tag, user):
        with self.lock:
            self.logins.append(user.decode('latin-1'))
        conn.sendall(b'%s OK [CAPABILITY IMAP4rev1] Logged in\r\n' % tag)


# ------------------------------------------------------------ clients

class LineClient:
    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b''

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_line(self, text):
        self.sock.sendall(text.encode('latin-1') + b'\r\n')

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('no complete line within the time; partial: %r' % self.buf)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b''
            if not chunk:
                raise AssertionError('connection closed; partial: %r' % self.buf)
            self.buf += chunk
        raw, self.buf = self.buf.split(b'\n', 1)
        return raw.decode('latin-1').rstrip('\r')


class SmtpClient(LineClient):
    def __init__(self, port, timeout=TIMEOUT):
        super().__init__(port, timeout)
        self.greeting = self.reply()

    def reply(self, timeout=None):
        lines = []
        while True:
            line = self.read_line(timeout)
            lines.append(line)
            if len(line) < 4 or line[3] != '-':
                return lines

    def cmd(self, text, timeout=None):
        self.send_line(text)
        return self.reply(timeout)

    def auth_plain(self, user, password, timeout=None):
        """The last line of the reply to AUTH PLAIN with an initial response."""
        return self.cmd('AUTH PLAIN ' + plain_blob(user, password), timeout)[-1]


def imap_quote(s):
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


class ImapClient(LineClient):
    def __init__(self, port, timeout=TIMEOUT):
        super().__init__(port, timeout)
        self.greeting = self.read_line()
        self.n = 0

    def cmd(self, text, timeout=None):
        """(tagged line with the tag cut off, untagged lines)."""
        self.n += 1
        tag = 'a%d' % self.n
        self.send_line('%s %s' % (tag, text))
        untagged = []
        while True:
            line = self.read_line(timeout)
            if line.startswith(tag + ' '):
                return line[len(tag) + 1:], untagged
            untagged.append(line)

    def login(self, user, password, timeout=None):
        return self.cmd('LOGIN %s %s' % (imap_quote(user), imap_quote(password)), timeout)[0]


__all__ = ['PamWrapper', 'find_pam_wrapper', 'write_conf', 'auth_test', 'parse_auth_test',
           'start_gatehoused', 'PamDaemon', 'reap_pam_wrapper_dirs', 'SmtpBackend',
           'ImapBackend', 'SmtpClient', 'ImapClient', 'assert_no_secrets', 'secret_forms',
           'plain_blob', 'b64', 'free_port', 'TIMEOUT']
