#!/usr/bin/env bash
# Postback throughput: the server pinned to core 0, wrk pinned to core 1.
#   bench/run-postback.sh [duration=20s] [connections=64]
# First makes 5 s of clicks to collect real click ids, then sends postbacks for them, each a new
# conversion (own txid) that the store commits before answering 200.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20s}
connections=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
rm -rf var/bench-postback && mkdir -p var/bench-postback
export CLICKS_FILE=var/bench-postback/clicks.txt
taskset -c 0 target/release/smartlink --config bench/postback.toml serve 2>var/bench-postback/server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:18081/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
taskset -c 1 wrk -t1 -c8 -d5s -s bench/collect-clicks.lua http://127.0.0.1:18081 >/dev/null
echo "clicks collected: $(wc -l <"$CLICKS_FILE")"
taskset -c 1 wrk -t1 -c"$connections" -d"$duration" --latency -s bench/postback.lua http://127.0.0.1:18081
curl -fsS http://127.0.0.1:18081/metrics | grep -E '^smartlink_postbacks_total'
