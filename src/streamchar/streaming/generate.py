"""Stream a session into an MP4 file, chunk by chunk, with a progress bar and per-chunk timings."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from streamchar.streaming.session import StreamSession
from streamchar.streaming.writer import MP4Writer


def stream_to_file(session: StreamSession, out: str | Path, *, progress: bool = True, pipelined: bool = True) -> dict:
    """Write every chunk of `session` to `out` (H.264 + AAC, atomically). Returns the timing report. Pipelined:
    chunk k is decoded and written on a second thread while chunk k+1 is generated."""
    import tqdm

    cfg = session.cfg
    chunks = []
    with MP4Writer(out, fps=cfg.video.fps, width=cfg.video.width, height=cfg.video.height,
                   sample_rate=cfg.audio.sample_rate, channels=cfg.audio.channels) as writer, \
            tqdm.tqdm(total=session.estimated_chunks(), unit="chunk", disable=not progress, dynamic_ncols=True) as bar:
        t_prev = time.perf_counter()
        for chunk in session.chunks(on_chunk=lambda c: writer.write(c.frames, c.audio), pipelined=pipelined):
            now = time.perf_counter()
            chunk.wall = now - t_prev  # what the chunk cost the stream: with the pipeline, less than its stages' sum
            t_prev = now
            # the report needs the timings only: a 5-minute stream holding every chunk's pixels would grow by
            # 218 chunks x 33 frames (26 MB a chunk at 512x512)
            chunks.append(dataclasses.replace(chunk, frames=None, audio=None))
            bar.total = max(session.estimated_chunks(), len(chunks))  # follows the pointer
            bar.update(1)
            bar.set_postfix(rtf=f"{chunk.wall / cfg.chunk_seconds:.2f}",
                            spoken=f"{chunk.spoken:.0f}/{len(session.transcript)}")
        bar.total = len(chunks)
        bar.refresh()
    # how the stream ended: "transcript" (the pointer's end rule), "max_seconds" (its length cap), or None (the
    # consumer stopped early)
    return {**timing_report(chunks, cfg.chunk_seconds, len(session.transcript)), "ended_by": session.ended_by}


def timing_report(chunks, chunk_seconds: float, transcript_tokens: int) -> dict:
    """Per-chunk stage times and, where the stream measured it, each chunk's wall time (`wall_s`: the time between
    its delivery and the previous one's, which the pipeline makes shorter than the sum of the stages). The
    real-time factors use the wall time where there is one."""
    stages = ("orchestrator", "dit", "decode", "write")
    per_chunk = [{"index": c.index, "spoken": round(c.spoken, 3), "total_s": c.timings.total,
                  "wall_s": c.wall if c.wall is not None else c.timings.total,
                  **{f"{s}_s": getattr(c.timings, s) for s in stages}} for c in chunks]
    n = len(chunks)
    mean = lambda key, rows=per_chunk: sum(c[key] for c in rows) / len(rows)
    steady = per_chunk[1:] or per_chunk  # after the first chunk (warm-up, compile)
    return {
        "chunks": n,
        "seconds": n * chunk_seconds,
        "chunk_seconds": chunk_seconds,
        "transcript_tokens": transcript_tokens,
        "rtf": mean("wall_s") / chunk_seconds,  # < 1: faster than playback (all chunks)
        "rtf_steady": mean("wall_s", steady) / chunk_seconds,  # without the first chunk
        "first_chunk_s": per_chunk[0]["wall_s"],
        "mean_s": {s: mean(f"{s}_s") for s in stages},
        "per_chunk": per_chunk,
    }


def write_json(obj: dict, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
