#!/usr/bin/env bash
# The local mesh demo. Starts, on 127.0.0.1 only:
#   - a central broker and two museum site brokers bridged to it
#     (the Louvre and the Muséum national d'Histoire naturelle);
#   - the relay (stores each event once, receipts it back to its node);
#   - one vigie-node per museum replaying a scenario: the 2025 Apollo
#     Gallery heist at the Louvre, an ordinary morning at the Muséum;
#   - vigie-watch on the central broker, printing what arrives, readable.
# Ctrl-C stops everything it started (by PID) and removes nothing but .demo/.
#
# Environment: VIGIE_DEMO_PORT (first of three ports, default 18830),
# VIGIE_DEMO_SPEED (scenario speed factor, default 4), VIGIE_DEMO_SECONDS
# (stop by itself after that many seconds; default: run until Ctrl-C).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

"$here/scripts/deps.sh"
echo "building ..." >&2
"$here/scripts/build.sh" "$here/build" >/dev/null

bin=$here/build/bin
gen=$here/broker-config/vigie-broker-config
work=$here/.demo
base=${VIGIE_DEMO_PORT:-18830}
speed=${VIGIE_DEMO_SPEED:-4}
central_port=$base
louvre_port=$((base + 1))
mnhn_port=$((base + 2))
sites=(louvre mnhn)

for p in $central_port $louvre_port $mnhn_port; do
  if ss -ltn "sport = :$p" | grep -q LISTEN; then
    echo "demo: port $p is in use; set VIGIE_DEMO_PORT to another base port" >&2
    exit 2
  fi
done

rm -rf "$work"
mkdir -p "$work/logs"
pids=()
names=()

stop_all() {
  trap - EXIT INT TERM
  echo >&2
  echo "demo: stopping ${#pids[@]} process(es)" >&2
  # Reverse order: nodes before brokers, so the nodes say goodbye.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  echo "demo: logs are in $work/logs" >&2
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() { # start NAME CMD... : background, log to .demo/logs/NAME.log
  local name=$1
  shift
  "$@" >"$work/logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

wait_port() { # wait_port PORT NAME
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

echo "demo: central broker on 127.0.0.1:$central_port, sites on :$louvre_port and :$mnhn_port" >&2
/usr/bin/python3 "$gen" central --out "$work/central" --port "$central_port" \
  --site louvre --site mnhn --post pp-paris-1 --post pp-paris-2 "${root_opt[@]}" --quiet
# Mosquitto 2.0 leaves Nagle on for the bridge connections it makes:
# broker-config/nodelay.c turns it off (see broker-config/README.md).
nodelay=(env "LD_PRELOAD=$here/build/lib/libvigie-nodelay.so")
start central "${nodelay[@]}" mosquitto -c "$work/central/mosquitto.conf"
wait_port "$central_port" central

for site in "${sites[@]}"; do
  port=$louvre_port
  [ "$site" = mnhn ] && port=$mnhn_port
  /usr/bin/python3 "$gen" site --site "$site" --out "$work/$site" --port "$port" \
    --central-host 127.0.0.1 --central-port "$central_port" \
    --central-secrets "$work/central/secrets" "${root_opt[@]}" --quiet
  start "site-$site" "${nodelay[@]}" mosquitto -c "$work/$site/mosquitto.conf"
  wait_port "$port" "site-$site"
done

relay_pw=$(secret "$work/central/secrets" users relay)
if [ -x "$bin/vigie-relay" ]; then
  sed -e "s|@DIR@|$work|g" -e "s|@CENTRAL_PORT@|$central_port|g" \
      -e "s|@RELAY_PASSWORD@|$relay_pw|g" \
      "$here/examples/demo/relay.yaml" >"$work/relay.yaml"
  start relay "$bin/vigie-relay" -c "$work/relay.yaml"
fi

scenario_of() {
  case $1 in
    louvre) echo "$here/examples/scenarios/louvre-apollo-heist.scn" ;;
    *) echo "$here/examples/scenarios/routine.scn" ;;
  esac
}
for site in "${sites[@]}"; do
  port=$louvre_port
  [ "$site" = mnhn ] && port=$mnhn_port
  sed -e "s|@DIR@|$work|g" -e "s|@SITE_PORT@|$port|g" \
      -e "s|@NODE_PASSWORD@|$(secret "$work/$site/secrets" users node)|g" \
      "$here/examples/demo/$site.yaml" >"$work/$site-node.yaml"
  "$bin/vigie-node" check-config "$work/$site-node.yaml" >&2
  start "node-$site" "$bin/vigie-node" -c "$work/$site-node.yaml" \
    --scenario "$(scenario_of "$site")" --speed "$speed" --loop 0
done

cat >&2 <<EOF

demo: running. What arrives at the central broker follows, decoded.
      Inject your own event:  $bin/vigie-node inject -s $work/louvre-apollo-1.sock 'kind=duress sensor=pir-apollo'
      Watch it all yourself:  $bin/vigie-watch -p $central_port -u relay -P '$relay_pw' --heartbeats
      Press Ctrl-C to stop everything.

EOF
if [ -n "${VIGIE_DEMO_SECONDS:-}" ]; then
  timeout --foreground "$VIGIE_DEMO_SECONDS" "$bin/vigie-watch" -p "$central_port" -u relay -P "$relay_pw" || true
else
  "$bin/vigie-watch" -p "$central_port" -u relay -P "$relay_pw" || true
fi
