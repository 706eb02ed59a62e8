#!/usr/bin/python3
"""A scripted IMAP server, the backend behind the packaged gatehoused.

    imap-backend.py PORTFILE USER PASSWORD

Listens on 127.0.0.1 at a port the kernel picks, writes the port to
PORTFILE, and serves until killed: a greeting with SASL-IR and AUTH=PLAIN,
CAPABILITY, ID, LOGIN (atoms and quoted strings), AUTHENTICATE PLAIN (with
or without the initial response), NOOP, LOGOUT.  One user, one password;
after a login NOOP answers "OK backend saw USER", so the client can tell
that its bytes went all the way through.
"""
import base64
import os
import socketserver
import sys

CAPS = 'IMAP4rev1 SASL-IR AUTH=PLAIN ID'


def words(line):
    """An IMAP command line's words: atoms and quoted strings."""
    out, i = [], 0
    while i < len(line):
        if line[i] == ' ':
            i += 1
        elif line[i] == '"':
            j, w = i + 1, ''
            while j < len(line) and line[j] != '"':
                if line[j] == '\\':
                    j += 1
                w += line[j]
                j += 1
            out.append(w)
            i = j + 1
        else:
            j = line.find(' ', i)
            j = len(line) if j < 0 else j
            out.append(line[i:j])
            i = j
    return out


class Handler(socketserver.StreamRequestHandler):
    def send(self, text):
        self.wfile.write(text.encode() + b'\r\n')
        self.wfile.flush()

    def check(self, tag, user, password):
        if user == self.server.user and password == self.server.password:
            self.user = user
            self.send(f'{tag} OK [CAPABILITY {CAPS}] Logged in')
        else:
            self.send(f'{tag} NO [AUTHENTICATIONFAILED] Authentication failed.')

    def handle(self):
        self.user = None
        self.send(f'* OK [CAPABILITY {CAPS}] scripted backend ready.')
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            w = words(raw.decode(errors='replace').rstrip('\r\n'))
            if len(w) < 2:
                self.send('* BAD no command')
                continue
            tag, cmd, args = w[0], w[1].upper(), w[2:]
            if cmd == 'CAPABILITY':
                self.send(f'* CAPABILITY {CAPS}')
                self.send(f'{tag} OK done')
            elif cmd == 'ID':
                self.send('* ID NIL')
                self.send(f'{tag} OK done')
            elif cmd == 'LOGIN' and len(args) == 2:
                self.check(tag, args[0], args[1])
            elif cmd == 'AUTHENTICATE' and args and args[0].upper() == 'PLAIN':
                if len(args) > 1:
                    resp = args[1]
                else:
                    self.send('+ ')
                    resp = self.rfile.readline().decode().strip()
                try:
                    _, user, password = base64.b64decode(resp).decode().split('\0')
                except ValueError:
                    self.send(f'{tag} BAD bad response')
                    continue
                self.check(tag, user, password)
            elif cmd == 'NOOP':
                self.send(f'{tag} OK backend saw {self.user or "nobody"}')
            elif cmd == 'LOGOUT':
                self.send('* BYE bye')
                self.send(f'{tag} OK done')
                return
            else:
                self.send(f'{tag} BAD unknown command')


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    portfile, user, password = sys.argv[1:4]
    srv = Server(('127.0.0.1', 0), Handler)
    srv.user, srv.password = user, password
    tmp = portfile + '.tmp'
    with open(tmp, 'w') as f:
        f.write(f'{srv.server_address[1]}\n')
    os.rename(tmp, portfile)
    srv.serve_forever()


if __name__ == '__main__':
    main()
