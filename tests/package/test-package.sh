#!/bin/bash
# tests/package/test-package.sh: the Debian package, end to end, as root.
#
#   tests/package/test-package.sh            (from anywhere in the repository)
#
# 1. clones the repository at HEAD into a temporary directory (what is
#    committed is what is tested) and builds it with
#    `dpkg-buildpackage -us -uc -b`;
# 2. runs lintian on the result and fails on any error;
# 3. installs gatehouse, gatehouse-ldap, gatehouse-pam and gatehouse-dev with
#    `apt-get install ./...deb` and checks the layout: programs, modules,
#    units (present, not enabled), PAM file, man pages, conffiles, the user
#    and group, /etc/gatehouse's owner and mode;
# 4. `gatehoused -t` on the shipped sample, on a configuration that loads
#    the pam and ldap modules, and on a minimal one: an IMAP listener in
#    front of a real Dovecot (dovecot-backend.py, the integration tests'
#    private one) on 127.0.0.1 at ports chosen now, users made with the installed `gatehousectl hash-password`;
# 5. starts the installed /usr/sbin/gatehoused under
#    `systemd-socket-activate --fdname=imap`, logs in through it (and fails
#    to with a wrong password), asks it `gatehousectl stats`, checks it
#    dropped to the user gatehouse, reinstalls the package and checks the
#    admin's gatehouse.conf is untouched, then stops it by its PID;
# 6. purges the packages and checks that nothing is left: /etc/gatehouse,
#    the module directory, units, PAM file, man pages, the user and group,
#    dpkg's and deb-systemd-helper's records.
#
# It refuses to run where gatehouse is installed or a user or group
# gatehouse exists (it would not be able to tell what it created), and it
# leaves the machine as it found it: whatever happens, the trap purges what
# it installed, stops what it started and removes its temporary directory.
# Needs: build-essential debhelper dpkg-dev devscripts lintian fakeroot,
# dovecot-imapd,
# the build dependencies of debian/control, systemd (systemd-socket-activate)
# and python3.  Ends with PASS or FAIL and exit status 0 or 1.

set -u
export LC_ALL=C.UTF-8
export DEBIAN_FRONTEND=noninteractive

here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" -ne 0 ]; then
	echo "FAIL: run as root (it installs and purges packages)"
	exit 1
fi
repo=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null) || {
	echo "FAIL: $here is not in a git repository"
	exit 1
}
packages="gatehouse gatehouse-ldap gatehouse-pam gatehouse-dev"

failures=0
checks=0
t0=$SECONDS
say() { printf '[%4ds] %s\n' $((SECONDS - t0)) "$*"; }
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); failures=$((failures + 1)); echo "  not ok: $*"; }
# check DESCRIPTION COMMAND...: the command must succeed
check() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then ok; else bad "$what"; fi
}
# check_not DESCRIPTION COMMAND...: the command must fail
check_not() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then bad "$what"; else ok; fi
}
finish() {
	if [ "$failures" -eq 0 ]; then
		say "PASS: $checks checks"
		exit 0
	fi
	say "FAIL: $failures of $checks checks failed"
	exit 1
}
die() {
	failures=$((failures + 1))
	echo "  not ok: $*"
	finish
}

# ---------------------------------------------------------------- before
missing=
for tool in git dpkg-buildpackage dpkg-checkbuilddeps dh lintian fakeroot apt-get \
	systemd-socket-activate python3 getent useradd dovecot; do
	command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -z "$missing" ] || die "missing:$missing (apt-get install build-essential debhelper dpkg-dev devscripts lintian fakeroot systemd python3 dovecot-imapd)"
for p in $packages; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed\|config-files'; then
		die "$p is already installed (or not purged): this test installs and purges it; purge it first"
	fi
done
getent passwd gatehouse >/dev/null && die "a user gatehouse exists already: the test could not tell whether purge removes what the package made"
getent group gatehouse >/dev/null && die "a group gatehouse exists already"
[ -e /etc/gatehouse ] && die "/etc/gatehouse exists already"

# the package ships files under /etc/fail2ban: where fail2ban is not
# installed, purge must take the directories away again
fail2ban_before=no
[ -e /etc/fail2ban ] && fail2ban_before=yes

tmp=$(mktemp -d /tmp/gatehouse-package.XXXXXX)
chmod 0755 "$tmp"
installed=no
daemon_pid=
backend_pid=
cleanup() {
	for pid in $daemon_pid $backend_pid; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	if [ "$installed" = yes ]; then
		apt-get purge -y -q $packages >"$tmp/purge-cleanup.log" 2>&1 ||
			echo "  cleanup: apt-get purge failed: $(tail -3 "$tmp/purge-cleanup.log")"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---------------------------------------------------------------- build
say "cloning $repo at $(git -C "$repo" rev-parse --short HEAD) into $tmp/src"
git clone -q "$repo" "$tmp/src" || die "git clone"
cd "$tmp/src" || die "cd $tmp/src"
# the package's version is the project's (debian/source/format: native)
ac_version=$(sed -n 's/^AC_INIT(\[gatehouse\], \[\([^]]*\)\].*/\1/p' configure.ac)
deb_version=$(dpkg-parsechangelog -S Version)
[ "$ac_version" = "$deb_version" ] && ok ||
	bad "debian/changelog says $deb_version, configure.ac says $ac_version"
if ! dpkg-checkbuilddeps >"$tmp/builddeps.log" 2>&1; then
	cat "$tmp/builddeps.log"
	die "build dependencies missing: apt-get build-dep ./ (or mk-build-deps -i) in the repository"
fi
say "dpkg-buildpackage -us -uc -b (log: build.log)"
if ! DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1; then
	tail -40 "$tmp/build.log"
	die "dpkg-buildpackage failed"
fi
cd "$tmp" || die "cd $tmp"
arch=$(dpkg --print-architecture)
v=$deb_version
debs="./gatehouse_${v}_${arch}.deb ./gatehouse-ldap_${v}_${arch}.deb ./gatehouse-pam_${v}_${arch}.deb ./gatehouse-dev_${v}_all.deb"
for d in $debs; do
	[ -f "$d" ] || die "dpkg-buildpackage made no $d ($(ls ./*.deb | tr '\n' ' '))"
done
say "built: $(cd "$tmp" && ls ./*.deb | tr '\n' ' ')"

# ---------------------------------------------------------------- lintian
say "lintian"
lintian --fail-on error --info --display-level '>=warning' \
	"gatehouse_${v}_${arch}.changes" >"$tmp/lintian.log" 2>&1
lintian_rc=$?
grep -v '^running with root privileges' "$tmp/lintian.log" | sed 's/^/  lintian: /'
[ "$lintian_rc" -eq 0 ] && ok || bad "lintian reports errors (exit $lintian_rc)"

# the base package pulls in neither libldap nor PAM
base_deps=$(dpkg-deb -f "gatehouse_${v}_${arch}.deb" Depends)
check_not "gatehouse depends on libldap: $base_deps" grep -q libldap <<<"$base_deps"
check_not "gatehouse depends on libpam: $base_deps" grep -q libpam <<<"$base_deps"

# ---------------------------------------------------------------- install
say "apt-get install $debs"
installed=yes
if ! apt-get install -y -q $debs >"$tmp/install.log" 2>&1; then
	tail -20 "$tmp/install.log"
	die "apt-get install failed"
fi
grep -i 'warning\|error' "$tmp/install.log" | grep -v '^W: Download is performed unsandboxed' | sed 's/^/  install: /'

say "checking the installed layout"
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)
moddir=/usr/lib/$ma/gatehouse/modules
unitdir=/lib/systemd/system
for f in /usr/sbin/gatehoused /usr/sbin/gatehousectl "$moddir/pam-helper"; do
	check "$f is an executable" test -x "$f"
done
for f in "$moddir/file.so" "$moddir/ldap.so" "$moddir/pam.so" \
	/etc/gatehouse/gatehouse.conf.sample /etc/gatehouse/users.sample \
	/etc/pam.d/gatehouse /etc/fail2ban/filter.d/gatehouse.conf \
	/etc/fail2ban/jail.d/gatehouse.conf.sample \
	/usr/include/gatehouse/gh-auth-module.h \
	/usr/share/man/man8/gatehoused.8.gz /usr/share/man/man8/gatehousectl.8.gz \
	/usr/share/man/man5/gatehouse.conf.5.gz /usr/share/doc/gatehouse/README.Debian \
	$unitdir/gatehouse.service $unitdir/gatehouse-smtp.socket \
	$unitdir/gatehouse-submission.socket $unitdir/gatehouse-imap.socket \
	$unitdir/gatehouse-pop3.socket $unitdir/gatehouse-pam.socket \
	"$unitdir/gatehouse-pam@.service"; do
	check "$f is installed" test -f "$f"
done
check "$moddir/file.so is in gatehouse" sh -c "dpkg -S $moddir/file.so | grep -q '^gatehouse:'"
check "$moddir/ldap.so is in gatehouse-ldap" sh -c "dpkg -S $moddir/ldap.so | grep -q '^gatehouse-ldap:'"
check "/etc/pam.d/gatehouse is in gatehouse-pam" sh -c "dpkg -S /etc/pam.d/gatehouse | grep -q '^gatehouse-pam:'"
check "the unit runs the installed gatehoused" \
	grep -qx 'ExecStart=/usr/sbin/gatehoused -c /etc/gatehouse/gatehouse.conf' $unitdir/gatehouse.service
check "the helper unit runs the installed pam-helper" \
	grep -qx "ExecStart=$moddir/pam-helper" "$unitdir/gatehouse-pam@.service"
check "the helper unit gives its helpers the group shadow" \
	grep -qx 'SupplementaryGroups=shadow' "$unitdir/gatehouse-pam@.service"
check "man gatehoused" sh -c 'zcat /usr/share/man/man8/gatehoused.8.gz | grep -q gatehoused'
check "gatehoused --version" sh -c "/usr/sbin/gatehoused --version | grep -q '$ac_version'"
check "gatehousectl --version" sh -c "/usr/sbin/gatehousectl --version | grep -q '$ac_version'"

# nothing enabled, nothing listening on the mail ports
enabled=$(find /etc/systemd/system -name 'gatehouse*' 2>/dev/null)
[ -z "$enabled" ] && ok || bad "units enabled on installation: $enabled"
for port in 25 587 143 110; do
	check_not "something listens on port $port after installation" \
		sh -c "ss -Hltn 'sport = :$port' | grep -q ."
done

# user, group, /etc/gatehouse
pw=$(getent passwd gatehouse)
[ -n "$pw" ] && ok || bad "no user gatehouse"
IFS=: read -r _ _ uid gid gecos home shell <<<"$pw"
[ "${uid:-99999}" -lt 1000 ] && ok || bad "gatehouse is not a system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] && ok || bad "gatehouse's shell is $shell"
[ "$home" = /nonexistent ] && [ ! -e /nonexistent ] && ok || bad "gatehouse's home is $home"
[ "$(getent group gatehouse | cut -d: -f3)" = "$gid" ] && ok || bad "gatehouse's primary group is not gatehouse"
check_not "the user gatehouse is in group shadow (only the PAM helpers should be)" \
	sh -c "id -nG gatehouse | tr ' ' '\n' | grep -qx shadow"
[ "$(stat -c '%U:%G %a' /etc/gatehouse)" = "root:gatehouse 750" ] && ok ||
	bad "/etc/gatehouse is $(stat -c '%U:%G %a' /etc/gatehouse), not root:gatehouse 750"
check_not "the package wrote /etc/gatehouse/gatehouse.conf" test -e /etc/gatehouse/gatehouse.conf
conffiles=$(dpkg-query -W -f='${Conffiles}\n' gatehouse)
check "gatehouse.conf.sample is a conffile" grep -q ' /etc/gatehouse/gatehouse.conf.sample ' <<<"$conffiles"
check_not "gatehouse.conf is a conffile" grep -q ' /etc/gatehouse/gatehouse.conf ' <<<"$conffiles"

# ---------------------------------------------------------------- configure
say "users file with gatehousectl hash-password; gatehoused -t"
password='s3cret "pass"'
hash=$(printf '%s\n' "$password" | /usr/sbin/gatehousectl hash-password 2>"$tmp/hash.err")
case "$hash" in
'$y$'*) ok ;;
*) bad "gatehousectl hash-password printed '$hash' ($(cat "$tmp/hash.err"))" ;;
esac
# as an admin would, following README.Debian
printf 'alice:%s\n' "$hash" >/etc/gatehouse/users
chgrp gatehouse /etc/gatehouse/users && chmod 0640 /etc/gatehouse/users

# the shipped sample, as it is (its [auth users] reads /etc/gatehouse/users)
if /usr/sbin/gatehoused -t -c /etc/gatehouse/gatehouse.conf.sample >"$tmp/t-sample.log" 2>&1; then
	ok
else
	bad "gatehoused -t on the shipped sample: $(cat "$tmp/t-sample.log")"
fi

# the pam and ldap modules load from their packages
cat >"$tmp/modules.conf" <<EOF
[gatehouse]
hostname = gw.test

[listener imap]
protocol = imap
listen = 127.0.0.1:1143
auth = users system directory
backend = imap

[auth users]
module = file
path = /etc/gatehouse/users

[auth system]
module = pam
service = gatehouse

[auth directory]
module = ldap
uri = ldap://127.0.0.1:1
base = dc=example,dc=com
filter = (uid=%u)

[backend imap]
protocol = imap
servers = 127.0.0.1:1
EOF
if /usr/sbin/gatehoused -t -c "$tmp/modules.conf" >"$tmp/t-modules.log" 2>&1; then
	ok
else
	bad "gatehoused -t with the pam and ldap modules: $(cat "$tmp/t-modules.log")"
fi

# the backend, and the minimal configuration in front of it
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
python3 "$here/dovecot-backend.py" "$tmp/backend.port" alice "$password" >"$tmp/backend.log" 2>&1 &
backend_pid=$!
for _ in $(seq 300); do
	[ -s "$tmp/backend.port" ] && break
	sleep 0.1
done
[ -s "$tmp/backend.port" ] || die "Dovecot (the IMAP backend) did not start: $(cat "$tmp/backend.log")"
backend_port=$(cat "$tmp/backend.port")
port=$(free_port)
mkdir -p "$tmp/run"
cat >/etc/gatehouse/gatehouse.conf <<EOF
[gatehouse]
hostname = gw.test
user = gatehouse
control_socket = $tmp/run/control

[listener imap]
protocol = imap
listen = 127.0.0.1:$port
tls = none
plaintext_auth = always
auth = users
backend = imap

[auth users]
module = file
path = /etc/gatehouse/users

[backend imap]
protocol = imap
servers = 127.0.0.1:$backend_port
login = passthrough
forward_client = no
EOF
chgrp gatehouse /etc/gatehouse/gatehouse.conf && chmod 0640 /etc/gatehouse/gatehouse.conf
if /usr/sbin/gatehoused -t -c /etc/gatehouse/gatehouse.conf >"$tmp/t-minimal.log" 2>&1; then
	ok
else
	bad "gatehoused -t on the minimal configuration: $(cat "$tmp/t-minimal.log")"
fi
# gatehoused reloads as its user: the files must be readable by it
if setpriv --reuid=gatehouse --regid=gatehouse --init-groups \
	/usr/sbin/gatehoused -t -c /etc/gatehouse/gatehouse.conf >"$tmp/t-user.log" 2>&1; then
	ok
else
	bad "gatehoused -t as the user gatehouse: $(cat "$tmp/t-user.log")"
fi

# ---------------------------------------------------------------- run
say "systemd-socket-activate -l 127.0.0.1:$port --fdname=imap /usr/sbin/gatehoused (backend on $backend_port)"
systemd-socket-activate -l "127.0.0.1:$port" --fdname=imap \
	/usr/sbin/gatehoused -c /etc/gatehouse/gatehouse.conf >"$tmp/gatehoused.log" 2>&1 &
daemon_pid=$!
# it binds at once and execs gatehoused (same PID) on the first connection
for _ in $(seq 100); do
	ss -Hltn "sport = :$port" | grep -q . && break
	sleep 0.1
done
if python3 "$here/imap-login.py" "$port" alice "$password" ok >"$tmp/login-ok.log" 2>&1; then
	ok
else
	bad "login through gatehoused:"
	sed 's/^/    /' "$tmp/login-ok.log"
fi
if python3 "$here/imap-login.py" "$port" alice 'wrong password' no >"$tmp/login-no.log" 2>&1; then
	ok
else
	bad "a wrong password was not refused:"
	sed 's/^/    /' "$tmp/login-no.log"
fi
check "gatehoused took the socket from systemd-socket-activate" grep -q 'listener imap: systemd fd 3' "$tmp/gatehoused.log"
check "gatehoused logged the login" grep -q 'login: .*user="alice".*verdict=ok' "$tmp/gatehoused.log"
check "gatehoused logged the failed login" grep -q 'login: .*user="alice".*verdict=wrong-password' "$tmp/gatehoused.log"
daemon_user=$(ps -o user= -p "$daemon_pid" | tr -d ' ')
[ "$daemon_user" = gatehouse ] && ok || bad "gatehoused runs as '$daemon_user', not gatehouse"
check "gatehoused runs /usr/sbin/gatehoused" sh -c "readlink /proc/$daemon_pid/exe | grep -qx /usr/sbin/gatehoused"
if /usr/sbin/gatehousectl -c /etc/gatehouse/gatehouse.conf stats >"$tmp/stats.log" 2>&1 &&
	grep -q 'imap .*file .*ok .*1' "$tmp/stats.log"; then
	ok
else
	bad "gatehousectl stats: $(cat "$tmp/stats.log")"
fi

# an upgrade (here: the same version again) keeps the admin's files and choices
sum_before=$(md5sum /etc/gatehouse/gatehouse.conf /etc/gatehouse/users)
chmod 0710 /etc/gatehouse
if dpkg -i "./gatehouse_${v}_${arch}.deb" >"$tmp/reinstall.log" 2>&1; then ok; else bad "dpkg -i again: $(tail -5 "$tmp/reinstall.log")"; fi
[ "$(md5sum /etc/gatehouse/gatehouse.conf /etc/gatehouse/users)" = "$sum_before" ] && ok ||
	bad "reinstalling changed /etc/gatehouse/gatehouse.conf or users"
[ "$(stat -c '%a' /etc/gatehouse)" = 710 ] && ok || bad "reinstalling reset the admin's mode of /etc/gatehouse"
chmod 0750 /etc/gatehouse

kill -TERM "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null
rc=$?
daemon_pid=
[ "$rc" -eq 0 ] && ok || bad "gatehoused exited with $rc on SIGTERM: $(tail -5 "$tmp/gatehoused.log")"
kill "$backend_pid" 2>/dev/null
wait "$backend_pid" 2>/dev/null
backend_pid=

# ---------------------------------------------------------------- purge
say "apt-get purge -y $packages"
if apt-get purge -y -q $packages >"$tmp/purge.log" 2>&1; then
	ok
	installed=no
else
	bad "apt-get purge: $(tail -5 "$tmp/purge.log")"
fi
for p in $packages; do
	check_not "$p is still known to dpkg after purge" \
		sh -c "dpkg-query -W -f='\${Status}' $p 2>/dev/null | grep -q 'installed\|config-files'"
done
for f in /etc/gatehouse /usr/lib/$ma/gatehouse /usr/include/gatehouse /etc/pam.d/gatehouse \
	/etc/fail2ban/filter.d/gatehouse.conf /etc/fail2ban/jail.d/gatehouse.conf.sample \
	/usr/sbin/gatehoused /usr/sbin/gatehousectl /usr/share/doc/gatehouse \
	/usr/share/man/man8/gatehoused.8.gz /usr/share/man/man5/gatehouse.conf.5.gz; do
	check_not "$f is left after purge" test -e "$f"
done
left=$(find /lib/systemd/system /usr/lib/systemd/system /etc/systemd/system \
	/var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
	-name '*gatehouse*' 2>/dev/null)
[ -z "$left" ] && ok || bad "units or their records left after purge: $left"
if [ "$fail2ban_before" = no ]; then
	check_not "/etc/fail2ban is left after purge" test -e /etc/fail2ban
fi
check_not "the user gatehouse is left after purge" getent passwd gatehouse
check_not "the group gatehouse is left after purge" getent group gatehouse
say "build log, lintian output and daemon log were in $tmp (removed)"
finish
