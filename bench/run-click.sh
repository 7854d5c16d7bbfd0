#!/usr/bin/env bash
# Click-path load test: the server pinned to core 0, wrk pinned to core 1.
#   bench/run-click.sh [duration=20s] [connections=64]
# Needs wrk (Debian package `wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20s}
connections=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
rm -rf var/bench && mkdir -p var
taskset -c 0 target/release/smartlink --config bench/smartlink.toml serve 2>var/bench-server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:18080/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
# Warm-up, then the measured run.
taskset -c 1 wrk -t1 -c"$connections" -d3s -s bench/click.lua http://127.0.0.1:18080 >/dev/null
taskset -c 1 wrk -t1 -c"$connections" -d"$duration" --latency -s bench/click.lua http://127.0.0.1:18080
curl -fsS http://127.0.0.1:18080/metrics | grep -E "^smartlink_(clicks_total|redirects_total|store_committed_total|store_failed_total|decision_seconds_(sum|count))"
