#!/usr/bin/env bash
# Scale measurement on one machine (docs/SCALE.md); not part of CI.
#
#   scripts/scale.sh [BUILD_DIR]
#
# Starts a central broker, SITES site brokers bridged to it (each its own
# mosquitto, LD_PRELOAD of libvigie-nodelay as in production), vigie-relay,
# and ONE vigie-node --simulate process holding SITES x NODES virtual nodes
# (one template per site). Then, with the mesh in steady state:
#   - TCP connections held by the central broker and by all site brokers;
#   - CPU and RSS of the relay, the central broker and the simulate process
#     over WINDOW seconds, while RATE test events/s flow;
#   - dispatch latency: PROBES display_case alarms, each at another site
#     (so each opens an incident and is dispatched at once to post p1),
#     from the node's event time to the dispatch arriving at a subscriber
#     logged in as post-p1: p50 / p99 / max;
#   - node loss: a lone virtual node (its own process) killed with -9, time
#     until the relay logs the loss; then one SIGSTOPped (silent), time
#     until the relay reports its silence.
# Everything started is stopped by PID at the end (trap), also on failure.
#
# Environment: SITES (1000), NODES per site (10), RATE events/s (100),
# HEARTBEAT (5s), REPORTING (10s), WINDOW seconds (60), PROBES (200),
# KEEP=1 keeps the work directory. Needs root for RLIMIT_NOFILE over the hard
# limit (about 6 descriptors per virtual node, one per bridge and client at
# the brokers).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build-sim}" && pwd)
SITES=${SITES:-1000}
NODES=${NODES:-10}
RATE=${RATE:-100}
HEARTBEAT=${HEARTBEAT:-5s}
REPORTING=${REPORTING:-10s}
WINDOW=${WINDOW:-60}
PROBES=${PROBES:-200}
gen=$here/broker-config/vigie-broker-config
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
nodelay=$build/lib/libvigie-nodelay.so
pyproto=$build/generated/python
py=/usr/bin/python3 # Debian's, with python3-paho-mqtt and python3-protobuf
work=$(mktemp -d /tmp/vigie-scale.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -CONT "${pids[i]}" 2>/dev/null || true
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

need=$((SITES * NODES * 6 + SITES * 4 + 4096))
ulimit -Hn "$need" 2>/dev/null || true
ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "# $SITES sites x $NODES nodes, ulimit -n $(ulimit -n), $(nproc) cores," \
     "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_log() { # FILE PATTERN TIMEOUT_S
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || { echo "timeout waiting for '$2' in $1" >&2; return 1; }
    sleep 0.1
  done
}
secret() { sed -n "s/^$2 = //p" "$1/secrets" | head -1; }
sites=()
for ((i = 1; i <= SITES; i++)); do sites+=("$(printf 'm%04d' "$i")"); done

# central broker. Plaintext on loopback (--plaintext-loopback): a capacity
# measurement of brokers, relay and nodes; what TLS costs is measured by
# vigie-bench (relay.throughput_signed, security.tls_reconnect_ms).
cport=$(free_port)
args=(central --out "$work/central" --port "$cport" --post p1 --plaintext-loopback
  --run-as-root --quiet)
for s in "${sites[@]}"; do args+=(--site "$s"); done
"$gen" "${args[@]}"
LD_PRELOAD=$nodelay "$mosq" -c "$work/central/mosquitto.conf" >"$work/central.log" 2>&1 &
pids+=($!)
until ss -Htln "( sport = :$cport )" | grep -q .; do sleep 0.1; done

# site brokers, one template each
t0=$SECONDS
templates=()
for s in "${sites[@]}"; do
  port=$(free_port)
  "$gen" site --site "$s" --out "$work/$s" --port "$port" --central-host 127.0.0.1 \
    --central-port "$cport" --central-secrets "$work/central/secrets" --plaintext-loopback \
    --run-as-root --quiet
  LD_PRELOAD=$nodelay "$mosq" -c "$work/$s/mosquitto.conf" >"$work/$s.log" 2>&1 &
  pids+=($!)
  cat >"$work/$s.yaml" <<EOF
site: $s
node: n
outbox: $work/outbox
heartbeat_period: $HEARTBEAT
reporting_time: $REPORTING
brokers:
  primary: {host: 127.0.0.1, port: $port, username: node, password: "$(secret "$work/$s" node)"}
EOF
  templates+=(-c "$work/$s.yaml")
done
echo "# $SITES site brokers started in $((SECONDS - t0)) s"

# relay
"$py" - "$work" "$cport" "$(secret "$work/central" relay)" "${sites[@]}" <<'EOF'
import json, sys
work, port, pw, sites = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
cfg = {"id": "relay", "database": f"{work}/relay.db",
       "broker": {"host": "127.0.0.1", "port": port, "username": "relay", "password": pw,
                  "client_id": "vigie-relay", "session_expiry": "1h"},
       "immediate": ["display_case"], "dispatch_resend": "60s", "dispatch_resend_max": "60s",
       "posts": [{"id": "p1"}],
       "escalation": [{"name": "police", "post": "p1", "ack_deadline": "10m", "police": True}],
       "sites": [{"id": s, "name": s} for s in sites]}
json.dump(cfg, open(f"{work}/relay.yaml", "w"), indent=1)
EOF
"$build/bin/vigie-relay" -c "$work/relay.yaml" >"$work/relay.log" 2>&1 &
relay=$!
pids+=($relay)
wait_log "$work/relay.log" "connected to the central broker (" 20
bridges_deadline=$((SECONDS + 120))
until [ "$(grep -c 'bridge up' "$work/relay.log")" -ge "$SITES" ]; do
  [ $SECONDS -lt $bridges_deadline ] || { echo "only $(grep -c 'bridge up' "$work/relay.log") bridges up" >&2; exit 1; }
  sleep 0.5
done
echo "# all $SITES bridges up at the relay after $((SECONDS - t0)) s"

# the simulated nodes: as few vigie-node --simulate processes as the
# descriptor limit allows (6 per virtual node; one process if it may raise
# its hard limit, which needs CAP_SYS_RESOURCE)
per_proc=$(( ($(ulimit -Hn) - 512) / 6 / NODES ))
[ "$per_proc" -ge 1 ] || { echo "ulimit -Hn too low for $NODES nodes" >&2; exit 1; }
sims=()
for ((i = 0; i < SITES; i += per_proc)); do
  "$build/bin/vigie-node" --simulate "$NODES" "${templates[@]:$((2 * i)):$((2 * per_proc))}" \
    --simulate-rate "$(awk -v r="$RATE" -v n="$SITES" -v k="$per_proc" -v i="$i" \
                       'BEGIN {m = n - i < k ? n - i : k; printf "%g", r * m / n}')" \
    --simulate-stats 10 >"$work/simulate-$i.log" 2>&1 &
  sims+=($!)
  pids+=($!)
done
sim=${sims[0]}
echo "# ${#sims[@]} vigie-node --simulate process(es), at most $((per_proc * NODES)) virtual nodes each (ulimit -Hn $(ulimit -Hn))"
t1=$SECONDS
total=$((SITES * NODES))
until [ "$(grep -c '^.* node m[0-9]*/n-[0-9]* online' "$work/relay.log")" -ge "$total" ]; do
  for p in "${sims[@]}"; do kill -0 "$p" || { tail "$work"/simulate-*.log; exit 1; }; done
  [ $((SECONDS - t1)) -lt 300 ] || { echo "only $(grep -c ' online (boot' "$work/relay.log") births" >&2; exit 1; }
  sleep 1
done
echo "# $total virtual node births recorded by the relay $((SECONDS - t1)) s after start"
grep -h "outboxes opened" "$work"/simulate-*.log | sed 's/^/# /'

# steady state: connections, CPU, memory
conns() { ss -Htn state established "( sport = :$1 )" | wc -l; }
site_conns=0
for s in "${sites[@]}"; do
  p=$(sed -n 's/^listener \([0-9]*\) .*/\1/p' "$work/$s/mosquitto.conf")
  site_conns=$((site_conns + $(conns "$p")))
done
echo "central broker: $(conns "$cport") established connections; site brokers: $site_conns in all"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
central=${pids[0]}
hz=$(getconf CLK_TCK)
declare -A c0
for p in $relay $central "${sims[@]}"; do c0[$p]=$(cpu $p); done
sleep "$WINDOW"
for p in $relay $central "${sims[@]}"; do
  name=$([ $p = $relay ] && echo vigie-relay || { [ $p = $central ] && echo "central mosquitto" || echo "vigie-node --simulate"; })
  echo "$name: CPU $(awk -v a="${c0[$p]}" -v b="$(cpu $p)" -v hz="$hz" -v w="$WINDOW" \
       'BEGIN {printf "%.1f%%", 100 * (b - a) / hz / w}') of one core over ${WINDOW} s, RSS $(rss $p)"
done
sites_rss=0
for p in "${pids[@]:1:$SITES}"; do sites_rss=$((sites_rss + $(awk '/VmRSS/ {print $2}' /proc/$p/status))); done
echo "site brokers: RSS $((sites_rss / 1024)) MiB in all"
for i in $(seq 0 "$per_proc" $((SITES - 1))); do
  { grep "simulate stats" "$work/simulate-$i.log" || true; } | tail -1 | sed "s/^.*simulate stats: /simulate process $i: /"
done
echo "relay events stored: $("$py" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from events').fetchone()[0])" "$work/relay.db")"

# dispatch latency under that load
nprobe=$((PROBES < SITES ? PROBES : SITES))
ptemplates=()
for s in "${sites[@]:0:$nprobe}"; do
  sed 's/^node: n$/node: probe/' "$work/$s.yaml" >"$work/$s-probe.yaml"
  ptemplates+=(-c "$work/$s-probe.yaml")
done
PYTHONPATH=$pyproto "$py" - "$cport" "$(secret "$work/central" post-p1)" "$nprobe" "$work/latency" <<'EOF' &
import sys, time
import paho.mqtt.client as mqtt
import vigie_pb2 as pb
port, pw, n, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = {}
def on_message(c, u, m):
    now = time.time()
    d = pb.Dispatch.FromString(m.payload)
    if d.id not in seen and d.first_event_us:
        seen[d.id] = now - d.first_event_us / 1e6
c = mqtt.Client(client_id="scale-post-p1", clean_session=True)
c.username_pw_set("post-p1", pw)
c.on_message = on_message
c.on_connect = lambda c, u, f, rc: c.subscribe("vigie/v1/post/p1/dispatch", 1)
c.connect("127.0.0.1", port)
c.loop_start()
open(out + ".ready", "w").close()
deadline = time.time() + 60 + n
while len(seen) < n and time.time() < deadline:
    time.sleep(0.2)
c.loop_stop()
lat = sorted(seen.values())
with open(out, "w") as f:
    if lat:
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
        f.write(f"dispatch latency (event time -> dispatch at post-p1's subscriber), "
                f"{len(lat)} of {n} probes: p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, "
                f"max {lat[-1] * 1000:.1f} ms\n")
    else:
        f.write(f"dispatch latency: no dispatch of {n} probes arrived\n")
EOF
lat_pid=$!
pids+=($lat_pid)
until [ -e "$work/latency.ready" ]; do kill -0 $lat_pid; sleep 0.1; done
sleep 1
"$build/bin/vigie-node" --simulate 1 "${ptemplates[@]}" --simulate-rate 5 \
  --simulate-count "$nprobe" --simulate-line "kind=display_case state=alarm text=probe" \
  --simulate-stats 0 >"$work/probe.log" 2>&1 &
pids+=($!)
wait $lat_pid || true
cat "$work/latency"

# node loss: dead (kill -9, will through the bridge), then silent (SIGSTOP)
"$build/bin/vigie-node" --simulate 1 --simulate-first 9000 -c "$work/${sites[0]}.yaml" \
  --simulate-stats 0 >"$work/lone.log" 2>&1 &
lone=$!
pids+=($lone)
wait_log "$work/relay.log" "node ${sites[0]}/n-9000 online" 30
sleep 1
t=$(date +%s.%N)
kill -KILL $lone
wait_log "$work/relay.log" "supervision: node n-9000 offline" 30
now=$(date +%s.%N)
echo "node loss (kill -9) detected by the relay in $(awk -v a="$t" -v b="$now" 'BEGIN {printf "%.0f", (b - a) * 1000}') ms (poll 100 ms)"
"$build/bin/vigie-node" --simulate 1 --simulate-first 9001 -c "$work/${sites[0]}.yaml" \
  --simulate-stats 0 >"$work/lone2.log" 2>&1 &
lone=$!
pids+=($lone)
wait_log "$work/relay.log" "node ${sites[0]}/n-9001 online" 30
sleep 2
t=$(date +%s.%N)
kill -STOP $lone
wait_log "$work/relay.log" "supervision: node n-9001 silent" 60
now=$(date +%s.%N)
echo "silent node (SIGSTOP) detected by the relay in $(awk -v a="$t" -v b="$now" 'BEGIN {printf "%.0f", (b - a) * 1000}') ms (reporting time $REPORTING)"
lost=$(grep -c "supervision: node n-[0-9]* \(offline\|silent\)" "$work/relay.log" || true)
echo "nodes reported lost in the whole run: $lost (2 expected)"
