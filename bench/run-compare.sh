#!/usr/bin/env bash
# The click path against its ceiling, in one run on this machine:
#   1. a bare actix-web `302` (examples/bare_redirect.rs) under wrk, then smartlink's full click
#      path (classification, decision, macros, click recorded in `batched` mode) under the same
#      wrk script — each server pinned to core 0, wrk to core 1;
#   2. fixed-rate (open-loop) load at half of smartlink's measured maximum, for p99
#      (examples/load_fixed_rate.rs);
#   3. after a graceful stop: clicks answered against clicks in the store, and bytes on disk per
#      stored click.
#
#   bench/run-compare.sh [duration=20s] [connections=64]
# Needs wrk (Debian package `wrk`) and python3 (to read the SQLite file).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20s}
connections=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --bin smartlink --example bare_redirect --example load_fixed_rate

wait_up() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    curl -sS -o /dev/null -w '%{http_code}' "$1" 2>/dev/null | grep -q '^[1-5]' && return 0
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2
  exit 1
}

# wrk prints "requests N, errors E, R req/s" (bench/click.lua's done()).
run_wrk() {
  taskset -c 1 wrk -t1 -c"$connections" -d3s -s bench/click.lua "$1" >/dev/null
  taskset -c 1 wrk -t1 -c"$connections" -d"$duration" --latency -s bench/click.lua "$1"
}

echo "== bare 302 (ceiling)"
taskset -c 0 target/release/examples/bare_redirect 127.0.0.1:18081 &
bare=$!
trap 'kill $bare 2>/dev/null || true' EXIT
wait_up http://127.0.0.1:18081/c/x
bare_out=$(run_wrk http://127.0.0.1:18081)
echo "$bare_out" | grep -E '^(requests|p)'
kill $bare; wait $bare 2>/dev/null || true

echo "== smartlink click path (batched)"
rm -rf var/bench && mkdir -p var
taskset -c 0 target/release/smartlink --config bench/smartlink.toml serve 2>var/bench-server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_up http://127.0.0.1:18080/healthz
full_out=$(run_wrk http://127.0.0.1:18080)
echo "$full_out" | grep -E '^(requests|p)'

rate_of() { echo "$1" | sed -n 's/.* \([0-9]*\) req\/s$/\1/p'; }
bare_rps=$(rate_of "$bare_out")
full_rps=$(rate_of "$full_out")
echo "== ratio: $(python3 -c "print(f'{$full_rps / $bare_rps:.3f}')") of the bare 302 ($full_rps / $bare_rps req/s)"

# Time the hypervisor took from each core during the fixed-rate run (the `steal` column of
# /proc/stat, in clock ticks). On a virtual machine the host's work for this guest's disk writes
# shows up there, and a core taken away stalls the load generator or the server alike: the
# latency tail is then partly the host's.
steal_ticks() { awk '/^cpu[01] / {printf "%s ", $9}' /proc/stat; }
half=$((full_rps / 2))
echo "== fixed rate at $half req/s (half of the maximum)"
steal_before=$(steal_ticks)
taskset -c 1 target/release/examples/load_fixed_rate --addr 127.0.0.1:18080 --rate "$half" \
  --seconds 20 --connections "$connections" | tee var/bench-fixed-rate.json
steal_after=$(steal_ticks)
python3 - "$steal_before" "$steal_after" "$(getconf CLK_TCK)" <<'EOF'
import sys
before, after, hz = sys.argv[1].split(), sys.argv[2].split(), int(sys.argv[3])
print("== steal during the fixed-rate run: " + ", ".join(
    f"core {core} {(int(a) - int(b)) * 1000 // hz} ms" for core, (b, a) in enumerate(zip(before, after))))
EOF

answered=$(curl -fsS http://127.0.0.1:18080/metrics | sed -n 's/^smartlink_clicks_total \([0-9]*\)$/\1/p')
kill -TERM $server
wait $server 2>/dev/null || true
python3 - "$answered" <<'EOF'
import os, sqlite3, sys
answered = int(sys.argv[1])
path = "var/bench/smartlink.db"
db = sqlite3.connect(path)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
stored = db.execute("SELECT count(*) FROM clicks").fetchone()[0]
db.close()
size = sum(os.path.getsize(path + suffix) for suffix in ("", "-wal") if os.path.exists(path + suffix))
print(f"== store: {stored} of {answered} answered clicks stored ({stored / max(answered, 1):.4%}); "
      f"{size} bytes on disk, {size / max(stored, 1):.0f} bytes per click")
EOF
