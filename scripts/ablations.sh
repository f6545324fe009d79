#!/usr/bin/env bash
# The paper's ablations (§5.5) with the tiny model and its recipe, each next to the full recipe, in one table:
#   no sink         Stage II with --no-sink (the student streams without one)      -> Quality Drift, 5-min streams
#   one-chunk       Stage II on isolated chunks (--one-chunk)                        -> WER, sync proxy
#   Stage II only   Stage II straight from the teacher (Stage I skipped)            -> dynamic degree
# Needs scripts/train_default.sh's results in RUN (teacher stage2/final, Stage I dmd/final, Stage II
# rollout/final). Every training and every eval row resumes or is skipped when its result is there.
#   bash scripts/ablations.sh                           # defaults below (CPU-hours)
#   RUN=runs/x N=4 LONG_N=1 ROLLOUT_STEPS=20 bash scripts/ablations.sh
# -> $OUT/<row>/report.json per eval row and $OUT/table.md
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/tiny}
ROLLOUT_STEPS=${ROLLOUT_STEPS:-400}
N=${N:-16}          # held-out items of the short protocol
LONG_N=${LONG_N:-4} # 5-minute streams of the long protocol
SHORT_SECONDS=${SHORT_SECONDS:-}  # the short protocol's stream length (default: the protocol's 10 s)
OUT=${OUT:-$RUN/ablations}
SC=${SC:-.venv/bin/streamchar}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1
mkdir -p "$OUT"

step() { echo "== $(date +%H:%M:%S) $*" >&2; }
for need in stage2 dmd rollout; do
  [ -f "$RUN/$need/final/model_index.json" ] || { echo "ablations: $RUN/$need/final is missing: run scripts/train_default.sh first" >&2; exit 1; }
done

rollout() {  # name, init, then extra flags
  local name=$1 init=$2; shift 2
  step "Stage II ablation: $name ($ROLLOUT_STEPS steps)"
  [ -f "$RUN/$name/final/model_index.json" ] || $SC train distill-rollout --config distill_rollout_tiny --init "$init" \
    --teacher "$RUN/stage2/final" --data "$RUN/latents" --out-dir "$RUN/$name" --steps "$ROLLOUT_STEPS" "$@" \
    > "$RUN/$name.json" 2> "$RUN/$name.log"
}
rollout abl_nosink "$RUN/dmd/final" --no-sink
rollout abl_onechunk "$RUN/dmd/final" --one-chunk
rollout abl_stage2only "$RUN/stage2/final"

row() {  # name, protocol, items, checkpoint, then extra eval flags
  step "eval $1 ($2 protocol, $3 items)"
  local name=$1 protocol=$2 items=$3 ckpt=$4; shift 4
  [ -f "$OUT/$name/report.json" ] || $SC eval --data "$RUN/synthtalk" --protocol "$protocol" --limit "$items" --quiet \
    --generate --checkpoint "$ckpt" --videos "$OUT/$name.videos" --out "$OUT/$name" "$@" > /dev/null
}
short=(); [ -z "$SHORT_SECONDS" ] || short=(--seconds "$SHORT_SECONDS")
row full "short" "$N" "$RUN/rollout/final" "${short[@]}"
row onechunk "short" "$N" "$RUN/abl_onechunk/final" "${short[@]}"
row stage2only "short" "$N" "$RUN/abl_stage2only/final" "${short[@]}"
row full_long "long" "$LONG_N" "$RUN/rollout/final"
row nosink_long "long" "$LONG_N" "$RUN/abl_nosink/final"

.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])

def metric(row, key):
    """The metric's value; a learned metric whose weights were missing falls back to its `_proxy` (marked)."""
    metrics = json.loads((out / row / "report.json").read_text())["metrics"]
    m = metrics.get(key) or metrics.get(key + "_proxy") or {}
    return m.get("value")

def cell(x):
    return "-" if x is None else f"{x:.4f}"

# (ablation, metric key, its name, full row, ablated row, paper full, paper ablated, "higher is worse")
rows = [("no sink", "quality_drift", "Quality Drift (or its proxy without MUSIQ)", "full_long", "nosink_long", 0.0067, 0.0304, True),
        ("one-chunk Stage II", "wer", "WER", "full", "onechunk", 0.0365, 0.354, True),
        ("one-chunk Stage II", "sync_proxy_abs_offset", "sync |offset| (frames)", "full", "onechunk", None, None, True),
        ("Stage II only", "dynamic_degree_farneback", "dynamic degree", "full", "stage2only", 1.0, None, False),
        ("Stage II only", "dynamic_degree_farneback_pairs", "moving frame pairs", "full", "stage2only", None, None,
         False)]
lines = ["| ablation | metric | full recipe | ablated | paper: full | paper: ablated | direction as in the paper? |",
         "|---|---|---|---|---|---|---|"]
for name, key, label, full, abl, pf, pa, worse_up in rows:
    f, a = metric(full, key), metric(abl, key)
    if f is None or a is None:
        verdict = "not measured"
    else:
        worse = a > f if worse_up else a < f
        verdict = "yes: the ablation is worse" if worse else "no: the ablation is not worse here"
    lines.append(f"| {name} | {label} | {cell(f)} | {cell(a)} | {cell(pf)} | {cell(pa)} | {verdict} |")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
