#!/bin/sh
# check-includes.sh: which folder may include which, as a TAP test (the rules
# are stated here, in full):
#   daemon -> auth (gh-auth.h) -> gh-auth-module.h <- modules
# - auth/ never includes a daemon header;
# - modules include only gh-auth-module.h and their own headers (plus system ones);
# - pure parsers include only <glib.h>, their own header and the C library.
cd "${GH_SRCDIR:-$(dirname "$0")/..}" || exit 99
n=0
fail=0
check() { # check DESCRIPTION FILE-LIST GREP-PATTERN-OF-FORBIDDEN-INCLUDES
	n=$((n + 1))
	bad=$(for f in $2; do [ -f "$f" ] && grep -HnE "$3" "$f"; done)
	if [ -n "$bad" ]; then
		echo "not ok $n - $1"
		echo "$bad" | sed 's/^/# /'
		fail=1
	else
		echo "ok $n - $1"
	fi
}
daemon_headers=$(cd daemon && ls *.h | tr '\n' '|' | sed 's/|$//; s/\./\\./g')
check "auth/ includes no daemon header" "auth/*.c auth/*.h" "^#include \"($daemon_headers)\""
bad=""
for f in modules/*/*.c modules/*/*.h tests/unit/modules/*.c; do
	[ -f "$f" ] || continue
	dir=$(dirname "$f")
	for inc in $(sed -n 's/^#include "\(.*\)"/\1/p' "$f"); do
		case "$inc" in
		gh-auth-module.h | gh-build.h) ;;
		*) [ -f "$dir/$inc" ] || bad="$bad $f:$inc" ;;
		esac
	done
done
n=$((n + 1))
if [ -n "$bad" ]; then
	echo "not ok $n - modules include only the module header and their own"
	echo "# $bad"
	fail=1
else
	echo "ok $n - modules include only the module header and their own"
fi
parsers="auth/sasl.c auth/sasl.h auth/secret.h auth/keyfile.c auth/keyfile.h modules/file/users-file-parse.c modules/file/users-file-parse.h $(ls daemon/*-parser.c daemon/*-parser.h 2>/dev/null)"
check "parsers include only glib.h, their own header and the C library" "$parsers" \
	'^#include <(gio/|glib-unix|gmodule|sys/socket|netinet|arpa|unistd|gnutls|ldap|security|systemd)'
echo "1..$n"
exit $fail
