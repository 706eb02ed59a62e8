"""Fixtures for gatehouse's integration tests (the helpers are in lib/).

Everything runs on 127.0.0.1 on ports chosen at run time; every process a test
starts is a child of pytest and is stopped by its PID.  The binaries come from
the build directory ($GH_BUILDDIR, default _build/ next to the sources).
"""
import shutil

import pytest

from backends import Dovecot, Postfix, TlsDovecot, TlsPostfix, running
from lib.gateway import Gateways
from lib.pki import Pki
from lib.proc import make_tmpdir
from lib.scripted import RecordingRelay


@pytest.fixture
def tmp():
    # not tmp_path: /tmp/pytest-of-root is 0700 and daemons of other users
    # (in later tests) must reach their files
    d = make_tmpdir('gh-it-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemons():
    """A list the test appends its lib.gateway.Daemon objects to: stopped at
    its end, the last started first."""
    started = []
    yield started
    for d in reversed(started):
        d.stop()


@pytest.fixture
def gateways():
    """A lib.gateway.Gateways: gatehoused instances of the test's own,
    stopped at its end, which fails if one of them died meanwhile."""
    g = Gateways()
    yield g
    g.close()


# ------------------------------------------------------------ real backends

@pytest.fixture(scope='module')
def postfix():
    """backends.Postfix, one for the module."""
    with running(Postfix()) as server:
        yield server


@pytest.fixture(scope='module')
def dovecot(postfix):
    """backends.Dovecot relaying to the module's Postfix."""
    with running(Dovecot(postfix.port)) as server:
        yield server


@pytest.fixture(scope='module')
def pki():
    """A lib.pki.Pki for the module."""
    p = Pki()
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture(scope='module')
def postfix_tls(pki):
    """backends.TlsPostfix with the module's PKI."""
    with running(TlsPostfix(pki)) as server:
        yield server


@pytest.fixture(scope='module')
def dovecot_tls(pki, postfix_tls):
    """backends.TlsDovecot relaying to postfix_tls."""
    with running(TlsDovecot(postfix_tls.port, pki)) as server:
        yield server


@pytest.fixture(scope='module')
def dovecot_tls_other(pki, postfix_tls):
    """A second TlsDovecot, presenting the other-name certificate."""
    with running(TlsDovecot(postfix_tls.port, pki, cert=(pki.other_crt, pki.other_key))) as server:
        yield server


# ------------------------------------------------------------ recording relays

@pytest.fixture
def imap_relay(dovecot):
    """A lib.scripted.RecordingRelay in front of the module's Dovecot IMAP."""
    r = RecordingRelay(dovecot.imap_port)
    yield r
    r.close()


@pytest.fixture
def submission_relay(dovecot):
    """A lib.scripted.RecordingRelay in front of its submission service."""
    r = RecordingRelay(dovecot.submission_port)
    yield r
    r.close()
