"""The line clients of the tests: exact bytes out, lines in.

RawClient    a TCP connection to 127.0.0.1 (plaintext, implicit TLS, or
             STARTTLS later), a transcript of what went each way, the reads
             with their deadlines, and the checks on what the server sends
             when it should send nothing or close;
SmtpClient   adds SMTP replies (lists of lines);
ImapClient   adds IMAP responses (lines up to the tagged one).

A line the server sends must end in CRLF; it comes back without it (str,
latin-1: every byte as it came).  Reads wait at most the client's timeout
(TIMEOUT unless given) and fail with the transcript and, when the client
knows its gateway (gw=), the gateway's log since the connection.

A client keeps the secrets (secret()) the test sent, for
assert_no_secrets() on the daemon's log; secret_forms() are the forms a
user's password could leak in.
"""
import base64
import re
import socket
import ssl
import time

from lib.net import TIMEOUT
from lib.pki import fingerprint

CLOSED = '<connection closed>'  # ImapClient.response(): EOF before the tagged line


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def plain_blob(user, password, authzid=''):
    """The SASL PLAIN response, base64."""
    return b64('%s\0%s\0%s' % (authzid, user, password))


def imap_quote(s):
    """An IMAP quoted string."""
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


def secret_forms(user, password):
    """Every form in which a password could leak into a log."""
    return {password, b64(password), plain_blob(user, password),
            plain_blob(user, password, user)}


def assert_no_secrets(text, pairs=(), where='daemon log', secrets=()):
    """No secret_forms() of the (user, password) pairs (empty passwords
    skipped) and none of `secrets` as given in text."""
    forms = set(s for s in secrets if s)
    for user, password in pairs:
        if password:
            forms |= secret_forms(user, password)
    for form in sorted(forms):
        assert form not in text, 'the %s holds a secret %r:\n%s' % (where, form, text[-3000:])


def _shown(data):
    return data if len(data) < 300 else data[:300] + b'...'


class RawClient:
    """port: on 127.0.0.1.  secrets: a list shared with the test's gateway.
    gw: a lib.gateway.Gateway, whose log the failures show.  eol: what
    line() ends a line with.  source: the local address to connect from.
    nodelay: TCP_NODELAY.  tls: an ssl context for implicit TLS (the
    handshake is done before the constructor returns), server_hostname its
    SNI and the name checked."""

    def __init__(self, port, secrets=None, gw=None, eol='\r\n', timeout=TIMEOUT, source=None,
                 nodelay=False, tls=None, server_hostname='127.0.0.1'):
        self.gw = gw
        self.mark = gw.mark() if gw else 0
        self.eol = eol
        self.timeout = timeout
        self.secrets = secrets if secrets is not None else []
        self.transcript = []
        self.buf = b''
        self.drained = b''
        self.raw = socket.create_connection(('127.0.0.1', port), timeout=timeout,
                                            source_address=(source, 0) if source else None)
        if nodelay:
            self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.raw
        self.tls = False
        if tls is not None:
            self.starttls(tls, server_hostname)

    def close(self, reset=False):
        """reset: with SO_LINGER 0, so that the server sees a reset."""
        for s in (self.sock, self.raw):
            try:
                if reset:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\1\0\0\0\0\0\0\0')
                s.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def local_port(self):
        return self.raw.getsockname()[1]

    # -- diagnostics

    def ctx(self):
        """The transcript's end and the gateway's log since the connection."""
        out = '\n'.join(self.transcript[-60:])
        if self.gw:
            out += '\n--- gatehoused log since the connection:\n' + self.gw.since(self.mark)[-3000:]
        return out

    def fail(self, msg):
        raise AssertionError('%s\n--- transcript:\n%s' % (msg, self.ctx()))

    def secret(self, *texts):
        """Remember what must never show in the daemon's log."""
        self.secrets.extend(texts)

    # -- TLS

    def starttls(self, ctx, server_hostname='127.0.0.1'):
        if self.buf:
            self.fail('plaintext received before the TLS handshake, not yet read: %r' % self.buf)
        try:
            self.sock = ctx.wrap_socket(self.raw, server_hostname=server_hostname)
        except (ssl.SSLError, OSError) as e:
            self.fail('TLS handshake failed: %r' % e)
        self.sock.settimeout(self.timeout)
        self.tls = True
        self.transcript.append('-- TLS %s %s' % (self.sock.version(), self.sock.cipher()[0]))

    def peer_fingerprint(self):
        return fingerprint(self.sock.getpeercert(True))

    # -- out

    def send(self, data):
        """data (str: latin-1) exactly as given."""
        if isinstance(data, str):
            data = data.encode('latin-1')
        self.transcript.append('C: %r' % _shown(data))
        self.sock.sendall(data)

    def line(self, text, eol=None):
        """text and a line end: eol, or the client's."""
        eol = self.eol if eol is None else eol
        if isinstance(text, str):
            text = text.encode('latin-1')
        if isinstance(eol, str):
            eol = eol.encode('latin-1')
        self.send(text + eol)

    # -- in

    def _fill(self, deadline):
        """More bytes into self.buf; False when the server closed (or reset);
        socket.timeout past the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            chunk = b''
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def raw_line(self, timeout=None):
        """The next line as bytes with its line end, as a file's readline()
        gives it: what is left when the server closes without one, then b'';
        socket.timeout when nothing of the kind comes within timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b'\n' not in self.buf:
            if not self._fill(deadline):
                raw, self.buf = self.buf, b''
                if raw:
                    self.transcript.append('S: %r (then EOF)' % _shown(raw))
                return raw
        raw, self.buf = self.buf.split(b'\n', 1)
        raw += b'\n'
        self.transcript.append('S: %r' % _shown(raw))
        return raw

    def next_line(self, timeout=None, got=()):
        """The next line without its CRLF, or None when the server closed
        before sending one.  `got` (the lines of the reply so far) only shows
        in the failure when no line comes."""
        timeout = self.timeout if timeout is None else timeout
        try:
            raw = self.raw_line(timeout)
        except socket.timeout:
            self.fail('no complete line within %.0f s; lines so far: %r; partial: %r'
                      % (timeout, list(got), self.buf))
        if raw == b'':
            return None
        if not raw.endswith(b'\n'):
            self.fail('connection closed by the server; lines so far: %r; partial: %r'
                      % (list(got), raw))
        if not raw.endswith(b'\r\n'):
            self.fail('line not ended by CRLF: %r' % raw)
        return raw[:-2].decode('latin-1')

    def read_line(self, timeout=None, got=()):
        """The next line without its CRLF; fails when the server closes."""
        line = self.next_line(timeout, got)
        if line is None:
            self.fail('connection closed by the server; lines so far: %r' % (list(got),))
        return line

    def read_bytes(self, n, timeout=None):
        """Up to n bytes (fewer only when the server closes first), as a
        file's read(n) gives them."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while len(self.buf) < n and self._fill(deadline):
                pass
        except socket.timeout:
            self.fail('not %d bytes within %.0f s, only %d'
                      % (n, self.timeout if timeout is None else timeout, len(self.buf)))
        data, self.buf = self.buf[:n], self.buf[n:]
        self.transcript.append('S: %d bytes' % len(data))
        return data

    # -- silence and the end

    def nothing_pending(self, wait=0.3):
        """Nothing arrives within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            chunk = None
        except (ConnectionResetError, ssl.SSLError) as e:
            self.fail('connection failed while expecting silence: %r' % e)
        finally:
            self.sock.settimeout(self.timeout)
        if chunk is not None or self.buf:
            self.fail('unexpected data, nothing was asked: %r' % (self.buf + (chunk or b'')))

    def closed_within(self, timeout=None):
        """Seconds until the server closed (EOF or reset); what came before
        is kept in self.drained.  Fails when still open after timeout."""
        timeout = self.timeout if timeout is None else timeout
        start = time.monotonic()
        deadline = start + timeout
        try:
            while self._fill(deadline):
                pass
        except socket.timeout:
            self.fail('server did not close within %.0f s; received %r' % (timeout, self.buf))
        took = time.monotonic() - start
        self.drained, self.buf = self.buf, b''
        if self.drained:
            self.transcript.append('S: %r (then EOF)' % _shown(self.drained))
        return took

    def until_close(self, timeout=None):
        """Every line until the server closes (a line ended by a bare LF
        keeps its '\\n'; a last one without a line end comes as
        '<no line end: b'...'>')."""
        self.closed_within(timeout)
        *lines, last = self.drained.split(b'\n')
        got = [ln[:-1].decode('latin-1') if ln.endswith(b'\r') else ln.decode('latin-1') + '\n'
               for ln in lines]
        if last:
            got.append('<no line end: %r>' % last)
        return got

    def expect_close(self, timeout=None):
        """The server closes the connection without sending anything more."""
        self.closed_within(timeout)
        if self.drained:
            self.fail('data after the last reply before close: %r' % self.drained)

    def eof(self, timeout=None):
        """True once the server has closed the connection with nothing more
        sent; False when data comes or it stays open for timeout."""
        if self.buf:
            return False
        try:
            return not self._fill(time.monotonic() + (self.timeout if timeout is None else timeout))
        except socket.timeout:
            return False


class SmtpClient(RawClient):
    """greet: read the greeting (self.greeting) at once."""

    def __init__(self, port, secrets=None, greet=False, **kw):
        super().__init__(port, secrets, **kw)
        self.greeting = self.reply() if greet else None

    def reply(self, timeout=None):
        """One reply: lines until one whose 4th character is a space (or that
        is only a code)."""
        lines = []
        while True:
            line = self.read_line(timeout, lines)
            lines.append(line)
            if len(line) < 4 or line[3] != '-':
                return lines

    def cmd(self, text, eol=None, timeout=None):
        self.line(text, eol)
        return self.reply(timeout)

    def expect(self, text, want):
        """Send text (unless None); the reply must be `want`: a list of
        lines (all of them), a str (the last line) or an int (the last
        line's code).  Returns the reply."""
        got = self.cmd(text) if text is not None else self.reply()
        if isinstance(want, int):
            ok = got[-1][:3] == str(want) and got[-1][3:4] in ('', ' ')
        elif isinstance(want, str):
            ok = got[-1] == want
        else:
            ok = got == want
        if not ok:
            self.fail('after %r: got %r, want %r' % (text, got, want))
        return got

    def ehlo(self, name='client.example.org', hostname='gw.test'):
        """The EHLO keywords (a set)."""
        lines = self.expect('EHLO ' + name, 250)
        if lines[0] != '250-' + hostname and lines != ['250 ' + hostname]:
            self.fail('EHLO: first line %r, want 250-%s' % (lines[0], hostname))
        return {ln[4:] for ln in lines[1:]}

    def auth_plain(self, user, password, authzid='', timeout=None):
        """The last line of the reply to AUTH PLAIN with an initial response."""
        return self.cmd('AUTH PLAIN ' + plain_blob(user, password, authzid), timeout=timeout)[-1]


class ImapClient(RawClient):
    """greet: read the greeting line (self.greeting) at once."""

    def __init__(self, port, secrets=None, greet=False, **kw):
        super().__init__(port, secrets, **kw)
        self.greeting = self.read_line() if greet else None

    def response(self, tag, timeout=None):
        """Lines up to and including the one tagged `tag`, or a continuation
        request ('+ ...').  If the server closes first, the lines got and
        CLOSED."""
        got = []
        while True:
            line = self.next_line(timeout, got)
            if line is None:
                return got + [CLOSED]
            got.append(line)
            if line.startswith(tag + ' ') or line == tag or line.startswith('+'):
                return got

    def cmd(self, text, eol=None, timeout=None):
        """Send the command line text; its response()."""
        self.line(text, eol)
        return self.response(text.split(' ', 1)[0], timeout)

    def tagged(self, tag, timeout=None):
        """(untagged lines, the tagged line) up to the line tagged `tag`;
        every line before it must be untagged ('* ...')."""
        untagged = []
        while True:
            line = self.read_line(timeout)
            if line.startswith(tag + ' '):
                return untagged, line
            if not line.startswith('* '):
                self.fail('waiting for %r: unexpected line %r' % (tag, line))
            untagged.append(line)

    def expect(self, line, want, tag=None, untagged=None):
        """Send line (unless None); the reply tagged `tag` (default: the
        line's first word) must be `want` (a str: exactly, after the tag; a
        compiled regular expression: matching the whole tagged line), and
        the untagged lines before it `untagged` when given.  Returns
        (untagged, tagged)."""
        if line is not None:
            self.line(line)
            tag = tag or (line if isinstance(line, str) else line.decode('latin-1')).split(' ', 1)[0]
        got, tagged = self.tagged(tag)
        if hasattr(want, 'match'):
            if not want.match(tagged):
                self.fail('after %r: got %r, want /%s/' % (line, tagged, want.pattern))
        elif tagged != tag + ' ' + want:
            self.fail('after %r: got %r, want %r' % (line, tagged, tag + ' ' + want))
        if untagged is not None and got != untagged:
            self.fail('after %r: untagged lines %r, want %r' % (line, got, untagged))
        return got, tagged

    def continuation(self, exact=None):
        """The next line must be a continuation request ('+ ...', or exact)."""
        line = self.read_line()
        if exact is not None:
            if line != exact:
                self.fail('want continuation %r, got %r' % (exact, line))
        elif not line.startswith('+'):
            self.fail('want a continuation "+ ...", got %r' % line)
        return line

    def greeting_caps(self, hostname='gw.test'):
        """Read the greeting; it must be '* OK [CAPABILITY ...] HOSTNAME
        ready.'; its capabilities (a list)."""
        self.greeting = g = self.read_line()
        m = re.fullmatch(r'\* OK \[CAPABILITY ([^\]]*)\] %s ready\.' % re.escape(hostname), g)
        if not m:
            self.fail('greeting %r, want "* OK [CAPABILITY ...] %s ready."' % (g, hostname))
        return m.group(1).split()

    def capability(self, tag='c'):
        """The capabilities CAPABILITY lists (a list)."""
        lines = self.cmd('%s CAPABILITY' % tag)
        if len(lines) != 2 or not lines[0].startswith('* CAPABILITY ') \
                or lines[1] != '%s OK Capability completed.' % tag:
            self.fail('CAPABILITY: got %r' % lines)
        return lines[0][len('* CAPABILITY '):].split()

    def login(self, user, password, tag='a'):
        """LOGIN with quoted strings: the tagged reply without its tag."""
        return self.command('%s LOGIN %s %s' % (tag, imap_quote(user), imap_quote(password)))

    def authenticate_plain(self, user, password, tag='a'):
        """AUTHENTICATE PLAIN with an initial response: the tagged reply
        without its tag."""
        return self.command('%s AUTHENTICATE PLAIN %s' % (tag, plain_blob(user, password)))

    def command(self, line):
        """Send the command line; the reply tagged with its tag, without
        the tag."""
        tag = line.split(' ', 1)[0]
        self.line(line)
        return self.tagged(tag)[1][len(tag) + 1:]


class Pop3Client(RawClient):
    """greet: read the greeting line (self.greeting) at once."""

    def __init__(self, port, secrets=None, greet=False, **kw):
        super().__init__(port, secrets, **kw)
        self.greeting = self.read_line() if greet else None

    def cmd(self, text, eol=None, timeout=None):
        """Send the command line text; the status line that answers it."""
        self.line(text, eol)
        return self.read_line(timeout)

    def body(self, timeout=None):
        """The lines of a multi-line response after its status line, up to
        the "." line (not included), dot-unstuffed."""
        lines = []
        while True:
            line = self.read_line(timeout, lines)
            if line == '.':
                return lines
            lines.append(line[1:] if line.startswith('.') else line)

    def expect(self, text, want):
        """Send text (unless None); the status line must be `want` (a str:
        exactly; a compiled regular expression: matching the whole line).
        Returns it."""
        got = self.cmd(text) if text is not None else self.read_line()
        ok = want.fullmatch(got) if hasattr(want, 'fullmatch') else got == want
        if not ok:
            self.fail('after %r: got %r, want %r' % (text, got, getattr(want, 'pattern', want)))
        return got

    def capa(self):
        """CAPA's list (the lines of its body)."""
        self.expect('CAPA', '+OK Capability list follows.')
        return self.body()

    def user_pass(self, user, password):
        """USER then PASS: the status line that answers PASS."""
        self.expect('USER ' + user, '+OK')
        return self.cmd('PASS ' + password)
