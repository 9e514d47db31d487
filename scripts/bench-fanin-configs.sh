#!/usr/bin/env bash
# QoS 0 fan-in (`tern bench fanin -P 4`) through `tern broker --memory` with each of the given
# config files in turn, one fresh broker per run, ROUNDS rounds. Prints one line per run: the
# bench's rates and the broker's CPU time (utime + stime) per message, the steadier measure on a
# shared machine. Each run is labelled with its config file's name without `.toml`.
#   ROUNDS=5 DUR=4s [RATE=100000] [PER=sent|delivered] [CHECK=cmd] [TERN=target/release/tern] \
#     scripts/bench-fanin-configs.sh none.toml rules1000.toml
# PER: divide the CPU time by the messages sent (default; `cpu_us_per_msg`) or delivered
# (`cpu_us_per_delivered`). CHECK: a command run as `CHECK LABEL PORT` once each broker is up,
# that fails (non-zero) when the broker is not in the state the run means to measure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || { echo "usage: $0 CONFIG.toml..." >&2; exit 2; }
TERN=${TERN:-target/release/tern}
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-4s}
RATE=${RATE:-}
PER=${PER:-sent}
case $PER in
  sent) metric=cpu_us_per_msg ;;
  delivered) metric=cpu_us_per_delivered ;;
  *) echo "PER must be sent or delivered, not $PER" >&2; exit 2 ;;
esac
width=0
for cfg in "$@"; do
  label=$(basename "$cfg" .toml)
  if [ "${#label}" -gt "$width" ]; then width=${#label}; fi
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, rate ${RATE:-unlimited} msg/s, $DUR per run"
for round in $(seq 1 "$ROUNDS"); do
  for cfg in "$@"; do
    label=$(basename "$cfg" .toml)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$TERN" broker --memory --listen "127.0.0.1:$port" -c "$cfg" > "$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break; sleep 0.1; done
    if [ -n "${CHECK:-}" ] && ! $CHECK "$label" "$port"; then
      kill -INT "$pid"
      exit 1
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$("$TERN" bench fanin -p "$port" -q 0 -P 4 -d "$DUR" ${RATE:+--rate "$RATE"} --json)
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -INT "$pid"
    wait "$pid" || true
    echo "$out" | ROUND=$round CFG=$label WIDTH=$width LOAD=$load TICKS=$ticks PER=$PER METRIC=$metric python3 -c '
import json, os, sys
m = json.load(sys.stdin)["messages"]
cpu = int(os.environ["TICKS"]) / os.sysconf("SC_CLK_TCK")
print("%s %-*s load=%s sent/s=%.0f delivered/s=%.0f broker_cpu_s=%.2f %s=%.3f" % (
    os.environ["ROUND"], int(os.environ["WIDTH"]) + 1, os.environ["CFG"], os.environ["LOAD"],
    m["sent_per_s"], m["delivered_per_s"], cpu, os.environ["METRIC"],
    cpu * 1e6 / max(m[os.environ["PER"]], 1)))'
  done
done
