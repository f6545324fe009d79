"""E_txt's look-ahead on a long transcript: the whole rest of it (None) against 20 s ahead (the default).

The bundled `tiny` student (its measured token durations plan the transcript) streams the first `--chunks`
chunks of a ~5-minute transcript (`--words`, default 780: the long protocol's 300 s at 2.6 words/s) twice in
one run, same seed: with `stream.text_lookahead_seconds = None` (E_txt reads every token not yet spoken) and
with 20 s (E_txt reads the tokens planned to start within 20 s of the chunk's end). Each stream is iterated
through `session.chunks()` (the pipelined path, decode on a second thread; no file is written). Reports per
stream the first chunk's latency, the mean orchestrator time per chunk, the tokens E_txt read at the first
chunk and the real-time factor (chunk wall time / 1.375 s, chunks 1..N-1), and the ratios None / 20 s.

    python benchmarks/bench_lookahead.py [--chunks 12] [--words 780] [--checkpoint tiny]

Prints one JSON object on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from streamchar.bundled import resolve_checkpoint
from streamchar.malloc import retain_freed_memory
from streamchar.pipeline import StreamChar
from streamchar.streaming.record import StreamState, text_end
from streamchar.streaming.session import StreamSession

SENTENCE = ("Hello and welcome back to the stream, today we are talking about how a small model can keep "
            "a character speaking in real time without ever running out of memory.")


def stream(model, text: str, ref_image, chunks: int, lookahead: float | None) -> dict:
    model.cfg.stream = dataclasses.replace(model.cfg.stream, text_lookahead_seconds=lookahead)
    session = StreamSession(model, text=text, ref_image=ref_image, seed=0, stop_at_end=False,
                            max_seconds=chunks * model.cfg.chunk_seconds)
    read = text_end(session.inputs, StreamState(), 0, model.cfg.text_horizon_frames)  # E_txt at the first chunk
    walls, orchestrator = [], []
    t0 = time.perf_counter()
    for chunk in session.chunks():
        now = time.perf_counter()
        walls.append(now - t0)
        t0 = now
        orchestrator.append(chunk.timings.orchestrator)
    return {"lookahead_s": lookahead, "first_chunk_s": walls[0], "orchestrator_s": float(np.mean(orchestrator)),
            "e_txt_tokens_first_chunk": read, "rtf": float(np.mean(walls[1:])) / model.cfg.chunk_seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=12, help="chunks per stream (>= 3)")
    ap.add_argument("--words", type=int, default=780, help="transcript words (780: 5 minutes at 2.6 words/s)")
    ap.add_argument("--checkpoint", default="tiny", help="a pipeline folder or a bundled name")
    args = ap.parse_args()
    if args.chunks < 3 or args.words < 1:
        raise SystemExit("--chunks must be >= 3 and --words >= 1")
    retain_freed_memory()
    model = StreamChar.from_pretrained(resolve_checkpoint(args.checkpoint)).float().eval()
    base = SENTENCE.split()
    text = " ".join(base[i % len(base)] for i in range(args.words))
    ref = np.random.default_rng(0).integers(0, 256, (model.cfg.video.height, model.cfg.video.width, 3), np.uint8)
    stream(model, "warm up", ref, 2, None)
    rows = [stream(model, text, ref, args.chunks, ahead) for ahead in (None, 20.0)]
    print(json.dumps({
        "checkpoint": args.checkpoint, "chunks": args.chunks, "words": args.words,
        "transcript_tokens": len(model.tokenizer(text, add_special_tokens=False)["input_ids"]),
        "threads": torch.get_num_threads(), "whole": rows[0], "lookahead_20s": rows[1],
        "speedup_first_chunk": rows[0]["first_chunk_s"] / rows[1]["first_chunk_s"],
        "speedup_orchestrator": rows[0]["orchestrator_s"] / rows[1]["orchestrator_s"],
        "speedup_rtf": rows[0]["rtf"] / rows[1]["rtf"]}, indent=2))
    print(f"bench_lookahead: {args.chunks} chunks of a {args.words}-word transcript, whole vs 20 s ahead",
          file=sys.stderr)


if __name__ == "__main__":
    main()
