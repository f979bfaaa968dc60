#!/usr/bin/env bash
# The original performance table (1→100, 1→1000, 1→all at 10k and 19k connections) against
# shardmq and Mosquitto in one run. 19k is as far as one broker process goes on hosts that cap
# RLIMIT_NOFILE at 20,000; the load generator spreads its clients over worker processes itself.
#
#   bash benches/table.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benches/table-results}
mkdir -p "$OUT"
LT=target/release/shardmq-loadtest
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() { # name port -> PID
    case "$1" in
    shardmq)
        target/release/shardmq --listen "127.0.0.1:$2" --shards 2 --admin-listen "" --sys-interval 0 \
            >"$WORK/shardmq.out" 2>"$WORK/shardmq.err" &
        PID=$! ;;
    mosquitto)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n' "$2" \
            >"$WORK/mosquitto.conf"
        /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
        PID=$! ;;
    esac
    sleep 1.5
}

for connections in 10000 19000; do
    for preset in 1-to-100 1-to-1000 1-to-all; do
        for broker in shardmq mosquitto; do
            port=$(free_port)
            start_broker "$broker" "$port"
            name="$broker-$connections-$preset"
            echo "== $name"
            "$LT" fanout -n "$connections" --preset "$preset" -m 10 --src-ips 8 -p "$port" \
                --broker-pid "$PID" --out "$OUT" --name "$name" --timeout 180s \
                | grep -E "^(FAILED|INCOMPLETE|WARNING)|messages |last delivery|delivery  |broker " || true
            kill "$PID" 2>/dev/null || true
            wait "$PID" 2>/dev/null || true
        done
    done
done
