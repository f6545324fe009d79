"""Stream a session into an MP4 file, chunk by chunk, with a progress bar and per-chunk timings."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from streamchar.streaming.session import StreamSession
from streamchar.streaming.writer import MP4Writer


def stream_to_file(session: StreamSession, out: str | Path, *, progress: bool = True) -> dict:
    """Write every chunk of `session` to `out` (H.264 + AAC, atomically). Returns the timing report."""
    import tqdm

    cfg = session.cfg
    chunks = []
    with MP4Writer(out, fps=cfg.video.fps, width=cfg.video.width, height=cfg.video.height,
                   sample_rate=cfg.audio.sample_rate, channels=cfg.audio.channels) as writer, \
            tqdm.tqdm(total=session.estimated_chunks(), unit="chunk", disable=not progress, dynamic_ncols=True) as bar:
        for chunk in session:
            t0 = time.perf_counter()
            writer.write(chunk.frames, chunk.audio)
            chunk.timings.write = time.perf_counter() - t0
            chunks.append(chunk)
            bar.total = max(session.estimated_chunks(), len(chunks))  # follows the pointer
            bar.update(1)
            bar.set_postfix(rtf=f"{chunk.timings.total / cfg.chunk_seconds:.2f}", spoken=f"{chunk.spoken:.0f}/{len(session.transcript)}")
        bar.total = len(chunks)
        bar.refresh()
    return timing_report(chunks, cfg.chunk_seconds, len(session.transcript))


def timing_report(chunks, chunk_seconds: float, transcript_tokens: int) -> dict:
    stages = ("orchestrator", "dit", "decode", "write")
    per_chunk = [{"index": c.index, "spoken": round(c.spoken, 3), "total_s": c.timings.total,
                  **{f"{s}_s": getattr(c.timings, s) for s in stages}} for c in chunks]
    n = len(chunks)
    mean = lambda key, rows=per_chunk: sum(c[key] for c in rows) / len(rows)
    steady = per_chunk[1:] or per_chunk  # after the first chunk (warm-up, compile)
    return {
        "chunks": n,
        "seconds": n * chunk_seconds,
        "chunk_seconds": chunk_seconds,
        "transcript_tokens": transcript_tokens,
        "rtf": mean("total_s") / chunk_seconds,  # < 1: faster than playback (all chunks)
        "rtf_steady": mean("total_s", steady) / chunk_seconds,  # without the first chunk
        "first_chunk_s": per_chunk[0]["total_s"],
        "mean_s": {s: mean(f"{s}_s") for s in stages},
        "per_chunk": per_chunk,
    }


def write_json(obj: dict, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
