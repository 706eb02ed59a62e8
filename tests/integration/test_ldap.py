"""The `ldap` auth module against a private slapd (slapdfix.py): search-then-
bind (anonymous and with a search account) and direct binds through a DN
template; RFC 4515/4514 escaping of hostile login names; the route and user
attributes, through gatehousectl auth-test and through gatehoused's SMTP and
IMAP listeners to in-test backends; StartTLS and ldaps:// with a test CA;
configuration errors; fault tolerance (slapd stopped and started again, a
dead first URI, a server that accepts and then says nothing); the verdict
cache, counted in slapd's `stats` log; concurrent logins; valgrind.

Every process is a child of the test, on 127.0.0.1 ports from free_port(),
and every wait is bounded.  The timings of the down-server cases are printed
(run pytest with -s to see them)."""
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import slapdfix
from lib.clients import ImapClient, SmtpClient, assert_no_secrets
from lib.config import write_config
from lib.gateway import Daemon, auth_test_fields, ctl
from lib.net import free_port, wait_for
from lib.paths import GATEHOUSED, SRCDIR
from lib.pki import Pki
from lib.proc import make_tmpdir
from lib.scripted import ImapServer, Server, SmtpServer, silent
from slapdfix import DAVE_PW, SEARCH_DN, SEARCH_PW, USERS, Slapd, user_dn

LDAP_SUPP = SRCDIR / 'tests' / 'valgrind-ldap.supp'
# beyond lib.gateway.VALGRIND
LDAP_VALGRIND_ARGS = ['--suppressions=%s' % LDAP_SUPP]

SMTP_OK = '235 2.7.0 Authentication successful'
SMTP_BAD = '535 5.7.8 Authentication credentials invalid'
SMTP_TEMP = '454 4.7.0 Temporary authentication failure'
IMAP_BAD = 'NO [AUTHENTICATIONFAILED] Authentication failed.'
IMAP_TEMP = 'NO [UNAVAILABLE] Temporary authentication failure.'

HOSTILE_LOGINS = ['*', '*)(uid=*', 'admin)(|(uid=*', 'alice*', '*)(|(objectClass=*',
                  'alice)(uid=bob', '\\2a', 'alice\x7f', 'uid=alice,ou=people,dc=example,dc=com',
                  'alice,ou=people', '#alice', 'alice\\']


# ------------------------------------------------------------ fixtures

class Env:
    def __init__(self, root, pki, slapd):
        self.root, self.pki, self.slapd = root, pki, slapd
        self.pwfile = root / 'search.secret'
        self.pwfile.write_text(SEARCH_PW + '\n')
        os.chmod(self.pwfile, 0o600)


@pytest.fixture(scope='module')
def env():
    """A test CA and one slapd for the tests that only read the directory."""
    root = make_tmpdir('gh-ldap-')
    pki = Pki(root / 'pki')
    slapd = Slapd(root / 'slapd', free_port(), free_port(), pki).start()
    try:
        yield Env(root, pki, slapd)
    finally:
        slapd.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_slapd(env, tmp):
    """A slapd of the test's own, to stop, restart or modify."""
    s = Slapd(tmp / 'slapd', free_port(), free_port(), env.pki).start()
    yield s
    s.stop()


def auth_group(uri, **keys):
    """The keys of [auth ldap] (a key of None is left out, uri too)."""
    return dict({'module': 'ldap', 'uri': uri}, **keys)


def search_keys(env, **keys):
    """Search-then-bind with the search account, under the whole suffix."""
    d = {'base': slapdfix.SUFFIX, 'bind_dn': SEARCH_DN, 'bind_password_file': env.pwfile}
    d.update(keys)
    return d


def ldap_conf(path, auth, listeners=None, gatehouse=None, backends=None):
    """gatehouse.conf with the [auth ldap] group `auth` (auth_group()),
    listeners [(name, protocol, port, backend)], backends {name: {key: value}}
    over ones that are down."""
    if not listeners:
        listeners = [('sub', 'smtp', free_port(), 'smtp')]
    be = {'smtp': {'protocol': 'smtp', 'servers': '127.0.0.1:1', 'login': 'none'},
          'imap': {'protocol': 'imap', 'servers': '127.0.0.1:1'}}
    be.update(backends or {})
    return write_config(
        path, {name: {'protocol': proto, 'listen': '127.0.0.1:%d' % port,
                      'plaintext_auth': 'always', 'auth': 'ldap', 'backend': backend}
               for name, proto, port, backend in listeners},
        {'ldap': auth}, be, gatehouse=gatehouse)


class Outcome:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.fields = auth_test_fields(proc.stdout)

    def __repr__(self):
        return 'rc=%s %.2fs\n%s%s' % (self.rc, self.elapsed, self.stdout, self.stderr[-3000:])


def auth_test(conf, user, password, valgrind=False, timeout=60):
    t0 = time.monotonic()
    p = ctl('auth-test', user, stdin=password + '\n', config=conf, valgrind=valgrind,
            valgrind_args=LDAP_VALGRIND_ARGS, timeout=timeout)
    return Outcome(p, time.monotonic() - t0)


def check(tmp, env, auth, user, password, name='gh.conf', **kw):
    return auth_test(ldap_conf(tmp / name, auth), user, password, **kw)


# ------------------------------------------------------------ in-test backends

@pytest.fixture
def backends():
    made = []

    def make(kind, name):
        b = SmtpServer(name, xclient=True) if kind == 'smtp' else ImapServer(name)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


class Gateway:
    """gatehoused with an SMTP and an IMAP listener, both `auth = ldap`, and
    backends of its own (default) whose servers differ from any route."""

    def __init__(self, tmp, daemons, auth, smtp_backend, imap_backend, gatehouse=None,
                 name='gw', valgrind=False, smtp_keys=None, imap_keys=None):
        """smtp_keys, imap_keys: more keys of [backend smtp] and [backend
        imap] (port, follow_route, servers, ...) over these."""
        self.smtp_port, self.imap_port = free_port(), free_port()
        self.conf = ldap_conf(
            tmp / ('%s.conf' % name), auth,
            listeners=[('sub', 'smtp', self.smtp_port, 'smtp'),
                       ('imap', 'imap', self.imap_port, 'imap')],
            gatehouse=gatehouse,
            backends={'smtp': dict({'protocol': 'smtp',
                                    'servers': '127.0.0.1:%d' % smtp_backend.port,
                                    'login': 'xclient'}, **(smtp_keys or {})),
                      'imap': dict({'protocol': 'imap',
                                    'servers': '127.0.0.1:%d' % imap_backend.port,
                                    'login': 'passthrough', 'forward_client': 'no'},
                                   **(imap_keys or {}))})
        argv = [GATEHOUSED, '-c', self.conf]
        log = tmp / ('%s.log' % name)
        self.daemon = Daemon(argv, log, valgrind=True, valgrind_args=LDAP_VALGRIND_ARGS) \
            if valgrind else Daemon(argv, log)
        daemons.append(self.daemon)
        self.daemon.wait_ready()

    def smtp(self):
        """An SMTP client past its EHLO."""
        c = SmtpClient(self.smtp_port, greet=True)
        assert c.greeting[0].startswith('220 ')
        c.cmd('EHLO client.test')
        return c

    def imap(self):
        c = ImapClient(self.imap_port, greet=True)
        assert c.greeting.startswith('* OK')
        return c

    def alive(self):
        return self.daemon.proc.poll() is None

    def backends_of(self, user, count):
        """The backend= fields of the login lines of `user`, in order, once
        there are `count` of them."""
        def found():
            got = re.findall(r'login: session=\S+ .*user="%s" .* backend=(\S+) '
                             % re.escape(user), self.daemon.text())
            return got if len(got) >= count else None
        return wait_for(found, what='%d login lines of %s' % (count, user))

    def assert_no_secrets(self, passwords=slapdfix.ALL_PASSWORDS):
        assert_no_secrets(self.daemon.text(), secrets=passwords)


# ------------------------------------------------------------ search-then-bind

@pytest.mark.parametrize('mode', ['anonymous', 'search-account'])
def test_search_then_bind_right_wrong_unknown(env, tmp, mode):
    keys = search_keys(env) if mode == 'search-account' else {'base': slapdfix.SUFFIX}
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, **keys))
    ok = auth_test(conf, 'alice', USERS['alice'])
    assert ok.rc == 0 and ok.fields['verdict'] == 'ok', ok
    assert ok.fields['user'] == 'alice' and ok.fields['route'] == '-', ok
    wrong = auth_test(conf, 'alice', 'not-alice-pw')
    assert wrong.rc == 1 and wrong.fields['verdict'] == 'wrong-password', wrong
    assert wrong.fields['reason'] == 'wrong password', wrong
    unknown = auth_test(conf, 'nosuchuser', 'whatever')
    assert unknown.rc == 1 and unknown.fields['verdict'] == 'unknown-user', unknown
    # an entry without userPassword cannot bind
    nopass = auth_test(conf, 'nopass', 'anything')
    assert nopass.rc == 1 and nopass.fields['verdict'] == 'wrong-password', nopass


def test_search_account_sees_what_anonymous_does_not(env, tmp):
    """dave lives in ou=staff, which only the search account may read."""
    anon = check(tmp, env, auth_group(env.slapd.uri, base=slapdfix.SUFFIX), 'dave', DAVE_PW)
    assert anon.rc == 1 and anon.fields['verdict'] == 'unknown-user', anon
    acct = check(tmp, env, auth_group(env.slapd.uri, **search_keys(env)), 'dave', DAVE_PW)
    assert acct.rc == 0, acct


def test_search_account_with_wrong_password_is_tempfail(env, tmp):
    bad = tmp / 'bad.secret'
    bad.write_text('not-the-search-pw\n')
    os.chmod(bad, 0o600)
    out = check(tmp, env, auth_group(env.slapd.uri, **search_keys(env, bind_password_file=bad)),
                'alice', USERS['alice'])
    assert out.rc == 2 and out.fields['verdict'] == 'tempfail', out
    assert 'search bind failed' in out.fields['reason'], out
    assert 'bind as the search account (bind_dn) failed' in out.stderr
    assert 'not-the-search-pw' not in out.stdout + out.stderr


def test_scope_and_base(env, tmp):
    one = auth_group(env.slapd.uri, base=slapdfix.PEOPLE, scope='one')
    assert check(tmp, env, one, 'alice', USERS['alice']).rc == 0
    # dup has a twin in ou=alumni, outside ou=people: unique here
    assert check(tmp, env, one, 'dup', 'dup-pw').rc == 0
    base = auth_group(env.slapd.uri, base=slapdfix.PEOPLE, scope='base')
    assert check(tmp, env, base, 'alice', USERS['alice']).fields['verdict'] == 'unknown-user'


def test_ambiguous_filter_refuses_the_login(env, tmp):
    out = check(tmp, env, auth_group(env.slapd.uri, base=slapdfix.SUFFIX), 'dup', 'dup-pw')
    assert out.rc == 1 and out.fields['verdict'] == 'unknown-user', out
    assert out.fields['reason'] == 'ambiguous: more than one entry', out
    assert 'matches more than one entry' in out.stderr
    assert '"dup"' not in out.stderr.split('gh-login')[0], 'user name in a warning'


def test_custom_filter(env, tmp):
    """Log in with the mail address; %% is a literal %."""
    auth = auth_group(env.slapd.uri, base=slapdfix.SUFFIX,
                      filter='(&(objectClass=inetOrgPerson)(mail=%u))', user_attribute='uid')
    out = check(tmp, env, auth, 'alice@example.com', USERS['alice'])
    assert out.rc == 0 and out.fields['user'] == 'alice', out
    assert check(tmp, env, auth, 'alice', USERS['alice']).rc == 1


@pytest.mark.parametrize('login', HOSTILE_LOGINS)
def test_hostile_logins_search(env, tmp, login):
    """No filter injection: with alice's password (and the search account,
    which sees everyone), none of these logs in."""
    out = check(tmp, env, auth_group(env.slapd.uri, **search_keys(env)), login,
                USERS['alice'])
    assert out.rc == 1, out
    assert out.fields['verdict'] in ('unknown-user', 'wrong-password'), out


def test_filter_specials_are_escaped_on_the_wire(env, tmp):
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, base=slapdfix.SUFFIX))
    assert auth_test(conf, '*)(uid=*', USERS['alice']).rc == 1
    assert 'filter="(uid=\\2A\\29\\28uid=\\2A)"' in env.slapd.text()
    # and a real uid made of specials logs in
    out = auth_test(conf, 'we*ird(user)', USERS['we*ird(user)'])
    assert out.rc == 0 and out.fields['user'] == 'we*ird(user)', out
    assert auth_test(conf, 'we*ird(user)', USERS['alice']).rc == 1


def test_dn_special_login_search(env, tmp):
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, base=slapdfix.SUFFIX))
    out = auth_test(conf, 'comma,user', USERS['comma,user'])
    assert out.rc == 0 and out.fields['user'] == 'comma,user', out
    assert auth_test(conf, 'comma,user', 'wrong').rc == 1


@pytest.mark.parametrize('mode', ['search', 'template'])
def test_directory_spelling_of_the_login(env, tmp, mode):
    """LDAP matching ignores case and surrounding spaces in uid: ' ALICE '
    with alice's own password is alice.  Not an injection, but the backend
    would get ' ALICE ' as the user name: user_attribute = uid makes it the
    directory's spelling."""
    keys = {'base': slapdfix.SUFFIX} if mode == 'search' else {'bind_dn_template': TEMPLATE}
    out = check(tmp, env, auth_group(env.slapd.uri, **keys), ' ALICE ', USERS['alice'])
    assert out.rc == 0 and out.fields['user'] == ' ALICE ', out
    out = check(tmp, env, auth_group(env.slapd.uri, user_attribute='uid', **keys), ' ALICE ',
                USERS['alice'])
    assert out.rc == 0 and out.fields['user'] == 'alice', out
    assert check(tmp, env, auth_group(env.slapd.uri, **keys), ' ALICE ', 'bob-pw').rc == 1


def test_empty_password_is_refused_before_ldap(env, tmp):
    """auth-test reads an empty line as an empty password: the module must
    refuse it without a bind (an empty simple bind is an anonymous bind)."""
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, base=slapdfix.SUFFIX))
    before = env.slapd.binds(user_dn('alice'))
    out = auth_test(conf, 'alice', '')
    if out.rc == 64:
        pytest.skip('auth-test refuses an empty password itself (checked through the daemon)')
    assert out.rc == 1 and out.fields['reason'] == 'empty password', out
    assert env.slapd.binds(user_dn('alice')) == before


# ------------------------------------------------------------ bind_dn_template

TEMPLATE = 'uid=%u,ou=people,dc=example,dc=com'


def test_template_bind(env, tmp):
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, bind_dn_template=TEMPLATE))
    ok = auth_test(conf, 'alice', USERS['alice'])
    assert ok.rc == 0 and ok.fields['user'] == 'alice', ok
    wrong = auth_test(conf, 'alice', 'nope')
    assert wrong.rc == 1 and wrong.fields['verdict'] == 'wrong-password', wrong
    # LDAP cannot tell an unknown DN from a wrong password
    unknown = auth_test(conf, 'nosuchuser', 'nope')
    assert unknown.rc == 1 and unknown.fields['reason'] == 'wrong password or unknown user'
    dn_special = auth_test(conf, 'comma,user', USERS['comma,user'])
    assert dn_special.rc == 0, dn_special
    # the bind went to the escaped DN (slapd logs it normalized)
    assert 'BIND dn="uid=comma\\2Cuser,ou=people,dc=example,dc=com"' in env.slapd.text()
    weird = auth_test(conf, 'we*ird(user)', USERS['we*ird(user)'])
    assert weird.rc == 0, weird
    # no search at all
    assert 'SRCH base="uid=alice' not in env.slapd.text()


@pytest.mark.parametrize('login', HOSTILE_LOGINS)
def test_hostile_logins_template(env, tmp, login):
    out = check(tmp, env, auth_group(env.slapd.uri, bind_dn_template=TEMPLATE), login,
                USERS['alice'])
    assert out.rc == 1, out


def test_template_reads_attributes_after_the_bind(env, tmp):
    env.slapd.set_route('bob', '127.0.0.1:4711')
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, bind_dn_template=TEMPLATE,
                                                  route_attribute='mailHost',
                                                  user_attribute='mail'))
    bob = auth_test(conf, 'bob', USERS['bob'])
    assert bob.rc == 0 and bob.fields['route'] == '127.0.0.1:4711', bob
    # bob has no mail: the canonical name stays the login name
    assert bob.fields['user'] == 'bob', bob
    carol = auth_test(conf, 'carol', USERS['carol'])
    assert carol.fields['user'] == 'carol.canonical@example.com', carol
    assert 'SRCH base="uid=carol,ou=people,dc=example,dc=com" scope=0' in env.slapd.text()


# ------------------------------------------------------------ attributes

def test_route_and_user_attributes(env, tmp):
    env.slapd.set_route('bob', '127.0.0.1:4712')
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, **search_keys(
        env, route_attribute='mailHost', user_attribute='mail')))
    bob = auth_test(conf, 'bob', USERS['bob'])
    assert bob.rc == 0 and bob.fields['route'] == '127.0.0.1:4712', bob
    alice = auth_test(conf, 'alice', USERS['alice'])
    assert alice.fields['route'] == '-' and alice.fields['user'] == 'alice@example.com', alice
    # a wrong password reveals neither
    wrong = auth_test(conf, 'bob', 'nope')
    assert wrong.rc == 1 and wrong.fields['route'] == '-', wrong


def test_bad_route_value_is_tempfail(env, tmp):
    conf = ldap_conf(tmp / 'gh.conf', auth_group(env.slapd.uri, base=slapdfix.SUFFIX,
                                                  route_attribute='mailHost'))
    out = auth_test(conf, 'badroute', USERS['badroute'])
    assert out.rc == 2 and out.fields['reason'] == (
        "mailHost value 'not a route' is not a route "
        "(HOST, HOST:PORT, [IPv6] or [IPv6]:PORT)"), out


# ------------------------------------------------------------ TLS

@pytest.mark.parametrize('how', ['starttls', 'ldaps'])
def test_tls_with_ca_file(env, tmp, how):
    uri = env.slapd.uri if how == 'starttls' else env.slapd.ldaps_uri
    keys = search_keys(env, ca_file=env.pki.ca_crt, user_attribute='mail')
    if how == 'starttls':
        keys['start_tls'] = 'yes'
    out = check(tmp, env, auth_group(uri, **keys), 'alice', USERS['alice'])
    assert out.rc == 0 and out.fields['user'] == 'alice@example.com', out
    text = env.slapd.text()
    if how == 'starttls':
        assert 'EXT oid=1.3.6.1.4.1.1466.20037' in text
    # the binds ran encrypted: slapd logs a non-zero ssf
    assert re.search(r'BIND dn="%s" mech=SIMPLE bind_ssf=0 ssf=(1\d\d|2\d\d)' %
                     re.escape(SEARCH_DN), text), text[-2000:]


@pytest.mark.parametrize('how', ['starttls', 'ldaps'])
def test_tls_wrong_ca_is_refused(env, tmp, how):
    uri = env.slapd.uri if how == 'starttls' else env.slapd.ldaps_uri
    keys = search_keys(env, ca_file=env.pki.untrusted_ca())
    if how == 'starttls':
        keys['start_tls'] = 'yes'
    out = check(tmp, env, auth_group(uri, **keys), 'alice', USERS['alice'])
    assert out.rc == 2 and out.fields['verdict'] == 'tempfail', out
    # ... unless certificate checks are off
    keys['tls_require_cert'] = 'never'
    out = check(tmp, env, auth_group(uri, **keys), 'alice', USERS['alice'])
    assert out.rc == 0, out


def test_starttls_to_plain_only_server_does_not_fall_back(env, tmp):
    """start_tls = yes against a server without TLS (no certificate): the
    login fails with TEMPFAIL, never in clear text."""
    s = Slapd(tmp / 'plain', free_port()).start()
    try:
        out = check(tmp, env, auth_group(s.uri, base=slapdfix.SUFFIX, start_tls='yes',
                                         ca_file=env.pki.ca_crt), 'alice', USERS['alice'])
        assert out.rc == 2, out
        assert s.binds(user_dn('alice')) == 0
    finally:
        s.stop()


# ------------------------------------------------------------ configuration

def bad_pw_files(tmp):
    empty = tmp / 'empty.secret'
    empty.write_text('\n')
    return {'missing': tmp / 'no-such-file', 'empty': empty}


CONFIG_ERRORS = [
    # (keys, key named in the error)
    ({'uri': None}, 'uri'),
    ({'uri': 'http://127.0.0.1/'}, 'uri'),
    ({'uri': 'ldap://127.0.0.1/dc=example,dc=com??sub'}, 'uri'),
    ({'uri': 'ldap:///'}, 'uri'),
    ({'start_tls': 'maybe'}, 'start_tls'),
    ({'base': None}, 'base'),
    ({'base': 'not a dn'}, 'base'),
    ({'scope': 'subtree'}, 'scope'),
    ({'filter': '(uid=alice)'}, 'filter'),
    ({'filter': 'uid=%u'}, 'filter'),
    ({'filter': '(uid=%x)'}, 'filter'),
    ({'filter': '(uid=%u))('}, 'filter'),
    ({'filter': '(uid=%u\\zz)'}, 'filter'),
    ({'bind_dn': SEARCH_DN}, 'bind_password_file'),
    ({'bind_password_file': '@missing'}, 'bind_dn'),
    ({'bind_dn': SEARCH_DN, 'bind_password_file': '@missing'}, 'bind_password_file'),
    ({'bind_dn': SEARCH_DN, 'bind_password_file': '@empty'}, 'bind_password_file'),
    ({'bind_dn': 'cn=x,,', 'bind_password_file': '@empty'}, 'bind_dn'),
    ({'base': None, 'bind_dn_template': 'uid=alice,ou=people,dc=example,dc=com'},
     'bind_dn_template'),
    ({'base': None, 'bind_dn_template': 'uid=%u,,dc=x'}, 'bind_dn_template'),
    ({'bind_dn_template': TEMPLATE}, 'base'),
    ({'base': None, 'bind_dn_template': TEMPLATE, 'filter': '(uid=%u)'}, 'filter'),
    ({'route_attribute': 'mail host'}, 'route_attribute'),
    ({'user_attribute': '(uid)'}, 'user_attribute'),
    ({'timeout': '0'}, 'timeout'),
    ({'timeout': '5s'}, 'timeout'),
    ({'network_timeout': '-1'}, 'network_timeout'),
    ({'tls_require_cert': 'sometimes'}, 'tls_require_cert'),
    ({'pool_size': '0'}, 'pool_size'),
    ({'pool_size': '3'}, 'pool_size'),
    ({'ca_file': '@missing'}, 'ca_file'),
    ({'ca_file': '/etc/hostname', 'start_tls': 'yes'}, 'ca_file'),
    ({'no_such_key': '1'}, 'no_such_key'),
]


@pytest.mark.parametrize('keys,key', CONFIG_ERRORS,
                         ids=['%s-%d' % (k, i) for i, (_, k) in enumerate(CONFIG_ERRORS)])
def test_config_errors_name_the_key(env, tmp, keys, key):
    files = bad_pw_files(tmp)
    d = {'uri': env.slapd.uri, 'base': slapdfix.SUFFIX}
    for k, v in keys.items():
        d[k] = files[v[1:]] if isinstance(v, str) and v.startswith('@') else v
    conf = ldap_conf(tmp / 'gh.conf', auth_group(**d))
    out = auth_test(conf, 'alice', USERS['alice'])
    assert out.rc == 78, out
    assert re.search(r'gh\.conf:\d+: \[auth ldap\] %s: ' % key, out.stderr), out
    # gatehoused -t says the same
    t = subprocess.run([str(GATEHOUSED), '-t', '-c', str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert t.returncode != 0 and '[auth ldap] %s: ' % key in t.stdout + t.stderr, t


def test_backslashes_follow_the_file_syntax(env, tmp):
    """In gatehouse.conf a backslash is written \\\\: the LDAP escape \\2a
    (a literal '*') is written \\\\2a; a bare \\2a is a configuration error."""
    flt = '(&(uid=%u)(!(cn=\\\\2a)))'   # the file holds (&(uid=%u)(!(cn=\\2a)))
    out = check(tmp, env, auth_group(env.slapd.uri, base=slapdfix.SUFFIX, filter=flt),
                'alice', USERS['alice'])
    assert out.rc == 0, out
    assert 'filter="(&(uid=alice)(!(cn=\\2A)))"' in env.slapd.text()
    out = check(tmp, env, auth_group(env.slapd.uri, base=slapdfix.SUFFIX,
                                     filter='(&(uid=%u)(!(cn=\\2a)))'), 'alice', USERS['alice'])
    assert out.rc == 78 and '[auth ldap] filter: bad value' in out.stderr, out


def test_good_config_checks(env, tmp):
    conf = ldap_conf(tmp / 'gh.conf', auth_group(
        '%s %s' % (env.slapd.uri, env.slapd.ldaps_uri), **search_keys(
            env, scope='sub', filter='(&(objectClass=inetOrgPerson)(uid=%u))',
            start_tls='yes', ca_file=env.pki.ca_crt, tls_require_cert='demand',
            route_attribute='mailHost', user_attribute='uid', timeout=5, network_timeout=3,
            pool_size=2)))
    t = subprocess.run([str(GATEHOUSED), '-t', '-c', str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert t.returncode == 0, t.stdout + t.stderr


# ------------------------------------------------------------ fault tolerance

def test_server_down_is_tempfail_quickly(env, tmp, own_slapd):
    """slapd stopped: the refused connect is a TEMPFAIL at once, not after a
    timeout.  Shown without a stopwatch: both timeouts are 600 s, ten times
    auth_test's 60 s guard, so an answer at all is one that waited for none."""
    timeout = net = 600
    conf = ldap_conf(tmp / 'gh.conf', auth_group(own_slapd.uri, base=slapdfix.SUFFIX,
                                                  timeout=timeout, network_timeout=net))
    assert auth_test(conf, 'alice', USERS['alice']).rc == 0
    own_slapd.stop()
    out = auth_test(conf, 'alice', USERS['alice'])
    print('\n[timing] slapd stopped, auth-test: %.3f s (rc %d)' % (out.elapsed, out.rc))
    assert out.rc == 2 and out.fields['verdict'] == 'tempfail', out
    own_slapd.start()
    assert auth_test(conf, 'alice', USERS['alice']).rc == 0


def test_dead_first_uri_fails_over(env, tmp):
    """A refused first server costs no timeout: the next one answers, and two
    refused ones are a TEMPFAIL.  network_timeout is 600 s, ten times
    auth_test's 60 s guard: an answer at all is one that waited for none."""
    net = 600
    dead = 'ldap://127.0.0.1:%d' % free_port()
    conf = ldap_conf(tmp / 'gh.conf', auth_group('%s %s' % (dead, env.slapd.uri),
                                                  base=slapdfix.SUFFIX, network_timeout=net))
    out = auth_test(conf, 'alice', USERS['alice'])
    print('\n[timing] dead first URI, then a live one: %.3f s' % out.elapsed)
    assert out.rc == 0, out
    assert 'LDAP server %s: cannot connect' % dead in out.stderr
    # all dead: TEMPFAIL
    conf = ldap_conf(tmp / 'gh2.conf', auth_group('%s ldap://127.0.0.1:%d' % (
        dead, free_port()), base=slapdfix.SUFFIX, network_timeout=net))
    out = auth_test(conf, 'alice', USERS['alice'])
    print('[timing] two dead URIs: %.3f s' % out.elapsed)
    assert out.rc == 2, out


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never sends a byte."""
    s = Server(silent)
    yield s.port
    s.close()


@pytest.mark.parametrize('how', ['ldap', 'starttls', 'ldaps'])
def test_silent_server_is_bounded(env, tmp, silent_server, how):
    """A server that accepts and never answers: TEMPFAIL after `timeout`
    (LDAP operations, StartTLS) or 2 x network_timeout (the ldaps://
    handshake, which libldap+GnuTLS alone would spin on forever)."""
    timeout, net = 2, 1
    scheme = 'ldaps' if how == 'ldaps' else 'ldap'
    keys = {'base': slapdfix.SUFFIX, 'timeout': timeout, 'network_timeout': net,
            'ca_file': env.pki.ca_crt if how != 'ldap' else None,
            'start_tls': 'yes' if how == 'starttls' else None}
    out = check(tmp, env, auth_group('%s://127.0.0.1:%d' % (scheme, silent_server), **keys),
                'alice', USERS['alice'], timeout=30)
    print('\n[timing] silent server (%s), timeout=%d network_timeout=%d: %.3f s'
          % (how, timeout, net, out.elapsed))
    assert out.rc == 2, out
    bound = {'ldap': timeout, 'starttls': timeout, 'ldaps': 2 * net}[how]
    # not before the bound (tight); after it, anything short of check()'s
    # 30 s (a busy machine is slow, "for ever" is what this guards against)
    assert out.elapsed > bound - 0.2, out


def test_silent_first_server_then_live(env, tmp, silent_server):
    conf = ldap_conf(tmp / 'gh.conf', auth_group(
        'ldap://127.0.0.1:%d %s' % (silent_server, env.slapd.uri), base=slapdfix.SUFFIX,
        timeout=1, network_timeout=1))
    out = auth_test(conf, 'alice', USERS['alice'])
    print('\n[timing] silent first server, live second: %.3f s' % out.elapsed)
    # the first try times out on the silent server (so not before 1 s), the
    # retry goes to the next (auth_test's 60 s bounds it from above)
    assert out.rc == 0 and out.elapsed >= 1, out


# ------------------------------------------------------------ through the daemon

@pytest.fixture
def gw_parts(backends):
    return {'smtp': backends('smtp', 'default-smtp'), 'imap': backends('imap', 'default-imap'),
            'smtp_routed': backends('smtp', 'routed-smtp'),
            'imap_routed': backends('imap', 'routed-imap')}


def test_daemon_smtp_and_imap_verdicts(env, tmp, daemons, gw_parts):
    gw = Gateway(tmp, daemons, auth_group(env.slapd.uri, **search_keys(env)),
                 gw_parts['smtp'], gw_parts['imap'])
    for user, pw, smtp_reply, imap_reply in [
            ('alice', 'wrong', SMTP_BAD, IMAP_BAD),
            ('nosuchuser', 'x', SMTP_BAD, IMAP_BAD),
            ('alice', '', SMTP_BAD, IMAP_BAD),
            ('*', USERS['alice'], SMTP_BAD, IMAP_BAD),
            ('admin)(|(uid=*', USERS['alice'], SMTP_BAD, IMAP_BAD)]:
        with gw.smtp() as c:
            assert c.auth_plain(user, pw) == smtp_reply, (user, pw)
        with gw.imap() as c:
            assert c.authenticate_plain(user, pw) == imap_reply, (user, pw)
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_OK
        assert c.cmd('NOOP') == ['250 2.0.0 default-smtp NOOP']
    with gw.imap() as c:
        assert c.authenticate_plain('comma,user', USERS['comma,user']).startswith('OK ')
        assert c.command('b NOOP') == 'OK default-imap NOOP'
    assert gw_parts['imap'].users() == ['comma,user']
    # the empty password never reached slapd as a bind
    assert 'BIND dn="%s" method=128' % user_dn('alice') in env.slapd.text()
    gw.assert_no_secrets()


def test_daemon_route_and_canonical_user(env, tmp, daemons, gw_parts):
    env.slapd.set_route('bob', '127.0.0.1:%d' % gw_parts['smtp_routed'].port)
    auth = auth_group(env.slapd.uri, **search_keys(env, route_attribute='mailHost',
                                                   user_attribute='mail'))
    gw = Gateway(tmp, daemons, auth, gw_parts['smtp'], gw_parts['imap'])
    with gw.smtp() as c:
        assert c.auth_plain('bob', USERS['bob']) == SMTP_OK
        assert c.cmd('NOOP') == ['250 2.0.0 routed-smtp NOOP']
    assert gw_parts['smtp_routed'].connections == 1 and gw_parts['smtp'].connections == 0
    with gw.smtp() as c:
        assert c.auth_plain('carol', USERS['carol']) == SMTP_OK
        assert c.cmd('NOOP') == ['250 2.0.0 default-smtp NOOP']
    assert gw_parts['smtp'].xclient_login() == 'carol.canonical@example.com'

    env.slapd.set_route('bob', '127.0.0.1:%d' % gw_parts['imap_routed'].port)
    gw.daemon.signal(__import__('signal').SIGHUP)  # a fresh cache: the route changed
    gw.daemon.wait_log('configuration reloaded', timeout=10)
    with gw.imap() as c:
        assert c.authenticate_plain('bob', USERS['bob']).startswith('OK ')
        assert c.command('b NOOP') == 'OK routed-imap NOOP'
    with gw.imap() as c:
        assert c.authenticate_plain('carol', USERS['carol']).startswith('OK ')
    assert gw_parts['imap'].users() == ['carol.canonical@example.com']
    assert gw_parts['imap_routed'].users() == ['bob']
    gw.assert_no_secrets()


@pytest.mark.parametrize('port_from', ['port-key', 'first-server'])
def test_daemon_route_without_port(env, tmp, daemons, gw_parts, port_from):
    """mailHost holds a host name without a port, as directories keep it
    (one value for IMAP and SMTP alike): each backend dials it on its own
    `port` (port-key) or, without one, on its first server's port
    (first-server: the routed server listed first, the default second, so
    that only the route's host tells which was dialled).  The name is
    resolved by the daemon (localhost), and the login line shows the port
    used."""
    env.slapd.set_route('bob', 'localhost')
    smtp_routed, imap_routed = gw_parts['smtp_routed'].port, gw_parts['imap_routed'].port
    if port_from == 'port-key':
        smtp_keys, imap_keys = {'port': smtp_routed}, {'port': imap_routed}
    else:
        smtp_keys = {'servers': '127.0.0.1:%d 127.0.0.1:%d' % (smtp_routed,
                                                              gw_parts['smtp'].port)}
        imap_keys = {'servers': '127.0.0.1:%d 127.0.0.1:%d' % (imap_routed,
                                                              gw_parts['imap'].port)}
    auth = auth_group(env.slapd.uri, **search_keys(env, route_attribute='mailHost'))
    gw = Gateway(tmp, daemons, auth, gw_parts['smtp'], gw_parts['imap'],
                 smtp_keys=smtp_keys, imap_keys=imap_keys)
    with gw.smtp() as c:
        assert c.auth_plain('bob', USERS['bob']) == SMTP_OK
        assert c.cmd('NOOP') == ['250 2.0.0 routed-smtp NOOP']
    with gw.imap() as c:
        assert c.authenticate_plain('bob', USERS['bob']).startswith('OK ')
        assert c.command('b NOOP') == 'OK routed-imap NOOP'
    assert gw_parts['imap_routed'].users() == ['bob']
    assert gw_parts['smtp_routed'].xclient_login() == 'bob'
    assert gw_parts['smtp'].connections == 0 and gw_parts['imap'].connections == 0
    assert gw.backends_of('bob', 2) == ['localhost:%d' % smtp_routed,
                                     'localhost:%d' % imap_routed], gw.daemon.text()[-3000:]
    gw.assert_no_secrets()


def test_daemon_follow_route_no(env, tmp, daemons, gw_parts):
    """follow_route = no on the SMTP backend (submission to a central MTA)
    while IMAP follows mailHost: one route, two answers."""
    env.slapd.set_route('bob', '127.0.0.1')
    auth = auth_group(env.slapd.uri, **search_keys(env, route_attribute='mailHost'))
    gw = Gateway(tmp, daemons, auth, gw_parts['smtp'], gw_parts['imap'],
                 smtp_keys={'port': gw_parts['smtp_routed'].port, 'follow_route': False},
                 imap_keys={'port': gw_parts['imap_routed'].port})
    with gw.smtp() as c:
        assert c.auth_plain('bob', USERS['bob']) == SMTP_OK
        assert c.cmd('NOOP') == ['250 2.0.0 default-smtp NOOP']
    with gw.imap() as c:
        assert c.authenticate_plain('bob', USERS['bob']).startswith('OK ')
        assert c.command('b NOOP') == 'OK routed-imap NOOP'
    assert gw_parts['smtp'].xclient_login() == 'bob'
    assert gw_parts['smtp_routed'].connections == 0 and gw_parts['imap'].connections == 0
    assert gw_parts['imap_routed'].users() == ['bob']
    assert gw.backends_of('bob', 2) == ['127.0.0.1:%d' % gw_parts['smtp'].port,
                                     '127.0.0.1:%d' % gw_parts['imap_routed'].port]
    gw.assert_no_secrets()


def test_daemon_survives_slapd_restart(env, tmp, daemons, gw_parts, own_slapd):
    """slapd stops: 454 / NO [UNAVAILABLE] promptly, the daemon lives on;
    slapd starts again on the same port and data: logins work without a
    restart of gatehoused (its pooled connections died with slapd)."""
    # "promptly" without a stopwatch: the timeouts are 600 s, twenty times the
    # clients' 30 s read, so an answer at all is one that waited for none
    auth = auth_group(own_slapd.uri, **search_keys(env, timeout=600, network_timeout=600,
                                                   pool_size=2))
    gw = Gateway(tmp, daemons, auth, gw_parts['smtp'], gw_parts['imap'],
                 gatehouse={'auth_cache_size': '0', 'auth_workers': '2'})
    for _ in range(3):  # fill the pool
        with gw.smtp() as c:
            assert c.auth_plain('alice', USERS['alice']) == SMTP_OK
    own_slapd.stop()
    t0 = time.monotonic()
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_TEMP
    smtp_s = time.monotonic() - t0
    t0 = time.monotonic()
    with gw.imap() as c:
        assert c.authenticate_plain('alice', USERS['alice']) == IMAP_TEMP
    imap_s = time.monotonic() - t0
    print('\n[timing] slapd stopped, through the daemon: SMTP 454 in %.4f s, IMAP NO in '
          '%.4f s' % (smtp_s, imap_s))
    assert gw.alive()
    own_slapd.start()
    t0 = time.monotonic()
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_OK
    with gw.imap() as c:
        assert c.authenticate_plain('alice', USERS['alice']).startswith('OK ')
    print('[timing] slapd back: first login %.3f s' % (time.monotonic() - t0))
    assert 'connected again' in gw.daemon.text()
    gw.assert_no_secrets()


def test_daemon_concurrent_logins(env, tmp, daemons, gw_parts):
    """Many logins at once on 4 worker threads, right and wrong passwords
    mixed: each gets its own answer (no handle or result shared)."""
    auth = auth_group(env.slapd.uri, **search_keys(env, pool_size=2, user_attribute='uid'))
    gw = Gateway(tmp, daemons, auth, gw_parts['smtp'], gw_parts['imap'],
                 gatehouse={'auth_cache_size': '0', 'auth_workers': '4'})
    jobs = [(u, USERS[u] if i % 3 else 'wrong-%d' % i)
            for i, u in enumerate(['alice', 'bob', 'carol', 'comma,user'] * 8)]

    def one(job):
        user, pw = job
        with gw.smtp() as c:
            return c.auth_plain(user, pw)
    with ThreadPoolExecutor(16) as ex:
        replies = list(ex.map(one, jobs))
    for (user, pw), reply in zip(jobs, replies):
        assert reply == (SMTP_OK if pw == USERS[user] else SMTP_BAD), (user, pw, reply)
    assert gw.alive()


def test_cache_spares_slapd_and_password_change(env, tmp, daemons, gw_parts, own_slapd):
    """Within auth_cache_ttl a second login is answered from the cache: no
    BIND reaches slapd.  After a password change, the new password is a
    cache miss and works at once; the old one keeps working from the cache
    until the TTL ends or the new one is used (which replaces the entry)."""
    auth = auth_group(own_slapd.uri, **search_keys(env))
    gw = Gateway(tmp, daemons, auth, gw_parts['smtp'], gw_parts['imap'],
                 gatehouse={'auth_cache_ttl': '300', 'auth_cache_negative_ttl': '60'})
    dn = user_dn('alice')
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_OK
    assert own_slapd.binds(dn) == 1
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_OK
    assert own_slapd.binds(dn) == 1, 'the second login reached slapd'
    assert 'cached=yes' in gw.daemon.text()

    own_slapd.set_password(dn, 'alice-new-pw')
    # old password, still in the cache: served without asking slapd
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_OK
    assert own_slapd.binds(dn) == 1
    # the new one: a miss, checked by slapd, accepted
    with gw.smtp() as c:
        assert c.auth_plain('alice', 'alice-new-pw') == SMTP_OK
    assert own_slapd.binds(dn) == 2
    # that replaced the cache entry: the old password now goes to slapd and fails
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_BAD
    assert own_slapd.binds(dn) == 3
    gw.assert_no_secrets(slapdfix.ALL_PASSWORDS + ['alice-new-pw'])


# ------------------------------------------------------------ valgrind

def test_auth_test_under_valgrind(env, tmp):
    """Search account, StartTLS, attributes, a good and a wrong password, and
    a server that is down: no memory errors, no definite or indirect leaks
    (libldap/GnuTLS exceptions, if any, in tests/valgrind-ldap.supp)."""
    conf = ldap_conf(tmp / 'gh.conf', auth_group(
        'ldap://127.0.0.1:%d %s' % (free_port(), env.slapd.uri), **search_keys(
            env, start_tls='yes', ca_file=env.pki.ca_crt, route_attribute='mailHost',
            user_attribute='mail', network_timeout=2)))
    for user, pw, rc in [('carol', USERS['carol'], 0), ('alice', 'wrong', 1)]:
        out = auth_test(conf, user, pw, valgrind=True, timeout=120)
        assert out.rc == rc, out
    conf = ldap_conf(tmp / 'gh2.conf', auth_group(env.slapd.ldaps_uri,
                                                   bind_dn_template=TEMPLATE,
                                                   ca_file=env.pki.ca_crt))
    out = auth_test(conf, 'alice', USERS['alice'], valgrind=True, timeout=120)
    assert out.rc == 0, out


def test_daemon_under_valgrind(env, tmp, daemons, gw_parts):
    """gatehoused with the module: pooled connections on worker threads, a
    SIGHUP (old instance freed with its pool), SIGTERM: valgrind-clean."""
    auth = auth_group(env.slapd.uri, **search_keys(env, pool_size=2, start_tls='yes',
                                                   ca_file=env.pki.ca_crt))
    gw = Gateway(tmp, daemons, auth, gw_parts['smtp'], gw_parts['imap'],
                 gatehouse={'auth_cache_size': '0'}, valgrind=True)
    for user, pw, reply in [('alice', USERS['alice'], SMTP_OK), ('bob', 'x', SMTP_BAD)]:
        with gw.smtp() as c:
            assert c.auth_plain(user, pw) == reply
    gw.daemon.signal(__import__('signal').SIGHUP)
    gw.daemon.wait_log('configuration reloaded', timeout=30)
    with gw.smtp() as c:
        assert c.auth_plain('alice', USERS['alice']) == SMTP_OK
    rc = gw.daemon.stop(timeout=60)
    assert rc != 99, 'valgrind found errors:\n%s' % gw.daemon.text()[-6000:]
    assert rc == 0, gw.daemon.text()[-3000:]
