"""gatehoused and gatehousectl as the tests run them.

Daemon: a gatehoused (or a wrapper that execs it) as a child of the test,
its output in a log file; under GH_IT_VALGRIND=1 every gatehoused runs under
valgrind, and one that valgrind finds errors in fails the test when stopped.
Gateway / start_gateway(): a gatehoused with listeners on ports chosen at
run time, the file module's users and the given backends, in a folder of
its own; Gateways: the ones a test starts, stopped at its end, which fails
if one of them died meanwhile.  ctl(): gatehousectl.

A build configured with --enable-sanitizers (paths.SANITIZED) runs no
valgrind: every gatehoused and gatehousectl started here is checked by
ASan, LSan and UBSan instead, which write their reports to files (Sanitizer);
a report, or their exit status, fails the test with the report.
"""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from lib.config import file_auth, users_file, write_config
from lib.net import free_port, wait_for
from lib.paths import GATEHOUSECTL, GATEHOUSED, SANITIZED, SRCDIR, asan_runtime
from lib.proc import make_tmpdir, stop_process

VALGRIND = ['valgrind', '--quiet', '--error-exitcode=99', '--leak-check=full',
            '--errors-for-leak-kinds=definite,indirect', '--show-leak-kinds=definite,indirect',
            '--suppressions=%s' % (SRCDIR / 'tests' / 'valgrind.supp')]
if SANITIZED:
    VALGRIND = []   # it cannot run a sanitized program; the sanitizers check it instead

# the exit status of a sanitized program that had a report (its own, so that
# it cannot be taken for one of gatehoused's)
SANITIZER_EXIT = 86
LSAN_SUPPRESSIONS = SRCDIR / 'tests' / 'lsan.supp'
# the first line of a report on a program's stderr
REPORT_IN_OUTPUT = re.compile(r'^.*(: runtime error: |==\d+==ERROR: \w+Sanitizer)', re.M)


def _sanitizer_options(base, log_path=None):
    """ASAN_OPTIONS, UBSAN_OPTIONS and LSAN_OPTIONS for a sanitized program:
    stop at the first error, exit SANITIZER_EXIT, reports to log_path.PID
    (stderr without log_path), the leaks in tests/lsan.supp not reported,
    allocations' stacks unwound whole (the fast unwinder loses the caller
    of g_malloc: GLib has no frame pointers; it costs little here).
    Options already in `base` come first, so ours win."""
    common = 'halt_on_error=1:exitcode=%d' % SANITIZER_EXIT
    if log_path is not None:
        common += ':log_path=%s' % log_path
    ours = {'ASAN_OPTIONS': common + ':detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0',
            'UBSAN_OPTIONS': common + ':print_stacktrace=1',
            'LSAN_OPTIONS': 'suppressions=%s:print_suppressions=0' % LSAN_SUPPRESSIONS}
    return {k: ':'.join(o for o in (base.get(k), v) if o) for k, v in ours.items()}


if SANITIZED:
    # every sanitized child of the tests, also those started without Daemon
    # or ctl() (gatehoused -t, gatehousectl under setpriv), exits
    # SANITIZER_EXIT on a report, with the report on its stderr
    os.environ.update(_sanitizer_options(os.environ))


class Sanitizer:
    """The sanitizer reports of one program run: files report.PID in a
    folder of their own that any user may write (gatehoused may switch to
    another user before it exits, and LSan writes at exit).  ASan and LSan
    write there; gcc's UBSan runtime writes to stderr whatever log_path says,
    so check() also reads the program's output."""

    def __init__(self, directory, name):
        self.dir = Path(directory) / ('%s.sanitizer' % name)
        self.dir.mkdir(exist_ok=True)
        os.chmod(self.dir, 0o1777)

    def env(self, env):
        """env (None: ours) with the sanitizers' options.  A non-empty
        LD_PRELOAD (pam_wrapper's) gets gcc's ASan runtime in front: ASan
        refuses to start otherwise ("ASan runtime does not come first in
        initial library list"), and pam_wrapper, seeing libasan.so there,
        loads libpam without RTLD_DEEPBIND, which ASan refuses too."""
        env = dict(os.environ if env is None else env)
        env.update(_sanitizer_options(env, self.dir / 'report'))
        runtime = asan_runtime()
        preload = env.get('LD_PRELOAD', '').split()
        if runtime and preload and preload[0] != runtime:
            env['LD_PRELOAD'] = ' '.join([runtime] + preload)
        return env

    def check(self, what, returncode, output=''):
        """AssertionError with the reports if there are any, or if the exit
        status or the program's output says there was one (stderr: gcc's
        UBSan runtime ignores log_path, and a wrapper may not pass our
        options on: systemd-socket-activate passes only what -E names)."""
        reports = sorted(self.dir.glob('report.*'))
        m = REPORT_IN_OUTPUT.search(output)
        if not reports and returncode != SANITIZER_EXIT and m is None:
            return
        text = ''.join('---- %s\n%s' % (r, r.read_text(errors='replace')) for r in reports)
        if m is not None:
            text += '---- in its output:\n%s' % output[m.start():][:6000]
        raise AssertionError('the sanitizers found errors in %s (exit %s):\n%s'
                             % (what, returncode, text[-12000:] or output[-6000:]))


# what gatehoused logs once it serves (not "ready" alone: "Address already in
# use" holds that too)
READY_LINE = re.compile(r'gatehoused \S+ ready: ')


def ctl(*args, stdin=None, config=None, env=None, valgrind=False, valgrind_args=(), timeout=60):
    """gatehousectl [-c config] args...; stdin: text for its standard input.
    valgrind: under VALGRIND and valgrind_args (a sanitized build: without;
    the sanitizers check every run).  A CompletedProcess (text) that also has
    the child's pid."""
    argv = [str(GATEHOUSECTL)]
    if config is not None:
        argv += ['-c', str(config)]
    argv += [str(a) for a in args]
    sanitizer = None
    if SANITIZED:
        scratch = tempfile.mkdtemp(prefix='gh-ctl-')
        sanitizer = Sanitizer(scratch, 'gatehousectl')
        env = sanitizer.env(env)
    elif valgrind:
        argv = VALGRIND + list(valgrind_args) + argv
    try:
        with subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else None,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) as proc:
            try:
                out, err = proc.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        if sanitizer is not None:
            sanitizer.check(' '.join(argv), proc.returncode, err)
    finally:
        if sanitizer is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    result.pid = proc.pid
    return result


def auth_test_fields(stdout):
    """{'verdict': ..., 'module': ..., 'user': ..., ...} from the output of
    gatehousectl auth-test: names padded to 10 columns, and a value (a user
    name) may begin with spaces."""
    return {m.group(1): m.group(2)
            for m in re.finditer(r'^(\w+):\s*?(?<=^.{10})(.*)$', stdout, re.M)}


class Daemon:
    """gatehoused (or a wrapper that execs it) as a child of the test, with its
    stderr in a log file the test can read.

    valgrind: None follows GH_IT_VALGRIND; True or False decide.  Only argv
    starting with gatehoused is wrapped (in VALGRIND, then valgrind_args);
    a memory error or leak makes it exit 99, which stop() turns into a test
    failure.  A sanitized build runs without valgrind, and a sanitizer's
    report is the test failure instead (for a wrapper too: the options are
    in the environment)."""

    def __init__(self, argv, log_path, env=None, valgrind=None, valgrind_args=(), output=None):
        """output: where stdout and stderr go instead of log_path (a journal
        stream, say); the log file then stays empty."""
        argv = [str(a) for a in argv]
        if valgrind is None:
            valgrind = bool(os.environ.get('GH_IT_VALGRIND'))
        self.valgrind = valgrind and argv[0] == str(GATEHOUSED) and not SANITIZED
        if self.valgrind:
            argv = VALGRIND + list(valgrind_args) + argv
        self.log_path = Path(log_path)
        self.sanitizer = None
        if SANITIZED:
            self.sanitizer = Sanitizer(self.log_path.parent, self.log_path.name)
            env = self.sanitizer.env(env)
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(argv, stdout=self.log if output is None else output,
                                     stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)

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
        stop_process(self.proc, timeout * (4 if self.valgrind else 1))
        if not self.log.closed:
            self.log.close()
        if self.valgrind and self.proc.returncode == 99:
            raise AssertionError('valgrind found errors in gatehoused:\n%s' % self.text()[-6000:])
        if self.sanitizer is not None:
            self.sanitizer.check(self.proc.args[0], self.proc.returncode, self.text())
        return self.proc.returncode


class Gateway:
    """A running gatehoused: its Daemon, the port of each listener, its
    folder and configuration file."""

    def __init__(self, daemon, ports, directory, conf):
        self.daemon = daemon
        self.ports = ports
        self.dir = directory
        self.conf = conf

    def port(self, listener=None):
        """The port of `listener`; without a name, of the only listener."""
        if listener is None:
            (listener,) = self.ports
        return self.ports[listener]

    def log(self):
        return self.daemon.text()

    def mark(self):
        """The current end of the log, for since() and wait_since()."""
        return len(self.log())

    def since(self, mark):
        return self.log()[mark:]

    def wait_since(self, mark, pattern, timeout=30.0):
        """The first match of the regular expression in the log after mark."""
        rx = re.compile(pattern)
        try:
            return wait_for(lambda: rx.search(self.since(mark)), timeout, what=pattern)
        except AssertionError:
            raise AssertionError('no %r in the gatehoused log within %.0f s; log since mark:\n%s'
                                 % (pattern, timeout, self.since(mark)[-3000:]))

    def alive(self):
        return self.daemon.proc.poll() is None


def start_gateway(directory, listeners, backends, users, protocol='smtp', gatehouse=None,
                  tls=None, valgrind=None, ready_timeout=None, output=None, env=None):
    """gatehoused -c DIRECTORY/gatehouse.conf, once it is ready.  listeners:
    {name: {key: value}} without listen (a free port each is chosen), the
    protocol `protocol` unless given, `auth = users` unless given; [auth
    users] reads DIRECTORY/users, written from `users` (config.users_file);
    backends, gatehouse, tls: as config.write_config() takes them.  A daemon
    that never gets ready is stopped.  output: as Daemon takes it; the
    caller then waits for the daemon to be ready itself.  env: the daemon's
    environment (default: the test's)."""
    d = Path(directory)
    upath = users_file(d / 'users', users)
    ports, groups = {}, {}
    for name, keys in listeners.items():
        keys = dict(keys)
        ports[name] = free_port()
        keys.setdefault('protocol', protocol)
        keys['listen'] = '127.0.0.1:%d' % ports[name]
        keys.setdefault('auth', 'users')
        groups[name] = keys
    conf = write_config(d / 'gatehouse.conf', groups, {'users': file_auth(upath)}, backends,
                        gatehouse=gatehouse, tls=tls)
    daemon = Daemon([GATEHOUSED, '-c', conf], d / 'gatehoused.log', env=env, valgrind=valgrind,
                    output=output)
    gw = Gateway(daemon, ports, d, conf)
    if output is not None:
        return gw
    try:
        daemon.wait_ready(timeout=ready_timeout)
    except AssertionError:
        daemon.stop()
        raise
    return gw


class Gateways:
    """The gatehoused instances one test starts (start() takes what
    start_gateway() does), each in a folder of its own.  close() stops every
    one and removes the folders; it fails if one of them had died during the
    test, with that one's log (read before its folder goes)."""

    def __init__(self):
        self.started = []
        self.dirs = []

    def start(self, listeners, backends, **kw):
        d = make_tmpdir('gh-gw-')
        self.dirs.append(d)
        gw = start_gateway(d, listeners, backends, **kw)
        self.started.append(gw)
        return gw

    def close(self):
        crashed = [gw for gw in self.started if not gw.alive()]
        errors = []
        for gw in self.started:
            try:
                gw.daemon.stop()
            except AssertionError as e:     # valgrind or a sanitizer found errors
                errors.append(e)
        crash_log = crashed[0].log()[-3000:] if crashed else ''
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        if errors:      # first: a sanitizer's report says why one died
            raise errors[0]
        assert not crashed, 'gatehoused died during the test (rc %s):\n%s' % (
            crashed[0].daemon.proc.returncode, crash_log)


class FrontEnd:
    """The gateway of the front-end tests: one listener `listener_name` of
    `protocol` on a port chosen at run time, `auth = users` (the file module
    with `users`), `backend = b` with one server at backend_port, started in
    `tmp` under the name `name` and added to `daemons`.  A protocol's test
    file subclasses it with its client() and assert_alive()."""

    def __init__(self, tmp, daemons, name, protocol, listener_name, users, listener_keys,
                 backend_keys, gatehouse, backend_port, valgrind):
        self.tmp = tmp
        self.port = free_port()
        self.secrets = []
        self.users = users
        upath = users_file(tmp / ('%s.users' % name), users)
        lst = {'protocol': protocol, 'listen': '127.0.0.1:%d' % self.port}
        lst.update(listener_keys)
        lst.update(auth='users', backend='b')
        backend = {'protocol': protocol, 'servers': '127.0.0.1:%d' % backend_port}
        backend.update(backend_keys)
        self.conf = write_config(tmp / ('%s.conf' % name), {listener_name: lst},
                                 {'users': file_auth(upath)}, {'b': backend},
                                 gatehouse=gatehouse)
        self.daemon = Daemon([GATEHOUSED, '-c', self.conf], tmp / ('%s.log' % name),
                             valgrind=True if valgrind else None)
        daemons.append(self.daemon)
        self.daemon.wait_ready()

    def assert_no_secrets(self):
        from lib.clients import assert_no_secrets
        assert_no_secrets(self.daemon.text(), self.users.items(), secrets=self.secrets)


def front_ends(make):
    """The body of a `start_gw` fixture: yields start(listener={...},
    gatehouse={...}, backend_port=N, valgrind=False, name=None), which makes
    a gateway with make(name, listener, gatehouse, backend_port, valgrind)
    (without backend_port: a port where nothing listens); at the end checks
    that no gateway logged a secret."""
    started = []

    def start(listener=None, gatehouse=None, backend_port=None, valgrind=False, name=None):
        gw = make(name or 'gw%d' % len(started), listener or {}, gatehouse or {},
                  backend_port or free_port(), valgrind)
        started.append(gw)
        return gw
    yield start
    for gw in started:
        gw.assert_no_secrets()
