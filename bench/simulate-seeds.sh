#!/usr/bin/env bash
# Runs `smartlink simulate` over seeds 1..K and summarises each policy's figures over the seeds:
# mean/min/max of ratio, second_half_ratio, regret relative to the baselines, earnings relative to
# thompson-cr, and clicks_to_90 per drift; and the mean ratio over each tenth of the horizon and,
# over the second half, per tier of segments ranked by traffic.
#
#   bench/simulate-seeds.sh SCENARIO [K] [POLICY]
#
# K defaults to 4. Without POLICY every policy runs (the regret ratios need epsilon-greedy, ucb1
# and thompson-cr, whose figures do not depend on the bandit's settings). JOBS=N runs N seeds at
# a time (default 1; each simulation uses one core, and the figures do not depend on N).
# SMARTLINK overrides the binary (default target/release/smartlink); KEEP=DIR keeps the JSON of
# each seed there.
set -euo pipefail

scenario=${1:?usage: simulate-seeds.sh SCENARIO [K] [POLICY]}
seeds=${2:-4}
policy=${3:-}
bin=${SMARTLINK:-target/release/smartlink}
out=${KEEP:-$(mktemp -d)}
mkdir -p "$out"

jobs=${JOBS:-1}
run_seed() {
    local seed=$1
    local args=(simulate --scenario "$scenario" --seed "$seed")
    if [[ -n $policy ]]; then
        args+=(--policy "$policy")
    fi
    "$bin" "${args[@]}" >"$out/seed-$seed.json"
}
pids=()
for seed in $(seq 1 "$seeds"); do
    run_seed "$seed" &
    pids+=("$!")
    if ((${#pids[@]} >= jobs)); then
        wait "${pids[0]}"
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid"
done

python3 - "$out" "$seeds" <<'PY'
import json, statistics, sys

out, seeds = sys.argv[1], int(sys.argv[2])
runs = [json.load(open(f"{out}/seed-{s}.json")) for s in range(1, seeds + 1)]
horizon = runs[0]["clicks"]

def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.mean(values):.4g} [{min(values):.4g}, {max(values):.4g}]"

names = [p["policy"] for p in runs[0]["policies"]]
by = lambda run, name: next((p for p in run["policies"] if p["policy"] == name), None)
print(f"{runs[0]['scenario']}: {seeds} seeds, {horizon} clicks; mean [min, max]")
for name in names:
    rows = [by(r, name) for r in runs]
    print(f"{name}")
    print(f"  ratio              {stats([p['ratio'] for p in rows])}")
    print(f"  second_half_ratio  {stats([p['second_half_ratio'] for p in rows])}")
    tenths = [statistics.mean(p["ratio_by_tenth"][t] for p in rows) for t in range(10)]
    print(f"  ratio by tenth     {' '.join(f'{v:.3f}' for v in tenths)}")
    tiers = rows[0].get("second_half_by_tier", [])
    if tiers:
        cells = []
        for t, tier in enumerate(tiers):
            share = statistics.mean(p["second_half_by_tier"][t]["traffic"] for p in rows)
            value = statistics.mean(p["second_half_by_tier"][t]["ratio"] for p in rows)
            cells.append(f"{tier['segments']}: {value:.3f} ({share:.0%})")
        print(f"  second half by segment rank (traffic)  {', '.join(cells)}")
    for base in ("epsilon-greedy", "ucb1"):
        if base != name and all(by(r, base) for r in runs):
            print(f"  regret / {base:<9} {stats([p['regret'] / by(r, base)['regret'] for p, r in zip(rows, runs)])}")
    if name != "thompson-cr" and all(by(r, "thompson-cr") for r in runs):
        print(f"  earnings / thompson-cr {stats([p['earnings'] / by(r, 'thompson-cr')['earnings'] for p, r in zip(rows, runs)])}")
    for i, d in enumerate(rows[0]["recovery"]):
        # A drift never recovered from counts as the rest of the horizon.
        clicks = [p["recovery"][i]["clicks_to_90"] for p in rows]
        never = sum(c is None for c in clicks)
        filled = [horizon - d["at_click"] if c is None else c for c in clicks]
        note = f" ({never} never)" if never else ""
        print(f"  clicks_to_90 @{d['at_click']} {d['offer']}: {stats(filled)}{note}")
PY
