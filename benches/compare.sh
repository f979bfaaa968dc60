#!/usr/bin/env bash
# Runs the same loadtest scenarios against shardmq, Mosquitto (Debian) and rumqttd, one broker
# at a time, in one run, so that ratios between brokers are comparable on a noisy host.
#
#   bash benches/compare.sh [OUT_DIR]
#
# Needs: a release build (`cargo build --release -p shardmq -p shardmq-loadtest`), Debian's
# mosquitto, and rumqttd (`cargo install rumqttd`). Brokers listen on loopback only and are
# stopped by PID. Every scenario is bounded by --timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benches/compare-results}
mkdir -p "$OUT"
LT=target/release/shardmq-loadtest
SHARDMQ=target/release/shardmq
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() { # name port -> sets PID
    case "$1" in
    shardmq)
        "$SHARDMQ" --listen "127.0.0.1:$2" --shards 2 >"$WORK/shardmq.out" 2>"$WORK/shardmq.err" &
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
    local port; port=$(free_port)
    start_broker "$broker" "$port"
    echo "== $broker $name: $LT $* -p $port"
    "$LT" "$@" -p "$port" --broker-pid "$PID" --out "$OUT" --name "$broker-$name" --timeout 120s \
        | grep -E "connections |messages |last delivery|broker |loadtest " || true
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}

for broker in shardmq mosquitto rumqttd; do
    run "$broker" conn-10k conn -n 10000 --hold 3s
    run "$broker" fanout-10k-1msg fanout -n 10000 --preset 1-to-all -m 1
    run "$broker" fanout-10k-10msg fanout -n 10000 --preset 1-to-all -m 10
    run "$broker" fanout-1to1000-100msg fanout -n 1001 --preset 1-to-1000 -m 100
    run "$broker" pairs-100-q0 pairs -n 100 -m 2000 -q 0
    run "$broker" pairs-100-q1 pairs -n 100 -m 2000 -q 1
done
