"""`./quickstart demo` as a new user meets it: started with its ports moved
to free ones (GH_DEMO_*), the walk-through it prints is followed to the
letter: the printed swaks command sends alice's mail to bob through the
gateway's submission port, the printed IMAP lines read it back as bob through
the gateway's IMAP port and the printed POP3 lines through its POP3 port
(Postfix delivers into the maildirs Dovecot serves), and Ctrl-C (SIGINT to
the demo's process group) stops gatehoused and both backends.  Needs root
(the backends drop privileges), like the demo."""
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lib.clients import RawClient
from lib.net import connectable, free_port, wait_for
from lib.paths import BUILDDIR, SRCDIR

READ_TIMEOUT = 120  # the demo builds first (a no-op after quickstart's build)


class Demo:
    def __init__(self):
        self.ports = {k: free_port() for k in ('MX', 'SUBMISSION', 'IMAP', 'POP3', 'POSTFIX',
                                               'DOVECOT_IMAP', 'DOVECOT_SUBMISSION',
                                               'DOVECOT_POP3')}
        env = dict(os.environ, GH_BUILDDIR=str(BUILDDIR))
        env.update(('GH_DEMO_' + k, str(v)) for k, v in self.ports.items())
        self.proc = subprocess.Popen([str(SRCDIR / 'quickstart'), 'demo'], cwd=str(SRCDIR),
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.lines = queue.Queue()
        self.out = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors='replace').rstrip('\n'))
        self.lines.put(None)

    def until(self, pattern):
        """Output lines up to the one matching pattern (which is returned)."""
        deadline = time.monotonic() + READ_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError('demo output ended or stalled before /%s/:\n%s'
                                     % (pattern, '\n'.join(self.out[-60:])))
            self.out.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def interrupt(self, timeout=60):
        """Ctrl-C: SIGINT to the whole foreground group, as a terminal does."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


def printed_swaks(lines):
    """The swaks command of the walk-through, continuation lines joined."""
    for i, line in enumerate(lines):
        if line.strip().startswith('swaks ') and line.rstrip().endswith('\\'):
            cmd = line.rstrip()[:-1]
            for more in lines[i + 1:]:
                cmd += ' ' + more.strip().rstrip('\\')
                if not more.rstrip().endswith('\\'):
                    return shlex.split(cmd)
    raise AssertionError('no swaks command in the walk-through:\n' + '\n'.join(lines))


def printed_imap(lines, port):
    """The IMAP lines the walk-through says to type after `telnet ... port`,
    without their `-> what you see` notes."""
    start = [i for i, line in enumerate(lines) if line.strip() == 'telnet 127.0.0.1 %d' % port]
    assert start, 'no "telnet 127.0.0.1 %d" in the walk-through' % port
    cmds = []
    for line in lines[start[0] + 1:]:
        m = re.match(r'^\s+(a\d{3} .*?)(\s+->.*)?$', line)
        if not m:
            break
        cmds.append(m.group(1))
    return cmds


def imap_dialogue(port, cmds):
    """Type cmds one by one as telnet would; the whole transcript."""
    with RawClient(port) as c:
        seen = [c.raw_line().decode()]
        for cmd in cmds:
            c.line(cmd)
            tag = cmd.split()[0]
            while True:
                line = c.raw_line().decode()
                assert line, 'connection closed after %r:\n%s' % (cmd, ''.join(seen))
                seen.append(line)
                if line.startswith(tag + ' '):
                    break
        return ''.join(seen)


def printed_pop3(lines, port):
    """The POP3 lines the walk-through says to type after `telnet ... port`,
    without their `-> what you see` notes."""
    start = [i for i, line in enumerate(lines) if line.strip() == 'telnet 127.0.0.1 %d' % port]
    assert start, 'no "telnet 127.0.0.1 %d" in the walk-through' % port
    cmds = []
    for line in lines[start[0] + 1:]:
        m = re.match(r'^\s+([a-z]{4}(?: \S+)*?)(\s+->.*)?$', line)
        if not m:
            break
        cmds.append(m.group(1))
    return cmds


def pop3_multiline(cmd):
    """Whether a +OK to cmd is followed by lines up to a "." line."""
    words = cmd.lower().split()
    return words[0] in ('retr', 'top', 'capa') or (words[0] in ('list', 'uidl')
                                                   and len(words) == 1)


def pop3_dialogue(port, cmds):
    """Type cmds one by one as telnet would; the whole transcript."""
    with RawClient(port) as c:
        seen = [c.raw_line().decode()]
        for cmd in cmds:
            c.line(cmd)
            line = c.raw_line().decode()
            assert line, 'connection closed after %r:\n%s' % (cmd, ''.join(seen))
            seen.append(line)
            if line.startswith('+OK') and pop3_multiline(cmd):
                while line.rstrip('\r\n') != '.':
                    line = c.raw_line().decode()
                    assert line, 'connection closed in the answer to %r:\n%s' % (
                        cmd, ''.join(seen))
                    seen.append(line)
        return ''.join(seen)


def test_demo_round_trip():
    if os.geteuid() != 0:
        pytest.skip('the demo needs root (its backends drop privileges)')
    demo = Demo()
    demo_dir = None
    try:
        demo_dir = Path(demo.until(r'demo files in (\S+)').group(1))
        demo.until(r'^Ctrl-C stops gatehoused and the backends')
        text = demo.out
        sub, imap, pop3 = demo.ports['SUBMISSION'], demo.ports['IMAP'], demo.ports['POP3']
        assert ('Send on %d, read on %d with IMAP or on %d with POP3 (all through gatehouse):'
                % (sub, imap, pop3)) in text

        # gatehoused starts after the text; wait for its listeners
        wait_for(lambda: connectable(imap) and connectable(sub) and connectable(pop3),
                 timeout=60, what='the demo gatehoused listening')

        swaks = printed_swaks(text)
        assert swaks[:3] == ['swaks', '--server', '127.0.0.1:%d' % sub], swaks
        r = subprocess.run(swaks, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert '235 2.7.0 Authentication successful' in r.stdout, r.stdout

        cmds = printed_imap(text, imap)
        assert [c.split()[1] for c in cmds] == ['login', 'select', 'fetch', 'logout'], cmds

        # Postfix delivers on its own time: the walk-through, again until
        # the message is there (the delivery itself is not timed)
        def read_it():
            t = imap_dialogue(imap, cmds)
            return t if 'Subject: hello bob' in t else None
        transcript = wait_for(read_it, timeout=60, interval=0.5,
                              what="alice's mail in bob's INBOX through the gateway")
        assert re.search(r'^a001 OK ', transcript, re.M), transcript
        assert re.search(r'^\* 1 EXISTS', transcript, re.M), transcript
        assert re.search(r'^a004 OK ', transcript, re.M), transcript

        # the same message over POP3, as the walk-through types it (it is
        # delivered: IMAP has just shown it)
        cmds = printed_pop3(text, pop3)
        assert [c.split()[0] for c in cmds] == ['user', 'pass', 'stat', 'retr', 'quit'], cmds
        transcript = pop3_dialogue(pop3, cmds)
        replies = transcript.splitlines()
        assert replies[0] == '+OK gatehouse.demo ready.', transcript
        assert replies[1:3] == ['+OK', '+OK Logged in.'], transcript
        assert re.fullmatch(r'\+OK 1 \d+', replies[3]), transcript
        assert re.fullmatch(r'\+OK \d+ octets', replies[4]), transcript
        assert 'Subject: hello bob' in replies[5:], transcript
        assert replies[-2:] == ['.', '+OK Logging out.'], transcript

        rc = demo.interrupt()
        assert rc in (0, 130), '\n'.join(demo.out[-40:])
        # gatehoused, Postfix and Dovecot are gone with it (Postfix's smtpd
        # children leave a moment after their master)
        for port in (sub, imap, pop3, demo.ports['POSTFIX'], demo.ports['DOVECOT_IMAP'],
                     demo.ports['DOVECOT_POP3']):
            wait_for(lambda: not connectable(port), timeout=30,
                     what='port %d closed after Ctrl-C' % port)
    finally:
        if demo.proc.poll() is None:
            demo.kill()
        # the backends remove their own folders when they stop
        if demo_dir is not None and str(demo_dir).startswith('/tmp/gatehouse-demo.'):
            shutil.rmtree(demo_dir, ignore_errors=True)
