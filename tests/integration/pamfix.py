"""What only the tests of the `pam` auth module need: a private PAM
configuration run through pam_wrapper, gatehousectl auth-test and gatehoused
with its environment (and, under valgrind, the PAM suppressions).

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
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from lib.gateway import Daemon, ctl
from lib.paths import GATEHOUSED, SRCDIR

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


# ------------------------------------------------------------ gatehousectl, gatehoused

PAM_SUPPRESSIONS = SRCDIR / 'tests' / 'valgrind-pam.supp'
# beyond lib.gateway.VALGRIND: pam_end() dlclose()s the PAM modules, and
# the suppressions name them by their object
# --trace-children: the pam module's helper (pam-helper) too, where PAM runs
PAM_VALGRIND_ARGS = ['--keep-debuginfo=yes', '--trace-children=yes',
                     '--suppressions=%s' % PAM_SUPPRESSIONS]


def auth_test(conf, user, password, env, service='smtp', listener=None, valgrind=False,
              debug=True, verbose=False, timeout=60):
    """gatehousectl -c conf [-d] [-v] auth-test user with an environment.
    The password goes to stdin as one line.  valgrind: with the PAM
    suppressions."""
    args = (['-d'] if debug else []) + (['-v'] if verbose else []) + ['auth-test', user]
    if service is not None:
        args += ['--service', service]
    if listener is not None:
        args += ['--listener', listener]
    r = ctl(*args, stdin=password + '\n', config=conf, env=env, valgrind=valgrind,
            valgrind_args=PAM_VALGRIND_ARGS, timeout=timeout)
    if valgrind:
        reap_pam_wrapper_dirs(r.pid)
    return r


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


class PamDaemon(Daemon):
    """lib.gateway.Daemon with the PAM suppressions under valgrind, and
    pam_wrapper's directories cleaned up after."""

    def __init__(self, argv, log_path, env, valgrind):
        super().__init__(argv, log_path, env=env, valgrind=valgrind,
                         valgrind_args=PAM_VALGRIND_ARGS)

    def stop(self, timeout=15):
        try:
            return super().stop(timeout)
        finally:
            if self.valgrind:
                reap_pam_wrapper_dirs(self.proc.pid)


def start_gatehoused(tmp, daemons, conf, env, name='gw', debug=True, valgrind=None):
    """gatehoused -c conf [-d] with env, a child of the test, stopped by the
    `daemons` fixture.  valgrind: None follows GH_IT_VALGRIND; False where
    the test's timing would not survive it."""
    argv = [GATEHOUSED, '-c', conf] + (['-d'] if debug else [])
    d = PamDaemon(argv, Path(tmp) / ('%s.log' % name), env, valgrind)
    daemons.append(d)
    d.wait_ready()
    return d


class PamGate:
    """A PAM stack that holds every conversation until the test lets go:
    pam_exec runs a script that appends a line to `entered`, then waits for a
    shared flock on `lock`, which the test holds exclusively until release().
    No polling, no clock: the test orders events by what has happened."""

    def __init__(self, directory):
        self.entered = directory / 'gate-entered'
        self.lock = directory / 'gate-lock'
        self.script = directory / 'gate.sh'
        self.entered.write_text('')
        self.lock.write_text('')
        # flock -w: a gate the test never opens still ends (and fails the login)
        self.script.write_text('#!/bin/sh\necho x >> %s\nexec flock -s -w 120 %s true\n'
                               % (self.entered, self.lock))
        self.script.chmod(0o755)
        self._fd = os.open(self.lock, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def pam_line(self):
        return 'auth required pam_exec.so quiet %s' % self.script

    def count(self):
        return len(self.entered.read_text().split())

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # drops the lock: every waiting flock goes on
            self._fd = None
