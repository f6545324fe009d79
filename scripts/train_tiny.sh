#!/usr/bin/env bash
# The whole tiny recipe on this machine's CPU, from nothing to a trained `tiny` pipeline folder:
#   SynthTalk -> speech judge + tiny video codec, then tiny audio codec -> codecs skeleton -> pipeline -> latents
#   -> pretraining stage 1 (speech) -> stage 2 (audio-video) -> <RUN>/stage2/final + a sample MP4.
# Every step resumes or is skipped when its result is already there, so an interrupted run goes on.
#   bash scripts/train_tiny.sh                       # defaults below (several hours on 2 cores)
#   RUN=runs/x CLIPS=64 JUDGE_STEPS=100 STAGE2_STEPS=200 bash scripts/train_tiny.sh
#   REUSE_BUNDLED=1 bash scripts/train_tiny.sh      # the bundled judge, tiny-codecs (and tiny-stage1, when it is
#                                                   # there and the size is the preset's) instead of training them
#   STAGE2_INIT=src/streamchar/bundled/tiny-teacher REUSE_BUNDLED=1 bash scripts/train_tiny.sh  # stage 2 goes on
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/tiny}
CLIPS=${CLIPS:-3200}
LONG=${LONG:-16}
JUDGE_STEPS=${JUDGE_STEPS:-3000}
VIDEO_STEPS=${VIDEO_STEPS:-4500}
AUDIO_STEPS=${AUDIO_STEPS:-6000}
STAGE1_STEPS=${STAGE1_STEPS:-2000}
STAGE2_STEPS=${STAGE2_STEPS:-3000}  # 82 min on 2 cores: a whole stage fits one session (tiny-teacher's card)
# the model's size (config settings for `streamchar convert --set`), chosen by scripts/size_sweep.py
MODEL_SETTINGS=${MODEL_SETTINGS:-}
SC=${SC:-.venv/bin/streamchar}
export HF_HUB_OFFLINE=1
THREADS=${OMP_NUM_THREADS:-$(nproc)}  # one process at a time uses every core; two side by side, one each
export OMP_NUM_THREADS=$THREADS
mkdir -p "$RUN"

step() { echo "== $(date +%H:%M:%S) $*" >&2; }

if [ "${REUSE_BUNDLED:-0}" = 1 ]; then  # start from the shipped judge and codecs (skips hours of training)
  mkdir -p "$RUN/judge"
  [ -e "$RUN/judge/judge" ] || ln -s "$PWD/src/streamchar/bundled/judge" "$RUN/judge/judge"
  [ -e "$RUN/tiny-codecs" ] || ln -s "$PWD/src/streamchar/bundled/tiny-codecs" "$RUN/tiny-codecs"
fi

if [ ! -f "$RUN/synthtalk/index.json" ]; then
  step "SynthTalk: $CLIPS clips ($LONG long)"
  rm -rf "$RUN/synthtalk"
  $SC data synthtalk --num "$CLIPS" --long "$LONG" --out "$RUN/synthtalk" --quiet
fi

# one process per core: the judge and the video codec side by side, then the audio codec (measured by the judge)
step "speech judge ($JUDGE_STEPS steps) and video codec ($VIDEO_STEPS steps), side by side"
[ -f "$RUN/judge/judge/model.safetensors" ] || OMP_NUM_THREADS=1 $SC train asr-judge --data "$RUN/synthtalk" \
  --out-dir "$RUN/judge" --steps "$JUDGE_STEPS" > "$RUN/judge.log" 2>&1 &
judge=$!
[ -f "$RUN/codec_video/codec/config.json" ] || [ -f "$RUN/tiny-codecs/model_index.json" ] || OMP_NUM_THREADS=1 $SC train codec-video --data "$RUN/synthtalk" \
  --out-dir "$RUN/codec_video" --steps "$VIDEO_STEPS" > "$RUN/codec_video.log" 2>&1 &
video=$!
wait $judge || { tail -20 "$RUN/judge.log"; exit 1; }
wait $video || { tail -20 "$RUN/codec_video.log"; exit 1; }

step "audio codec ($AUDIO_STEPS steps)"
[ -f "$RUN/codec_audio/codec/config.json" ] || [ -f "$RUN/tiny-codecs/model_index.json" ] || $SC train codec-audio --data "$RUN/synthtalk" \
  --out-dir "$RUN/codec_audio" --steps "$AUDIO_STEPS" > "$RUN/codec_audio.log" 2>&1

if [ ! -f "$RUN/tiny-codecs/model_index.json" ]; then
  step "codecs skeleton (what ships as the bundled tiny-codecs)"
  $SC convert --preset tiny --codecs-only --video-vae "$RUN/codec_video/codec" \
    --audio-vae "$RUN/codec_audio/codec" --out "$RUN/tiny-codecs"
fi

if [ ! -f "$RUN/init/model_index.json" ]; then
  step "pipeline with the trained codecs (random DiT and orchestrator: ${MODEL_SETTINGS:-the tiny preset})"
  sets=()
  for s in $MODEL_SETTINGS; do sets+=(--set "$s"); done
  $SC convert --preset tiny --video-vae "$RUN/tiny-codecs/video_codec" --audio-vae "$RUN/tiny-codecs/audio_codec" \
    --dtype fp32 --out "$RUN/init" "${sets[@]}"
fi

if [ ! -f "$RUN/latents/index.json" ]; then
  step "latents"
  rm -rf "$RUN/latents"  # an interrupted encode
  $SC data encode --shards "$RUN/synthtalk" --out "$RUN/latents" --checkpoint "$RUN/init" --quiet \
    --workers "$(nproc)" > /dev/null
fi

STAGE1="$RUN/stage1/final"
if [ "${REUSE_BUNDLED:-0}" = 1 ] && [ -f src/streamchar/bundled/tiny-stage1/model_index.json ] && [ -z "$MODEL_SETTINGS" ] \
   && [ ! -f "$STAGE1/model_index.json" ]; then
  STAGE1=src/streamchar/bundled/tiny-stage1  # the shipped result of stage 1 (its card says how it was trained)
  step "pretraining stage 1: the bundled tiny-stage1"
else
  step "pretraining stage 1 ($STAGE1_STEPS steps)"
  # stage 1 has no video: a sample's cost is its orchestrator prefix (89 % of a step), so 8 noise draws share it
  $SC train pretrain --config configs/pretrain_tiny.yaml --stage 1 --init "$RUN/init" --data "$RUN/latents" \
    --out-dir "$RUN/stage1" --steps "$STAGE1_STEPS" --set noise_draws=8 --set export_every=500 > "$RUN/stage1.json"
fi

# STAGE2_INIT continues stage 2 from a given pipeline (e.g. the bundled tiny-teacher) instead of stage 1's result
STAGE2_INIT=${STAGE2_INIT:-$STAGE1}
step "pretraining stage 2 ($STAGE2_STEPS steps from $STAGE2_INIT)"
$SC train pretrain --config configs/pretrain_tiny.yaml --stage 2 --init "$STAGE2_INIT" --data "$RUN/latents" \
  --out-dir "$RUN/stage2" --steps "$STAGE2_STEPS" --set export_every=500 > "$RUN/stage2.json"

step "sample (the teacher with guidance: the model is pretrained, not distilled) of a held-out identity"
.venv/bin/python - "$RUN" <<'PY'
import io, json, sys
from pathlib import Path
import av
from streamchar.data.synthtalk import read_shard
run = Path(sys.argv[1])
index = json.loads((run / "synthtalk" / "index.json").read_text())
key, mp4, meta = next(read_shard(run / "synthtalk" / index["shards"]["test"][0]))
with av.open(io.BytesIO(mp4)) as f:
    next(f.decode(video=0)).to_image().save(run / "reference.png")
from streamchar.data.identity import IDENTITIES, caption
(run / "reference.json").write_text(json.dumps({"clip": key, "identity": meta["identity"], "text": meta["text"],
                                                "prompt": caption(IDENTITIES[meta["identity"]])}))
(run / "prompt.txt").write_text(caption(IDENTITIES[meta["identity"]]))
PY
$SC generate --checkpoint "$RUN/stage2/final" --ref-image "$RUN/reference.png" --prompt "$(cat "$RUN/prompt.txt")" \
  --text "hello there, this is a tiny model trained on synthetic talking characters." \
  --max-seconds 12 --out "$RUN/sample.mp4" --quiet
step "done: $RUN/stage2/final, $RUN/sample.mp4"
