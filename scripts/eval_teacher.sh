#!/usr/bin/env bash
# The teacher's eval table on SynthTalk's held-out identities and sentences (the `short` protocol, `N` items):
# the true clips (the ceiling), the teacher at each guidance pair of GUIDANCE (video,audio), and the untrained
# pipeline (random DiT and orchestrator with the trained codecs: the floor). Each row is `streamchar eval`; a stopped run resumes (generated streams are kept).
#   bash scripts/eval_teacher.sh                                  # defaults below
#   RUN=runs/tiny N=16 GUIDANCE="1,1 2,3" bash scripts/eval_teacher.sh
# -> $OUT/<row>/report.json and one line per row in $OUT/table.md
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/tiny}
CKPT=${CKPT:-$RUN/stage2/final}
N=${N:-32}
GUIDANCE=${GUIDANCE:-"1,1 2,2 3,3 2,4"}
OUT=${OUT:-$RUN/eval_teacher}
SC=${SC:-.venv/bin/streamchar}
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"

row() {  # name, then eval arguments
  local name=$1; shift
  [ -f "$OUT/$name/report.json" ] || $SC eval --data "$RUN/synthtalk" --protocol short --limit "$N" --quiet \
    --videos "$OUT/$name.videos" --out "$OUT/$name" "$@" > /dev/null
}

row truth --score-truth
for g in $GUIDANCE; do
  row "teacher_g${g/,/_}" --generate --checkpoint "$CKPT" --guidance ${g/,/ }
done
row random --generate --checkpoint "$RUN/init"  # random DiT and orchestrator, the trained codecs

.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
keys = [("wer", "WER"), ("sync_proxy_abs_offset", "sync |offset| (frames)"), ("identity_proxy_ssim", "identity SSIM"),
        ("dynamic_degree", "dynamic degree (RAFT)"), ("dynamic_degree_farneback", "dynamic degree (Farneback)"),
        ("stream_end_within_one_chunk", "ends within 1 chunk"), ("rtf", "RTF")]
lines = ["| row | " + " | ".join(k[1] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
for report in sorted(out.glob("*/report.json")):
    m = json.loads(report.read_text())["metrics"]
    cells = [f"{m[k]['value']:.3f}" if k in m and m[k].get("value") is not None else "-" for k, _ in keys]
    lines.append(f"| {report.parent.name} | " + " | ".join(cells) + " |")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
