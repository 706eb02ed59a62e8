#!/usr/bin/python3
"""A real Dovecot, the backend behind the packaged gatehoused.

    dovecot-backend.py PORTFILE USER PASSWORD

Starts the tests' private Dovecot (tests/integration/backends.py: root
mode, its own folder, IMAP on 127.0.0.1 at a port chosen now) with USER's
password PASSWORD, writes its IMAP port to PORTFILE, and
serves until SIGTERM or SIGINT; then stops Dovecot by its PID and removes
its folder.
"""
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'integration'))

from backends import Dovecot  # noqa: E402
from lib.net import free_port  # noqa: E402


class OneUser(Dovecot):
    """backends.Dovecot with USER's password set to PASSWORD (USER added
    when it is not one of its own)."""

    def __init__(self, user, password):
        super().__init__(relay_port=free_port())
        self.user, self.password = user, password

    def write_config(self):
        super().write_config()
        users = self.dir / 'users'
        lines = [ln for ln in users.read_text().splitlines()
                 if ln.split(':', 1)[0] != self.user]
        lines.append('%s:{PLAIN}%s::::::' % (self.user, self.password))
        users.write_text('\n'.join(lines) + '\n')


def main(argv):
    if len(argv) != 4:
        print('usage: dovecot-backend.py PORTFILE USER PASSWORD', file=sys.stderr)
        return 64
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *a: stop.append(1))
    dc = OneUser(argv[2], argv[3]).start()
    try:
        Path(argv[1]).write_text('%d\n' % dc.imap_port)
        while not stop:
            time.sleep(0.2)
    finally:
        dc.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
