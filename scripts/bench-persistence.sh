#!/usr/bin/env bash
# QoS 1 with and without the on-disk store (docs/benchmarks.md, "Persistence"): one fresh broker
# per run, modes alternating (memory, sync, memory, sync...). One line per run.
#   fan-in, clean subscriber:       scripts/bench-persistence.sh fanin
#   fan-in, persistent subscriber:  scripts/bench-persistence.sh fanin --persistent
#   at a fixed rate:                scripts/bench-persistence.sh fanin --rate 100000
#   offline persistent session:     scripts/bench-persistence.sh offline
#   every message written:          MAXQ=0 scripts/bench-persistence.sh offline
# ROUNDS (2), MODES ("memory sync"; also "os", "none"), DUR (10s), MAXQ (fan-in 0, offline 1000:
# `[broker] max_queued_messages`), TERN (target/release/tern).
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-target/release/tern}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-memory sync}
DUR=${DUR:-10s}
what=${1:?usage: bench-persistence.sh fanin|offline [bench options]}
shift
case $what in
  fanin) maxq=${MAXQ:-0} ;;
  offline) maxq=${MAXQ:-1000} ;;
  *) echo "fanin or offline" >&2; exit 2 ;;
esac
dir=$(mktemp -d)
broker=
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; rm -rf "$dir"' EXIT
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    port=$(free_port)
    rm -rf "$dir/data"
    durability=$mode extra=()
    if [ "$mode" = memory ]; then durability=sync extra=(--memory); fi
    printf '[broker]\nmax_queued_messages = %s\n[storage]\ndata_dir = "%s"\ndurability = "%s"\n' \
      "$maxq" "$dir/data" "$durability" > "$dir/tern.toml"
    "$TERN" broker -c "$dir/tern.toml" "${extra[@]}" --listen "127.0.0.1:$port" 2> "$dir/broker.log" &
    broker=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    if [ "$what" = fanin ]; then
      "$TERN" bench fanin -p "$port" -P 4 -q 1 -d "$DUR" --json "$@" > "$dir/out.json"
    else
      "$TERN" sub -p "$port" -c -i persist -t 'bench/#' -q 1 -E > /dev/null 2>&1
      "$TERN" bench pub -p "$port" -c 4 -q 1 -d "$DUR" --json "$@" > "$dir/out.json"
    fi
    kill "$broker"; wait "$broker" 2>/dev/null || true; broker=
    python3 - "$what" "$mode" "$dir/out.json" <<'PY'
import json, os, sys
what, mode, path = sys.argv[1:4]
m = json.load(open(path))["messages"]
lat = m.get("latency_us") or {}
rate = m["delivered_per_s"] if what == "fanin" else m["acked"] / m["publish_s"]
tail = f" p50 {lat['p50']/1000:.2f} ms p99 {lat['p99']/1000:.2f} ms" if lat else ""
print(f"{what:7} {mode:6} {'delivered' if what == 'fanin' else 'acknowledged'}/s {rate:>9.0f} lost {m.get('lost', 0)}{tail} load {os.getloadavg()[0]:.1f}")
PY
  done
done
