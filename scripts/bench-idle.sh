#!/usr/bin/env bash
# Memory and CPU cost of idle connections: starts a broker fresh, opens C idle connections with
# `tern bench conn`, and prints RSS per connection ((peak - start VmRSS) / C), the broker's CPU
# ticks for the whole run (connects and closes), the connect rate, and the kernel's slab growth
# per socket (both ends of each connection are on this machine: / 2C).
#
# Usage: scripts/bench-idle.sh BROKER [C]
#   BROKER  a `tern` binary (run as `tern broker --memory`), or `mosquitto`
#   C       connections (default 15000; raise `ulimit -n` above it first)
# Environment: BENCH, the `tern` binary whose `bench conn` is the load (default target/release/tern).
# Run brokers in alternation (A B A B...) on a shared machine: single figures are noisy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$1
N=${2:-15000}
BENCH=${BENCH:-$ROOT/target/release/tern}
ulimit -n "$(ulimit -Hn)"
# Below the ephemeral port range, so no client socket of the run holds it.
port=$((20000 + RANDOM % 10000))
dir=$(mktemp -d)
pid="" spid=""
trap 'kill "$pid" "$spid" 2>/dev/null || true; rm -rf "$dir"' EXIT
if [ "$B" = mosquitto ]; then
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nlog_dest stderr\nlog_type error\n' "$port" >"$dir/m.conf"
  "${MOSQUITTO:-/usr/sbin/mosquitto}" -c "$dir/m.conf" >"$dir/log" 2>&1 &
else
  (cd "$dir" && exec "$B" broker --memory --listen "127.0.0.1:$port") >"$dir/log" 2>&1 &
fi
pid=$!
sleep 0.7
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
slab() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
start=$(rss)
slab0=$(slab)
echo 0 >"$dir/peak"
echo "$slab0" >"$dir/slab"
(
  peak=0 top=$slab0
  while kill -0 "$pid" 2>/dev/null; do
    r=$(rss 2>/dev/null || echo 0)
    if [ "${r:-0}" -gt "$peak" ]; then peak=$r; echo "$peak" >"$dir/peak"; fi
    s=$(slab)
    if [ "$s" -gt "$top" ]; then top=$s; echo "$top" >"$dir/slab"; fi
    sleep 0.1
  done
) &
spid=$!
load=$(cut -d' ' -f1 /proc/loadavg)
json=$("$BENCH" bench conn -c "$N" --connect-rate unlimited -d 3s -p "$port" --json 2>"$dir/err")
stat=$(cat "/proc/$pid/stat")
stat=${stat##*) }
set -- $stat
cpu=$((${12} + ${13}))
kill "$pid"
wait "$pid" 2>/dev/null || true
sleep 0.2
peak=$(cat "$dir/peak")
slab1=$(cat "$dir/slab")
echo "$json" | python3 -c '
import json, sys
r = json.load(sys.stdin)["connections"]
name, n, start, peak, cpu, s0, s1, load = sys.argv[1:9]
est = r["established"]
print("%s: %d connections, %.0f connects/s, RSS %.2f KiB per connection (start %s KiB, peak %s KiB), "
      "broker CPU %s ticks, kernel slab %.1f KiB per socket, load %s"
      % (name, est, r["per_s"], (int(peak) - int(start)) / est, start, peak, cpu,
         (int(s1) - int(s0)) / (2 * est), load))
' "$(basename "$B")" "$N" "$start" "$peak" "$cpu" "$slab0" "$slab1" "$load"
