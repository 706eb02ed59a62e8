"""Real backend servers for gatehouse's integration tests: a private Postfix
(XCLIENT, virtual maildirs) and a private Dovecot (IMAP, POP3, and submission
relaying to that Postfix, with a master user), each in its own temp dir, on 127.0.0.1 ports
chosen at run time, run in the foreground as a child of pytest and stopped by
its PID.  Needs root (both daemons drop privileges themselves) and the Debian
packages postfix, dovecot-imapd, dovecot-pop3d and dovecot-submissiond.

    pf = Postfix().start()
    ... send to 127.0.0.1:pf.port ...
    text = pf.wait_message('alice', b'Subject: ' + marker('x').encode())
    pf.cleanup()

(conftest.py has them as the fixtures postfix and dovecot, with running().)  TlsPostfix and
TlsDovecot are the same with TLS (fixtures postfix_tls, dovecot_tls,
dovecot_tls_other): certificates from a lib.pki.Pki.  received(), header()
and headers_and_body() read a delivered message.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from lib.net import free_port, wait_for, wait_port
from lib.proc import make_tmpdir, stop_process

POSTFIX_MASTER = '/usr/lib/postfix/sbin/master'
JOURNALD = '/lib/systemd/systemd-journald'
USERS = {'alice': 'alicepw', 'bob': 'bobpw', 'carol': 'carolpw'}
MASTER_USER, MASTER_PASSWORD = 'proxy', 'proxypw'
# Postfix's virtual mailboxes (example.com): the users plus "test", the
# recipient of the telnet scenarios
MAILBOXES = sorted(USERS) + ['test']


@contextmanager
def running(server):
    """A Postfix or Dovecot started, and cleaned up after (a fixture's
    `with running(Postfix()) as pf: yield pf`)."""
    try:
        yield server.start()
    finally:
        server.cleanup()


def marker(what):
    """A unique word, for a subject or a mailbox name."""
    return 'gh-%s-%s' % (what, uuid.uuid4().hex[:12])


def headers_and_body(msg):
    head, _, body = msg.partition(b'\n\n')
    return head, body


def received(msg):
    """Postfix's Received header (the first), unfolded."""
    head, _ = headers_and_body(msg)
    m = re.search(rb'^Received: .*?(?=^\S)', head + b'\nX:', re.M | re.S)
    assert m, msg[:1000]
    return re.sub(rb'\s+', b' ', m.group(0))


def header(msg, name):
    head, _ = headers_and_body(msg)
    m = re.search(rb'^%s: (.*)$' % name.encode(), head, re.M | re.I)
    return m.group(1) if m else None


def _backdate(*paths):
    # Postfix re-reads a file whose mtime is "now" in 0.3 s steps until it is
    # older (a race guard): files just written make it seconds slower
    t = time.time() - 60
    for p in paths:
        os.utime(p, (t, t))


class Postfix:
    """A private Postfix: own main.cf/master.cf, chroot n, smtpd on
    127.0.0.1:port, XCLIENT allowed to and mynetworks of 127.0.0.1 alone
    (gatehoused's address, as a site lists its gateway; clients come from
    other loopback addresses, which Postfix checks a second XCLIENT, and
    relaying, against), maildir delivery for
    alice/bob/carol/test@example.com into dir/mail/<user>/new/; every other
    recipient is refused at RCPT (550 5.1.1) and nothing leaves the machine."""

    def __init__(self, directory=None, port=None):
        self.own_dir = directory is None
        self.dir = Path(directory) if directory else make_tmpdir('gh-postfix-')
        self.port = port or free_port()
        self.etc = self.dir / 'etc'
        self.mail = self.dir / 'mail'
        self.log_path = self.dir / 'postfix.log'
        self.proc = None
        self._out = None

    def write_config(self):
        d = self.dir
        for sub in ('etc', 'queue', 'data', 'mail'):
            (d / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(d / 'data', 'postfix', 'postfix')
        shutil.chown(d / 'mail', 'nobody', 'nogroup')
        (self.etc / 'main.cf').write_text('''\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {d}
maillog_file = {d}/postfix.log
myhostname = backend-mta.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1
smtpd_authorized_xclient_hosts = 127.0.0.1
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_authenticated_header = yes
alias_maps =
alias_database =
relayhost =
biff = no
smtputf8_enable = no
recipient_delimiter = +
virtual_mailbox_domains = example.com example.net
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
default_transport = error:no outside delivery in tests
# deliver at once, and retry soon if something was deferred
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
'''.format(d=d))
        (self.etc / 'vmailbox').write_text(''.join(
            '%s@example.com %s/\n%s@example.net %s/\n' % (u, u, u, u) for u in MAILBOXES))
        (self.etc / 'master.cf').write_text('''\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
'''.format(port=self.port))
        _backdate(self.etc / 'main.cf', self.etc / 'master.cf', self.etc / 'vmailbox')

    def start(self):
        self.write_config()
        # creates and chowns the queue directories; "postfix" reports errors
        # only to syslog or a tty, so run it under a pty to see them
        chk = subprocess.run(['script', '-qec', 'postfix -c %s check' % self.etc, '/dev/null'],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if chk.returncode != 0:
            raise RuntimeError('postfix check failed (%d): %s%s\n%s' % (
                chk.returncode, chk.stdout, chk.stderr, self.log_text()))
        self._out = open(self.dir / 'master.out', 'w')
        self.proc = subprocess.Popen([POSTFIX_MASTER, '-c', str(self.etc), '-s'],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, 20, self.proc, 'postfix master')
        except Exception:
            self.stop()
            raise RuntimeError('postfix did not start:\n%s' % self.log_text()[-3000:])
        return self

    def stop(self):
        rc = stop_process(self.proc)
        self.proc = None
        if self._out:
            self._out.close()
            self._out = None
        return rc

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            return self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def message_files(self, user):
        """The delivered messages of a mailbox, oldest first."""
        files = glob.glob(str(self.mail / user / 'new' / '*'))
        return sorted(files, key=lambda f: (os.stat(f).st_mtime, f))

    def messages(self, user):
        out = []
        for f in self.message_files(user):
            try:
                out.append(Path(f).read_bytes())
            except FileNotFoundError:
                pass
        return out

    def wait_messages(self, user, count, timeout=20.0):
        """The texts (bytes) of the messages in dir/mail/<user>/new once there
        are at least count of them (delivery is asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(user)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError('%d message(s) for %s after %.0f s, wanted %d; postfix log:\n%s'
                                     % (len(msgs), user, timeout, count, self.log_text()[-3000:]))
            time.sleep(0.05)

    def wait_message(self, user, needle, timeout=20.0):
        """The text (bytes) of the first message for user that contains needle
        (bytes or str, e.g. a unique Subject) or matches it (a compiled bytes
        regular expression)."""
        if isinstance(needle, str):
            needle = needle.encode()
        match = needle.search if hasattr(needle, 'search') else (lambda m: needle in m)
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages(user):
                if match(m):
                    return m
            if time.monotonic() > deadline:
                raise AssertionError('no message for %s containing %r after %.0f s; postfix log:\n%s'
                                     % (user, needle, timeout, self.log_text()[-3000:]))
            time.sleep(0.05)

    def wait_queued(self, user, reply, timeout=20.0):
        """The message Postfix accepted with reply '250 2.0.0 Ok: queued as ID'
        (its Received header says 'with ESMTP.. id ID')."""
        if isinstance(reply, bytes):
            reply = reply.decode(errors='replace')
        qid = reply.strip().split()[-1]
        assert 'queued as' in reply and qid.isalnum(), reply
        return self.wait_message(user, re.compile(rb'\sid %s\b' % qid.encode()), timeout)

    def find_messages(self, needle):
        """Every delivered message (any mailbox) containing needle."""
        if isinstance(needle, str):
            needle = needle.encode()
        out = []
        for f in glob.glob(str(self.mail / '*' / 'new' / '*')):
            try:
                data = Path(f).read_bytes()
            except FileNotFoundError:
                continue
            if needle in data:
                out.append(data)
        return out

    def queue_empty(self):
        """No message left in the incoming/active/deferred queues."""
        for q in ('incoming', 'active', 'deferred', 'maildrop'):
            for _root, _dirs, files in os.walk(self.dir / 'queue' / q):
                if files:
                    return False
        return True


class Dovecot:
    """A private Dovecot (root mode, own base_dir) with IMAP, POP3 and
    submission on 127.0.0.1, users alice/bob/carol (passwords <user>pw) in a passwd-file, a
    master user proxy/proxypw (a passdb with master = yes: it logs in as any
    existing user either as 'alice*proxy' or with SASL PLAIN authzid=alice),
    no failure delay, and submission relaying to Postfix on 127.0.0.1:relay_port
    (relay trusted: Dovecot passes the login on with XCLIENT).  Its
    login_trusted_networks is 127.0.0.1 alone (gatehoused's address, as a
    site lists its gateway; clients come from other loopback addresses).
    mark(), since() and wait_log() read its log."""

    def __init__(self, relay_port, directory=None, imap_port=None, submission_port=None,
                 maildirs=None, pop3_port=None):
        """maildirs: read each user's mail from maildirs/<user> (a Postfix's
        `mail` folder, so that what it delivers is in the user's INBOX)
        instead of a store of Dovecot's own."""
        self.own_dir = directory is None
        self.maildirs = maildirs
        self.dir = Path(directory) if directory else make_tmpdir('gh-dovecot-')
        self.relay_port = relay_port
        self.imap_port = imap_port or free_port()
        self.submission_port = submission_port or free_port()
        self.pop3_port = pop3_port or free_port()
        self.conf = self.dir / 'dovecot.conf'
        self.log_path = self.dir / 'dovecot.log'
        self.proc = None
        self._out = None

    def write_config(self):
        d = self.dir
        for sub in ('run', 'state', 'mail'):
            (d / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(d / 'mail', 'nobody', 'nogroup')
        (d / 'users').write_text(''.join('%s:{PLAIN}%s::::::\n' % (u, p) for u, p in sorted(USERS.items())))
        (d / 'master-users').write_text('%s:{PLAIN}%s\n' % (MASTER_USER, MASTER_PASSWORD))
        for f in ('users', 'master-users'):
            os.chmod(d / f, 0o644)
        self.conf.write_text('''\
protocols = imap submission pop3
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = gh-dovecot-{imap}
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
auth_verbose = yes
auth_failure_delay = 0
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
login_trusted_networks = 127.0.0.1
hostname = backend.example.test
mail_location = {location}
first_valid_uid = 1
mail_uid = nobody
mail_gid = nogroup

passdb {{
  driver = passwd-file
  args = {d}/master-users
  master = yes
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
  default_fields = home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
pop3_uidl_format = %08Xu%08Xv
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {subm}
  }}
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {relay}
submission_relay_trusted = yes
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
'''.format(d=d, imap=self.imap_port, subm=self.submission_port, relay=self.relay_port,
           pop3=self.pop3_port,
           location='maildir:%s/%%u' % self.maildirs if self.maildirs else 'maildir:~/Maildir'))

    def start(self):
        self.write_config()
        self._out = open(self.dir / 'dovecot.out', 'w')
        self.proc = subprocess.Popen(['dovecot', '-F', '-c', str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(self.imap_port, 20, self.proc, 'dovecot')
            wait_port(self.submission_port, 20, self.proc, 'dovecot')
            wait_port(self.pop3_port, 20, self.proc, 'dovecot')
        except Exception:
            self.stop()
            raise RuntimeError('dovecot did not start:\n%s\n%s' % (
                (self.dir / 'dovecot.out').read_text(errors='replace'), self.log_text()[-3000:]))
        return self

    def stop(self):
        rc = stop_process(self.proc)
        self.proc = None
        if self._out:
            self._out.close()
            self._out = None
        return rc

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            return self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def mark(self):
        """The current end of the log, for since() and wait_log(after=)."""
        return len(self.log_text())

    def since(self, mark):
        return self.log_text()[mark:]

    def wait_log(self, pattern, after=0, timeout=30.0):
        """The first match of the regular expression in the log written
        after `after` (a mark())."""
        rx = re.compile(pattern)
        try:
            return wait_for(lambda: rx.search(self.since(after)), timeout,
                            what='dovecot log: %s' % pattern)
        except AssertionError:
            raise AssertionError('no %r in the dovecot log after mark %d; log since:\n%s'
                                 % (pattern, after, self.since(after)[-3000:]))


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
# TLS (backends.TlsPostfix)
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
    """backends.Dovecot with ssl = yes (STARTTLS on imap_port, STLS on
    pop3_port; plaintext logins still allowed) and the imaps and pop3s
    listeners on imaps_port and pop3s_port."""

    def __init__(self, relay_port, pki, cert=None, **kw):
        super().__init__(relay_port, **kw)
        self.pki = pki
        self.cert, self.key = cert or (pki.server_crt, pki.server_key)
        self.imaps_port = free_port()
        self.pop3s_port = free_port()

    def write_config(self):
        super().write_config()
        text = self.conf.read_text()
        disabled = 'inet_listener imaps {\n    port = 0\n  }'
        assert disabled in text, 'backends.Dovecot no longer disables imaps as expected:\n' + text
        text = text.replace(disabled, 'inet_listener imaps {\n    address = 127.0.0.1\n'
                                      '    port = %d\n    ssl = yes\n  }' % self.imaps_port)
        disabled = 'inet_listener pop3s {\n    port = 0\n  }'
        assert disabled in text, 'backends.Dovecot no longer disables pop3s as expected:\n' + text
        text = text.replace(disabled, 'inet_listener pop3s {\n    address = 127.0.0.1\n'
                                      '    port = %d\n    ssl = yes\n  }' % self.pop3s_port)
        assert '\nssl = no\n' in text
        text = text.replace('\nssl = no\n', '\nssl = yes\n')
        text += '''\
# TLS (backends.TlsDovecot)
ssl_cert = <{crt}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
'''.format(crt=self.cert, key=self.key)
        self.conf.write_text(text)

    def start(self):
        super().start()
        wait_port(self.imaps_port, 20, self.proc, 'dovecot (imaps)')
        wait_port(self.pop3s_port, 20, self.proc, 'dovecot (pop3s)')
        return self


class ProxyPostfix(Postfix):
    """backends.Postfix plus a second smtpd on proxy_port that takes a PROXY
    protocol header first (smtpd_upstream_proxy_protocol = haproxy), as
    doc/deployment.md sets up Postfix behind gatehouse: it logs the address
    in the header as the client's ("connect from NAME[ADDR]").  It matches
    smtpd_authorized_xclient_hosts against that address too, so this smtpd
    authorizes all of 127.0.0.0/8, where the tests' clients are (as
    doc/deployment.md says)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.proxy_port = free_port()

    def write_config(self):
        super().write_config()
        with open(self.etc / 'master.cf', 'a') as f:
            f.write('127.0.0.1:%d inet n - n - - smtpd\n'
                    '  -o smtpd_upstream_proxy_protocol=haproxy\n'
                    '  -o smtpd_authorized_xclient_hosts=127.0.0.0/8\n' % self.proxy_port)
        _backdate(self.etc / 'master.cf')

    def start(self):
        super().start()
        # not wait_port(): a connection without a header is only noise in
        # the log; the master binds every listener before the first serves
        return self


class ProxyDovecot(Dovecot):
    """backends.Dovecot whose IMAP and POP3 listeners take a PROXY protocol header
    first (haproxy = yes) from haproxy_trusted_networks (default 127.0.0.1:
    a gatehoused of the tests), as doc/deployment.md sets up Dovecot behind
    gatehouse; it logs the address in the header as rip=."""

    def __init__(self, relay_port, haproxy_trusted_networks='127.0.0.1', **kw):
        super().__init__(relay_port, **kw)
        self.haproxy_trusted_networks = haproxy_trusted_networks

    def write_config(self):
        super().write_config()
        text = self.conf.read_text()
        for port in (self.imap_port, self.pop3_port):
            plain = '    port = %d\n  }' % port
            assert text.count(plain) == 1, 'backends.Dovecot\'s listeners changed:\n' + text
            text = text.replace(plain, '    port = %d\n    haproxy = yes\n  }' % port)
        text += 'haproxy_trusted_networks = %s\n' % self.haproxy_trusted_networks
        self.conf.write_text(text)


def main(argv):
    """Run real backends in the foreground for `./quickstart demo`:

        backends.py POSTFIX_PORT DOVECOT_IMAP_PORT DOVECOT_SUBMISSION_PORT [DOVECOT_POP3_PORT]

    starts the private Postfix and a Dovecot relaying to it that reads the
    maildirs Postfix delivers to (mail sent to bob is in bob's INBOX, over
    IMAP and POP3 alike), prints where their mail goes and which ports they
    serve, and stops both (by PID) on SIGTERM or SIGINT.  Without
    DOVECOT_POP3_PORT, Dovecot's POP3 goes on a free port."""
    if len(argv) not in (4, 5):
        import sys
        print('usage: backends.py POSTFIX_PORT IMAP_PORT SUBMISSION_PORT [POP3_PORT]',
              file=sys.stderr)
        return 64
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *a: stop.append(1))
    pf = Postfix(port=int(argv[1])).start()
    dc = None
    try:
        dc = Dovecot(pf.port, imap_port=int(argv[2]), submission_port=int(argv[3]),
                     pop3_port=int(argv[4]) if len(argv) > 4 else None,
                     maildirs=pf.mail).start()
        print('backends ready: Postfix on 127.0.0.1:%d (mail in %s/<user>), '
              'Dovecot IMAP on 127.0.0.1:%d, submission on 127.0.0.1:%d, POP3 on 127.0.0.1:%d'
              % (pf.port, pf.mail, dc.imap_port, dc.submission_port, dc.pop3_port), flush=True)
        while not stop:
            time.sleep(0.2)
    finally:
        if dc is not None:
            dc.cleanup()
        pf.cleanup()
    return 0


if __name__ == '__main__':
    import sys
    sys.exit(main(sys.argv))


class Journald:
    """Debian's systemd-journald in a journal namespace of its own
    (`systemd-journald NAMESPACE`, as systemd-journald@.service runs it for
    a unit's LogNamespace=): its sockets in /run/systemd/journal.NAMESPACE/,
    its files under /var/log/journal (or /run/log/journal) in a folder
    named MACHINE-ID.NAMESPACE, both removed by cleanup().  Needs root.

    stream(identifier): a socket connected to its stdout stream, as systemd
    gives a unit's stderr with StandardError=journal; entries(): what
    `journalctl --namespace` reads back, one dict per entry."""

    def __init__(self, namespace=None):
        self.namespace = namespace or 'gh%d%s' % (os.getpid(), uuid.uuid4().hex[:6])
        self.dir = Path('/run/systemd/journal.%s' % self.namespace)
        self.proc = None

    @staticmethod
    def available():
        return os.path.exists(JOURNALD) and shutil.which('journalctl') and os.geteuid() == 0

    def start(self):
        self.proc = subprocess.Popen([JOURNALD, self.namespace], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (self.dir / 'stdout').exists() and (self.dir / 'socket').exists()
                 or self.proc.poll() is not None, 20, what='systemd-journald %s' % self.namespace)
        if self.proc.poll() is not None:
            raise AssertionError('systemd-journald %s exited with %s'
                                 % (self.namespace, self.proc.returncode))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stream(self, identifier):
        """A stream to journald, as systemd makes one: the header (identifier,
        no unit, priority 6, level prefixes on, nothing forwarded), then
        the program's lines; we only write to it."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.dir / 'stdout'))
        s.sendall(('%s\n\n6\n1\n0\n0\n0\n' % identifier).encode())
        s.shutdown(socket.SHUT_RD)
        return s

    def entries(self, *matches):
        """Every entry so far (matches: FIELD=value, as journalctl takes
        them), as dicts of their fields."""
        out = subprocess.run(['journalctl', '--namespace=%s' % self.namespace, '-o', 'json',
                              '--no-pager', '-q'] + list(matches),
                             capture_output=True, text=True, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith('{')]

    def wait_entries(self, count, *matches, timeout=30.0):
        """At least `count` entries with matches, once there are."""
        return wait_for(lambda: (lambda e: e if len(e) >= count else None)(self.entries(*matches)),
                        timeout, interval=0.2,
                        what='%d journal entries with %s' % (count, ' '.join(matches)))

    def stop(self):
        return stop_process(self.proc)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        for root in ('/var/log/journal', '/run/log/journal'):
            for d in glob.glob('%s/*.%s' % (root, self.namespace)):
                shutil.rmtree(d, ignore_errors=True)
