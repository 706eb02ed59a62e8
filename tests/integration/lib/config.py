"""The one writer of gatehouse.conf for every test, and of users files.

write_config(path, listeners, auths, backends, gatehouse=, tls=) writes

    [gatehouse]          hostname = gw.test, module_dir = the build's modules,
                         failure_delay = 0, workers = 2, a control socket of its
                         own (control_socket_path()), then `gatehouse`'s keys
    [listener NAME] ...  one group per entry of each dict, in the dict's order
    [auth NAME] ...
    [backend NAME] ...
    [tls]                when `tls` is given

each group a header, its `key = value` lines and a blank line.  A value of
None leaves its key out; True and False are written yes and no, a list or
tuple its items joined with spaces, anything else as str() makes it.
"""
import atexit
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lib.paths import GATEHOUSED, MODULE_DIR

GATEHOUSE_DEFAULTS = {'hostname': 'gw.test', 'module_dir': MODULE_DIR, 'failure_delay': '0',
                      'workers': '2'}

# Every gateway gets a control socket of its own: a Unix socket path must
# stay under 108 bytes, which a pytest tmp_path may not, so they live in one
# short directory of this process, removed when the process exits.
_CONTROL_DIR = None
_control_numbers = itertools.count(1)


def control_socket_path():
    """A fresh control socket path, unique in this run."""
    global _CONTROL_DIR
    if _CONTROL_DIR is None:
        _CONTROL_DIR = tempfile.mkdtemp(prefix='ghctl-', dir='/tmp')
        os.chmod(_CONTROL_DIR, 0o755)
        atexit.register(shutil.rmtree, _CONTROL_DIR, ignore_errors=True)
    return '%s/%d.sock' % (_CONTROL_DIR, next(_control_numbers))


def _value(v):
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, (list, tuple)):
        return ' '.join(str(x) for x in v)
    return str(v)


def write_config(path, listeners=None, auths=None, backends=None, gatehouse=None, tls=None):
    """A gatehouse.conf (mode 0644) from {name: {key: value}} dicts of
    listeners, auth groups and backends; gatehouse: keys of [gatehouse] over
    the defaults; tls: the keys of [tls].  Returns the path."""
    keys = dict(GATEHOUSE_DEFAULTS, control_socket=control_socket_path())
    groups = [('gatehouse', dict(keys, **(gatehouse or {})))]
    for kind, named in (('listener', listeners), ('auth', auths), ('backend', backends)):
        groups += [('%s %s' % (kind, name), keys) for name, keys in (named or {}).items()]
    if tls is not None:
        groups.append(('tls', tls))
    text = ''
    for header, keys in groups:
        text += '[%s]\n' % header
        text += ''.join('%s = %s\n' % (k, _value(v)) for k, v in keys.items() if v is not None)
        text += '\n'
    path = Path(path)
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def line_of(path, group, key=None):
    """The line number (from 1) of `[group]` in the file, or of `key` in
    that group."""
    inside = False
    for n, line in enumerate(Path(path).read_text().split('\n'), 1):
        if line.startswith('['):
            if inside:
                break
            inside = line == '[%s]' % group
            if inside and key is None:
                return n
        elif inside and key is not None and line.split('=', 1)[0].strip() == key:
            return n
    raise KeyError('%s: no [%s] %s' % (path, group, key or ''))


def users_file(path, users):
    """A gatehouse users file from {name: password} ({PLAIN} hashes), or
    {name: hash} when the value already starts with $ or {."""
    lines = []
    for name, pw in users.items():
        h = pw if pw.startswith(('$', '{')) else '{PLAIN}' + pw
        lines.append('%s:%s\n' % (name, h))
    Path(path).write_text(''.join(lines))
    return Path(path)


def file_auth(users_path):
    """The keys of an [auth] group of the file module reading users_path."""
    return {'module': 'file', 'path': users_path}


def check_backend(directory, backend):
    """gatehoused -t on a configuration of one listener, a file module and
    [backend b] with `backend`'s keys (its protocol the listener's): the
    CompletedProcess, for what the configuration refuses."""
    listener = {'protocol': backend['protocol'], 'listen': '127.0.0.1:1', 'auth': 'a',
                'backend': 'b'}
    conf = write_config(Path(directory) / 'gh.conf', {'l': listener},
                        {'a': {'module': 'file', 'path': '/dev/null'}}, {'b': backend})
    return subprocess.run([GATEHOUSED, '-t', '-c', str(conf)], capture_output=True, text=True,
                          timeout=30)
