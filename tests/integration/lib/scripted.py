"""Small scripted servers on 127.0.0.1, for a gateway to talk to in place of
a real backend.

Server       a port the kernel picks, a thread per connection running
             handler(conn) (or the subclass's serve(conn)); counts
             connections; close() stops it and closes what is still open;
silent       a handler that reads and never answers;
SmtpServer   greets, answers EHLO (with XCLIENT if asked) and everything
             else, records the lines;
ImapServer   greets, takes LOGIN (atoms, quoted strings, literals) and
             AUTHENTICATE PLAIN before login, refusing the users in
             `refuse`; after login answers OK to anything; records logins;
Relay        a handler that passes bytes between the client and a real
             server, optionally with the server's greeting replaced and
             what the client sends recorded; cut() breaks every relayed
             connection at once.
"""
import base64
import re
import socket
import threading


class Server:
    def __init__(self, handler=None, timeout=60):
        """handler(conn) for each connection (default: self.serve), with
        the socket timeout `timeout`; the connection is closed after."""
        self.handler = handler or self.serve
        self.timeout = timeout
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(('127.0.0.1', 0))
        self.srv.listen(512)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            # (close() may have closed conn already, before this thread ran)
            conn.settimeout(self.timeout)
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stopping = True
        self.srv.close()
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def lines_of(conn):
    """The lines (bytes, with their line ends) a connection sends, to EOF."""
    f = conn.makefile('rb')
    while True:
        line = f.readline()
        if not line:
            return
        yield line


def silent(conn):
    """Accepts, never says a word."""
    for _ in lines_of(conn):
        pass


class SmtpServer(Server):
    """220, 250 to EHLO and to everything else, 354 to DATA and 250 after
    its '.', 221 to QUIT.  NOOP and other commands are answered with `name`
    ('250 2.0.0 NAME NOOP', '250 2.0.0 NAME OK').  xclient: EHLO offers
    XCLIENT, answered 220 as Postfix does.  auth: EHLO offers AUTH PLAIN
    LOGIN, and AUTH is answered with this line (bytes, without its end).
    Records every line it receives (self.received)."""

    def __init__(self, name='backend', xclient=False, auth=None):
        self.name = name.encode()
        self.xclient = xclient
        self.auth = auth
        self.received = []
        super().__init__()

    def serve(self, conn):
        conn.sendall(b'220 fake.backend ESMTP\r\n')
        in_data = False
        for raw in lines_of(conn):
            line = raw.decode('latin-1').rstrip('\r\n')
            self.received.append(line)
            if in_data:
                if line == '.':
                    in_data = False
                    conn.sendall(b'250 2.0.0 queued\r\n')
                continue
            verb = line.split(' ', 1)[0].upper()
            if verb == 'EHLO':
                conn.sendall(b'250-fake.backend\r\n' +
                             (b'250-AUTH PLAIN LOGIN\r\n' if self.auth else b'') +
                             (b'250 8BITMIME\r\n' if not self.xclient else
                              b'250-8BITMIME\r\n'
                              b'250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n'))
            elif verb == 'AUTH' and self.auth:
                conn.sendall(self.auth + b'\r\n')
            elif verb == 'XCLIENT' and self.xclient:
                conn.sendall(b'220 fake.backend ESMTP after XCLIENT\r\n')
            elif verb == 'QUIT':
                conn.sendall(b'221 2.0.0 fake Bye\r\n')
                return
            elif verb == 'DATA':
                in_data = True
                conn.sendall(b'354 go ahead\r\n')
            elif verb == 'NOOP':
                conn.sendall(b'250 2.0.0 %s NOOP\r\n' % self.name)
            else:
                conn.sendall(b'250 2.0.0 %s OK\r\n' % self.name)

    def xclient_login(self):
        """The LOGIN= of the first XCLIENT received, or None."""
        for line in self.received:
            m = re.search(r'^XCLIENT .*\bLOGIN=(\S+)', line)
            if m:
                return m.group(1)
        return None


def _tokens(text):
    """A rough IMAP tokenizer: atoms, quoted strings (unescaped), parens as
    atoms.  bytes in, list of bytes out."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i:i + 1]
        if ch == b' ':
            i += 1
        elif ch == b'"':
            i += 1
            v = b''
            while i < n and text[i:i + 1] != b'"':
                if text[i:i + 1] == b'\\' and i + 1 < n:
                    i += 1
                v += text[i:i + 1]
                i += 1
            i += 1
            out.append(v)
        else:
            j = i
            while j < n and text[j:j + 1] != b' ':
                j += 1
            out.append(text[i:j])
            i = j
    return out


class ImapServer(Server):
    """Greets with SASL-IR, LITERAL+, AUTH=PLAIN, ID; answers ID, CAPABILITY,
    NOOP, LOGIN and AUTHENTICATE PLAIN (with or without an initial response)
    before login, refusing the users in `refuse`; after login answers
    'TAG OK NAME <line>' to anything and BYE + OK to LOGOUT.  Records logins
    as (method, authzid, user, password) (bytes), every first line of a
    command (self.received) and the command lines after login
    (self.after_login)."""

    CAPS = b'IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN ID'

    def __init__(self, name='fake', refuse=(), on_command=None):
        """on_command: called as on_command(conn, tag, name, first line)
        for each command after login; True when it answered the command
        itself (the usual answer is not sent)."""
        self.name = name.encode()
        self.refuse = set(refuse)
        self.on_command = on_command
        self.logins = []
        self.received = []
        self.after_login = []
        super().__init__()

    def users(self):
        """The users logged in, in order (str)."""
        return [user.decode('latin-1') for _, _, user, _ in self.logins]

    @staticmethod
    def _read_command(f, conn):
        """(first line text, tokens) of one command, literals included."""
        tokens, first = [], None
        while True:
            raw = f.readline()
            if not raw:
                return None, None
            line = raw.rstrip(b'\r\n')
            if first is None:
                first = line
            m = re.search(rb'\{(\d+)(\+?)\}$', line)
            tokens += _tokens(line[:m.start()] if m else line)
            if not m:
                return first.decode('latin-1'), tokens
            if not m.group(2):
                conn.sendall(b'+ OK\r\n')
            tokens.append(f.read(int(m.group(1))))

    def _check(self, conn, tag, method, authzid, user, password):
        with self.lock:
            self.logins.append((method, authzid, user, password))
        if user.decode('latin-1') in self.refuse:
            conn.sendall(b'%s NO [AUTHENTICATIONFAILED] fake refuses\r\n' % tag)
            return False
        conn.sendall(b'%s OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n' % tag)
        return True

    def serve(self, conn):
        authed = False
        f = conn.makefile('rb')
        conn.sendall(b'* OK [CAPABILITY %s] %s ready\r\n' % (self.CAPS, self.name))
        while True:
            first, toks = self._read_command(f, conn)
            if first is None:
                return
            self.received.append(first)
            if len(toks) < 2:
                conn.sendall(b'* BAD fake: no command\r\n')
                continue
            tag, name, args = toks[0], toks[1].upper(), toks[2:]
            rest = first.split(' ', 1)[1] if ' ' in first else ''
            if authed:
                self.after_login.append(first)
                if self.on_command is not None and self.on_command(conn, tag, name, first):
                    continue
                if name == b'LOGOUT':
                    conn.sendall(b'* BYE fake bye\r\n%s OK %s LOGOUT\r\n' % (tag, self.name))
                    return
                conn.sendall(b'%s OK %s %s\r\n' % (tag, self.name, rest.encode('latin-1')))
                continue
            if name == b'CAPABILITY':
                conn.sendall(b'* CAPABILITY %s\r\n%s OK CAPABILITY done\r\n' % (self.CAPS, tag))
            elif name == b'ID':
                conn.sendall(b'* ID NIL\r\n%s OK ID done\r\n' % tag)
            elif name == b'NOOP':
                conn.sendall(b'%s OK NOOP done\r\n' % tag)
            elif name == b'LOGOUT':
                conn.sendall(b'* BYE fake bye\r\n%s OK LOGOUT done\r\n' % tag)
                return
            elif name == b'LOGIN' and len(args) == 2:
                authed = self._check(conn, tag, 'LOGIN', b'', args[0], args[1])
            elif name == b'AUTHENTICATE' and args and args[0].upper() == b'PLAIN':
                if len(args) >= 2:
                    blob = args[1]
                else:
                    conn.sendall(b'+ \r\n')
                    blob = f.readline().rstrip(b'\r\n')
                try:
                    authzid, user, password = base64.b64decode(blob, validate=True).split(b'\0')
                except Exception:
                    conn.sendall(b'%s BAD fake: bad PLAIN\r\n' % tag)
                    continue
                authed = self._check(conn, tag, 'PLAIN', authzid, user, password)
            else:
                conn.sendall(b'%s BAD fake: not before login\r\n' % tag)


class Relay:
    """A Server handler relaying to 127.0.0.1:port.  greeting: bytes sent to
    the client in place of the server's first line (read byte by byte, so
    that nothing more is read ahead); sent: a list to which every chunk the
    client sends is appended; back: the same for what the server sends.
    When one side ends, the other is told (its sending half shut down)."""

    def __init__(self, port, greeting=None, sent=None, back=None, gate=None):
        self.port = port
        self.greeting = greeting
        self.sent = sent
        self.back = back
        self.gate = gate  # a threading.Event: the server's answers wait for it
        self.socks = []
        self.lock = threading.Lock()

    def __call__(self, conn):
        up = socket.create_connection(('127.0.0.1', self.port), timeout=15)
        with self.lock:
            self.socks += [conn, up]
        try:
            if self.greeting is not None:
                greeting = b''
                while not greeting.endswith(b'\n'):
                    ch = up.recv(1)
                    if not ch:
                        return
                    greeting += ch
                conn.sendall(self.greeting)
            t = threading.Thread(target=self._pump, args=(up, conn, self.back, self.gate),
                                 daemon=True)
            t.start()
            self._pump(conn, up, self.sent)
            t.join(15)
        finally:
            up.close()

    @staticmethod
    def _pump(src, dst, record=None, gate=None):
        """gate: what comes after the first chunk (the greeting) waits
        until it is set."""
        first = True
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record is not None:
                    record.append(data)
                if gate is not None and not first:
                    gate.wait(30)
                first = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def cut(self):
        """Break every relayed connection (both sides), as a backend crash
        would."""
        with self.lock:
            for sk in self.socks:
                try:
                    sk.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class RecordingRelay:
    """A relay to a real server on 127.0.0.1:port that records what the
    gateway sends it (and what the server sends back), connection by
    connection in the order they were accepted, and counts the relayed
    connections that have ended."""

    def __init__(self, port):
        self.ended = 0
        self._records = []
        self._backs = []
        self._relays = []
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()

        def handler(conn):
            rec, back = [], []
            relay = Relay(port, sent=rec, back=back, gate=self._gate)
            with self._lock:
                self._records.append(rec)
                self._backs.append(back)
                self._relays.append(relay)
            try:
                relay(conn)
            finally:
                with self._lock:
                    self.ended += 1
        self.server = Server(handler)

    @property
    def port(self):
        return self.server.port

    def connections(self):
        """How many connections the gateway has made."""
        with self._lock:
            return len(self._records)

    def text(self, i=None):
        """What the gateway sent on the i-th connection (from 0), or on all
        of them one after the other."""
        with self._lock:
            records = self._records if i is None else [self._records[i]]
            return b''.join(b''.join(r) for r in records)

    def from_server(self, i):
        """What the server has sent the gateway on the i-th connection (so
        far): its greeting is through once this holds a line end."""
        with self._lock:
            return b''.join(self._backs[i])

    def hold(self):
        """From now on the server's answers (all it sends after its
        greeting) wait, on every connection, until release()."""
        self._gate.clear()

    def release(self):
        self._gate.set()

    def cut(self):
        """Break every relayed connection, as a backend restart would."""
        with self._lock:
            relays = list(self._relays)
        for r in relays:
            r.cut()

    def close(self):
        self._gate.set()
        self.server.close()
