"""End-to-end streaming: the `tiny` model (random weights) streams N chunks into a temporary MP4.

Builds `StreamChar.from_config(tiny(), seed=0)`, a random reference image and a long transcript, runs a short
warm-up stream (2 chunks, discarded), then `StreamSession(..., max_seconds=chunks * chunk_seconds,
stop_at_end=False)` through `stream_to_file` (freed memory kept as the CLI keeps it: `streamchar.malloc`), so exactly `--chunks` chunks are generated, encoded and written:
once sequentially (`rtf_sequential`: decode and write after each chunk's generation) and once pipelined (`rtf`:
chunk k decoded and written on a second thread during chunk k+1), same seed, same run; `speedup_pipelined` is
their ratio. With `--compile`, the pipelined stream runs eager first and again compiled
(`speedup_compile`). The real-time factors come from each chunk's delivery-to-delivery wall time. A thin wrapper iterates the session and reads VmRSS / VmHWM from /proc/self/status after every chunk
(outside the timed stages) to show that memory does not grow with stream length.

    python benchmarks/bench_stream.py [--chunks 12] [--device auto|cpu|cuda]

Prints one JSON object on stdout; everything else goes to stderr. The temporary MP4 is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from streamchar.config import tiny
from streamchar.device import inference_dtype, pick_device
from streamchar.malloc import retain_freed_memory
from streamchar.pipeline import StreamChar
from streamchar.streaming.generate import stream_to_file
from streamchar.streaming.session import StreamSession

STAGES = ("orchestrator", "dit", "decode", "write")
SENTENCE = ("Hello and welcome back to the stream, today we are talking about how a small model can keep "
            "a character speaking in real time without ever running out of memory.")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def proc_status_kb(field: str) -> int | None:
    """A `Vm*` line of /proc/self/status in kB (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class MemoryProbe:
    """Looks like a session to `stream_to_file`; records RSS after every chunk the session yields."""

    def __init__(self, session: StreamSession):
        self.session = session
        self.cfg, self.max_seconds, self.transcript = session.cfg, session.max_seconds, session.transcript
        self.rss_kb, self.hwm_kb = [], []

    def estimated_chunks(self) -> int:
        return self.session.estimated_chunks()

    @property
    def ended_by(self) -> str | None:
        return self.session.ended_by

    def chunks(self, **kwargs):
        for chunk in self.session.chunks(**kwargs):
            self.rss_kb.append(proc_status_kb("VmRSS"))
            self.hwm_kb.append(proc_status_kb("VmHWM"))
            yield chunk


def make_session(model, ref_image, chunks: int, words: int, seed: int) -> StreamSession:
    base = SENTENCE.split()
    text = " ".join(base[i % len(base)] for i in range(words))
    return StreamSession(model, text=text, ref_image=ref_image, prompt="a friendly presenter, studio light",
                         seed=seed, max_seconds=chunks * model.cfg.chunk_seconds, stop_at_end=False,
                         sampler="student")  # the real-time path: the distilled 4-step sampler


def compiled_graphs() -> int:
    """Graphs torch.compile has made so far in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=12, help="chunks to stream (>= 10)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the DiT (compiled during the warm-up), after an eager stream for the ratio")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                    help="auto: what `--device auto` streams in (device.inference_dtype)")
    args = ap.parse_args()
    if args.chunks < 10:
        ap.error("--chunks must be >= 10")
    retained = retain_freed_memory()  # as the CLI does (STREAMCHAR_MALLOC=default: glibc's defaults)
    device = pick_device(args.device)
    cfg = tiny()
    dtype = (inference_dtype(device, cfg.dit.dim) if args.dtype == "auto"
             else {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype])
    model = StreamChar.from_config(cfg, seed=0).to(device, dtype).eval()
    rng = np.random.default_rng(0)
    ref_image = rng.integers(0, 256, (cfg.video.height, cfg.video.width, 3), dtype=np.uint8)
    words = int(args.chunks * cfg.chunk_seconds * 3) + 20  # ~3 words / s of speech, with room to spare

    with tempfile.TemporaryDirectory(prefix="bench_stream_") as tmp:
        eager = None
        if args.compile:  # the same stream, eager, first: compile's gain in this run
            log(f"timed: {args.chunks} chunks, pipelined, eager (before compiling)")
            stream_to_file(make_session(model, ref_image, 2, words, seed=1), Path(tmp) / "warmup.mp4", progress=False)
            eager = stream_to_file(make_session(model, ref_image, args.chunks, words, seed=0), Path(tmp) / "eager.mp4",
                                   progress=False)
            model.dit.compile()
        log("warm-up: 2 chunks" + (" (compiles the DiT)" if args.compile else ""))
        t0 = time.perf_counter()
        stream_to_file(make_session(model, ref_image, 2, words, seed=1), Path(tmp) / "warmup.mp4", progress=False)
        stream_to_file(make_session(model, ref_image, 2, words, seed=1), Path(tmp) / "warmup.mp4", progress=False,
                       pipelined=False)  # both thread counts warmed up (and compiled)
        warmup_s = time.perf_counter() - t0
        graphs_before = compiled_graphs()
        log(f"timed: {args.chunks} chunks, sequential (decode and write after each chunk's generation)")
        sequential = stream_to_file(make_session(model, ref_image, args.chunks, words, seed=0), Path(tmp) / "seq.mp4",
                                    progress=False, pipelined=False)
        log(f"timed: {args.chunks} chunks, pipelined (decode + write of chunk k during chunk k+1)")
        probe = MemoryProbe(make_session(model, ref_image, args.chunks, words, seed=0))
        out = Path(tmp) / "stream.mp4"
        report = stream_to_file(probe, out, progress=False)
        mp4_bytes = out.stat().st_size
    # the temporary folder (and both MP4s) is gone here

    chunk_s = cfg.chunk_seconds
    mean = report["mean_s"]
    total = sum(mean[s] for s in STAGES)
    per_chunk_total = [c["total_s"] for c in report["per_chunk"]]
    rss_mb = [None if kb is None else kb / 1024 for kb in probe.rss_kb]
    hwm_mb = [None if kb is None else kb / 1024 for kb in probe.hwm_kb]
    i3 = 2  # after the 3rd chunk (1-based)
    growth = lambda xs: None if xs[i3] is None or xs[-1] is None else xs[-1] - xs[i3]
    tail = rss_mb[i3:]
    slope = None if None in tail else float(np.polyfit(np.arange(len(tail)), tail, 1)[0])  # MB per chunk
    for c in report["per_chunk"]:
        log(f"chunk {c['index']:2d}: total {c['total_s']:.3f} s  " +
            "  ".join(f"{s} {c[f'{s}_s']:.3f}" for s in STAGES) + f"  rss {rss_mb[c['index']]:.1f} MB")

    print(json.dumps({
        "compile": args.compile,
        "warmup_s": warmup_s,
        "recompiles_during_streams": compiled_graphs() - graphs_before,  # must be 0
        "rtf": report["rtf"],  # pipelined, from each chunk's delivery-to-delivery wall time
        "rtf_sequential": sequential["rtf"],
        "rtf_eager": eager and eager["rtf"],  # with --compile: the same pipelined stream before compiling
        "speedup_compile": eager and eager["rtf"] / report["rtf"],
        "dit_s_eager": eager and eager["mean_s"]["dit"],
        "speedup_pipelined": sequential["rtf"] / report["rtf"],
        "first_chunk_s_sequential": sequential["first_chunk_s"],
        "rtf_excluding_decode": (total - mean["decode"]) / chunk_s,
        "first_chunk_s": report["first_chunk_s"],
        "per_stage_mean_s": mean,
        "per_stage_share": {s: mean[s] / total for s in STAGES},
        "per_chunk_total_s": {"min": min(per_chunk_total), "median": float(np.median(per_chunk_total)),
                              "max": max(per_chunk_total)},
        "chunks": report["chunks"],
        "chunk_seconds": chunk_s,
        "stream_seconds": report["seconds"],
        "transcript_tokens": report["transcript_tokens"],
        "rss_mb_per_chunk": [None if x is None else round(x, 1) for x in rss_mb],
        "rss_growth_mb_chunk3_to_last": growth(rss_mb),
        "peak_rss_growth_mb_chunk3_to_last": growth(hwm_mb),
        "rss_slope_mb_per_chunk_from_chunk3": slope,
        "rss_range_mb_from_chunk3": None if slope is None else [min(tail), max(tail)],
        "history_frames": cfg.history_frames,
        "mp4_bytes": mp4_bytes,
        "video": f"{cfg.video.height}x{cfg.video.width}@{cfg.video.fps}",
        "random_init": True,
        "preset": cfg.preset,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "malloc_retained": retained,
        "threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
