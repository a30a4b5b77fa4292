#!/usr/bin/env bash
# The local mesh demo. Starts, on 127.0.0.1 only:
#   - a central broker and three museum site brokers bridged to it: the
#     Louvre, the Muséum national d'Histoire naturelle and the Musée d'Orsay;
#   - vigie-relay (stores each event once, receipts it, escalates);
#   - one vigie-node per museum: the 2025 Apollo Gallery heist plays at the
#     Louvre while the two others run ordinary traffic;
#   - two police posts: pp-paris-1 (on this terminal: the console) and its
#     backup pp-paris-4;
#   - vigie-watch on the central broker (readable events: .demo/logs/watch.log,
#     or on this terminal when it is not interactive);
#   - the dashboard, served on 127.0.0.1 (the address is printed).
# Every MQTT link runs on TLS with client certificates (node -> site broker,
# bridges, relay, posts and vigie-watch -> central), from a CA made by
# broker-config/vigie-keys in .demo/pki; events and heartbeats are signed
# (Ed25519) and verified by the relay. The one plaintext listener is the
# central's websockets listener for the dashboard, on 127.0.0.1 only: the
# browser would refuse a wss certificate from the demo's own CA unless it
# were imported, and both ends are on this machine. A deployment serves the
# dashboard over wss (README.md, "Security").
# Acknowledge the dispatch in the console (Enter) to stop the escalation;
# q or Ctrl-C stops everything it started, by PID, and prints the heist's
# timeline from the relay's audit log.
#
# Environment: VIGIE_DEMO_PORT (first of six ports, default 18830),
# VIGIE_DEMO_SPEED (heist speed factor, default 4), VIGIE_DEMO_OPERATOR
# (name on acks), VIGIE_DEMO_SECONDS (non-interactive run length, default
# 120; the script then acknowledges the police dispatch itself),
# VIGIE_DEMO_BUILD (build directory, default build/).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

"$here/scripts/deps.sh"
echo "building ..." >&2
build=${VIGIE_DEMO_BUILD:-$here/build}
"$here/scripts/build.sh" "$build" >/dev/null

bin=$build/bin
gen=$here/broker-config/vigie-broker-config
work=$here/.demo
base=${VIGIE_DEMO_PORT:-18830}
speed=${VIGIE_DEMO_SPEED:-4}
operator=${VIGIE_DEMO_OPERATOR:-Brigadier Dupont}
sites=(louvre mnhn orsay)
central_port=$base
ws_port=$((base + 4))
dash_port=$((base + 5))
interactive=0
[ -t 0 ] && [ -t 1 ] && [ -z "${VIGIE_DEMO_SECONDS:-}" ] && interactive=1

site_port() {
  case $1 in
    louvre) echo $((base + 1)) ;;
    mnhn) echo $((base + 2)) ;;
    orsay) echo $((base + 3)) ;;
  esac
}

for p in $central_port $(site_port louvre) $(site_port mnhn) $(site_port orsay) $ws_port $dash_port; do
  if ss -ltn "sport = :$p" | grep -q LISTEN; then
    echo "demo: port $p is in use; set VIGIE_DEMO_PORT to another base port" >&2
    exit 2
  fi
done

rm -rf "$work"
mkdir -p "$work/logs"
pids=()
echo "building the dashboard ..." >&2
(cd "$here/dashboard" && npm run build) >"$work/logs/dashboard-build.log" 2>&1 ||
  { echo "demo: dashboard build failed, see $work/logs/dashboard-build.log" >&2; exit 1; }

timeline() {
  [ -f "$work/relay.db" ] || return 0
  /usr/bin/python3 "$here/scripts/demo_timeline.py" "$bin/vigie-relay" "$work/relay.db" \
    "$work"/logs/post-*.log || true
  echo
  echo "(logs of every process: $work/logs)"
}

stop_all() {
  trap - EXIT INT TERM
  echo >&2
  echo "demo: stopping ${#pids[@]} process(es)" >&2
  # Reverse order: nodes, posts and relay before the brokers, so they say
  # goodbye cleanly.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "${pids[$i]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${pids[$i]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  timeline
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() { # start NAME CMD... : background, output to .demo/logs/NAME.log
  local name=$1
  shift
  "$@" >"$work/logs/$name.log" 2>&1 &
  pids+=($!)
}

wait_port() { # wait_port PORT NAME (a TCP connect only: a TLS listener logs
  # it as "unexpected eof while reading", which is harmless)
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: $2 did not start, see $work/logs/$2.log" >&2
  exit 1
}

secret() { # secret FILE SECTION KEY
  awk -F' = ' -v s="[$2]" -v k="$3" '$0 == s {on = 1; next} /^\[/ {on = 0} on && $1 == k {print $2}' "$1"
}

root_opt=()
[ "$(id -u)" = 0 ] && root_opt=(--run-as-root)
# Mosquitto 2.0 leaves Nagle on for the bridge connections it makes:
# broker-config/nodelay.c turns it off (see broker-config/README.md).
nodelay=(env "LD_PRELOAD=$build/lib/libvigie-nodelay.so")

pki=$work/pki
nodes=(louvre/apollo-1 mnhn/mineral-1 orsay/nef-1)
node_of() { # node_of SITE: the demo node of that museum
  local n
  for n in "${nodes[@]}"; do [ "${n%/*}" = "$1" ] && echo "${n#*/}"; done
}
keys=(--out "$pki" --vigie-node "$bin/vigie-node" --post pp-paris-1 --post pp-paris-4 --quiet)
for site in "${sites[@]}"; do keys+=(--site "$site" --client "node-$site"); done
for n in "${nodes[@]}"; do keys+=(--node "$n"); done
/usr/bin/python3 "$here/broker-config/vigie-keys" "${keys[@]}"
ca=$pki/ca/ca.crt
# tls_listener BROKER: TLS only, client certificates required.
tls_listener() {
  echo --cafile "$ca" --certfile "$pki/brokers/$1.crt" --keyfile "$pki/brokers/$1.key" \
    --require-certificate
}
# tls_client USER: the CA and the client certificate of a command-line client.
tls_client() { echo --cafile "$ca" --cert "$pki/clients/$1.crt" --key "$pki/clients/$1.key"; }

echo "demo: central broker on 127.0.0.1:$central_port, museums on :$((base + 1))-:$((base + 3)), TLS" >&2
# shellcheck disable=SC2046
/usr/bin/python3 "$gen" central --out "$work/central" --port "$central_port" \
  --site louvre --site mnhn --site orsay --post pp-paris-1 --post pp-paris-4 \
  $(tls_listener central) --ws-port "$ws_port" --ws-plaintext-loopback "${root_opt[@]}" --quiet
start central "${nodelay[@]}" mosquitto -c "$work/central/mosquitto.conf"
wait_port "$central_port" central

for site in "${sites[@]}"; do
  # shellcheck disable=SC2046
  /usr/bin/python3 "$gen" site --site "$site" --out "$work/$site" --port "$(site_port "$site")" \
    --central-host 127.0.0.1 --central-port "$central_port" \
    --central-secrets "$work/central/secrets" $(tls_listener "site-$site") \
    --bridge-cafile "$ca" --bridge-certfile "$pki/clients/bridge-$site.crt" \
    --bridge-keyfile "$pki/clients/bridge-$site.key" "${root_opt[@]}" --quiet
  start "site-$site" "${nodelay[@]}" mosquitto -c "$work/$site/mosquitto.conf"
  wait_port "$(site_port "$site")" "site-$site"
done

csecrets=$work/central/secrets
relay_pw=$(secret "$csecrets" users relay)
sed -e "s|@DIR@|$work|g" -e "s|@CENTRAL_PORT@|$central_port|g" \
    -e "s|@RELAY_PASSWORD@|$relay_pw|g" \
    "$here/examples/demo/relay.yaml" >"$work/relay.yaml"
"$bin/vigie-relay" check-config "$work/relay.yaml" >&2
start relay "$bin/vigie-relay" -c "$work/relay.yaml"
start dashboard node "$here/dashboard/serve.mjs" --port "$dash_port" \
  --broker "ws://127.0.0.1:$ws_port/mqtt" --secrets "$csecrets" --ack-post pp-paris-1
wait_port "$dash_port" dashboard
dashboard_url="http://127.0.0.1:$dash_port/?operator=$(echo "$operator" | sed 's/ /%20/g')"

post_args() { # post_args POST: connection flags of a post console
  # shellcheck disable=SC2046
  echo --host 127.0.0.1 --port "$central_port" --post "$1" --user "post-$1" \
    --password "$(secret "$csecrets" users "post-$1")" $(tls_client "post-$1")
}
# The backup post runs unattended, its JSON lines in the log.
# shellcheck disable=SC2046
start post-pp-paris-4 "$bin/vigie-post" --json $(post_args pp-paris-4) --by "Backup desk"
if [ $interactive = 0 ]; then
  # shellcheck disable=SC2046
  start post-pp-paris-1 "$bin/vigie-post" --json $(post_args pp-paris-1) --by "$operator"
fi
# shellcheck disable=SC2046
start watch "$bin/vigie-watch" -p "$central_port" -u relay -P "$relay_pw" $(tls_client relay) --no-color

for site in "${sites[@]}"; do
  sed -e "s|@DIR@|$work|g" -e "s|@SITE_PORT@|$(site_port "$site")|g" \
      -e "s|@SITE@|$site|g" -e "s|@NODE@|$(node_of "$site")|g" \
      -e "s|@NODE_PASSWORD@|$(secret "$work/$site/secrets" users node)|g" \
      "$here/examples/demo/$site.yaml" >"$work/$site-node.yaml"
  "$bin/vigie-node" check-config "$work/$site-node.yaml" >&2
  if [ "$site" = louvre ]; then
    start "node-$site" "$bin/vigie-node" -c "$work/$site-node.yaml" \
      --scenario "$here/examples/scenarios/louvre-apollo-heist.scn" --speed "$speed"
  else
    start "node-$site" "$bin/vigie-node" -c "$work/$site-node.yaml" \
      --scenario "$here/examples/scenarios/routine.scn" --speed 2 --loop 0
  fi
done

if [ $interactive = 1 ]; then
  cat >&2 <<EOF

demo: the heist plays at the Louvre at x$speed. The console of police post
      pp-paris-1 follows; select the dispatch and press Enter to acknowledge
      it (q quits and prints the timeline).
      Dashboard:        $dashboard_url
      Events, readable: tail -f $work/logs/watch.log
EOF
  sleep 2
  # shellcheck disable=SC2046
  "$bin/vigie-post" $(post_args pp-paris-1) --by "$operator" --log-file "$work/logs/post-pp-paris-1.log" || true
  exit 0
fi

# Not interactive: show the events, and play the police officer who
# acknowledges the first police dispatch 5 s after it arrived.
seconds=${VIGIE_DEMO_SECONDS:-120}
echo "demo: running for $seconds s; dashboard at $dashboard_url" >&2
echo "demo: events arriving at the central broker:" >&2
tail -n +1 -f "$work/logs/watch.log" &
tail_pid=$!
acked=""
end=$((SECONDS + seconds))
while [ $SECONDS -lt $end ]; do
  if [ -z "$acked" ]; then
    id=$(grep '"confirmed":true' "$work/logs/post-pp-paris-1.log" 2>/dev/null |
         grep -o '"type":"dispatch","id":"louvre-[^"]*"' | head -1 |
         sed 's/.*"id":"\([^"]*\)"/\1/' || true)
    if [ -n "$id" ]; then
      sleep 5
      # shellcheck disable=SC2046
      "$bin/vigie-post" ack "$id" --by "$operator" $(post_args pp-paris-1) >/dev/null &&
        echo "demo: $operator acknowledged $id at pp-paris-1" >&2
      acked=$id
    fi
  fi
  sleep 1
done
kill "$tail_pid" 2>/dev/null || true
