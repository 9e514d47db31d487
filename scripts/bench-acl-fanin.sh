#!/usr/bin/env bash
# QoS 0 fan-in through `tern broker --memory` without an ACL file and with a 1,000-line one,
# alternating, one fresh broker per run (docs/benchmarks.md, "ACL checks"). The bench clients are
# anonymous: every PUBLISH is checked for Write and every delivery for Read against the file.
# Prints one line per run: the bench's rates and the broker's CPU time (utime + stime) per
# delivered message, the steadier measure on a shared machine.
#   ROUNDS=6 DUR=8s RATE=40000 [TERN=target/release/tern] scripts/bench-acl-fanin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-target/release/tern}
ROUNDS=${ROUNDS:-6}
DUR=${DUR:-8s}
RATE=${RATE:-40000}
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
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, rate $RATE msg/s, $DUR per run"
for round in $(seq 1 "$ROUNDS"); do
  for cfg in none acl1000; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$TERN" broker --memory --listen "127.0.0.1:$port" -c "$dir/$cfg.toml" > "$dir/broker.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break; sleep 0.1; done
    # The file is in force: a QoS 1 publish outside its grants is refused (v5 PUBACK 0x87).
    if [ "$cfg" = acl1000 ] && "$TERN" pub -p "$port" -V 5 -q 1 -t elsewhere/x -m x 2> /dev/null; then
      echo "ACL not in force: publish to elsewhere/x was accepted" >&2; exit 1
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$("$TERN" bench fanin -p "$port" -q 0 -P 4 -d "$DUR" ${RATE:+--rate "$RATE"} --json)
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -INT "$pid"
    wait "$pid" || true
    echo "$out" | ROUND=$round CFG=$cfg LOAD=$load TICKS=$ticks python3 -c '
import json, os, sys
m = json.load(sys.stdin)["messages"]
cpu = int(os.environ["TICKS"]) / os.sysconf("SC_CLK_TCK")
print("%s %-8s load=%s sent/s=%.0f delivered/s=%.0f broker_cpu_s=%.2f cpu_us_per_delivered=%.3f" % (
    os.environ["ROUND"], os.environ["CFG"], os.environ["LOAD"], m["sent_per_s"],
    m["delivered_per_s"], cpu, cpu * 1e6 / max(m["delivered"], 1)))'
  done
done
