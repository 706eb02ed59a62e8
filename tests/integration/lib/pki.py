"""A throw-away PKI for the tests: a test CA and certificates it signed, made
with the openssl command line.

Pki(directory=None): in a temp dir under /tmp unless given (mode 0755, files
0644, so that Postfix, Dovecot, slapd and gatehoused running as another user
can read them), with
    pki.ca_crt / pki.ca_key          the test CA ("gatehouse test CA")
    pki.server_crt / pki.server_key  CN=localhost, SAN DNS:localhost, IP:127.0.0.1
    pki.other_crt / pki.other_key    CN=other.example, SAN DNS:other.example only
                                     (no IP SAN: a client checking 127.0.0.1 or
                                     localhost against it must refuse it)
    pki.issue(name, dns=[...], ips=[...]) -> (crt, key)  one more, same CA
    pki.untrusted_ca()               a second CA that signed nothing here
and the helpers fingerprint(path_or_pem_or_der) (SHA-256 of the DER, lower
case hex) and client_context(pki) (a Python ssl context trusting only the
test CA, checking host names).
"""
import hashlib
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path

from lib.proc import make_tmpdir

OPENSSL = 'openssl'


def _run(argv, cwd):
    r = subprocess.run(argv, cwd=str(cwd), capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError('%s failed (%d): %s%s' % (' '.join(argv), r.returncode, r.stdout, r.stderr))
    return r


def fingerprint(cert):
    """SHA-256 of a certificate's DER form, lower case hex.  cert: a path, PEM
    text (str) or DER bytes (as ssl.SSLSocket.getpeercert(True) gives)."""
    if isinstance(cert, Path) or (isinstance(cert, str) and '-----BEGIN' not in cert):
        cert = Path(cert).read_text()
    if isinstance(cert, str):
        m = re.search(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----', cert, re.S)
        assert m, 'no PEM certificate in %r' % cert[:200]
        cert = ssl.PEM_cert_to_DER_cert(m.group(0))
    return hashlib.sha256(cert).hexdigest()


class Pki:
    """A test CA and certificates it signed, in self.dir."""

    def __init__(self, directory=None):
        self.own_dir = directory is None
        self.dir = Path(directory) if directory else make_tmpdir('gh-pki-')
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ca_crt, self.ca_key = self._ca('ca', 'gatehouse test CA')
        self._untrusted = None
        self.server_crt, self.server_key = self.issue('server', dns=['localhost'], ips=['127.0.0.1'],
                                                      cn='localhost')
        self.other_crt, self.other_key = self.issue('other', dns=['other.example'], ips=[],
                                                    cn='other.example')

    def _ca(self, name, cn):
        crt, key = self.dir / ('%s.crt' % name), self.dir / ('%s.key' % name)
        _run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes', '-days', '3650', '-subj', '/CN=%s' % cn,
              '-addext', 'basicConstraints=critical,CA:TRUE',
              '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
              '-keyout', str(key), '-out', str(crt)], self.dir)
        self._fix_modes(crt, key)
        return crt, key

    def untrusted_ca(self):
        """The certificate of a CA of its own ("some other CA") that signed
        nothing here: a client trusting only it must refuse the servers."""
        if self._untrusted is None:
            self._untrusted = self._ca('other-ca', 'some other CA')[0]
        return self._untrusted

    @staticmethod
    def _fix_modes(*paths):
        # readable by the unprivileged users of Postfix, Dovecot, gatehoused
        # (a test key, nothing to protect)
        for p in paths:
            os.chmod(p, 0o644)

    def issue(self, name, dns=('localhost',), ips=('127.0.0.1',), cn=None, directory=None):
        """A new key and certificate signed by the CA: (crt_path, key_path),
        named NAME.crt / NAME.key in directory (default: the PKI's)."""
        d = Path(directory) if directory else self.dir
        crt, key = d / ('%s.crt' % name), d / ('%s.key' % name)
        san = ','.join(['DNS:%s' % n for n in dns] + ['IP:%s' % a for a in ips])
        argv = [OPENSSL, 'req', '-x509', '-CA', str(self.ca_crt), '-CAkey', str(self.ca_key),
                '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                '-days', '3650', '-subj', '/CN=%s' % (cn or (list(dns) + list(ips))[0]),
                '-addext', 'basicConstraints=critical,CA:FALSE',
                '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
                '-addext', 'extendedKeyUsage=serverAuth',
                '-keyout', str(key), '-out', str(crt)]
        if san:
            argv[argv.index('-keyout'):argv.index('-keyout')] = ['-addext', 'subjectAltName=' + san]
        _run(argv, d)
        _run([OPENSSL, 'verify', '-CAfile', str(self.ca_crt), str(crt)], d)
        self._fix_modes(crt, key)
        return crt, key

    def context(self, check_hostname=True):
        return client_context(self, check_hostname)

    def cleanup(self):
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def client_context(pki, check_hostname=True):
    """A client ssl context trusting only the test CA."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca_crt))
    ctx.check_hostname = check_hostname
    if not check_hostname:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
