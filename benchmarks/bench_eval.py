"""`streamchar eval` cost: wall seconds per second of video, weights-free metrics alone vs with pocketsphinx
WER (a ratio), and peak traced memory of a 10 s stream vs a 60 s stream (one pass per video: the ratio
should stay near 1, where holding every frame would make it ~6). Prints JSON."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from streamchar.eval.report import EvalOptions, evaluate


def synthtalk_folder(folder: Path, num: int, seed: int, transcripts: bool) -> float:
    """`num` SynthTalk clips as <key>.mp4 (+ <key>.txt). Returns their total seconds."""
    from streamchar.data import synthtalk

    st = folder.parent / f"{folder.name}-st"
    synthtalk.generate(st, num, seed=seed, workers=1, progress=False)
    folder.mkdir()
    seconds = 0.0
    for name in sorted(st.glob("synthtalk-*.tar")):
        for key, mp4, meta in synthtalk.read_shard(name):
            (folder / f"{key}.mp4").write_bytes(mp4)
            if transcripts:
                (folder / f"{key}.txt").write_text(meta["text"])
            seconds += meta["duration"]
    return seconds


def still_stream(path: Path, seconds: int, size: int = 128, fps: int = 24, sr: int = 16000) -> None:
    from streamchar.data.identity import IDENTITIES
    from streamchar.data.render import render_clip
    from streamchar.streaming.writer import MP4Writer

    face = render_clip(IDENTITIES[0], [], [], 1.0, size=size, fps=fps)  # (24, size, size, 3)
    tone = (0.05 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)).astype(np.float32)[None]
    with MP4Writer(path, width=size, height=size, sample_rate=sr, fps=fps) as w:
        for _ in range(seconds):
            w.write(face, tone)


def timed(videos: Path, out: Path, protocol: str) -> tuple[float, float]:
    """(wall seconds, peak traced MiB) of one `evaluate`."""
    tracemalloc.start()
    t0 = time.perf_counter()
    evaluate(videos, out, EvalOptions(protocol=protocol), progress=False, log=lambda _: None)
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return wall, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num", type=int, default=4, help="SynthTalk clips for the speed comparison")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for env in ("STREAMCHAR_INCEPTION", "STREAMCHAR_I3D", "STREAMCHAR_SYNCNET", "STREAMCHAR_FACE_DETECTOR",
                "STREAMCHAR_FACE_EMBEDDER", "STREAMCHAR_MUSIQ", "STREAMCHAR_RAFT", "STREAMCHAR_WHISPER"):
        os.environ.pop(env, None)  # the weights-free metrics and pocketsphinx: what every machine has
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = synthtalk_folder(tmp / "plain", args.num, args.seed, transcripts=False)
        synthtalk_folder(tmp / "wer", args.num, args.seed, transcripts=True)
        timed(tmp / "plain", tmp / "warm", "short")  # imports, matplotlib fonts
        plain, _ = timed(tmp / "plain", tmp / "r1", "short")
        wer, _ = timed(tmp / "wer", tmp / "r2", "short")
        for s in (10, 60):
            (tmp / f"s{s}").mkdir()
            still_stream(tmp / f"s{s}" / "still.mp4", s)
        wall10, peak10 = timed(tmp / "s10", tmp / "r3", "short")
        wall60, peak60 = timed(tmp / "s60", tmp / "r4", "long")
    print(json.dumps({
        "video_seconds": seconds,
        "proxies_s_per_video_s": plain / seconds,
        "with_wer_s_per_video_s": wer / seconds,
        "wer_cost_ratio": wer / plain,
        "peak_mib_10s_stream": peak10,
        "peak_mib_60s_stream": peak60,
        "peak_ratio_60s_vs_10s": peak60 / peak10,
        "wall_s_10s_stream": wall10,
        "wall_s_60s_stream": wall60,
        "size": {"synthtalk": 64, "still_streams": 128},
        "cores": len(os.sched_getaffinity(0)),
    }, indent=2))


if __name__ == "__main__":
    main()
