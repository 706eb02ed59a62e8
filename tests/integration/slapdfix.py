"""A private OpenLDAP slapd for the `ldap` module's tests.

Slapd(workdir, port, tls_port, pki) writes a slapd.conf (back_mdb, suffix
dc=example,dc=com, schemas core/cosine/inetorgperson/nis/misc, the server
certificate of pki, a lib.pki.Pki), loads the directory below with slapadd,
and runs `slapd -d 256` in the foreground as a child of the test (stopped by
its PID), listening on ldap://127.0.0.1:PORT/ (StartTLS too) and
ldaps://127.0.0.1:TLS_PORT/.  -d 256 is loglevel `stats`:
one line per operation, in workdir/slapd.log, so a test can count the BINDs
that reached the server.  stop() and start() again keep the data and ports.

The directory (every password is NAME-pw unless said otherwise):

  ou=people          readable by anyone (userPassword: auth only)
    uid=alice        mail alice@example.com; no mailHost
    uid=bob          mailHost 127.0.0.1:<route port> (set by the test)
    uid=carol        mail carol.canonical@example.com (user_attribute tests)
    uid=we*ird(user) a uid full of RFC 4515 specials
    uid=comma\\,user a uid with an RFC 4514 special: the DN needs escaping
    uid=nopass       no userPassword at all
    uid=dup          there is a second uid=dup in ou=alumni
    uid=badroute     mailHost "not a route"
  ou=alumni          readable by anyone
    uid=dup
  ou=staff           readable by the search account and by self only
    uid=dave
  ou=system
    cn=gatehouse     the search account, password search-pw

Only 127.0.0.1; nothing outside the repository and the temporary directory
is needed.
"""
import base64
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from lib.net import connectable
from lib.proc import stop_process

SUFFIX = 'dc=example,dc=com'
ROOT_DN = 'cn=admin,' + SUFFIX
ROOT_PW = 'admin-pw'
SEARCH_DN = 'cn=gatehouse,ou=system,' + SUFFIX
SEARCH_PW = 'search-pw'
PEOPLE = 'ou=people,' + SUFFIX

# uid -> password, for ou=people
USERS = {
    'alice': 'alice-pw',
    'bob': 'bob-pw',
    'carol': 'carol-pw',
    'we*ird(user)': 'weird-pw',
    'comma,user': 'comma-pw',
    'dup': 'dup-pw',
    'badroute': 'badroute-pw',
}
DAVE_PW = 'dave-pw'
ALL_PASSWORDS = sorted(set(USERS.values()) | {DAVE_PW, SEARCH_PW, ROOT_PW})

SCHEMAS = ['core', 'cosine', 'inetorgperson', 'nis', 'misc']


def ssha(password, salt=None):
    """An {SSHA} userPassword value."""
    salt = salt if salt is not None else os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return '{SSHA}' + base64.b64encode(digest + salt).decode()


def dn_value(v):
    """RFC 4514 escaping of an attribute value (enough for the names here)."""
    out = ''
    for i, ch in enumerate(v):
        if ch in ',+"\\<>;=' or (i == 0 and ch in ' #') or (i == len(v) - 1 and ch == ' '):
            out += '\\' + ch
        else:
            out += ch
    return out


def user_dn(uid, ou='people'):
    return 'uid=%s,ou=%s,%s' % (dn_value(uid), ou, SUFFIX)


def _person(uid, ou, password, extra=()):
    lines = ['dn: ' + user_dn(uid, ou), 'objectClass: inetOrgPerson',
             'objectClass: inetLocalMailRecipient', 'uid: ' + uid, 'cn: ' + uid,
             'sn: ' + uid]
    if password is not None:
        lines.append('userPassword: ' + ssha(password))
    lines += list(extra)
    return '\n'.join(lines) + '\n'


def directory_ldif():
    parts = ['dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\n'
             'dc: example\n' % SUFFIX]
    for ou in ('people', 'alumni', 'staff', 'system'):
        parts.append('dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n'
                     % (ou, SUFFIX, ou))
    parts.append('dn: %s\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n'
                 'cn: gatehouse\nuserPassword: %s\n' % (SEARCH_DN, ssha(SEARCH_PW)))
    extra = {
        'alice': ['mail: alice@example.com'],
        'carol': ['mail: carol.canonical@example.com'],
        'badroute': ['mailHost: not a route'],
    }
    for uid, pw in USERS.items():
        parts.append(_person(uid, 'people', pw, extra.get(uid, ())))
    parts.append(_person('nopass', 'people', None))
    parts.append(_person('dup', 'alumni', 'dup-pw'))
    parts.append(_person('dave', 'staff', DAVE_PW, ['mail: dave@example.com']))
    return '\n'.join(parts)


def _sbin(name):
    """slapd and slapadd live in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which(name) or shutil.which(name, path='/usr/sbin:/usr/local/sbin') or name


class Slapd:
    def __init__(self, workdir, port, tls_port=None, pki=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.port = port
        self.tls_port = tls_port
        self.pki = pki
        self.proc = None
        self.log_path = self.dir / 'slapd.log'
        self.log = None
        self.uri = 'ldap://127.0.0.1:%d' % port
        self.ldaps_uri = 'ldaps://127.0.0.1:%d' % tls_port if tls_port else None
        self._configure()

    def _configure(self):
        db = self.dir / 'db'
        db.mkdir(exist_ok=True)
        conf = ['include /etc/ldap/schema/%s.schema' % s for s in SCHEMAS]
        conf += ['pidfile %s/slapd.pid' % self.dir, 'argsfile %s/slapd.args' % self.dir,
                 'modulepath /usr/lib/ldap', 'moduleload back_mdb']
        if self.pki:
            conf += ['TLSCertificateFile %s' % self.pki.server_crt,
                     'TLSCertificateKeyFile %s' % self.pki.server_key,
                     'TLSCACertificateFile %s' % self.pki.ca_crt]
        conf += [
            'database mdb',
            'maxsize 10485760',
            'suffix "%s"' % SUFFIX,
            'rootdn "%s"' % ROOT_DN,
            'rootpw %s' % ROOT_PW,
            'directory %s' % db,
            'index uid eq',
            'access to attrs=userPassword by self write by anonymous auth by * none',
            'access to dn.subtree="ou=staff,%s" by dn.exact="%s" read by self read '
            'by anonymous auth by * none' % (SUFFIX, SEARCH_DN),
            'access to * by * read',
        ]
        self.conf_path = self.dir / 'slapd.conf'
        self.conf_path.write_text('\n'.join(conf) + '\n')
        ldif = self.dir / 'data.ldif'
        ldif.write_text(directory_ldif())
        subprocess.run([_sbin('slapadd'), '-q', '-f', str(self.conf_path), '-l', str(ldif)],
                       check=True, capture_output=True, timeout=30)

    def start(self, timeout=30.0):
        assert self.proc is None or self.proc.poll() is not None
        urls = self.uri + '/'
        if self.ldaps_uri:
            urls += ' ' + self.ldaps_uri + '/'
        self.log = open(self.log_path, 'a')
        self.proc = subprocess.Popen([_sbin('slapd'), '-d', '256', '-f', str(self.conf_path),
                                      '-h', urls],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while not all(connectable(p, timeout=0.5) for p in ports):
            if self.proc.poll() is not None:
                raise AssertionError('slapd exited with %s:\n%s'
                                     % (self.proc.returncode, self.text()[-3000:]))
            if time.monotonic() > deadline:
                raise AssertionError('slapd did not listen within %.0f s' % timeout)
            time.sleep(0.02)
        return self

    def stop(self):
        stop_process(self.proc, 10)
        if self.log is not None and not self.log.closed:
            self.log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def text(self):
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def binds(self, dn):
        """How many BIND operations for `dn` slapd has logged (the stats
        line `conn=N op=N BIND dn="DN" method=128`)."""
        return self.text().count('BIND dn="%s" method=128' % dn)

    def ldap_tool(self, argv, stdin=None):
        env = dict(os.environ, LDAPNOINIT='1')
        argv = argv[:1] + ['-x', '-H', self.uri, '-D', ROOT_DN, '-w', ROOT_PW] + argv[1:]
        return subprocess.run(argv,
                              input=stdin, capture_output=True, text=True, timeout=20,
                              env=env, check=True)

    def modify(self, ldif):
        """Apply an LDIF change (ldapmodify) as the rootdn."""
        return self.ldap_tool(['ldapmodify'], stdin=ldif)

    def set_password(self, dn, password):
        return self.ldap_tool(['ldappasswd', '-s', password, dn])

    def set_route(self, uid, route):
        return self.modify('dn: %s\nchangetype: modify\nreplace: mailHost\nmailHost: %s\n'
                           % (user_dn(uid), route))
