#!/usr/bin/env bash
# Side-by-side broker comparison with `tern bench`: Tern, Mosquitto (Debian 2.0.11) and rumqttd,
# each scenario run against each broker in alternation, every broker started fresh for every run.
# Samples broker CPU time and RSS from /proc/PID/{stat,status} and prints a markdown table of the
# figures with the Tern/Mosquitto ratio, the machine and the command line. With --write it replaces
# the `## Broker comparison` section of docs/benchmarks.md (and nothing else in that file).
#
# Usage: scripts/bench-compare.sh [--pin] [--write] [--quick] [--duration SECS] [--conns N]
#                                 [--brokers tern,mosquitto,rumqttd] [--scenarios a,b,...]
#                                 [--budget SECS] [--latency-duration SECS]
#   --pin        broker on CPU 0, load generator on the other CPUs (taskset); Tern is then also
#                run unpinned (all CPUs) as an extra column
#   --write      replace the `## Broker comparison` section of docs/benchmarks.md
#   --quick      2 s runs and 2,000 idle connections (a smoke test of the script)
#   --duration   seconds of publishing per throughput run (default 5)
#   --conns      idle connections in the `conn` scenario (default 15000; this machine's open-file
#                limit stops near 20,000)
#   --brokers    which brokers (default: all that are available)
#   --scenarios  subset of: fanin-q0 fanin-q1 fanout-q0 fanout-q1 pairs-q1 latency slow-q1 conn
#                (slow-q1: 4 publishers at 20,000 msg/s in all to one subscriber reading 1,000
#                msg/s: what the broker queues or drops, and what that costs it in memory)
#   --budget     stop starting new runs after this many seconds (default 540)
#   --latency-duration
#                seconds of the latency scenario (default 20: 20,000 samples, so that p99.9 is
#                the 20th slowest message rather than the 5th). The latency scenario also runs the
#                "echo floor": no broker, a relay that only echoes (crates/cli/examples/
#                latency_floor.rs), pinned like the brokers, to show what the machine's
#                scheduling alone costs the same path.
#   --from FILE  no runs: render the table from the results.jsonl of an earlier run (its path is
#                printed at the end of every run)
# Environment: TERN (default target/release/tern, built if missing), BENCH (the load generator,
# default "$TERN bench"), FLOOR (default target/release/examples/latency_floor, built if missing),
# MOSQUITTO (default mosquitto on PATH or /usr/sbin/mosquitto), RUMQTTD
# (default rumqttd on PATH or ~/.local/tern-tools/bin/rumqttd; install it with
#   CARGO_TARGET_DIR=/tmp/rumqttd-target cargo install rumqttd --root ~/.local/tern-tools).
# Every run is bounded: `tern bench` has a duration and a hard cap, and each run is also wrapped in
# `timeout`. Figures taken while other work runs on the machine are noisy: the load average at the
# start is recorded with the table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CMDLINE="scripts/bench-compare.sh $*"

PIN=0 WRITE=0 DURATION=5 LATENCY_DURATION=20 CONNS=15000 BROKERS="" SCENARIOS="" BUDGET=540 FROM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pin) PIN=1 ;;
    --write) WRITE=1 ;;
    --quick) DURATION=2 LATENCY_DURATION=2 CONNS=2000 ;;
    --duration) DURATION=$2; shift ;;
    --latency-duration) LATENCY_DURATION=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --brokers) BROKERS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --from) FROM=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SCENARIOS=${SCENARIOS:-fanin-q0,fanin-q1,fanout-q0,fanout-q1,pairs-q1,latency,slow-q1,conn}

# --- programs -------------------------------------------------------------------------------
TERN=${TERN:-$ROOT/target/release/tern}
if [ ! -x "$TERN" ] && [ -z "${BENCH:-}" ]; then
  echo "== building $TERN" >&2
  cargo build --release -p tern-cli >&2
fi
BENCH=${BENCH:-$TERN bench}
FLOOR=${FLOOR:-$ROOT/target/release/examples/latency_floor}
if [ ! -x "$FLOOR" ] && [[ ",${SCENARIOS}," == *,latency,* ]] && [ -z "$FROM" ]; then
  echo "== building $FLOOR" >&2
  cargo build --release -p tern-cli --example latency_floor >&2
fi
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
RUMQTTD=${RUMQTTD:-$(command -v rumqttd || echo "$HOME/.local/tern-tools/bin/rumqttd")}

available=()
if [ -x "$TERN" ] && "$TERN" broker --help >/dev/null 2>&1; then available+=(tern); fi
if [ -x "$MOSQUITTO" ]; then available+=(mosquitto); fi
if [ -x "$RUMQTTD" ]; then available+=(rumqttd); fi
if [ -z "$BROKERS" ]; then
  BROKERS=$(IFS=,; echo "${available[*]}")
fi
IFS=, read -r -a broker_list <<<"$BROKERS"
for b in "${broker_list[@]}"; do
  case " ${available[*]} " in
    *" $b "*) ;;
    *) echo "bench-compare: broker $b is not available (see --help for the programs)" >&2; exit 2 ;;
  esac
done
if [ "$PIN" = 1 ] && [[ ",$BROKERS," == *,tern,* ]]; then broker_list+=(tern-unpinned); fi
# The echo floor runs in the latency scenario only (see --latency-duration).
if [ -x "$FLOOR" ]; then broker_list+=(floor); fi
IFS=, read -r -a scenario_list <<<"$SCENARIOS"

if [ -z "$FROM" ] && [[ ",$SCENARIOS," == *,conn,* ]] && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 100)) ]; then
  echo "bench-compare: $CONNS connections need more than the open-file limit of $(ulimit -n): use --conns or ulimit -n" >&2
  exit 2
fi

NCPU=$(nproc)
if [ "$PIN" = 1 ]; then
  if [ "$NCPU" -lt 2 ]; then echo "bench-compare: --pin needs 2 CPUs" >&2; exit 2; fi
  BROKER_CPUS=0
  LOAD_CPUS="1-$((NCPU - 1))"
fi

WORK=$(mktemp -d /tmp/bench-compare.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
BROKER_PID=""
SAMPLER_PID=""
cleanup() {
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_broker NAME PORT: starts it in the background, sets BROKER_PID, waits for the port.
start_broker() {
  local name=$1 port=$2 dir=$WORK/$1-$2 pin=()
  mkdir -p "$dir"
  if [ "$PIN" = 1 ] && [ "$name" != tern-unpinned ]; then pin=(taskset -c "$BROKER_CPUS"); fi
  case "$name" in
    tern|tern-unpinned)
      # In memory (persistence off, as for Mosquitto), from its own directory in case it writes.
      # Warnings and errors only, as Mosquitto is configured below (`log_type error`/`warning`):
      # at its default level Tern writes a line per connect and disconnect.
      (cd "$dir" && RUST_LOG=warn exec "${pin[@]}" "$TERN" broker --memory --listen "127.0.0.1:$port") >"$dir/log" 2>&1 &
      ;;
    mosquitto)
      cat >"$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_inflight_messages 100
persistence false
log_dest stderr
log_type error
log_type warning
EOF
      "${pin[@]}" "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
      ;;
    floor)
      "${pin[@]}" "$FLOOR" relay "$port" >"$dir/log" 2>&1 &
      ;;
    rumqttd)
      # Its defaults sleep between accepts (next_connection_delay_ms) and cap connections.
      cat >"$dir/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 30010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF
      "${pin[@]}" "$RUMQTTD" -q -c "$dir/rumqttd.toml" >"$dir/log" 2>&1 &
      ;;
  esac
  BROKER_PID=$!
  for _ in $(seq 1 200); do
    if timeout 0.2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      sleep 0.2  # let the broker finish whatever it does after listen()
      return 0
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "bench-compare: $name exited at start: $(tail -5 "$dir/log")" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "bench-compare: $name does not listen on $port" >&2
  return 1
}

stop_broker() {
  kill "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

# sampler PID OUT: every 100 ms, "utime+stime ticks, resident KiB, time" of PID, until it exits or is
# killed. Nothing in the loop forks (bash builtins only, and the pause is a read with a timeout
# on a pipe nobody writes): a `cat`/`awk`/`sleep` every 100 ms would be run on the broker's CPU
# too and show up in its latency tail. When pinning, the sampler itself runs on the load CPUs.
sampler() {
  local pid=$1 out=$2 stat rss _ never
  never=$(mktemp -u "$WORK/never.XXXXXX")
  mkfifo "$never"
  exec {pause}<>"$never"
  while [ -r "/proc/$pid/stat" ]; do
    read -r stat <"/proc/$pid/stat" 2>/dev/null || break
    # Resident pages, the second field of statm (VmRSS of /proc/PID/status, read in one line).
    read -r _ rss _ <"/proc/$pid/statm" 2>/dev/null || break
    rss=$(( rss * PAGE_KIB ))
    # Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
    stat=${stat##*) }
    set -- $stat
    echo "$(( ${12} + ${13} )) ${rss:-0} $EPOCHREALTIME"
    read -r -t 0.1 -u "$pause" _ || true
  done >"$out"
  exec {pause}>&-
  rm -f "$never"
}

# Scenario name -> `tern bench` arguments.
bench_args() {
  case "$1" in
    fanin-q0) echo "fanin -P 4 -q 0 -d ${DURATION}s" ;;
    fanin-q1) echo "fanin -P 4 -q 1 -d ${DURATION}s" ;;
    fanout-q0) echo "fanout -S 8 -q 0 -d ${DURATION}s" ;;
    fanout-q1) echo "fanout -S 8 -q 1 -d ${DURATION}s" ;;
    pairs-q1) echo "pairs -N 8 -q 1 -d ${DURATION}s" ;;
    latency) echo "latency --rate 1000 -q 1 -d ${LATENCY_DURATION}s" ;;
    slow-q1) echo "fanin -P 4 -q 1 --rate 20000 --sub-rate 1000 -d ${DURATION}s" ;;
    conn) echo "conn -c $CONNS -d 3s" ;;
    *) echo "bench-compare: unknown scenario $1" >&2; return 1 ;;
  esac
}

STARTED=$(date +%s)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
CLK_TCK=$(getconf CLK_TCK)
PAGE_KIB=$(( $(getconf PAGESIZE) / 1024 ))
[ -n "$FROM" ] || echo "== brokers: ${broker_list[*]}; scenarios: ${scenario_list[*]}; pin: $PIN; load average: $LOADAVG" >&2

if [ -n "$FROM" ]; then
  RESULTS=$FROM
  scenario_list=()
else
  # What the table needs to describe this run, even when rendered later with --from.
  python3 -c 'import json, sys; print(json.dumps({"meta": dict(zip(["cmdline", "loadavg", "pin", "duration", "bench", "day"], sys.argv[1:]))}))' \
    "$CMDLINE" "$LOADAVG" "$PIN" "$DURATION" "${BENCH#"$ROOT"/}" "$(date -u +%Y-%m-%d)" >>"$RESULTS"
fi
for scenario in "${scenario_list[@]}"; do
  args=$(bench_args "$scenario")
  for broker in "${broker_list[@]}"; do
    if [ "$broker" = floor ] && [ "$scenario" != latency ]; then continue; fi
    if [ $(( $(date +%s) - STARTED )) -ge "$BUDGET" ]; then
      echo "== time budget of ${BUDGET}s spent: skipping $scenario on $broker" >&2
      echo "{\"scenario_key\":\"$scenario\",\"broker_name\":\"$broker\",\"skipped\":\"time budget\"}" >>"$RESULTS"
      continue
    fi
    port=$(free_port)
    run_bench=($BENCH $args -p "$port" --json)
    if [ "$broker" = floor ]; then run_bench=("$FLOOR" client "$port" 1000 "$LATENCY_DURATION" --json); fi
    if ! start_broker "$broker" "$port"; then
      echo "{\"scenario_key\":\"$scenario\",\"broker_name\":\"$broker\",\"skipped\":\"did not start\"}" >>"$RESULTS"
      continue
    fi
    samples=$WORK/$scenario-$broker.samples
    sampler "$BROKER_PID" "$samples" &
    SAMPLER_PID=$!
    if [ "$PIN" = 1 ]; then taskset -p -c "$LOAD_CPUS" "$SAMPLER_PID" >/dev/null; fi
    load=()
    if [ "$PIN" = 1 ]; then load=(taskset -c "$LOAD_CPUS"); fi
    echo "== $scenario on $broker: ${run_bench[*]#"$ROOT"/}" >&2
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    timing=$WORK/$scenario-$broker.time
    json=$(timeout $((DURATION + LATENCY_DURATION + 120)) /usr/bin/time -o "$timing" -f "%e %U %S" \
      "${load[@]}" "${run_bench[@]}" 2>"$WORK/$scenario-$broker.err") || true
    t1=$(date +%s.%N)
    sleep 0.15
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    stop_broker
    [ -n "$json" ] || json='{"errors":["no report (see stderr)"]}'
    python3 - "$scenario" "$broker" "$samples" "$t0" "$t1" "$CLK_TCK" "$json" "$timing" >>"$RESULTS" <<'EOF'
import json, sys
scenario, broker, samples, t0, t1, clk, report, timing = sys.argv[1:9]
try:
    r = json.loads(report)
except ValueError:
    r = {"errors": ["unparsable report: " + report[:200]]}
rows = []
for line in open(samples):
    parts = line.split()
    if len(parts) == 3:
        rows.append((int(parts[0]), int(parts[1]), float(parts[2])))
r["scenario_key"] = scenario
r["broker_name"] = broker
if rows:
    # CPU over the measured window: publishing to last delivery when the report says when that
    # was, else the whole run.
    m = r.get("messages") or {}
    lo, hi = float(t0), float(t1)
    if m.get("started_unix_s"):
        lo = m["started_unix_s"]
        hi = lo + max(m.get("publish_s") or 0, m.get("delivery_s") or 0)
    inside = [x for x in rows if lo <= x[2] <= hi] or rows
    first = max([x for x in rows if x[2] <= lo] or [rows[0]], key=lambda x: x[2])
    last = inside[-1]
    wall = last[2] - first[2]
    cpu_s = (last[0] - first[0]) / int(clk)
    r["broker_cpu_s"] = cpu_s
    r["broker_cpu_pct"] = 100.0 * cpu_s / wall if wall > 0 else 0.0
    r["broker_rss_start_kib"] = rows[0][1]
    r["broker_rss_peak_kib"] = max(x[1] for x in rows)
try:
    wall, user, system = (float(x) for x in open(timing).read().split()[-3:])
    r["load_cpu_pct"] = 100.0 * (user + system) / wall if wall > 0 else 0.0
except (OSError, ValueError):
    pass
print(json.dumps(r))
EOF
    tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); m=r.get("messages") or {}; c=r.get("connections") or {}; print("   ", "delivered %.0f msg/s lost %s" % (m.get("delivered_per_s",0), m.get("lost")) if m else "connect %.0f/s" % c.get("per_s",0), "| cpu %.0f%% rss peak %s KiB" % (r.get("broker_cpu_pct",0), r.get("broker_rss_peak_kib")), "| errors:", r.get("errors"))' >&2
  done
done

# --- the table ---------------------------------------------------------------------------------
MACHINE="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $NCPU CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
MOSQ_VERSION=$("$MOSQUITTO" -h 2>/dev/null | head -1 || true)
RUMQTTD_VERSION=$( [ -x "$RUMQTTD" ] && ("$RUMQTTD" --version 2>/dev/null || echo rumqttd) || echo "not installed")
TABLE=$WORK/table.md
python3 - "$RESULTS" "$CMDLINE" "$MACHINE" "$LOADAVG" "$PIN" "$MOSQ_VERSION" "$RUMQTTD_VERSION" "$(date -u +%Y-%m-%d)" "$DURATION" "$BENCH" >"$TABLE" <<'EOF'
import json, sys
results, cmdline, machine, loadavg, pin, mosq, rumq, day, duration, bench = sys.argv[1:11]
lines = [json.loads(l) for l in open(results) if l.strip()]
runs = [r for r in lines if "meta" not in r]
for r in lines:
    if "meta" in r:
        m = r["meta"]
        cmdline, loadavg, pin, duration, bench, day = (m.get(k, v) for k, v in (
            ("cmdline", cmdline), ("loadavg", loadavg), ("pin", pin), ("duration", duration),
            ("bench", bench), ("day", day)))
by = {(r["scenario_key"], r["broker_name"]): r for r in runs}
scen_order = []
brokers = []
for r in runs:
    if r["scenario_key"] not in scen_order:
        scen_order.append(r["scenario_key"])
    if r["broker_name"] not in brokers:
        brokers.append(r["broker_name"])
titles = {
    "fanin-q0": "fan-in 4→1, QoS 0", "fanin-q1": "fan-in 4→1, QoS 1",
    "fanout-q0": "fan-out 1→8, QoS 0", "fanout-q1": "fan-out 1→8, QoS 1",
    "pairs-q1": "8 pairs, QoS 1", "latency": "latency, 1,000 msg/s, QoS 1",
    "slow-q1": "slow consumer: 4→1 at 20k msg/s, read at 1k msg/s, QoS 1",
}
names = {"tern": "Tern", "tern-unpinned": "Tern (unpinned)", "mosquitto": "Mosquitto", "rumqttd": "rumqttd", "floor": "echo, no broker (floor)"}

def num(x, digits=0):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"

def cell(r, f):
    if r is None:
        return "—"
    if r.get("skipped"):
        return "skipped (" + r["skipped"] + ")"
    v = f(r)
    if r.get("errors"):
        v = (v if v != "—" else "") + " ⚠"
    return v

def ratio(a, b, lower_is_better=False):
    if a is None or b is None or a == 0 or b == 0:
        return "—"
    return f"{(a / b):.2f}×"

def get(r, *path):
    for p in path:
        if r is None or not isinstance(r, dict):
            return None
        r = r.get(p)
    return r

rows = []
def row(label, figure, f, raw=None, lower=False):
    cells = [cell(by.get((s_key, b)), f) for b in brokers]
    t = by.get((s_key, "tern")); m = by.get((s_key, "mosquitto"))
    rr = ratio(raw(t) if raw and t else None, raw(m) if raw and m else None) if raw else "—"
    rows.append(f"| {label} | {figure} | " + " | ".join(cells) + f" | {rr} |")

for s_key in scen_order:
    label = titles.get(s_key, s_key)
    if s_key == "conn":
        any_r = next((by[(s_key, b)] for b in brokers if (s_key, b) in by and not by[(s_key, b)].get("skipped")), {})
        n = get(any_r, "connections", "attempted")
        label = f"{n:,} idle connections" if n else "idle connections"
        per_conn = lambda r: ((r["broker_rss_peak_kib"] - r["broker_rss_start_kib"]) / r["connections"]["established"]) if r.get("broker_rss_peak_kib") and get(r, "connections", "established") else None
        row(label, "connects/s", lambda r: num(get(r, "connections", "per_s")), lambda r: get(r, "connections", "per_s"))
        row("", "RSS per idle connection, KiB", lambda r: num(per_conn(r), 1), per_conn)
        row("", "peak RSS, MiB", lambda r: num((r.get("broker_rss_peak_kib") or 0) / 1024, 1), lambda r: r.get("broker_rss_peak_kib"))
        cpu_per_conn = lambda r: (1e6 * r["broker_cpu_s"] / r["connections"]["established"]) if r.get("broker_cpu_s") is not None and get(r, "connections", "established") else None
        row("", "broker CPU per connection (open + close), µs", lambda r: num(cpu_per_conn(r), 1), cpu_per_conn)
        continue
    if s_key == "latency":
        lat = lambda r, p: get(r, "messages", "latency_us", p)
        row(label, "p50 / p99 / p99.9 µs", lambda r: " / ".join(num(lat(r, p)) for p in ("p50", "p99", "p999")), lambda r: lat(r, "p99"))
        row("", "max µs", lambda r: num(lat(r, "max")), lambda r: lat(r, "max"))
        row("", "lost", lambda r: num(get(r, "messages", "lost")))
        row("", "broker CPU", lambda r: num(r.get("broker_cpu_pct"), 0) + " %", lambda r: r.get("broker_cpu_pct"))
        continue
    row(label, "delivered msg/s", lambda r: num(get(r, "messages", "delivered_per_s")), lambda r: get(r, "messages", "delivered_per_s"))
    row("", "lost / expected", lambda r: num(get(r, "messages", "lost")) + " / " + num(get(r, "messages", "expected")))
    row("", "latency p50 / p99 ms", lambda r: " / ".join(num((lat or 0) / 1000, 1) for lat in (get(r, "messages", "latency_us", "p50"), get(r, "messages", "latency_us", "p99"))))
    row("", "broker CPU", lambda r: num(r.get("broker_cpu_pct"), 0) + " %", lambda r: r.get("broker_cpu_pct"))
    row("", "load generator CPU", lambda r: num(r.get("load_cpu_pct"), 0) + " %")
    row("", "peak RSS, MiB", lambda r: num((r.get("broker_rss_peak_kib") or 0) / 1024, 1), lambda r: r.get("broker_rss_peak_kib"))

out = []
out.append(f"Measured {day} with `tern bench` by `{cmdline}`: every scenario against every broker in alternation, each broker started fresh for each run, {duration} s of publishing per throughput run, 64-byte payloads, MQTT 3.1.1.")
out.append("")
out.append(f"- Machine: {machine}; load average at the start {loadavg}.")
out.append(f"- Load generator: `{bench.replace(chr(10), ' ')}`.")
out.append("- Pinning: " + ("broker on CPU 0, load generator on the other CPUs (taskset)" + ("; \"Tern (unpinned)\" may use every CPU." if "tern-unpinned" in brokers else ".") if pin == "1" else "none (broker and load generator share all CPUs)."))
if "mosquitto" in brokers:
    out.append(f"- Mosquitto: {mosq or 'mosquitto'}, `set_tcp_nodelay true`, `max_inflight_messages 100`, persistence off, other settings default (notably `max_queued_messages 1000`: beyond it Mosquitto drops QoS 1 messages for a slow subscriber, which shows as lost).")
if "tern" in brokers or "tern-unpinned" in brokers:
    out.append("- Tern: `tern broker --memory` (persistence off), default limits, `RUST_LOG=warn` (warnings and errors logged, as Mosquitto here).")
if "rumqttd" in brokers:
    out.append(f"- rumqttd: {rumq}, `next_connection_delay_ms = 0`, `max_connections = 30010`, `max_inflight_count = 100`.")
out.append("- Figures: delivered msg/s = messages received by all subscribers / time from the start of publishing to the last one received; latency is end to end (publisher send to subscriber receive); broker CPU is its CPU time from the start of publishing to the last delivery over that time (100 % = one core; whole run for `conn`), load generator CPU is `tern bench`'s over its whole run (when it nears 100 % of its CPUs, the figure measures the generator, not the broker); RSS from /proc/PID/status. RSS per idle connection = (peak − start RSS) / connections. ⚠ marks a run that reported errors.")
out.append("")
with_ratio = "tern" in brokers and "mosquitto" in brokers
out.append("| Scenario | Figure | " + " | ".join(names.get(b, b) for b in brokers) + (" | Tern / Mosquitto |" if with_ratio else " |"))
out.append("|---|---|" + "---|" * len(brokers) + ("---|" if with_ratio else ""))
out.extend(r if with_ratio else r.rsplit(" | ", 1)[0] + " |" for r in rows)
print("\n".join(out))
EOF

cat "$TABLE"
[ -n "$FROM" ] || echo "(results: $RESULTS)" >&2
if [ -z "$(printf '%s\n' "${broker_list[@]}" | grep -x tern)" ]; then
  echo
  echo "(Tern's column is missing: \`$TERN broker\` is not available yet.)"
fi

if [ "$WRITE" = 1 ]; then
  python3 - "$ROOT/docs/benchmarks.md" "$TABLE" <<'EOF'
# Replaces the generated part of the `## Broker comparison` section: what lies between the
# bench-compare markers if the section has them (notes around them are kept), else the whole
# section. Other sections belong to others and are left as they are.
import sys, os
path, table = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
BEGIN, END = "<!-- bench-compare:begin -->", "<!-- bench-compare:end -->"
generated = BEGIN + "\n" + table + "\n" + END
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
lines = text.split("\n")
start = next((i for i, l in enumerate(lines) if l.strip() == "## Broker comparison"), None)
if start is None:
    new = text.rstrip("\n") + "\n\n## Broker comparison\n\n" + generated + "\n"
else:
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = "\n".join(lines[start + 1:end])
    if BEGIN in body and END in body:
        head, rest = body.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        body = head + generated + tail
    else:
        body = "\n" + generated + "\n"
    before = "\n".join(lines[:start + 1])
    after = "\n".join(lines[end:])
    new = before + "\n" + body.rstrip("\n") + "\n" + ("\n" + after if after else "")
open(path, "w").write(new.rstrip("\n") + "\n")
print(f"wrote the Broker comparison section of {path}", file=sys.stderr)
EOF
fi
