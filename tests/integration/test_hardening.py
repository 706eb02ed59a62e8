"""Privileges shown, not assumed: what /proc/PID/status says of a running
gatehoused, and what systemd-analyze says of the shipped unit.

- Started as root with `user =` (and `group =`): the uid and gid are the
  configured ones in all four fields (real, effective, saved, file system),
  the supplementary groups are those initgroups(3) gives the user (the
  groups /etc/group lists it in, where an admin puts it in `shadow` for
  pam_unix, plus the configured group; the user's primary group only when it
  is the configured one), no capability is left, and the process is not
  dumpable.
- Started as gatehouse.service starts it (User=, AmbientCapabilities=,
  CapabilityBoundingSet=, NoNewPrivileges=, UMask= read from the built unit,
  reproduced with setpriv; the user is a throwaway account): it binds a port
  below 1024 itself, then gives the capability up.
- In both, a login through the file module works.
- The units: systemd-analyze security --offline gives gatehouse.service and
  gatehouse-pam@.service an exposure of at most 2.0 each, and
  systemd-analyze verify accepts the service and socket units.

The accounts are made here (useradd, groupadd) and removed at the end; the
tests need root and skip without it.  Nothing here runs systemd itself: this
checks what can be checked without it being PID 1.
"""
import grp
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from lib.clients import ImapClient
from lib.config import file_auth, users_file, write_config
from lib.gateway import Daemon
from lib.net import free_port
from lib.paths import BUILDDIR, GATEHOUSED, SRCDIR
from lib.proc import make_tmpdir
from lib.scripted import ImapServer

USERS = {'alice': 'alice-Secret-1'}
UNIT = BUILDDIR / 'etc' / 'systemd' / 'gatehouse.service'
PAM_UNIT = BUILDDIR / 'etc' / 'systemd' / 'gatehouse-pam@.service'
SOCKETS = sorted((SRCDIR / 'etc' / 'systemd').glob('*.socket'))
# the most systemd-analyze security may say of the unit, in its tenths
MAX_EXPOSURE = 20

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='needs root (useradd, setuid)')


def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------------ helpers

class Account:
    """A throwaway system user with a primary group of its own, member of
    the groups `member_of` (made too), and groups made for `group =`."""

    def __init__(self):
        self.tag = 'ghh%s' % secrets.token_hex(3)
        self.name = self.tag
        self.groups = []

    def group(self, suffix):
        """A new group TAG-SUFFIX: its gid."""
        name = '%s-%s' % (self.tag, suffix)
        r = _run(['groupadd', '--system', name])
        assert r.returncode == 0, r.stderr
        self.groups.append(name)
        return grp.getgrnam(name).gr_gid

    def create(self, member_of=()):
        r = _run(['useradd', '--system', '--user-group', '--no-create-home',
                  '--shell', '/usr/sbin/nologin', '--home-dir', '/nonexistent', self.name]
                 + (['--groups', ','.join(member_of)] if member_of else []))
        assert r.returncode == 0, r.stderr
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        return self

    def remove(self):
        if self.name in {p.pw_name for p in pwd.getpwall()}:
            r = _run(['userdel', self.name])  # also its own group
            assert r.returncode == 0, r.stderr
        for g in self.groups:
            r = _run(['groupdel', g])
            assert r.returncode == 0, r.stderr


@pytest.fixture
def account():
    """Account(): the test calls .group() and .create(); removed after."""
    for tool in ('useradd', 'userdel', 'groupadd', 'groupdel'):
        if shutil.which(tool) is None:
            pytest.skip('%s is not installed' % tool)
    a = Account()
    yield a
    a.remove()


def proc_status(pid):
    """/proc/PID/status as {field: value}."""
    text = Path('/proc/%d/status' % pid).read_text()
    return dict(line.split(':\t', 1) for line in text.splitlines() if ':\t' in line)


def ids(value):
    return [int(x) for x in value.split()]


def cap_mask(names):
    """The bit mask of capability names (CAP_NET_BIND_SERVICE ...)."""
    numbers = {'CAP_NET_BIND_SERVICE': 10, 'CAP_SETGID': 6, 'CAP_SETUID': 7,
               'CAP_CHOWN': 0, 'CAP_DAC_OVERRIDE': 1, 'CAP_DAC_READ_SEARCH': 2,
               'CAP_FOWNER': 3, 'CAP_NET_RAW': 13, 'CAP_NET_ADMIN': 12, 'CAP_SYS_ADMIN': 21}
    mask = 0
    for n in names:
        assert n in numbers, 'capability %s: add its number here' % n
        mask |= 1 << numbers[n]
    return mask


def assert_no_capabilities(st):
    for field in ('CapInh', 'CapPrm', 'CapEff', 'CapAmb'):
        assert int(st[field], 16) == 0, (field, st[field])


def assert_not_dumpable(pid):
    # a process that is not dumpable has its /proc files owned by root,
    # whatever its uid: no core dump, no ptrace by its own user
    assert os.stat('/proc/%d/status' % pid).st_uid == 0


def login_works(port, backend):
    with ImapClient(port, [USERS['alice']], greet=True) as c:
        got = c.login('alice', USERS['alice'])
    assert got.startswith('OK '), got
    assert backend.users()[-1:] == ['alice'], backend.users()


def imap_conf(d, listen, backend_port, gatehouse):
    users = users_file(d / 'users', USERS)
    os.chmod(users, 0o644)
    return write_config(
        d / 'gatehouse.conf',
        {'imap': {'protocol': 'imap', 'listen': listen, 'plaintext_auth': 'always',
                  'auth': 'users', 'backend': 'b'}},
        {'users': file_auth(users)},
        {'b': {'protocol': 'imap', 'servers': '127.0.0.1:%d' % backend_port}},
        gatehouse=gatehouse)


@pytest.fixture
def backend():
    b = ImapServer()
    yield b
    b.close()


@pytest.fixture
def folder():
    d = make_tmpdir('gh-hard-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------- started as root, `user =` set

@needs_root
@pytest.mark.parametrize('group', ['unset', 'other'])
def test_root_switches_to_user_and_group(account, backend, folder, daemons, group):
    """user = a throwaway account that /etc/group lists in one more group
    (as `shadow` would be for pam_unix); group = unset (the user's primary
    group) or another group.  After start: those ids everywhere, the groups
    initgroups gives (the configured group and the listed one; the primary
    group only when it is the configured one), no capabilities, not
    dumpable, and a login works."""
    extra = account.group('extra')
    other = account.group('other') if group == 'other' else None
    account.create(member_of=['%s-extra' % account.tag])
    gatehouse = {'user': account.name}
    want_gid = account.gid
    if other is not None:
        gatehouse['group'] = '%s-other' % account.tag
        want_gid = other
    port = free_port()
    conf = imap_conf(folder, '127.0.0.1:%d' % port, backend.port, gatehouse)
    d = Daemon([GATEHOUSED, '-c', conf], folder / 'gatehoused.log')
    daemons.append(d)
    d.wait_ready()

    st = proc_status(d.proc.pid)
    assert ids(st['Uid']) == [account.uid] * 4, st['Uid']
    assert ids(st['Gid']) == [want_gid] * 4, st['Gid']
    groups = set(ids(st['Groups']))
    assert groups == {want_gid, extra}, st['Groups']
    assert groups == set(os.getgrouplist(account.name, want_gid))
    if other is not None:
        assert account.gid not in groups, 'the primary group stays: %s' % st['Groups']
    assert_no_capabilities(st)
    # gatehoused sets no no_new_privs itself (pam_unix's setgid helper must
    # keep working outside systemd); the unit sets it
    assert st['NoNewPrivs'] == '0'
    assert_not_dumpable(d.proc.pid)
    assert 'running as user %s, group id %d' % (account.name, want_gid) in d.text()
    assert 'running as root' not in d.text()
    login_works(port, backend)


@needs_root
def test_root_without_user_is_warned(backend, folder, daemons):
    """Started as root with no `user =`: it runs, and says at warning
    level that it keeps root's rights."""
    port = free_port()
    conf = imap_conf(folder, '127.0.0.1:%d' % port, backend.port, {})
    d = Daemon([GATEHOUSED, '-c', conf], folder / 'gatehoused.log')
    daemons.append(d)
    d.wait_ready()
    assert ids(proc_status(d.proc.pid)['Uid']) == [0] * 4
    assert re.search(r": warning: gh-daemon: running as root: no `user =` in \[gatehouse\]",
                     d.text()), d.text()
    login_works(port, backend)


# ------------------------------------------------ started as the unit does

def unit_settings(path):
    """The [Service] keys of a unit file: {key: [values, in order]}."""
    keys, section = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(('#', ';')):
            continue
        if line.startswith('['):
            section = line
            continue
        if section == '[Service]' and '=' in line:
            k, v = line.split('=', 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def unit_caps(keys, name):
    values = keys.get(name, [])
    assert len(values) <= 1, (name, values)
    return values[0].split() if values else []


def free_low_port():
    """A port below 1024 that nothing on 127.0.0.1 listens on."""
    for port in range(1023, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
                return port
            except OSError:
                continue
    pytest.skip('no free port below 1024')


@needs_root
@pytest.mark.skipif(shutil.which('setpriv') is None, reason='setpriv is not installed')
def test_started_as_the_unit_starts_it(account, backend, folder, daemons):
    """The unit's User= (here a throwaway account, in one more group),
    AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges= and UMask=,
    set up with setpriv as systemd would: gatehoused binds a port below 1024
    itself, then keeps no capability; its groups are the user's, no_new_privs
    and the umask hold, it is not dumpable, and a login works."""
    keys = unit_settings(UNIT)
    assert keys.get('User') == ['gatehouse'], keys.get('User')
    ambient = unit_caps(keys, 'AmbientCapabilities')
    bounding = unit_caps(keys, 'CapabilityBoundingSet')
    assert ambient == ['CAP_NET_BIND_SERVICE'] and bounding == ['CAP_NET_BIND_SERVICE'], keys
    assert keys.get('NoNewPrivileges') == ['yes']
    umask = keys['UMask'][0]

    extra = account.group('extra')
    account.create(member_of=['%s-extra' % account.tag])
    # systemd's RuntimeDirectory=: a folder of the unit's user
    run = folder / 'run'
    run.mkdir()
    os.chown(run, account.uid, account.gid)
    port = free_low_port()
    conf = imap_conf(folder, '127.0.0.1:%d' % port, backend.port,
                     {'user': account.name, 'control_socket': str(run / 'control')})
    caps = ','.join('+' + c[len('CAP_'):].lower() for c in ambient)
    argv = ['setpriv', '--reuid=%s' % account.name, '--regid=%d' % account.gid,
            '--init-groups', '--inh-caps=-all,%s' % caps, '--ambient-caps=-all,%s' % caps,
            '--bounding-set=-all,%s' % ','.join('+' + c[len('CAP_'):].lower() for c in bounding),
            '--no-new-privs', 'sh', '-c', 'umask %s && exec "$0" "$@"' % umask,
            str(GATEHOUSED), '-c', str(conf)]
    d = Daemon(argv, folder / 'gatehoused.log')
    daemons.append(d)
    d.wait_ready()

    st = proc_status(d.proc.pid)
    assert st['Name'] == 'gatehoused', st['Name']
    assert ids(st['Uid']) == [account.uid] * 4, st['Uid']
    assert ids(st['Gid']) == [account.gid] * 4, st['Gid']
    assert set(ids(st['Groups'])) == {account.gid, extra}, st['Groups']
    assert_no_capabilities(st)
    assert int(st['CapBnd'], 16) == cap_mask(bounding), st['CapBnd']
    assert st['NoNewPrivs'] == '1'
    assert int(st['Umask'], 8) == int(umask, 8), st['Umask']
    assert_not_dumpable(d.proc.pid)
    assert 'without the capabilities it was started with' in d.text()
    assert 'listener imap: 127.0.0.1:%d' % port in d.text()
    login_works(port, backend)


# ------------------------------------------------------------------ the unit

needs_analyze = pytest.mark.skipif(shutil.which('systemd-analyze') is None,
                                   reason='systemd-analyze is not installed')


@needs_analyze
@pytest.mark.parametrize('unit', [UNIT, PAM_UNIT], ids=['gatehouse', 'gatehouse-pam@'])
def test_unit_exposure(unit):
    """systemd-analyze security --offline=yes on each built service unit:
    at most 2.0 (--threshold= is in tenths: it fails above it)."""
    argv = ['systemd-analyze', 'security', '--offline=yes', '--threshold=%d' % MAX_EXPOSURE,
            '--no-pager', str(unit)]
    r = _run(argv)
    if r.returncode != 0 and 'unrecognized option' in r.stderr:
        pytest.skip('systemd-analyze without --offline or --threshold (systemd < 250)')
    lines = r.stdout.strip().splitlines()
    m = re.search(r'Overall exposure level for %s\S*\.service: (\d+)\.(\d)\b'
                  % re.escape(unit.name.split('@')[0].replace('.service', '')), lines[-1]) \
        if lines else None
    assert m, r.stdout[-2000:] + r.stderr
    exposure = int(m.group(1)) * 10 + int(m.group(2))
    bad = [line for line in lines if line.startswith('\u2717')]
    assert exposure <= MAX_EXPOSURE, 'exposure %s.%s:\n%s' % (m.group(1), m.group(2),
                                                              '\n'.join(bad))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr


@needs_analyze
def test_units_verify(folder):
    """systemd-analyze verify accepts the service and the socket units
    without a warning.  verify wants every command to exist: the built unit
    names the installed gatehoused, which the copy checked here replaces
    with the built one; man pages are not looked up (--man=no)."""
    text = UNIT.read_text()
    installed = re.search(r'^ExecStart=(\S+/gatehoused) ', text, re.M).group(1)
    (folder / 'gatehouse.service').write_text(text.replace(installed, str(GATEHOUSED)))
    text = PAM_UNIT.read_text()
    installed = re.search(r'^ExecStart=(\S+/pam-helper)$', text, re.M).group(1)
    (folder / PAM_UNIT.name).write_text(
        text.replace(installed, str(BUILDDIR / 'modules' / 'pam' / 'pam-helper')))
    assert SOCKETS, 'no socket units in %s' % (SRCDIR / 'etc' / 'systemd')
    for s in SOCKETS:
        shutil.copy(s, folder / s.name)
    argv = ['systemd-analyze', 'verify', '--man=no', str(folder / 'gatehouse.service'),
            str(folder / PAM_UNIT.name)]
    argv += [str(folder / s.name) for s in SOCKETS]
    r = _run(argv)
    assert r.returncode == 0, r.stderr
    assert r.stderr == '', r.stderr
