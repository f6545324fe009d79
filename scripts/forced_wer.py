"""Teacher-forced speech check: can the model render a chunk's speech when everything before it is true?

Each chunk of a held-out clip is sampled (Euler, the teacher's sampler, with guidance as the stream applies it)
from the record a stream of the clip's *true* latents has before that chunk (the training record: true history,
motion and sink, the clip's own timeline plan); the sampled chunks' audio is decoded, concatenated and read by
the speech judge. Drift of a free stream is taken out, so this separates "the audio path cannot speak" from
"the stream loses its place". A diagnostic for training runs, not an evaluation protocol (`streamchar eval`).

    python scripts/forced_wer.py runs/plan/stage1/final --data runs/plan/latents --speech-only --clips 3
    python scripts/forced_wer.py runs/plan/stage2/final --data runs/plan/latents --clips 3 --guidance 1,3
    python scripts/forced_wer.py runs/plan/stage2/final --data runs/plan/latents --start-t 0.5  # SDEdit from the truth

`--start-t t0 < 1` starts each chunk's audio from its true latents noised to t0 (and integrates from there):
WER against t0 shows at which noise level the model loses the words (coarse plan vs fine detail).

Prints JSON: the judge's WER on the forced samples, on the true latents through the codec, and per clip texts.
`--mouth` adds the lips (SynthTalk's mouth box, `eval.sync`): per clip and in the summary, the mouth opening's
std and its correlation with the audio envelope, forced and true, so "the mouth does not follow the speech"
is measured without drift.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", help="a pipeline folder (a training run's final/ or an exported checkpoint)")
    ap.add_argument("--data", required=True, help="latent folder (streamchar data encode) the model trained on")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=3, help="held-out clips, spread over the split")
    ap.add_argument("--max-chunks", type=int, default=None, help="only clips of at most this many chunks")
    ap.add_argument("--steps", type=int, default=50, help="teacher steps per chunk (--solver student: its own 4)")
    ap.add_argument("--guidance", default=None, help="video,audio scales (default: the model's stream settings)")
    ap.add_argument("--speech-only", action="store_true", help="sample audio alone (a stage-1 model)")
    ap.add_argument("--judge", default=None, help="judge folder (default: the bundled one)")
    ap.add_argument("--start-t", type=float, default=1.0,
                    help="start the audio from the true latents noised to this t (1: pure noise, the real task)")
    ap.add_argument("--shift", type=float, default=None, help="the sampler's timestep shift (default: the model's)")
    ap.add_argument("--guidance-interval", default=None,
                    help="lo,hi: guide only at t in [lo, hi] (the conditional velocity elsewhere)")
    ap.add_argument("--solver", default="euler", choices=["euler", "ancestral", "renoise", "student"],
                    help="the teacher's rule (diffusion/samplers.py); SDEdit starts (--start-t) need euler")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-voice", action="store_true",
                    help="give every chunk a reference voice (another clip of the same voice, as training does)")
    ap.add_argument("--mouth", action="store_true",
                    help="also decode the video and report the lips: mouth-opening std and its correlation with "
                         "the audio envelope, for the forced samples and the true latents through the codec")
    args = ap.parse_args()
    if not 0.0 < args.start_t <= 1.0:
        raise SystemExit(f"--start-t must be in (0, 1], got {args.start_t}")
    if args.start_t < 1.0 and args.solver != "euler":
        raise SystemExit("--start-t < 1 (SDEdit) is done with --solver euler")
    if args.solver == "student" and args.guidance is None:
        args.guidance = "1,1"  # the few-step student streams without guidance (streaming/session.py)

    from streamchar.diffusion.flow import noisy
    from streamchar.diffusion.samplers import (ancestral_sample, euler_timesteps, renoise_sample, student_sample,
                                               student_timesteps)
    from streamchar.eval.asr import wer
    from streamchar.eval.judge import load_judge
    from streamchar.pipeline import StreamChar
    from streamchar.streaming.record import collate
    from streamchar.streaming.session import prompt_ids
    from streamchar.train.pretrain import PretrainConfig, clip_prompts
    from streamchar.train.latent_data import LatentChunks

    torch.manual_seed(args.seed)
    pipe = StreamChar.from_pretrained(args.pipeline)
    m, mc = pipe, pipe.cfg
    m.dit.float().eval(), m.orchestrator.float().eval()
    gv, ga = (map(float, args.guidance.split(","))) if args.guidance else (mc.stream.guidance_video,
                                                                          mc.stream.guidance_audio)
    cfg = PretrainConfig(data=args.data, stage=1 if args.speech_only else 2)
    L = mc.stream.text_lookback
    ds = LatentChunks(args.data, args.split, prompt=clip_prompts(cfg, pipe), null_prompt_ids=prompt_ids(pipe.tokenizer, ""),
                      history_frames=mc.history_frames, audio_frames=mc.audio_latent_frames,
                      audio_only=args.speech_only, audio_rate=mc.audio_latent_rate, train=False,
                      text_lookback=None if L is None else (L, L), sink=mc.stream.sink, uncond_record=True,
                      ref_audio_prob=1.0 if args.ref_voice else 0.0, text_horizon=mc.text_horizon_frames)
    lo, hi = map(float, args.guidance_interval.split(",")) if args.guidance_interval else (0.0, 1.0)

    def scales(t: float) -> tuple[float, float]:
        return (gv, ga) if lo <= t <= hi else (1.0, 1.0)

    judge = load_judge(args.judge)
    pool = [c for c, clip in enumerate(ds.clips) if args.max_chunks is None or len(clip["pap_end"]) <= args.max_chunks]
    if not pool:
        raise SystemExit(f"no {args.split} clip has at most {args.max_chunks} chunks")
    picks = [pool[j] for j in np.linspace(0, len(pool) - 1, min(args.clips, len(pool))).round().astype(int)]
    g = torch.Generator().manual_seed(args.seed)
    refs, hyps, truths, mouth = [], [], [], {}
    for c in picks:
        items = [i for i, (cc, _) in enumerate(ds.items) if cc == c]
        chunks, videos, true_videos = [], [], []
        for i in items:
            s = ds.sample(i, np.random.default_rng([args.seed, i]))
            rec, rows = s["record"], collate([s["record"], s["uncond_record"]])
            with torch.no_grad():
                prefix = m.orchestrator.encode_prefix(rec.orchestrator)
                conditions = [] if args.speech_only else rows.conditions(m.dit)
                cache = m.dit.encode_conditions(conditions, rows.context)

                def velocity(x_v, x_a, t):
                    c_a, _ = m.orchestrator.condition(prefix, x_a, t)
                    gv, ga = scales(float(t[0]))
                    xv2 = None if x_v is None else torch.cat([x_v, x_v])
                    v_v, v_a = m.dit(xv2, torch.cat([x_a, x_a]), torch.cat([c_a, torch.zeros_like(c_a)]),
                                     torch.cat([t, t]), cache)
                    mix = lambda v, s: None if v is None else v.chunk(2)[1] + s * (v.chunk(2)[0] - v.chunk(2)[1])  # noqa: E731
                    return mix(v_v, gv), mix(v_a, ga)

                x_a = torch.randn((1, *s["audio"].shape), generator=g)
                x_v = None if args.speech_only else torch.randn((1, *s["video"].shape), generator=g)
                t0 = args.start_t
                ts = [t for t in euler_timesteps(args.steps, args.shift or mc.stream.shift) if t < t0]
                ts = [t0, *ts]
                if t0 < 1.0:  # SDEdit: both modalities from their truth at t0
                    x_a = noisy(s["audio"][None].float(), x_a, torch.tensor([t0]))
                    if x_v is not None:
                        x_v = noisy(s["video"][None].float(), x_v, torch.tensor([t0]))
                if args.solver == "student":  # the 4-step student sampler (its timesteps, no --steps)
                    x_v, x_a = student_sample(velocity, x_v, x_a, student_timesteps(
                        mc.stream.student_timesteps, args.shift or mc.stream.shift), generator=g)
                    ts = []
                elif args.solver != "euler":
                    sample = ancestral_sample if args.solver == "ancestral" else renoise_sample
                    x_v, x_a = sample(velocity, x_v, x_a, args.steps, args.shift or mc.stream.shift, generator=g)
                    ts = []
                for t, t_next in zip(ts[:-1], ts[1:]):  # Euler, as samplers.euler_sample
                    v_v, v_a = velocity(x_v, x_a, torch.full((1,), t))
                    x_v = None if x_v is None else x_v + (t_next - t) * v_v
                    x_a = x_a + (t_next - t) * v_a
            chunks.append(x_a[0])
            if args.mouth and x_v is not None:
                videos.append(x_v[0])
                true_videos.append(s["video"].float())
        clip = ds.clips[c]
        with torch.no_grad():
            wave = m.audio_codec.decode(torch.cat(chunks)[None].float())[0].mean(0).numpy()
            true = m.audio_codec.decode(clip["audio_latents"][None].float())[0].mean(0).numpy()
        sr = mc.audio.sample_rate
        refs.append(clip["text"])
        hyps.append(judge.transcribe(wave, sr))
        truths.append(judge.transcribe(true, sr))
        row = {"clip": clip["key"], "text": refs[-1], "forced": hyps[-1], "truth": truths[-1]}
        if videos:
            row.update(lips(m, videos, wave, "forced"), **lips(m, true_videos, true, "truth"))
            for k in ("forced", "truth"):
                for stat in ("mouth_std", "mouth_corr"):
                    mouth.setdefault(f"{stat}_{k}", []).append(row[f"{stat}_{k}"])
        print(json.dumps(row), flush=True)
    print(json.dumps({"pipeline": args.pipeline, "clips": len(refs), "steps": args.steps, "guidance": [gv, ga],
                      "start_t": args.start_t, "shift": args.shift or mc.stream.shift,
                      "guidance_interval": [lo, hi], "solver": args.solver,
                      "wer_forced": round(wer(refs, hyps), 3), "wer_truth": round(wer(refs, truths), 3),
                      **{k: round(float(np.mean(v)), 3) for k, v in mouth.items()}}))


def lips(m, video_latents, wave, name: str) -> dict:
    """Decode a clip's video latent chunks; the mouth opening's std and its correlation with `wave`'s envelope."""
    from streamchar.eval.sync import audio_envelope, mouth_opening

    with torch.no_grad():
        y = torch.cat([m.video_codec.decode(v[None]) for v in video_latents], dim=2)[0]  # (3, T, H, W)
    frames = ((y.permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    opening = mouth_opening(frames)
    env = audio_envelope(wave, m.cfg.audio.sample_rate, m.cfg.video.fps, len(opening))
    n = min(len(opening), len(env))
    return {f"mouth_std_{name}": round(float(opening.std()), 3),
            f"mouth_corr_{name}": round(float(np.corrcoef(opening[:n], env[:n])[0, 1]), 3)}


if __name__ == "__main__":
    main()
