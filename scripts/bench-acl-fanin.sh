#!/usr/bin/env bash
# QoS 0 fan-in through `tern broker --memory` without an ACL file and with a 1,000-line one,
# alternating, one fresh broker per run (docs/benchmarks.md, "ACL checks"). The bench clients are
# anonymous: every PUBLISH is checked for Write and every delivery for Read against the file.
# Prints one line per run: the bench's rates and the broker's CPU time (utime + stime) per
# delivered message, the steadier measure on a shared machine. The runs are
# scripts/bench-fanin-configs.sh's.
#   ROUNDS=6 DUR=8s RATE=40000 [TERN=target/release/tern] scripts/bench-acl-fanin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TERN=${TERN:-target/release/tern} ROUNDS=${ROUNDS:-6} DUR=${DUR:-8s} RATE=${RATE:-40000}
export PER=delivered CHECK=acl_in_force
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
: > "$dir/none.toml"
# 1,000 lines: 40 anonymous read lines and the bench's grant; 121 users of 7 lines; 112 patterns
{
  for i in $(seq 0 39); do echo "topic read public/$i/#"; done
  echo "topic readwrite bench/fanin/#"
  for u in $(seq 0 120); do
    echo "user user$u"
    echo "topic readwrite site/$u/+/telemetry"
    echo "topic read site/$u/config/#"
    echo "topic deny site/$u/config/secret"
    for k in 0 1 2; do echo "topic write site/$u/cmd/$k"; done
  done
  for p in $(seq 0 111); do echo "pattern readwrite tenants/$p/%u/%c/#"; done
} > "$dir/acl"
lines=$(wc -l < "$dir/acl")
[ "$lines" -eq 1000 ] || { echo "ACL file has $lines lines, want 1000" >&2; exit 1; }
printf '[auth]\nacl_file = "%s"\n' "$dir/acl" > "$dir/acl1000.toml"
# The file is in force: a QoS 1 publish outside its grants is refused (v5 PUBACK 0x87).
acl_in_force() {
  if [ "$1" = acl1000 ] && "$TERN" pub -p "$2" -V 5 -q 1 -t elsewhere/x -m x 2> /dev/null; then
    echo "ACL not in force: publish to elsewhere/x was accepted" >&2
    return 1
  fi
}
export -f acl_in_force
scripts/bench-fanin-configs.sh "$dir/none.toml" "$dir/acl1000.toml"
