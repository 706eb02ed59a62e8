#!/bin/sh
# check-format.sh: every C source and header is as .clang-format says, as a
# TAP test (one line per file).  Fix with: clang-format -i FILE
cd "${GH_SRCDIR:-$(dirname "$0")/..}" || exit 99
if ! command -v clang-format > /dev/null 2>&1; then
	echo "1..0 # SKIP clang-format is not installed (apt-get install clang-format)"
	exit 0
fi
files=$(ls common/*.[ch] auth/*.[ch] daemon/*/*.[ch] ctl/*.c modules/*/*.[ch] tests/unit/*.c tests/unit/modules/*.c 2> /dev/null)
n=0
for f in $files; do
	n=$((n + 1))
done
echo "1..$n"
i=0
for f in $files; do
	i=$((i + 1))
	out=$(clang-format --style=file "$f" | diff -u "$f" - | head -20)
	if [ -n "$out" ]; then
		echo "not ok $i - $f is not clang-formatted"
		echo "$out" | sed 's/^/# /'
	else
		echo "ok $i - $f"
	fi
done
