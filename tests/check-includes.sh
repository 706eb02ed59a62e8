#!/bin/sh
# check-includes.sh: which folder may include which, as a TAP test.  The
# rules, stated here in full (doc/design.md explains why):
#
#   common/           small pure helpers: includes nothing of ours but common/
#   auth/             the auth core: common/ and its own headers
#   daemon/config/    configuration and log: common/, auth/
#   daemon/net/       connections, TLS, relay, connector: + config/
#                     (never session/ or a protocol: the network knows no sessions)
#   daemon/session/   the life cycle and the protocol table: + net/
#                     (never a protocol folder: protocols reach it through the table)
#   daemon/smtp/, daemon/imap/, daemon/pop3/   one protocol each: + session/
#                     (never another protocol's folder, never core/)
#   daemon/core/      the process (main, workers, listeners): anything
#   ctl/              gatehousectl: common/, auth/, config/
#   modules/*         only gh-auth-module.h and their own headers
#
# Headers of daemon/ and common/ are included by folder ("net/conn.h",
# "common/line.h"); auth headers by name ("gh-auth.h"), from -Iauth.  Pure
# parsers include only <glib.h>, their own header, common/line.h and the C library.
cd "${GH_SRCDIR:-$(dirname "$0")/..}" || exit 99
n=0
fail=0
auth_headers="gh-build.h gh-auth.h gh-auth-module.h secret.h cache.h penalty.h module-loader.h helper.h"

# rule FOLDER-GLOB "ALLOWED-PREFIXES" AUTH(yes|no)
rule() {
	n=$((n + 1))
	bad=""
	for f in $1; do
		[ -f "$f" ] || continue
		for inc in $(sed -n 's/^#include "\(.*\)"/\1/p' "$f"); do
			ok=no
			case "$inc" in
			*/*)
				for p in $2; do
					case "$inc" in "$p"/*) ok=yes ;; esac
				done
				;;
			gh-build.h) ok=yes ;;
			*)
				if [ "$3" = yes ]; then
					for h in $auth_headers; do [ "$inc" = "$h" ] && ok=yes; done
				fi
				;;
			esac
			[ $ok = yes ] || bad="$bad $f:$inc"
		done
	done
	if [ -n "$bad" ]; then
		echo "not ok $n - $1 includes only $2${3:+ (auth: $3)}"
		echo "#$bad"
		fail=1
	else
		echo "ok $n - $1 includes only $2 (auth: $3)"
	fi
}

rule "common/*.c common/*.h" "common" no
rule "auth/*.c auth/*.h" "common" yes
rule "daemon/config/*.c daemon/config/*.h" "common config" yes
rule "daemon/net/*.c daemon/net/*.h" "common config net" yes
rule "daemon/session/*.c daemon/session/*.h" "common config net session" yes
rule "daemon/smtp/*.c daemon/smtp/*.h" "common config net session smtp" yes
rule "daemon/imap/*.c daemon/imap/*.h" "common config net session imap" yes
rule "daemon/pop3/*.c daemon/pop3/*.h" "common config net session pop3" yes
rule "daemon/core/*.c daemon/core/*.h" "common config net session smtp imap pop3 core" yes
rule "ctl/*.c" "common config" yes

# modules: the module header and their own files, nothing else of ours
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

# pure parsers: no sockets, no TLS, no GIO, no clock of their own
n=$((n + 1))
parsers="common/line.c common/line.h common/keyfile.c common/keyfile.h
	common/route.c common/route.h
	daemon/session/sasl.c daemon/session/sasl.h auth/secret.h
	daemon/smtp/smtp-parser.c daemon/smtp/smtp-parser.h
	daemon/smtp/smtp-track.c daemon/smtp/smtp-track.h
	daemon/imap/imap-parser.c daemon/imap/imap-parser.h
	daemon/pop3/pop3-parser.c daemon/pop3/pop3-parser.h
	modules/file/users-file-parse.c modules/file/users-file-parse.h"
bad=$(for f in $parsers; do [ -f "$f" ] && grep -HnE \
	'^#include <(gio/|glib-unix|gmodule|sys/socket|netinet|arpa|unistd|gnutls|ldap|security|systemd)' "$f"; done)
if [ -n "$bad" ]; then
	echo "not ok $n - parsers include only glib.h, their own header and the C library"
	echo "$bad" | sed 's/^/# /'
	fail=1
else
	echo "ok $n - parsers include only glib.h, their own header and the C library"
fi
echo "1..$n"
exit $fail
