#!/usr/bin/env bash
# QoS 0 fan-in through `tern broker --memory` without rules and with 1,000 rules none of which
# match, alternating, one fresh broker per run (docs/benchmarks.md, "Rules engine"). Prints one
# line per run: the bench's rates and the broker's CPU time (utime + stime) per message sent.
#   ROUNDS=5 DUR=4s [RATE=100000] [TERN=target/release/tern] scripts/bench-rules-fanin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-target/release/tern}
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-4s}
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
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for round in $(seq 1 "$ROUNDS"); do
  for cfg in none rules1000; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$TERN" broker --memory --listen "127.0.0.1:$port" -c "$dir/$cfg.toml" > "$dir/broker.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break; sleep 0.1; done
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$("$TERN" bench fanin -p "$port" -q 0 -P 4 -d "$DUR" ${RATE:+--rate "$RATE"} --json)
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -INT "$pid"
    wait "$pid" || true
    echo "$out" | ROUND=$round CFG=$cfg LOAD=$load TICKS=$ticks python3 -c '
import json, os, sys
m = json.load(sys.stdin)["messages"]
cpu = int(os.environ["TICKS"]) / os.sysconf("SC_CLK_TCK")
print("%s %-9s load=%s sent/s=%.0f delivered/s=%.0f broker_cpu_s=%.2f cpu_us_per_msg=%.3f" % (
    os.environ["ROUND"], os.environ["CFG"], os.environ["LOAD"], m["sent_per_s"],
    m["delivered_per_s"], cpu, cpu * 1e6 / max(m["sent"], 1)))'
  done
done
