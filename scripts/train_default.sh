#!/usr/bin/env bash
# The bundled default character through every stage of the paper at `tiny`, on this machine's CPU:
#   scripts/train_tiny.sh (SynthTalk, judge, codecs, latents, pretraining stages 1 and 2: the teacher)
#   -> Stage I, DMD (the 4-step student) -> Stage II, online rollout (the student on its own outputs)
#   -> <RUN>/rollout/final, the student, and a sample MP4.
# Every step resumes or is skipped when its result is there, so an interrupted run goes on; logs in <RUN>/*.log.
#   bash scripts/train_default.sh                     # defaults below (several CPU-hours)
#   RUN=runs/x DMD_STEPS=50 ROLLOUT_STEPS=20 bash scripts/train_default.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/tiny}
DMD_STEPS=${DMD_STEPS:-400}      # the bundled tiny: 400 (80 student updates)
ROLLOUT_STEPS=${ROLLOUT_STEPS:-575}  # the bundled tiny: 575
SC=${SC:-.venv/bin/streamchar}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 RUN

step() { echo "== $(date +%H:%M:%S) $*" >&2; }

[ -f "$RUN/stage2/final/model_index.json" ] || bash scripts/train_tiny.sh

step "Stage I, DMD ($DMD_STEPS steps)"
[ -f "$RUN/dmd/final/model_index.json" ] || $SC train distill-dmd --config distill_dmd_tiny --init "$RUN/stage2/final" --data "$RUN/latents" \
  --out-dir "$RUN/dmd" --steps "$DMD_STEPS" > "$RUN/dmd.json" 2> "$RUN/dmd.log"

step "Stage II, online rollout ($ROLLOUT_STEPS steps)"
[ -f "$RUN/rollout/final/model_index.json" ] || $SC train distill-rollout --config distill_rollout_tiny --init "$RUN/dmd/final" --teacher "$RUN/stage2/final" \
  --data "$RUN/latents" --out-dir "$RUN/rollout" --steps "$ROLLOUT_STEPS" > "$RUN/rollout.json" 2> "$RUN/rollout.log"

step "sample: the student (4 steps) speaking with the bundled character"
$SC generate --checkpoint "$RUN/rollout/final" --ref-image src/streamchar/bundled/character.png --text "hello there, this is a tiny model trained on synthetic \
talking characters." --max-seconds 12 --out "$RUN/student_sample.mp4" --quiet
step "done: $RUN/rollout/final, $RUN/student_sample.mp4"
