"""Round trips of held-out SynthTalk clips through a pipeline's codecs (`streamchar eval-codecs`).

Video: each clip's first whole 33-frame chunks (up to `chunks` per clip) are encoded and decoded; PSNR (dB,
uint8, pooled) and mean per-frame SSIM (luminance, 11x11 Gaussian windows) against the originals.
Audio: the whole clip's speech is encoded and decoded at the codec's rate; the speech judge (or the ASR
backend given) reads the originals and the round trips: WER of both.
Decode time: one chunk's latents (9 video, 33 audio) decoded by each codec, the median of `repeats` runs after
one warm-up, on the codecs' device.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from streamchar.errors import StreamCharError


@torch.no_grad()
def decode_seconds(video_codec, audio_codec, cfg, repeats: int = 5) -> dict:
    """Median seconds to decode one chunk's latents with each codec (random latents: the cost is the same)."""
    h, w = cfg.latent_size
    g = torch.Generator().manual_seed(0)
    zv = torch.randn(1, video_codec.latent_channels, cfg.video_latent_frames, h, w, generator=g)
    za = torch.randn(1, cfg.audio_latent_frames, audio_codec.latent_channels, generator=g)
    out = {}
    for name, codec, z in (("video", video_codec, zv), ("audio", audio_codec, za)):
        z = z.to(codec.latents_mean.device)
        codec.decode(z)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            codec.decode(z)
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times))
    return out


def evaluate_codecs(data, video_codec, audio_codec, cfg, clips: int = 16, chunks: int = 2, split: str = "test",
                    judge: str | None = None, repeats: int = 5) -> dict:
    from streamchar.train.clips import load_clips
    from streamchar.train.codec import audio_wer, video_quality

    if clips < 1:
        raise StreamCharError(f"--clips must be >= 1, got {clips}")
    held = load_clips(data, [split], audio_codec.sample_rate, audio_codec.channels, clips, keep="both")
    if not held:
        raise StreamCharError(f"the SynthTalk folder {data} has no {split!r} clips")
    size = held[0].frames.shape[1:3]
    if tuple(size) != (cfg.video.height, cfg.video.width):
        raise StreamCharError(f"the clips are {size[1]}x{size[0]}, the codecs expect {cfg.video.width}x"
                              f"{cfg.video.height}")
    video_codec.eval()
    audio_codec.eval()
    q = video_quality(video_codec, held, cfg.stream.frames_per_chunk, chunks)
    a = audio_wer(audio_codec, held, judge)
    t = decode_seconds(video_codec, audio_codec, cfg, repeats)
    return {"clips": len(held), "split": split, "video_psnr": q["psnr"], "video_ssim": q["ssim"],
            "wer_backend": a["wer_backend"], "wer_original": a["wer_original"], "wer_roundtrip": a["wer_roundtrip"],
            "wer_gap": a["wer_roundtrip"] - a["wer_original"],
            "decode_s_per_chunk": t["video"] + t["audio"], "video_decode_s": t["video"], "audio_decode_s": t["audio"],
            "chunk_seconds": cfg.chunk_seconds, "threads": torch.get_num_threads()}
