#!/usr/bin/env bash
# QoS 0 fan-in through `tern broker --memory` without rules and with 1,000 rules none of which
# match, alternating, one fresh broker per run (docs/benchmarks.md, "Rules engine"). Prints one
# line per run: the bench's rates and the broker's CPU time (utime + stime) per message sent.
# The runs are scripts/bench-fanin-configs.sh's.
#   ROUNDS=5 DUR=4s [RATE=100000] [TERN=target/release/tern] scripts/bench-rules-fanin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TERN=${TERN:-target/release/tern} ROUNDS=${ROUNDS:-5} DUR=${DUR:-4s} PER=sent
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
: > "$dir/none.toml"
# The rule shapes of crates/rules/benches/rules.rs; the fan-in topics are bench/fanin/N.
for i in $(seq 0 999); do
  case $((i % 4)) in
    0) f="plant/$i/temp" ;;
    1) f="plant/+/line$i" ;;
    2) f="factory/$i/#" ;;
    3) f="+/building$i/+/state" ;;
  esac
  printf '[[rules]]\nid = "r%d"\nsql = "SELECT payload.temp AS t FROM \\"%s\\" WHERE payload.temp > 30"\nactions = [ { type = "republish", topic = "alerts/%d", payload = "${t}" } ]\n\n' "$i" "$f" "$i"
done > "$dir/rules1000.toml"
"$TERN" rules check -c "$dir/rules1000.toml"
scripts/bench-fanin-configs.sh "$dir/none.toml" "$dir/rules1000.toml"
