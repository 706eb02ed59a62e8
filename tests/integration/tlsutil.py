"""TLS fixtures for gatehouse's integration tests: a throw-away PKI (a test CA,
server certificates signed by it, made with the openssl command line) and
TLS-enabled variants of the real backends of backends.py.

    from tlsutil import pki, postfix_tls, dovecot_tls  # noqa: F401  (fixtures)

pki (module scope): a Pki in a temp dir under /tmp (mode 0755, files 0644,
so that Postfix, Dovecot and gatehoused running as another user can read
them) with
    pki.ca_crt / pki.ca_key          the test CA ("gatehouse test CA")
    pki.server_crt / pki.server_key  CN=localhost, SAN DNS:localhost, IP:127.0.0.1
    pki.other_crt / pki.other_key    CN=other.example, SAN DNS:other.example only
                                     (no IP SAN: a client checking 127.0.0.1 or
                                     localhost against it must refuse it)
    pki.issue(name, dns=[...], ips=[...]) -> (crt, key)  one more, same CA
and the helpers fingerprint(path_or_pem_or_der) (SHA-256 of the DER, lower
case hex) and client_context(pki) (a Python ssl context trusting only the
test CA, checking host names).

TlsPostfix (fixture postfix_tls): backends.Postfix plus TLS on the smtpd
port (smtpd_tls_security_level = may: STARTTLS offered, plaintext still fine),
an smtps listener (implicit TLS, smtpd_tls_wrappermode = yes) on smtps_port,
and the same two with the other-name certificate on other_port and
other_smtps_port (for certificate checks that must fail), and a listener
without STARTTLS on notls_port; TLS shows in the
Received header (smtpd_tls_received_header), and messages up to 50 MB pass.

TlsDovecot (fixtures dovecot_tls, dovecot_tls_other): backends.Dovecot with
ssl = yes (STARTTLS on the imap port, plaintext still allowed) and the imaps
listener (disabled by port = 0 in backends.Dovecot) on imaps_port; the
certificate is the server one, or the other-name one for dovecot_tls_other.
"""
import hashlib
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from backends import Dovecot, Postfix, _backdate, make_tmpdir, wait_port
from conftest import free_port

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
        os.chmod(self.dir, 0o755)
        self.ca_crt = self.dir / 'ca.crt'
        self.ca_key = self.dir / 'ca.key'
        _run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes', '-days', '3650', '-subj', '/CN=gatehouse test CA',
              '-addext', 'basicConstraints=critical,CA:TRUE',
              '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
              '-keyout', str(self.ca_key), '-out', str(self.ca_crt)], self.dir)
        self._fix_modes(self.ca_crt, self.ca_key)
        self.server_crt, self.server_key = self.issue('server', dns=['localhost'], ips=['127.0.0.1'],
                                                      cn='localhost')
        self.other_crt, self.other_key = self.issue('other', dns=['other.example'], ips=[],
                                                    cn='other.example')

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


@pytest.fixture(scope='module')
def pki():
    p = Pki()
    try:
        yield p
    finally:
        p.cleanup()


# ---------- TLS backends ----------

class TlsPostfix(Postfix):
    """backends.Postfix with TLS: STARTTLS (security level may) on port,
    implicit TLS on smtps_port, and both again with the other-name
    certificate on other_port / other_smtps_port."""

    def __init__(self, pki, **kw):
        super().__init__(**kw)
        self.pki = pki
        self.smtps_port = free_port()
        self.other_port = free_port()
        self.other_smtps_port = free_port()
        self.notls_port = free_port()

    def write_config(self):
        super().write_config()
        p = self.pki
        with open(self.etc / 'main.cf', 'a') as f:
            f.write('''\
# TLS (tlsutil.TlsPostfix)
smtpd_tls_cert_file = {crt}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_session_cache_database =
tls_random_source = dev:/dev/urandom
# room for the 10 MB messages of test_tls.py
message_size_limit = 52428800
virtual_mailbox_limit = 104857600
'''.format(crt=p.server_crt, key=p.server_key))
        other = '-o smtpd_tls_cert_file={crt} -o smtpd_tls_key_file={key}'.format(
            crt=p.other_crt, key=p.other_key)
        with open(self.etc / 'master.cf', 'a') as f:
            f.write('''\
127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes
127.0.0.1:{op} inet n - n - - smtpd {other}
127.0.0.1:{osmtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes {other}
127.0.0.1:{notls} inet n - n - - smtpd -o smtpd_tls_security_level=none
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
'''.format(smtps=self.smtps_port, op=self.other_port, osmtps=self.other_smtps_port, notls=self.notls_port,
                   other=other))
        _backdate(self.etc / 'main.cf', self.etc / 'master.cf')

    def start(self):
        super().start()
        for port in (self.smtps_port, self.other_port, self.other_smtps_port, self.notls_port):
            wait_port(port, 20, self.proc, 'postfix master (TLS listeners)')
        return self


class TlsDovecot(Dovecot):
    """backends.Dovecot with ssl = yes (STARTTLS on imap_port; plaintext
    logins still allowed) and the imaps listener on imaps_port."""

    def __init__(self, relay_port, pki, cert=None, **kw):
        super().__init__(relay_port, **kw)
        self.pki = pki
        self.cert, self.key = cert or (pki.server_crt, pki.server_key)
        self.imaps_port = free_port()

    def write_config(self):
        super().write_config()
        text = self.conf.read_text()
        disabled = 'inet_listener imaps {\n    port = 0\n  }'
        assert disabled in text, 'backends.Dovecot no longer disables imaps as expected:\n' + text
        text = text.replace(disabled, 'inet_listener imaps {\n    address = 127.0.0.1\n'
                                      '    port = %d\n    ssl = yes\n  }' % self.imaps_port)
        assert '\nssl = no\n' in text
        text = text.replace('\nssl = no\n', '\nssl = yes\n')
        text += '''\
# TLS (tlsutil.TlsDovecot)
ssl_cert = <{crt}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
'''.format(crt=self.cert, key=self.key)
        self.conf.write_text(text)

    def start(self):
        super().start()
        wait_port(self.imaps_port, 20, self.proc, 'dovecot (imaps)')
        return self


@pytest.fixture(scope='module')
def postfix_tls(pki):
    pf = TlsPostfix(pki)
    try:
        pf.start()
        yield pf
    finally:
        pf.cleanup()


@pytest.fixture(scope='module')
def dovecot_tls(pki, postfix_tls):
    dc = TlsDovecot(postfix_tls.port, pki)
    try:
        dc.start()
        yield dc
    finally:
        dc.cleanup()


@pytest.fixture(scope='module')
def dovecot_tls_other(pki, postfix_tls):
    """A second Dovecot presenting the other-name certificate."""
    dc = TlsDovecot(postfix_tls.port, pki, cert=(pki.other_crt, pki.other_key))
    try:
        dc.start()
        yield dc
    finally:
        dc.cleanup()
