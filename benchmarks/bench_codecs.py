"""Codecs: encode / decode time per chunk, and with --data, round-trip quality (PSNR, SSIM, judge WER).

Compares, in one run, on one chunk (33 frames at 64x64 <-> 9 latent frames; 1.375 s of audio <-> 33 latents):
- the tiny video codec (codecs/tiny_video.py) against a tiny Wan VAE (diffusers' causal 3D VAE) of the same
  latent contract, and that Wan VAE with our CPU fast paths (codecs/wan_fast.py) against without them
  (`wan_fast_speedup`, plus the largest output difference between the two);
- the tiny audio codec (mel encoder, iSTFT decoder) against the tiny Oobleck;
- `decode_s_per_chunk`: both codecs of the checkpoint together, and its share of the 1.375 s chunk budget.
Codecs come from `--checkpoint` (a pipeline folder or bundled name; default `tiny-codecs` when bundled, else
random ones of the same architectures). Times are medians over `--repeats` runs after a warm-up.

    python benchmarks/bench_codecs.py [--checkpoint tiny-codecs] [--data DIR --clips 16] [--repeats 7]

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@torch.no_grad()
def main() -> None:
    from streamchar.bundled import bundled_names, resolve_checkpoint
    from streamchar.codecs import OobleckAudioCodec, WanVideoCodec
    from streamchar.codecs.load import load_pipeline_codecs
    from streamchar.codecs.wan_fast import accelerate, plain
    from streamchar.config import tiny
    from streamchar.pipeline import StreamChar

    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="tiny-codecs" if "tiny-codecs" in bundled_names() else None)
    p.add_argument("--data", help="a SynthTalk folder: adds PSNR / SSIM / WER of the checkpoint's codecs")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()

    torch.manual_seed(0)
    if args.checkpoint:
        video, audio, cfg = load_pipeline_codecs(resolve_checkpoint(args.checkpoint))
        source = args.checkpoint
    else:
        cfg = tiny()
        m = StreamChar.from_config(cfg)
        video, audio, source = m.video_codec, m.audio_codec, "random tiny codecs"
    video.eval(), audio.eval()
    frames = torch.rand(1, 3, cfg.stream.frames_per_chunk, cfg.video.height, cfg.video.width) * 2 - 1
    wave = torch.rand(1, 1, cfg.audio_latent_frames * cfg.audio.hop_length) * 0.2 - 0.1
    zv, za = video.encode(frames), audio.encode(wave)
    wan = WanVideoCodec.tiny(latent_channels=video.latent_channels).eval()  # accelerated when built
    oobleck = OobleckAudioCodec.tiny().eval()
    zw = wan.encode(frames)
    zo = torch.randn(1, cfg.audio_latent_frames, oobleck.latent_channels)

    r = args.repeats
    out = {"codecs": source, "threads": torch.get_num_threads(), "chunk_seconds": cfg.chunk_seconds}
    out["video_encode_s"] = median_seconds(lambda: video.encode(frames), r)
    out["video_decode_s"] = median_seconds(lambda: video.decode(zv), r)
    out["audio_encode_s"] = median_seconds(lambda: audio.encode(wave), r)
    out["audio_decode_s"] = median_seconds(lambda: audio.decode(za), r)
    out["decode_s_per_chunk"] = out["video_decode_s"] + out["audio_decode_s"]
    out["decode_share_of_budget"] = out["decode_s_per_chunk"] / cfg.chunk_seconds
    fast = wan.decode(zw)
    out["wan_decode_s_fast"] = median_seconds(lambda: wan.decode(zw), r)
    plain(wan.vae)
    out["wan_decode_s_plain"] = median_seconds(lambda: wan.decode(zw), r)
    out["wan_fast_max_abs_diff"] = float((wan.decode(zw) - fast).abs().max())
    accelerate(wan.vae)
    out["wan_fast_speedup"] = out["wan_decode_s_plain"] / out["wan_decode_s_fast"]
    out["video_decode_speedup_vs_wan"] = out["wan_decode_s_fast"] / out["video_decode_s"]
    out["oobleck_decode_s"] = median_seconds(lambda: oobleck.decode(zo), r)
    out["audio_decode_speedup_vs_oobleck"] = out["oobleck_decode_s"] / out["audio_decode_s"]
    if args.data:
        from streamchar.eval.codecs import evaluate_codecs

        q = evaluate_codecs(args.data, video, audio, cfg, clips=args.clips)
        out.update({k: q[k] for k in ("clips", "video_psnr", "video_ssim", "wer_backend", "wer_original",
                                      "wer_roundtrip", "wer_gap")})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
