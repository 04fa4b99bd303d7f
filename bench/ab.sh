#!/usr/bin/env bash
# bench/ab.sh — one change measured on its own: the bench of two builds,
# run alternately (old, new, old, new, ...), each run on its own private
# redis-server, so that the machine's drift falls on both alike.
#
#   bench/ab.sh OLD NEW [ROUNDS] [-- bench flags]
#   bench/ab.sh main HEAD 3 -- -scenarios drain -n 10000
#
# OLD and NEW are git revisions (their bench is built from `git archive`),
# or paths to bench binaries already built. Prints every run's JSON line
# with "build":"old"|"new" and "round" added; OUT also writes them there.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -lt 2 ]; then
	sed -n '2,12p' "$0" >&2
	exit 2
fi
old=$1 new=$2
shift 2
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
	rounds=$1
	shift
fi
if [ "${1:-}" = "--" ]; then shift; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/staged-ab.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

build() { # build NAME REV-or-binary
	if [ -f "$2" ] && [ -x "$2" ]; then
		cp "$2" "$tmp/bench-$1"
		return
	fi
	mkdir "$tmp/src-$1"
	git archive "$2" | tar -x -C "$tmp/src-$1"
	(cd "$tmp/src-$1" && go build -o "$tmp/bench-$1" ./bench)
	echo "ab: $1 = $2 ($(git rev-parse --short "$2"))" >&2
}
build old "$old"
build new "$new"

for r in $(seq "$rounds"); do
	for b in old new; do
		"$tmp/bench-$b" -json "$@" | sed "s/^{/{\"build\":\"$b\",\"round\":$r,/" |
			if [ -n "${OUT:-}" ]; then tee -a "$OUT"; else cat; fi
	done
done
