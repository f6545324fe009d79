"""glibc's allocator defaults against `streamchar.malloc.retain_freed_memory()` (what the CLI sets), same run.

Each measurement runs in a fresh process (the thresholds are process-wide), the two settings alternating
`--repeats` times: a `tiny` DiT denoise pass (576 video tokens, no gradients), a `tiny` DiT training step
(forward + backward), and a DiT pass at 512 x 8 layers, each the median of `--passes` after a warm-up; with
`--stream`, also `bench_stream.py`'s pipelined RTF over 10 chunks. Reports each median per setting and
`speedup_*` = default / retained (> 1: keeping freed memory is faster), and the peak RSS of each.

    python benchmarks/bench_malloc.py [--repeats 2] [--passes 15] [--stream]

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("default", "retain")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def child(passes: int) -> dict:
    """Time the workloads in this process (its allocator set by STREAMCHAR_MALLOC)."""
    import torch

    from streamchar.config import DiTConfig, tiny
    from streamchar.malloc import retain_freed_memory
    from streamchar.models.dit import JointDiT

    retained = retain_freed_memory()
    out = {"retained": retained}
    for name, cfg in (("tiny", tiny().dit), ("dim512x8", DiTConfig(dim=512, num_layers=8, num_heads=8, ffn_dim=2048))):
        torch.manual_seed(0)
        dit = JointDiT(cfg, video_channels=16, audio_channels=8, text_dim=64, audio_rope_scale=0.25,
                       frames_per_chunk=33)
        x_v, ctx = torch.randn(1, 16, 9, 16, 16), torch.randn(1, 32, 64)
        x_a, c_a, t = torch.randn(1, 0, 8), torch.randn(1, 0, cfg.dim), torch.full((1,), 0.7)

        def infer():
            with torch.no_grad():
                dit.forward_full(x_v, x_a, c_a, t, [], ctx)

        def train():
            v, _ = dit.forward_full(x_v, x_a, c_a, t, [], ctx)
            v.square().mean().backward()

        for kind, fn in (("pass", infer), ("train_step", train)) if name == "tiny" else (("pass", infer),):
            times = []
            for i in range(passes + 2):
                t0 = time.perf_counter()
                fn()
                if i >= 2:  # two warm-up passes
                    times.append(time.perf_counter() - t0)
            out[f"{name}_{kind}_s"] = statistics.median(times)
    with open("/proc/self/status") as f:
        out["peak_rss_mb"] = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    return out


def run(args: list[str], mode: str) -> dict:
    env = dict(os.environ, STREAMCHAR_MALLOC=mode, HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench_malloc: {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="processes per setting, alternating")
    ap.add_argument("--passes", type=int, default=15)
    ap.add_argument("--stream", action="store_true", help="also bench_stream.py's RTF (10 chunks) per setting")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.passes)))
        return
    rows = {m: [] for m in MODES}
    for r in range(a.repeats):
        for mode in MODES:
            row = run([__file__, "--child", "--passes", str(a.passes)], mode)
            if a.stream:
                row["stream_rtf"] = run([str(HERE / "bench_stream.py"), "--chunks", "10"], mode)["rtf"]
            log(f"repeat {r} {mode}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "retained"))
            rows[mode].append(row)
    if not all(row["retained"] for row in rows["retain"]):
        raise SystemExit("bench_malloc: retain_freed_memory() did not apply here (not Linux with glibc)")
    keys = [k for k in rows["default"][0] if k != "retained"]
    med = {m: {k: statistics.median(row[k] for row in rows[m]) for k in keys} for m in MODES}
    result = {"default": med["default"], "retain": med["retain"], "repeats": a.repeats, "passes": a.passes,
              "runs": rows}
    for k in keys:
        if k.endswith("_s") or k == "stream_rtf":
            result[f"speedup_{k.removesuffix('_s')}"] = med["default"][k] / med["retain"][k]
    result["peak_rss_ratio"] = med["retain"]["peak_rss_mb"] / med["default"]["peak_rss_mb"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
