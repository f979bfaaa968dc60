#!/usr/bin/env bash
# Runs the same loadtest scenarios against shardmq, Mosquitto (Debian) and rumqttd, one broker
# at a time, in one run, so that ratios between brokers are comparable on a noisy host.
#
#   bash benches/compare.sh [OUT_DIR]
#
# Needs: a release build (`cargo build --release -p shardmq -p shardmq-loadtest`), Debian's
# mosquitto, and rumqttd (`cargo install rumqttd`). Brokers listen on loopback only and are
# stopped by PID. Every scenario is bounded by --timeout.
#
# Environment:
#   BROKERS            which brokers, in order (default: shardmq mosquitto rumqttd)
#   SHARDMQ_BASELINE   another shardmq binary, run as broker "baseline" (before/after a change)
#   SCENARIOS          which scenarios (default: all of them; names as in the list at the end)
#   ROUNDS             repeat everything, brokers alternating, this many times (default 1)
#   SHARDMQ, LOADTEST  the binaries (default: target/release/...)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benches/compare-results}
mkdir -p "$OUT"
LT=${LOADTEST:-target/release/shardmq-loadtest}
SHARDMQ=${SHARDMQ:-target/release/shardmq}
BASELINE=${SHARDMQ_BASELINE:-}
BROKERS=${BROKERS:-shardmq mosquitto rumqttd${BASELINE:+ baseline}}
SCENARIOS=${SCENARIOS:-conn-10k fanout-10k-1msg fanout-10k-10msg fanout-1to1000-100msg pairs-100-q0 pairs-100-q1}
ROUNDS=${ROUNDS:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() { # name port -> sets PID
    case "$1" in
    shardmq)
        "$SHARDMQ" --listen "127.0.0.1:$2" --shards 2 --admin-listen "" >"$WORK/shardmq.out" 2>"$WORK/shardmq.err" &
        PID=$! ;;
    baseline)
        "$BASELINE" --listen "127.0.0.1:$2" --shards 2 --admin-listen "" >"$WORK/baseline.out" 2>"$WORK/baseline.err" &
        PID=$! ;;
    mosquitto)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$2" >"$WORK/mosquitto.conf"
        /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
        PID=$! ;;
    rumqttd)
        cat >"$WORK/rumqttd.toml" <<TOML
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$2"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
TOML
        rumqttd -q -c "$WORK/rumqttd.toml" >"$WORK/rumqttd.log" 2>&1 &
        PID=$! ;;
    esac
    sleep 1.5
}

run() { # broker scenario-name loadtest-args...
    local broker=$1 name=$2; shift 2
    case " $SCENARIOS " in *" $name "*) ;; *) return 0 ;; esac
    local port; port=$(free_port)
    start_broker "$broker" "$port"
    echo "== $broker $name: $LT $* -p $port"
    "$LT" "$@" -p "$port" --broker-pid "$PID" --out "$OUT" --name "$broker-$name$SUFFIX" --timeout 120s \
        | grep -E "^(FAILED|INCOMPLETE|WARNING)|connections |messages |last delivery|broker |loadtest " || true
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
    SUFFIX=$([ "$ROUNDS" -gt 1 ] && echo "-r$round" || true)
    for broker in $BROKERS; do
        run "$broker" conn-10k conn -n 10000 --hold 3s
        run "$broker" fanout-10k-1msg fanout -n 10000 --preset 1-to-all -m 1
        run "$broker" fanout-10k-10msg fanout -n 10000 --preset 1-to-all -m 10
        run "$broker" fanout-1to1000-100msg fanout -n 1001 --preset 1-to-1000 -m 100
        run "$broker" pairs-100-q0 pairs -n 100 -m 2000 -q 0
        run "$broker" pairs-100-q1 pairs -n 100 -m 2000 -q 1
    done
done
