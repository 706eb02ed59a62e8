"""The foundation as an admin meets it: gatehousectl auth-test and hash-password
against real users files, gatehoused -t on good and broken configs, socket
activation with systemd-socket-activate and sd_notify, reload on SIGHUP,
users-file changes picked up while running, clean stop on SIGTERM, and the same
under valgrind."""
import os
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lib.clients import SmtpClient
from lib.config import file_auth, write_config
from lib.gateway import VALGRIND, Daemon, auth_test_fields, ctl
from lib.net import connectable, free_port, read_line, wait_for
from lib.paths import GATEHOUSED, MODULE_DIR, SRCDIR

PASSWORDS = {
    'yes': 'yes-pw with spaces',
    'sha': 'sha:pw"quote',
    'bcr': 'bcrypt\\back',
    'pln': 'plain-pw',
}


def make_users(tmp):
    """A users file with one user per hash kind; hashes made by gatehousectl
    and, for SHA-512, by openssl (an independent implementation)."""
    yes = ctl('hash-password', stdin=PASSWORDS['yes'] + '\n')
    assert yes.returncode == 0, yes.stderr
    bcr = ctl('hash-password', '--scheme', 'bcrypt', stdin=PASSWORDS['bcr'] + '\n')
    assert bcr.returncode == 0, bcr.stderr
    sha = subprocess.run(['openssl', 'passwd', '-6', '-stdin'], input=PASSWORDS['sha'] + '\n',
                         capture_output=True, text=True, check=True).stdout.strip()
    assert yes.stdout.startswith('$y$') and bcr.stdout.startswith('$2b$') and sha.startswith('$6$')
    users = tmp / 'users'
    users.write_text('# test users\n'
                     'yes:%s\n'
                     'sha:%s:route=10.1.2.3:143\n'
                     'bcr:%s:user=bcr@example.com route=127.0.0.1\n'
                     '\n'
                     'pln:{PLAIN}%s\n' % (yes.stdout.strip(), sha, bcr.stdout.strip(),
                                          PASSWORDS['pln']))
    return users


def gateway_conf(path, users, listeners):
    """gatehouse.conf with the file module reading `users` and the
    listeners {name: (protocol, listen)}, each with that module and a
    backend of its protocol (down)."""
    return write_config(
        path, {name: {'protocol': proto, 'listen': listen, 'auth': 'users', 'backend': proto}
               for name, (proto, listen) in listeners.items()},
        {'users': file_auth(users)},
        {'smtp': {'protocol': 'smtp', 'servers': '127.0.0.1:1', 'login': 'xclient'},
         'imap': {'protocol': 'imap', 'servers': '127.0.0.1:1'}})


@pytest.fixture
def setup(tmp):
    users = make_users(tmp)
    conf = gateway_conf(tmp / 'gatehouse.conf', users,
                        {'smtp': ('smtp', '127.0.0.1:%d' % free_port()),
                         'imap': ('imap', '127.0.0.1:%d' % free_port())})
    return tmp, users, conf


def field(out, name):
    return auth_test_fields(out).get(name)


@pytest.mark.parametrize('scheme,prefix', [('yescrypt', '$y$'), ('sha512', '$6$'),
                                           ('bcrypt', '$2b$')])
def test_hash_password_schemes(scheme, prefix):
    r = ctl('hash-password', '--scheme', scheme, stdin='s3cret\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(prefix)
    assert 's3cret' not in r.stdout + r.stderr
    # a fresh salt every time
    r2 = ctl('hash-password', '--scheme', scheme, stdin='s3cret\n')
    assert r2.stdout != r.stdout


def test_hash_password_refuses_empty_and_bad_scheme():
    assert ctl('hash-password', stdin='\n').returncode == 1
    assert ctl('hash-password', '--scheme', 'md5', stdin='x\n').returncode == 64


@pytest.mark.parametrize('user', sorted(PASSWORDS))
def test_auth_test_each_hash_kind(setup, user):
    tmp, users, conf = setup
    pw = PASSWORDS[user]
    # the answer and nothing else by default (warnings stay: this users file
    # has a {PLAIN} entry); -v adds the log lines
    quiet = ctl('auth-test', user, stdin=pw + '\n', config=conf)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert all(': warning: ' in line for line in quiet.stderr.splitlines()), quiet.stderr
    assert field(quiet.stdout, 'verdict') == 'ok'
    ok = ctl('-v', 'auth-test', user, stdin=pw + '\n', config=conf)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout == quiet.stdout.replace(field(quiet.stdout, 'time'), field(ok.stdout, 'time'))
    assert field(ok.stdout, 'verdict') == 'ok'
    assert field(ok.stdout, 'module') == 'users (file)'
    assert re.search(r'login: .*user="%s" .*module=users\(file\) verdict=ok ' % user, ok.stderr)
    assert 'gh-auth-file: users file' in ok.stderr

    bad = ctl('-v', 'auth-test', user, stdin=pw + 'x\n', config=conf)
    assert bad.returncode == 1
    assert field(bad.stdout, 'verdict') == 'wrong-password'
    assert 'verdict=wrong-password reason="wrong password"' in bad.stderr

    for r in (ok, bad):
        assert pw not in r.stdout + r.stderr
        assert field(r.stdout, 'time').endswith(' ms')


def test_auth_test_unknown_user_and_attributes(setup):
    tmp, users, conf = setup
    r = ctl('-v', 'auth-test', 'nosuchuser', stdin='whatever\n', config=conf)
    assert r.returncode == 1
    assert field(r.stdout, 'verdict') == 'unknown-user'
    assert 'verdict=unknown-user reason="unknown user"' in r.stderr

    r = ctl('auth-test', 'sha', stdin=PASSWORDS['sha'] + '\n', config=conf)
    assert field(r.stdout, 'route') == '10.1.2.3:143'
    assert field(r.stdout, 'user') == 'sha'
    r = ctl('-v', 'auth-test', 'bcr', '--service', 'imap', '--remote', '192.0.2.7',
            stdin=PASSWORDS['bcr'] + '\n', config=conf)
    assert r.returncode == 0
    assert field(r.stdout, 'user') == 'bcr@example.com'
    assert field(r.stdout, 'route') == '127.0.0.1'  # no port: the backend's
    assert 'proto=imap listener=imap remote=192.0.2.7 ' in r.stderr
    # a route or canonical name never comes with a failure
    r = ctl('auth-test', 'sha', stdin='nope\n', config=conf)
    assert field(r.stdout, 'route') == '-'


def test_auth_test_timing_does_not_reveal_users(setup):
    """An unknown user costs a hash too: compare with a known yescrypt user.
    Compared as the CPU time gatehousectl used (its rusage), not wall-clock
    time, so that a busy machine does not tip the comparison."""
    tmp, users, conf = setup

    def cpu(user):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = ctl('auth-test', user, stdin='wrong\n', config=conf)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert r.returncode == 1, r.stdout + r.stderr
        return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    known = min(cpu('yes') for _ in range(3))
    unknown = min(cpu('nobody-here') for _ in range(3))
    print("\n[cpu] known %.3f s, unknown %.3f s" % (known, unknown))
    assert unknown > known * 0.3, (known, unknown)


def test_auth_test_usage_and_config_errors(setup, tmp):
    tmp, users, conf = setup
    assert ctl('auth-test', stdin='x\n', config=conf).returncode == 64
    assert ctl('auth-test', 'a', '--service', 'pop2', stdin='x\n', config=conf).returncode == 64
    # a service this configuration has no listener for: its error, not a usage one
    r = ctl('auth-test', 'a', '--service', 'pop3', stdin='x\n', config=conf)
    assert r.returncode == 78 and 'has no pop3 listener' in r.stderr, r.stderr
    assert ctl('auth-test', 'a', '--remote', 'not-an-ip', stdin='x\n', config=conf).returncode == 64
    r = ctl('auth-test', 'a', stdin='x\n', config=tmp / 'missing.conf')
    assert r.returncode == 78 and 'missing.conf' in r.stderr


def test_check_sample_config(tmp):
    """The shipped sample, with its /etc paths pointed at test files, is valid."""
    sample = (SRCDIR / 'etc' / 'gatehouse.conf.sample').read_text()
    make_users(tmp)
    text = sample.replace('/etc/gatehouse/', str(tmp) + '/')
    text = re.sub(r'^module_dir\s*=.*$', 'module_dir = %s' % MODULE_DIR, text, flags=re.M)
    if not re.search(r'^module_dir\s*=', text, flags=re.M):
        text = text.replace('[gatehouse]', '[gatehouse]\nmodule_dir = %s' % MODULE_DIR, 1)
    for name in re.findall(re.escape(str(tmp)) + r'/([\w.-]+)', text):
        if not (tmp / name).exists():
            (tmp / name).write_text('secret\n')
    conf = tmp / 'sample.conf'
    conf.write_text(text)
    r = subprocess.run([GATEHOUSED, '-t', '-c', conf], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '%s: configuration OK' % conf


BROKEN = [
    # (text to append or replace, expected "line: [group] key: message" fragment)
    ('[listener smtp]\nprotocol = smtp\nlisten = 127.0.0.1:2525\nauth = users\nbackend = smtp\n'
     'tls = sometimes\n', r':\d+: \[listener smtp\] tls: '),
    ('[bogus]\nx = 1\n', r':\d+: \[bogus\]: unknown group'),
    ('[auth other]\nmodule = nosuchmodule\n', r':\d+: \[auth other\] module: module \'nosuchmodule\' not found'),
    ('[auth users2]\nmodule = file\npath = /nonexistent/users\n', r':\d+: \[auth users2\] path: '),
    ('[auth users3]\nmodule = file\npath = /dev/null\ncolour = blue\n',
     r':\d+: \[auth users3\] colour: unknown key'),
]


@pytest.mark.parametrize('extra,pattern', BROKEN)
def test_check_broken_config_names_the_line(setup, extra, pattern):
    tmp, users, conf = setup
    text = conf.read_text()
    if extra.startswith('[listener smtp]'):
        # replace the good listener with the broken one
        text = re.sub(r'\[listener smtp\].*?\n\n', '', text, flags=re.S)
    text += '\n' + extra
    conf.write_text(text)
    r = subprocess.run([GATEHOUSED, '-t', '-c', conf], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    m = re.search(re.escape(str(conf)) + pattern, r.stderr)
    assert m, r.stderr
    # the line number is the real one
    line_no = int(re.search(re.escape(str(conf)) + r':(\d+):', m.group(0)).group(1))
    group = re.search(r'\[([^\]]+)\]', m.group(0)).group(1)
    key = re.search(r'\] (\w+):', m.group(0))
    line = conf.read_text().split('\n')[line_no - 1]
    if key:
        assert line.startswith(key.group(1)), (line, r.stderr)
    else:
        assert line == '[%s]' % group, (line, r.stderr)


def test_check_missing_file():
    r = subprocess.run([GATEHOUSED, '-t', '-c', '/nonexistent/gatehouse.conf'],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert '/nonexistent/gatehouse.conf' in r.stderr


class Notify:
    """A NOTIFY_SOCKET for a daemon under test: collects sd_notify datagrams."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages = []

    def poll(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def wait(self, needle, timeout=30.0):
        return wait_for(lambda: any(needle in m.split('\n') for m in self.poll()), timeout,
                        what='%s in %r' % (needle, self.messages))

    def wait_match(self, pattern, timeout=30.0):
        """The first line of a datagram that matches the regular expression."""
        rx = re.compile(pattern)

        def found():
            for m in self.poll():
                for line in m.split('\n'):
                    if rx.fullmatch(line):
                        return line
            return None
        return wait_for(found, timeout, what='%s in %r' % (pattern, self.messages))

    def close(self):
        self.sock.close()
        os.unlink(self.path)


# what `systemctl status` shows of a running gatehoused
STATUS_LINE = (r'STATUS=(\d+) sessions? \((\d+) proxied\); logins since start: (\d+) ok, '
               r'(\d+) not; config generation (\d+)')


def start_activated(tmp, conf, fdname, port, daemons, valgrind=False):
    notify = Notify(tmp / 'notify.sock')
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    argv = ['systemd-socket-activate', '-l', '127.0.0.1:%d' % port, '--fdname=%s' % fdname,
            '-E', 'NOTIFY_SOCKET']
    argv += (VALGRIND if valgrind else []) + [str(GATEHOUSED), '-c', str(conf)]
    d = Daemon(argv, tmp / 'gatehoused.log', env=env)
    daemons.append(d)
    # systemd-socket-activate binds at once and execs gatehoused on the first connection
    wait_for(lambda: connectable(port), what='port %d bound' % port)
    return d, notify


def run_lifecycle(tmp, conf, users, daemons, valgrind=False):
    port = free_port()
    d, notify = start_activated(tmp, conf, 'smtp', port, daemons, valgrind=valgrind)
    try:
        # the connection that woke it up is served once gatehoused runs
        notify.wait('READY=1', timeout=60 if valgrind else 30)
        assert read_line('127.0.0.1', port) == b'220 gw.test ESMTP\r\n'
        status = re.fullmatch(STATUS_LINE, notify.wait_match(STATUS_LINE))
        assert status.group(5) == '1' and status.group(3) == '0', status.group(0)
        d.wait_log('listener smtp: systemd fd 3')

        # users file edited while running: picked up without restart
        with open(users, 'a') as f:
            f.write('newbie:{PLAIN}newpw\n')
        d.wait_log('reloaded: 5 users', timeout=15)
        # a broken edit keeps the previous contents and names the line
        with open(users, 'a') as f:
            f.write('broken-line-without-hash\n')
        d.wait_log('line 8', timeout=15)
        assert 'keeping the previous contents' in d.text()

        # SIGHUP with a broken config: the old one stays in force
        good = conf.read_text()
        conf.write_text(good + '\n[listener smtp]\nprotocol = nope\n')
        d.signal(signal.SIGHUP)
        d.wait_log('the running configuration stays in force')
        notify.wait('RELOADING=1')
        assert read_line('127.0.0.1', port) == b'220 gw.test ESMTP\r\n'

        # SIGHUP with a good new config takes effect for new connections
        users.write_text(users.read_text().replace('broken-line-without-hash\n', ''))
        conf.write_text(good.replace('hostname = gw.test', 'hostname = reloaded.test'))
        d.signal(signal.SIGHUP)
        d.wait_log('configuration reloaded from')
        assert read_line('127.0.0.1', port) == b'220 reloaded.test ESMTP\r\n'
        # the refused reload did not count; this one is generation 2
        assert STATUS_LINE.endswith(r'generation (\d+)')
        notify.wait_match(STATUS_LINE[:-len(r'(\d+)')] + '2')

        # SIGTERM: clean stop, exit 0
        d.signal(signal.SIGTERM)
        assert d.proc.wait(60 if valgrind else 30) == 0, d.text()
        notify.wait('STOPPING=1')
        assert 'stopped' in d.text()
    finally:
        notify.close()
    for pw in ('newpw',) + tuple(PASSWORDS.values()):
        assert pw not in d.text()
    return d


def test_socket_activation_reload_and_stop(setup, daemons):
    tmp, users, conf = setup
    run_lifecycle(tmp, conf, users, daemons)


def test_socket_with_unknown_name_is_refused(setup, daemons):
    tmp, users, conf = setup
    port = free_port()
    d, notify = start_activated(tmp, conf, 'nosuchlistener', port, daemons)
    try:
        assert d.proc.wait(10) == 1
        assert "systemd passed a socket named 'nosuchlistener'" in d.text()
        assert 'READY=1' not in '\n'.join(notify.poll())
    finally:
        notify.close()


def test_binds_its_own_listeners(tmp, daemons):
    users = make_users(tmp)
    p4, p6, pi = free_port(), free_port(), free_port()
    listen6 = ''
    if socket.has_ipv6:
        try:
            socket.socket(socket.AF_INET6).bind(('::1', 0))
            listen6 = ' [::1]:%d' % p6
        except OSError:
            pass
    conf = gateway_conf(tmp / 'gatehouse.conf', users,
                        {'submission': ('smtp', '127.0.0.1:%d%s' % (p4, listen6)),
                         'imap': ('imap', '127.0.0.1:%d' % pi)})
    d = Daemon([str(GATEHOUSED), '-c', str(conf)], tmp / 'd.log')
    daemons.append(d)
    d.wait_ready()
    assert read_line('127.0.0.1', p4) == b'220 gw.test ESMTP\r\n'
    greeting = read_line('127.0.0.1', pi)
    assert greeting.startswith(b'* OK [CAPABILITY IMAP4rev1 ') and greeting.endswith(b'] gw.test ready.\r\n')
    if listen6:
        assert read_line('::1', p6) == b'220 gw.test ESMTP\r\n'
    # a second instance on the same ports fails with a clear message
    d2 = Daemon([str(GATEHOUSED), '-c', str(conf)], tmp / 'd2.log')
    daemons.append(d2)
    assert d2.proc.wait(10) == 1
    assert 'cannot listen on 127.0.0.1:%d' % p4 in d2.text()
    assert d.stop() == 0


def test_lifecycle_under_valgrind(setup, daemons):
    """The same life cycle with gatehoused under valgrind: no errors, no leaks."""
    tmp, users, conf = setup
    d = run_lifecycle(tmp, conf, users, daemons, valgrind=True)
    assert '==' not in d.text(), d.text()


@pytest.mark.parametrize('user', ['yes', 'sha', 'nobody'])
def test_auth_test_under_valgrind(setup, user):
    tmp, users, conf = setup
    pw = PASSWORDS.get(user, 'x')
    r = ctl('auth-test', user, stdin=pw + '\n', config=conf, valgrind=True, timeout=120)
    assert r.returncode == (0 if user != 'nobody' else 1), r.stderr
    assert '==' not in r.stderr, r.stderr


def test_reload_keeps_each_session_on_its_generation(tmp, daemons):
    """A session takes the configuration, its TLS credentials and its auth
    set together when it is accepted.  Reloaded meanwhile to a config whose
    [auth users] reads another users file, a session accepted before logs in
    against the file it came under; a new session against the new one, and
    the verdict the older session left in the cache is not the newer
    session's answer."""
    old_users = tmp / 'users-old'
    new_users = tmp / 'users-new'
    old_users.write_text('alice:{PLAIN}old-secret\n')
    new_users.write_text('alice:{PLAIN}new-secret\n')
    port = free_port()
    conf = gateway_conf(tmp / 'gatehouse.conf', old_users, {'smtp': ('smtp', '127.0.0.1:%d' % port)})
    d = Daemon([GATEHOUSED, '-c', conf], tmp / 'gatehoused.log')
    daemons.append(d)
    d.wait_ready(timeout=60 if d.valgrind else 30)
    bad = '535 5.7.8 Authentication credentials invalid'
    # the password accepted, then "try later": gateway_conf's backend is down
    accepted = 'user="alice" mech=PLAIN tls=no module=users(file) verdict=tempfail ' \
        'reason="backend unavailable'
    with SmtpClient(port, greet=True) as before:
        before.cmd('EHLO before.test')
        conf.write_text(conf.read_text().replace(str(old_users), str(new_users)))
        d.signal(signal.SIGHUP)
        d.wait_log('configuration reloaded from')
        with SmtpClient(port, greet=True) as after:
            after.cmd('EHLO after.test')
            # the old session: the old file's password
            assert before.auth_plain('alice', 'old-secret') != bad
            d.wait_log(accepted)
            # the new session: the old password is wrong, cache or not
            assert after.auth_plain('alice', 'old-secret') == bad
            assert after.auth_plain('alice', 'new-secret') != bad
            d.wait_log(accepted, count=2)
    log = d.text()
    assert log.count(accepted) == 2, log
    assert log.count('module=users(file) verdict=wrong-password') == 1, log
    assert d.stop() == 0
    assert 'old-secret' not in log and 'new-secret' not in log


def test_out_of_descriptors_pauses_accepting_and_recovers(tmp, daemons):
    """gatehoused at its descriptor limit (prlimit on the running daemon, as a
    too-low LimitNOFILE= would leave it): the clients it can take get their
    greeting, the others wait in the listen queue, the log says once what is
    wrong and what to raise, and once sessions end the waiting clients are
    taken and greeted.  The daemon neither dies nor spins."""
    port = free_port()
    conf = gateway_conf(tmp / 'gatehouse.conf', tmp / 'users',
                        {'smtp': ('smtp', '127.0.0.1:%d' % port)})
    (tmp / 'users').write_text('alice:{PLAIN}pw\n')
    # valgrind keeps descriptors of its own near the limit
    d = Daemon([GATEHOUSED, '-c', conf], tmp / 'gatehoused.log', valgrind=False)
    daemons.append(d)
    d.wait_ready()
    pid = d.proc.pid

    def greeting(c):
        try:
            return c.recv(512)
        except socket.timeout:
            raise AssertionError('no greeting within 30 s:\n' + d.text()[-3000:])

    # one session first: an I/O thread makes its epoll set when it starts
    # watching, which may come after the ready line; then the descriptors
    # the daemon keeps, once they stop changing (that session's closed)
    with socket.create_connection(('127.0.0.1', port), timeout=30) as c:
        assert greeting(c).startswith(b'220 ')
        c.sendall(b'QUIT\r\n')
        assert c.recv(512).startswith(b'221 ')

    def fds():
        return sorted(int(n) for n in os.listdir('/proc/%d/fd' % pid))
    previous = None
    for _ in range(100):
        if previous == fds():
            break
        previous = fds()
        time.sleep(0.3)
    # the limit that leaves room for exactly `room` more descriptors: new
    # ones take the lowest free numbers
    room = 3
    used = previous
    limit, free = 0, 0
    while free < room:
        if limit not in used:
            free += 1
        limit += 1
    subprocess.run(['prlimit', '--pid', str(pid), '--nofile=%d:%d' % (limit, limit)], check=True)
    first = [socket.create_connection(('127.0.0.1', port), timeout=30) for _ in range(room)]
    for c in first:
        assert greeting(c).startswith(b'220 '), 'a client within the limit has no greeting'
    waiting = [socket.create_connection(('127.0.0.1', port), timeout=30) for _ in range(3)]
    try:
        d.wait_log('cannot accept connections: Too many open files; pausing for 100 ms '
                   '(raise LimitNOFILE= or lower max_connections)')
        # no descriptor, no session: nothing is said to the waiting ones
        for c in waiting:
            c.settimeout(0.5)
            with pytest.raises(socket.timeout):
                c.recv(512)
            c.settimeout(30)
        assert d.proc.poll() is None, d.text()[-3000:]
        # sessions end, descriptors come free: the waiting clients are taken
        for c in first:
            c.sendall(b'QUIT\r\n')
            assert c.recv(512).startswith(b'221 ')
            c.close()
        for c in waiting:
            assert greeting(c).startswith(b'220 '), d.text()[-3000:]
        # said once (it repeats at most every 10 s), not once per retry
        assert d.text().count('cannot accept connections') == 1, d.text()[-3000:]
    finally:
        for c in first + waiting:
            c.close()
    assert d.proc.poll() is None, d.text()[-3000:]
