#!/usr/bin/env bash
# Click-path load test: the server pinned to core 0, wrk pinned to core 1.
#   bench/run-click.sh [duration=20s] [connections=64]
#   STORE=redis bench/run-click.sh ...   the same against a private redis-server (on core 1,
#                                        beside wrk) on port 16379, without persistence
# Needs wrk (Debian package `wrk`), and for STORE=redis redis-server (Debian `redis-server`).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20s}
connections=${2:-64}
store=${STORE:-sqlite}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
rm -rf var/bench && mkdir -p var/bench
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
if [ "$store" = redis ]; then
  command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
  taskset -c 1 redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$PWD/var/bench" --logfile "$PWD/var/bench/redis.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    redis-cli -p 16379 ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p 16379 ping >/dev/null || { echo "redis-server did not start (var/bench/redis.log)" >&2; exit 1; }
  export SMARTLINK_STORE__KIND=redis SMARTLINK_STORE__URL=redis://127.0.0.1:16379/
fi
taskset -c 0 target/release/smartlink --config bench/smartlink.toml serve 2>var/bench-server.log &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:18080/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
# Warm-up, then the measured run.
taskset -c 1 wrk -t1 -c"$connections" -d3s -s bench/click.lua http://127.0.0.1:18080 >/dev/null
taskset -c 1 wrk -t1 -c"$connections" -d"$duration" --latency -s bench/click.lua http://127.0.0.1:18080
curl -fsS http://127.0.0.1:18080/metrics | grep -E "^smartlink_(clicks_total|redirects_total|store_committed_total|store_failed_total|store_dropped_clicks_total|decision_seconds_(sum|count))"
