"""
The raw-socket plumbing the front-end tests' clients share
(test_smtp_frontend.py, test_imap_frontend.py): exact bytes out, lines in,
and the checks on what the server sends when it should send nothing.

Lines come back with their CRLF stripped; a line ended by a bare LF keeps
its '\\n', so that it shows in an assertion.  Each protocol's client adds
its own notion of a reply on top.
"""
import socket
import time

# every socket operation of a test client: generous, since only a failing
# test waits it out, and a busy machine (valgrind, a second check) is slow
TIMEOUT = 30.0


class RawClient:
    def __init__(self, port, secrets=None):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)
        self.sock.settimeout(TIMEOUT)
        self.buf = b''
        self.secrets = secrets if secrets is not None else []

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode('latin-1')
        self.sock.sendall(data)

    def line(self, text, eol='\r\n'):
        self.send(text + eol)

    def secret(self, *texts):
        """Remember what must never show in the daemon's log."""
        self.secrets.extend(texts)

    def _fill(self, deadline):
        """More bytes into self.buf; False on EOF/reset; socket.timeout
        past the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b''
        finally:
            self.sock.settimeout(TIMEOUT)
        if not chunk:
            return False
        self.buf += chunk
        return True

    @staticmethod
    def _text(raw):
        text = raw.decode('latin-1')
        return text[:-1] if text.endswith('\r') else text + '\n'

    def read_line(self, timeout=TIMEOUT, got=()):
        """The next line; `got` (the lines of the reply so far) only shows
        in the assertion when none comes."""
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buf:
            try:
                if not self._fill(deadline):
                    raise AssertionError('connection closed by the server; lines so far: %r; '
                                         'partial: %r' % (list(got), self.buf))
            except socket.timeout:
                raise AssertionError('no complete line within %.0f s; lines so far: %r; '
                                     'partial: %r' % (timeout, list(got), self.buf)) from None
        raw, self.buf = self.buf.split(b'\n', 1)
        return self._text(raw)

    def nothing_pending(self, wait=0.3):
        """No reply arrives within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            chunk = None
        finally:
            self.sock.settimeout(TIMEOUT)
        assert chunk is None and self.buf == b'', 'unexpected data: %r' % (self.buf + (chunk or b''))
