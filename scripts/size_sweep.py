"""Which tiny model size learns most per CPU-hour? Trains each size on the same latents for the same CPU
budget and compares validation losses at equal CPU time. Prints JSON and writes <out>/summary.json.

    python scripts/size_sweep.py --init-codecs runs/tiny/tiny-codecs --latents runs/tiny/latents --out runs/sweep

Each size is a pipeline folder made by `streamchar convert --set ...` (the trained codecs, a fresh DiT and
orchestrator of that size), then `streamchar train pretrain` (stage 2, the installed config pretrain_tiny) with one
thread per run, `--parallel` runs side by side (one core each). Validation (the fixed val samples of the
config) runs every `--val-every` steps; a run stops at `--steps` or when its wall time passes `--minutes`,
whichever comes first (it is resumable: run the script again to go on). The comparison reads each run's
val curve at the CPU time all runs reached.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SIZES = {  # name -> config settings (the DiT and the orchestrator grow together)
    "s": ["dit.dim=96", "dit.num_layers=3", "dit.ffn_dim=288", "orchestrator.hidden_size=96",
          "orchestrator.num_layers=3", "orchestrator.intermediate_size=192"],
    "m": [],  # the `tiny` preset: DiT 128 x 4, orchestrator 128 x 4
    "l": ["dit.dim=192", "dit.num_layers=6", "dit.num_heads=6", "dit.ffn_dim=576", "orchestrator.hidden_size=192",
          "orchestrator.num_layers=4", "orchestrator.num_heads=6", "orchestrator.intermediate_size=384"],
}


def sc(*args) -> list[str]:
    return [sys.executable, "-m", "streamchar.cli", *args]


def start(name: str, args) -> subprocess.Popen:
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    init = out / "init"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if not (init / "model_index.json").is_file():
        codecs = Path(args.init_codecs)
        subprocess.run(sc("convert", "--preset", "tiny", "--video-vae", str(codecs / "video_codec"), "--audio-vae",
                          str(codecs / "audio_codec"), "--dtype", "fp32", "--out", str(init),
                          *[x for s in SIZES[name] for x in ("--set", s)]), env=env, check=True,
                       stdout=subprocess.DEVNULL)
    cmd = sc("train", "pretrain", "--config", args.config, "--stage", "2", "--init", str(init), "--data",
             args.latents, "--out-dir", str(out / "run"), "--steps", str(args.steps))
    log = open(out / "train.log", "a")
    return subprocess.Popen(["timeout", "--signal=INT", f"{int(args.minutes * 60)}", *cmd], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def curve(name: str, args) -> dict:
    rows = [json.loads(line) for line in (Path(args.out) / name / "run" / "metrics.jsonl").read_text().splitlines()]
    t0 = rows[0]["time"]
    val = [r for r in rows if "val/loss" in r]
    train = [r for r in rows if "train/loss" in r]
    return {"val": [{"step": r["step"], "minutes": (r["time"] - t0) / 60,
                     **{k[4:]: r[k] for k in r if k.startswith("val/")}} for r in val],
            "steps": train[-1]["step"] if train else 0, "minutes": (rows[-1]["time"] - t0) / 60}


def at(points: list[dict], minutes: float, key: str) -> float | None:
    """The val `key` at `minutes` (linear between the two nearest validations)."""
    for a, b in zip(points, points[1:]):
        if a["minutes"] <= minutes <= b["minutes"]:
            w = (minutes - a["minutes"]) / max(b["minutes"] - a["minutes"], 1e-9)
            return a[key] + w * (b[key] - a[key])
    return points[-1][key] if points and abs(points[-1]["minutes"] - minutes) < 1e-6 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init-codecs", required=True, help="a pipeline or skeleton folder with the trained codecs")
    ap.add_argument("--latents", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="pretrain_tiny")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--minutes", type=float, default=15.0, help="wall-time budget per run (one core)")
    ap.add_argument("--parallel", type=int, default=2)
    args = ap.parse_args()
    pending, running = list(args.sizes), []
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            running.append((name, start(name, args)))
        time.sleep(5)
        running = [(n, p) for n, p in running if p.poll() is None]
    curves = {name: curve(name, args) for name in args.sizes}
    common = min(max((v["minutes"] for v in c["val"]), default=0.0) for c in curves.values())
    from streamchar.config import tiny
    from streamchar.pipeline import parameter_counts

    summary = {"common_minutes": common, "sizes": {}}
    for name, c in curves.items():
        summary["sizes"][name] = {
            "settings": SIZES[name], "parameters": parameter_counts(tiny().override(SIZES[name]))["total"],
            "steps": c["steps"], "minutes": c["minutes"], "steps_per_minute": c["steps"] / max(c["minutes"], 1e-9),
            **{f"val_{k}_at_common": at(c["val"], common, k) for k in ("loss", "loss_video", "loss_audio", "loss_pap")},
            "val_curve": c["val"]}
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "val_curve"} for k, v in summary["sizes"].items()}
                     | {"common_minutes": common}, indent=2))


if __name__ == "__main__":
    main()
