"""PAM in helper processes (modules/pam/pam-helper.c), seen from outside:
which process holds which rights, and what a client gets when a helper dies,
hangs, or its spawner is gone.

- Started as root with `user =` an account in group shadow: the shipped
  service file with pam_unix and a real user logs in; gatehoused itself is
  not in group shadow (/proc/PID/status), its one child is the spawner, and
  the helpers (the spawner's children) have the account's uid, group shadow,
  no capabilities, nice 10 and at most 1024 descriptors, and are not
  dumpable.  Logins add no child to gatehoused.
- A helper killed while idle costs no login; one killed in the middle of a
  conversation gives that login a temporary failure (454), and the next
  login gets a new helper.  A helper that hangs past helper_timeout gives
  454 too, and is gone soon after (it dies at the same limit).  A killed
  spawner is logged, and logins then get 454, never 535.
- helper_socket: helpers from a socket that starts one per connection
  (systemd-socket-activate --accept, as gatehouse-pam.socket does).

Orders of events, not clocks: the tests wait for log lines and processes
with generous bounds.
"""
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lib.clients import SmtpClient, assert_no_secrets
from lib.net import free_port, wait_for
from lib.paths import BUILDDIR, asan_runtime
from pamfix import PamWrapper, find_pam_wrapper, start_gatehoused
from test_hardening import Account, account, assert_not_dumpable, ids, proc_status  # noqa: F401
from test_pam import (AUTH_OK, BAD_CREDS, TEMPFAIL, PamGate, real_service,  # noqa: F401
                      real_user, smtp_backend, smtp_gateway_conf)

pytestmark = pytest.mark.skipif(find_pam_wrapper() is None,
                                reason='pam_wrapper is not installed (libpam-wrapper)')

USERS = {'alice': 'alice-Secret.1', 'bob': 'bob-Secret.2'}
HELPER = BUILDDIR / 'modules' / 'pam' / 'pam-helper'


@pytest.fixture
def pw(tmp):
    return PamWrapper(tmp / 'pam')


def children(pid):
    """The pids whose parent is `pid`."""
    out = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / 'stat').read_text()
        except OSError:
            continue
        # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses
        fields = stat[stat.rindex(')') + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d.name))
    return sorted(out)


def comm(pid):
    try:
        return Path('/proc/%d/comm' % pid).read_text().strip()
    except OSError:
        return None


def spawner_of(gw):
    kids = [p for p in children(gw.proc.pid) if comm(p) == 'pam-helper']
    assert len(kids) == 1, 'children of gatehoused: %r' % [(p, comm(p)) for p in
                                                           children(gw.proc.pid)]
    return kids[0]


def helpers_of(gw):
    return [p for p in children(spawner_of(gw)) if comm(p) == 'pam-helper']


def login(port, user, password):
    with SmtpClient(port, greet=True, timeout=60) as c:
        c.cmd('EHLO helpers.test')
        return c.auth_plain(user, password, timeout=60)


def gone(pid):
    try:
        st = Path('/proc/%d/stat' % pid).read_text()
    except OSError:
        return True
    return st[st.rindex(')') + 2] == 'Z'


# ------------------------------------------- who holds which right (pam_unix)

@pytest.mark.skipif(os.geteuid() != 0, reason='needs root (useradd, setuid)')
def test_only_the_helpers_keep_group_shadow(tmp, real_user, real_service, account, daemons,
                                            smtp_backend):
    user, password = real_user
    shadow = __import__('grp').getgrnam('shadow').gr_gid
    account.create(member_of=['shadow'])
    env = {k: v for k, v in os.environ.items() if not k.startswith('PAM_') and k != 'LD_PRELOAD'}
    port = free_port()
    conf = smtp_gateway_conf(tmp, port, smtp_backend.port, pam={'service': real_service},
                             gatehouse={'user': account.name})
    gw = start_gatehoused(tmp, daemons, conf, env, valgrind=False)

    st = proc_status(gw.proc.pid)
    assert ids(st['Uid']) == [account.uid] * 4, st['Uid']
    assert shadow not in ids(st['Groups']), 'gatehoused kept shadow: %s' % st['Groups']
    assert 'without the group of /etc/shadow (only PAM helpers keep it)' in gw.text()
    spawner = spawner_of(gw)
    assert shadow in ids(proc_status(spawner)['Groups'])

    assert login(port, user, password) == AUTH_OK
    assert login(port, user, 'wrong-' + password) == BAD_CREDS
    for _ in range(3):
        assert login(port, user, password) == AUTH_OK
    # logins fork nothing in gatehoused: its one child is still the spawner
    assert children(gw.proc.pid) == [spawner]
    helpers = helpers_of(gw)
    assert helpers, 'no helper under the spawner %d' % spawner
    for h in helpers:
        hs = proc_status(h)
        assert ids(hs['Uid']) == [account.uid] * 4, hs['Uid']
        assert shadow in ids(hs['Groups']), hs['Groups']
        for field in ('CapInh', 'CapPrm', 'CapEff', 'CapAmb'):
            assert int(hs[field], 16) == 0, (field, hs[field])
        assert_not_dumpable(h)
        # below the I/O threads, and few descriptors for pam_exec's children
        # to close
        stat = Path('/proc/%d/stat' % h).read_text()
        assert int(stat[stat.rindex(')') + 2:].split()[16]) == 10, stat
        limits = Path('/proc/%d/limits' % h).read_text()
        soft = next(line.split()[3] for line in limits.splitlines()
                    if line.startswith('Max open files'))
        assert int(soft) <= 1024, limits
    assert gw.stop() == 0
    # the spawner and the helpers leave with gatehoused
    wait_for(lambda: gone(spawner) and all(gone(h) for h in helpers), 30,
             what='the spawner %d and helpers %r to exit' % (spawner, helpers))
    assert_no_secrets(gw.text(), [real_user], 'daemon log')


# ------------------------------------------------ helpers that die or hang

def gated_gateway(tmp, pw, daemons, smtp_backend, **pam):
    gate = PamGate(tmp)
    pw.matrix_service('gatehouse', USERS, before=[gate.pam_line()])
    port = free_port()
    keys = {'max_concurrent': '4', 'timeout': '30'}
    keys.update(pam)
    conf = smtp_gateway_conf(tmp, port, smtp_backend.port, pam=keys,
                             gatehouse={'auth_cache_size': '0'})
    gw = start_gatehoused(tmp, daemons, conf, pw.env(), valgrind=False)
    return gate, port, gw


def login_in_thread(port, user, password):
    box = {}

    def run():
        try:
            box['reply'] = login(port, user, password)
        except Exception as e:  # noqa: BLE001 - reported by the test
            box['reply'] = 'error: %r' % e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_helper_killed_idle(tmp, pw, daemons, smtp_backend):
    gate, port, gw = gated_gateway(tmp, pw, daemons, smtp_backend)
    gate.release()
    assert login(port, 'alice', USERS['alice']) == AUTH_OK
    # killed while idle: the next login never notices
    idle = helpers_of(gw)
    assert len(idle) == 1, idle
    os.kill(idle[0], signal.SIGKILL)
    wait_for(lambda: gone(idle[0]), 30, what='helper %d to die' % idle[0])
    assert login(port, 'alice', USERS['alice']) == AUTH_OK
    assert idle[0] not in helpers_of(gw)
    assert gw.stop() == 0


def test_helper_killed_mid_login(tmp, pw, daemons, smtp_backend):
    gate, port, gw = gated_gateway(tmp, pw, daemons, smtp_backend)
    t, box = login_in_thread(port, 'alice', USERS['alice'])
    wait_for(lambda: gate.count() == 1, 60, what='the login to reach PAM')
    busy = helpers_of(gw)
    assert len(busy) == 1, busy
    os.kill(busy[0], signal.SIGKILL)
    t.join(60)
    assert box.get('reply') == TEMPFAIL, box
    gw.wait_log("the helper died before it answered; answering 'try later'")
    # a new helper for the next login
    gate.release()
    assert login(port, 'bob', USERS['bob']) == AUTH_OK
    assert busy[0] not in helpers_of(gw)
    assert gw.stop() == 0


def test_helper_hung_past_helper_timeout(tmp, pw, daemons, smtp_backend):
    gate, port, gw = gated_gateway(tmp, pw, daemons, smtp_backend, helper_timeout='2')
    t, box = login_in_thread(port, 'alice', USERS['alice'])
    wait_for(lambda: gate.count() == 1, 60, what='the login to reach PAM')
    hung = helpers_of(gw)
    assert len(hung) == 1, hung
    t.join(60)
    assert box.get('reply') == TEMPFAIL, box
    gw.wait_log("the helper did not answer in time (helper_timeout); answering 'try later'")
    # it dies at the same limit (its alarm), though PAM still holds it
    wait_for(lambda: gone(hung[0]), 30, what='the hung helper %d to die' % hung[0])
    gate.release()
    assert login(port, 'bob', USERS['bob']) == AUTH_OK
    assert gw.stop() == 0


def test_spawner_killed(tmp, pw, daemons, smtp_backend):
    gate, port, gw = gated_gateway(tmp, pw, daemons, smtp_backend)
    gate.release()
    spawner = spawner_of(gw)
    os.kill(spawner, signal.SIGKILL)
    gw.wait_log('the pam helper spawner (pid %d) exited' % spawner)
    # never a wrong verdict: "try later", and the daemon still serves
    assert login(port, 'alice', USERS['alice']) == TEMPFAIL
    assert login(port, 'alice', 'wrong-password') == TEMPFAIL
    gw.wait_log('no helper: the pam helper spawner is gone (restart gatehoused)')
    assert gw.stop() == 0


# ------------------------------------------------ helpers from a socket unit

def start_activator(pw, sock):
    """systemd-socket-activate --accept on `sock` for pam-helper, with the
    pam_wrapper environment (it passes on only what -E names); its stderr,
    where the helpers write, is a text pipe."""
    env = pw.env()
    if asan_runtime() is not None:
        # a sanitizer build's helper wants ASan's runtime first
        env['LD_PRELOAD'] = '%s:%s' % (asan_runtime(), env['LD_PRELOAD'])
    passed = ['-E%s' % k for k in ('LD_PRELOAD', 'PAM_WRAPPER', 'PAM_WRAPPER_SERVICE_DIR')]
    return subprocess.Popen(['systemd-socket-activate', '--accept', '-l', str(sock)]
                            + passed + [str(HELPER)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(shutil.which('systemd-socket-activate') is None,
                    reason='systemd-socket-activate is not installed')
def test_helper_socket_one_helper_per_connection(tmp, pw, daemons, smtp_backend):
    """gatehouse-pam.socket's way (Accept=yes), with systemd-socket-activate
    --accept: each connection of the module starts one helper, which serves
    it until gatehoused lets go."""
    pw.matrix_service('gatehouse', USERS)
    sock = tmp / 'pam.sock'
    activator = start_activator(pw, sock)
    try:
        wait_for(sock.exists, 30, what='%s to be made' % sock)
        port = free_port()
        conf = smtp_gateway_conf(tmp, port, smtp_backend.port,
                                 pam={'helper_socket': str(sock), 'max_concurrent': '2'},
                                 gatehouse={'auth_cache_size': '0'})
        gw = start_gatehoused(tmp, daemons, conf, pw.env(), valgrind=False)
        assert login(port, 'alice', USERS['alice']) == AUTH_OK
        assert login(port, 'alice', 'nope-' + USERS['alice']) == BAD_CREDS
        assert login(port, 'carol', 'carol-pw') != AUTH_OK
        # the helpers are the activator's children, not gatehoused's
        helpers = [p for p in children(activator.pid) if comm(p) == 'pam-helper']
        assert 1 <= len(helpers) <= 2, helpers
        assert gw.stop() == 0
        wait_for(lambda: all(gone(h) for h in helpers), 30, what='helpers to exit')
    finally:
        activator.terminate()
        activator.wait(30)
    # without the socket: "try later", with the reason in the log
    port = free_port()
    conf = smtp_gateway_conf(tmp, port, smtp_backend.port, pam={'helper_socket': str(sock)})
    gw = start_gatehoused(tmp, daemons, conf, pw.env(), name='gw2', valgrind=False)
    assert login(port, 'alice', USERS['alice']) == TEMPFAIL
    gw.wait_log('cannot connect to helper_socket %s' % sock)
    assert gw.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root (another uid to connect as)')
@pytest.mark.skipif(shutil.which('systemd-socket-activate') is None or
                    shutil.which('setpriv') is None,
                    reason='systemd-socket-activate or setpriv is not installed')
def test_helper_serves_only_its_own_uid(tmp, pw):
    """A helper is a password oracle: one reached by a process of another
    uid (here `nobody`, through a socket left writable for the test) says
    why on stderr and closes without reading a request."""
    pw.matrix_service('gatehouse', USERS)
    sock = tmp / 'pam.sock'
    activator = start_activator(pw, sock)
    try:
        wait_for(sock.exists, 30, what='%s to be made' % sock)
        os.chmod(sock, 0o666)
        os.chmod(tmp, 0o755)
        # a whole, valid request for alice; the helper must not answer it
        probe = ('import socket, struct, sys\n'
                 's = socket.socket(socket.AF_UNIX)\n'
                 's.connect(sys.argv[1])\n'
                 'p = b"\\0".join([b"gatehouse-pam 1", b"gatehouse", b"1", b"alice", '
                 'sys.argv[2].encode(), b"", b"", b"probe", b"5"]) + b"\\0"\n'
                 's.sendall(struct.pack(">I", len(p)) + p)\n'
                 's.settimeout(30)\n'
                 'try:\n'
                 '    got = s.recv(100)\n'
                 'except ConnectionResetError:\n'  # closed with the request unread
                 '    got = b""\n'
                 'print(repr(got))\n')
        r = subprocess.run(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
                            '/usr/bin/python3', '-c', probe, str(sock), USERS['alice']],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "b''", r.stdout
    finally:
        activator.terminate()
        _, err = activator.communicate(timeout=30)
    assert 'refusing a peer with uid %d (not root, not my uid 0)' \
        % __import__('pwd').getpwnam('nobody').pw_uid in err, err
