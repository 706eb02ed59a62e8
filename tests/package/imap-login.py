#!/usr/bin/python3
"""Log in through gatehoused over IMAP and check what comes back.

    imap-login.py PORT USER PASSWORD ok|no

ok: LOGIN must succeed with the backend's (Dovecot's) OK, relayed, and a
SELECT INBOX after it must be answered by Dovecot.  no: LOGIN must fail with a
tagged NO from gatehoused.  Exit status 0 when it went as expected; the
dialogue is printed either way.
"""
import socket
import sys


def main():
    port, user, password, want = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    s = socket.create_connection(('127.0.0.1', int(port)), timeout=30)
    f = s.makefile('rwb')

    def send(line):
        print('C:', line)
        f.write(line.encode() + b'\r\n')
        f.flush()

    def tagged(tag):
        while True:
            line = f.readline().decode(errors='replace').rstrip('\r\n')
            if not line:
                raise SystemExit('connection closed')
            print('S:', line)
            if line.startswith(tag + ' '):
                return line

    greeting = f.readline().decode(errors='replace').rstrip('\r\n')
    print('S:', greeting)
    if not greeting.startswith('* OK'):
        return 1
    # quoted strings: the password may hold characters an atom may not
    q = lambda x: '"' + x.replace('\\', '\\\\').replace('"', '\\"') + '"'
    send(f'a1 LOGIN {q(user)} {q(password)}')
    r = tagged('a1')
    if want == 'no':
        return 0 if r.startswith('a1 NO') else 1
    if not (r.startswith('a1 OK') and 'Logged in' in r):
        return 1
    send('a2 SELECT INBOX')
    r = tagged('a2')
    if not r.startswith('a2 OK [READ-WRITE]'):
        return 1
    send('a3 LOGOUT')
    tagged('a3')
    return 0


if __name__ == '__main__':
    sys.exit(main())
