"""The GPU check: measured times next to the `cost` model's estimates, in one short run (<= 8 minutes).

    paper   the paper-scale DiT + orchestrator with random bf16 weights at 512x512, one mid-stream chunk
            (inputs as bench_cache.py makes them: reference + sink + motion, 5 s reference voice, 15 s
            history): orchestrator prefix, condition pass, 4 student steps, the pointer
    vae     the Wan2.2-TI2V-5B VAE (official config, random weights) decoding one chunk (9 latent frames)
    tiny    the `tiny` model streaming end to end (student sampler, pipelined decode, MP4 written)

Every stage is timed with CUDA events after a warm-up (median of --repeats) and printed beside
`streamchar cost`'s estimate for the same GPU (`--gpu`, default h200), as `ratio` = measured / estimate.

    bash benchmarks/gpu_check.sh [--gpu h200] [--repeats 3]

Prints one JSON object on stdout; logs go to stderr. Needs CUDA; on a CPU it says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cache import make_inputs  # noqa: E402  (the same mid-stream inputs as the cache benchmark)

from streamchar.config import preset  # noqa: E402
from streamchar.cost import cost_report  # noqa: E402
from streamchar.diffusion.samplers import student_sample, student_timesteps  # noqa: E402
from streamchar.models.dit import JointDiT  # noqa: E402
from streamchar.models.orchestrator import Orchestrator  # noqa: E402


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cuda_time(fn, repeats: int) -> float:
    """Median seconds of fn() by CUDA events, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def row(measured: float, estimate: float) -> dict:
    return {"measured_s": measured, "estimate_s": estimate, "ratio": measured / estimate if estimate else None}


@torch.no_grad()
def check_paper(gpu: str, repeats: int) -> dict:
    cfg = preset("paper")
    dev, dtype = torch.device("cuda"), torch.bfloat16
    log("paper: building the DiT and the orchestrator (random bf16 weights)")
    t0 = time.perf_counter()
    with torch.device(dev):
        dit = JointDiT.from_config(cfg).to(dtype).eval()
        orch = Orchestrator.from_config(cfg).to(dtype).eval()
    log(f"paper: built in {time.perf_counter() - t0:.1f} s")
    inp = make_inputs(cfg, dev, dtype)
    conds = dit.condition_frames(inp["reference"], inp["sink"], inp["motion"])
    timesteps = student_timesteps(cfg.stream.student_timesteps, cfg.stream.shift)
    prefix = orch.encode_prefix(inp["orchestrator"])
    cache = dit.encode_conditions(conds, inp["context"])
    x_v = torch.randn(inp["shape_v"], device=dev, dtype=dtype)
    x_a = torch.randn(inp["shape_a"], device=dev, dtype=dtype)
    t = torch.full((1,), 0.5, device=dev)
    c_a, _ = orch.condition(prefix, x_a, t)

    def velocity(xv, xa, tt):
        ca, _ = orch.condition(prefix, xa, tt)
        return dit(xv, xa, ca, tt, cache)

    def pointer():
        _, hidden = orch.condition(prefix, x_a, torch.zeros(1, device=dev))
        return orch.pointer(prefix, hidden).endpoint

    measured = {
        "orchestrator_prefix": cuda_time(lambda: orch.encode_prefix(inp["orchestrator"]), repeats),
        "dit_conditions": cuda_time(lambda: dit.encode_conditions(conds, inp["context"]), repeats),
        "orchestrator_step": cuda_time(lambda: orch.condition(prefix, x_a, t), repeats),
        "dit_step": cuda_time(lambda: dit(x_v, x_a, c_a, t, cache), repeats),
        "four_student_steps": cuda_time(lambda: student_sample(velocity, x_v, x_a, timesteps), repeats),
        "pointer": cuda_time(pointer, repeats),
    }
    est = cost_report(cfg, gpu)["latency_s"]
    steps = len(timesteps)
    llm_dit = measured["orchestrator_prefix"] + measured["dit_conditions"] + measured["four_student_steps"] \
        + measured["pointer"]
    return {
        "orchestrator_prefix": row(measured["orchestrator_prefix"], est["orchestrator_prefix"]),
        "dit_conditions": row(measured["dit_conditions"], est["dit_conditions"]),
        "orchestrator_steps": row(steps * measured["orchestrator_step"] + measured["pointer"],
                                  est["orchestrator_steps"]),
        "dit_steps": row(steps * measured["dit_step"], est["dit_steps"]),
        "four_student_steps_s": measured["four_student_steps"],
        "llm_dit_chunk": row(llm_dit, est["orchestrator_prefix"] + est["orchestrator_steps"] + est["dit_conditions"]
                             + est["dit_steps"]),
        "params_b": {"dit": sum(p.numel() for p in dit.parameters()) / 1e9,
                     "orchestrator": sum(p.numel() for p in orch.parameters()) / 1e9},
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
    }


@torch.no_grad()
def check_vae(gpu: str, repeats: int) -> dict:
    from diffusers import AutoencoderKLWan

    from streamchar.cost.flops import WAN22_VAE

    cfg = preset("paper")
    log("vae: the Wan2.2 VAE (random weights), one chunk")
    vae = AutoencoderKLWan(**WAN22_VAE).to("cuda", torch.bfloat16).eval()
    h, w = cfg.latent_size
    z = torch.randn(1, WAN22_VAE["z_dim"], cfg.video_latent_frames, h, w, device="cuda", dtype=torch.bfloat16)
    measured = cuda_time(lambda: vae.decode(z).sample, repeats)
    return {"video_decode": row(measured, cost_report(cfg, gpu)["latency_s"]["video_decode"]),
            "frames": cfg.stream.frames_per_chunk, "size": f"{cfg.video.height}x{cfg.video.width}"}


def check_tiny(gpu: str) -> dict:
    from streamchar.pipeline import StreamChar
    from streamchar.streaming.generate import stream_to_file
    from streamchar.streaming.session import StreamSession

    cfg = preset("tiny")
    log("tiny: streaming 8 chunks end to end")
    model = StreamChar.from_config(cfg, seed=0).to("cuda", torch.bfloat16).eval()
    image = np.random.default_rng(0).integers(0, 256, (cfg.video.height, cfg.video.width, 3), dtype=np.uint8)
    text = "hello there, this is a check of the whole stream on a graphics card " * 4

    def stream(chunks: int, out: Path) -> dict:
        session = StreamSession(model, text=text, ref_image=image, max_seconds=chunks * cfg.chunk_seconds,
                                stop_at_end=False, sampler="student")
        return stream_to_file(session, out, progress=False)

    with tempfile.TemporaryDirectory() as tmp:
        stream(2, Path(tmp) / "warmup.mp4")
        report = stream(8, Path(tmp) / "tiny.mp4")
    est = cost_report(cfg, gpu)
    return {"chunk": row(report["rtf_steady"] * cfg.chunk_seconds, est["total_s"]), "rtf_steady": report["rtf_steady"],
            "first_chunk_s": report["first_chunk_s"], "mean_stage_s": report["mean_s"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", default="h200", help="the GPU whose specs the cost model uses")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], choices=["paper", "vae", "tiny"])
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        sys.exit(2)
    t0 = time.perf_counter()
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "gpu_spec": args.gpu}
    for name, fn in (("paper", lambda: check_paper(args.gpu, args.repeats)),
                     ("vae", lambda: check_vae(args.gpu, args.repeats)), ("tiny", lambda: check_tiny(args.gpu))):
        if name in args.skip:
            continue
        try:
            out[name] = fn()
        except Exception as e:  # one failing part still reports the others
            out[name] = {"error": f"{e.__class__.__name__}: {e}"}
        torch.cuda.empty_cache()
        log(f"{name}: done at {time.perf_counter() - t0:.0f} s")
    if isinstance(out.get("paper"), dict) and "llm_dit_chunk" in out["paper"] and "video_decode" in out.get("vae", {}):
        decode = out["vae"]["video_decode"]["measured_s"]
        chunk = out["paper"]["llm_dit_chunk"]["measured_s"]
        out["paper_chunk_s"] = {"sequential": chunk + decode, "pipelined": max(chunk, decode),
                                "rtf_pipelined": max(chunk, decode) / preset("paper").chunk_seconds}
    out["wall_s"] = time.perf_counter() - t0
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
