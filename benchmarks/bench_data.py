"""SynthTalk generator throughput: clips per second at 64x64, one worker vs all cores (a ratio). Prints JSON."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from streamchar.data import synthtalk


def run(num: int, workers: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = synthtalk.generate(Path(tmp) / "st", num, seed=seed, workers=workers, progress=False)
        wall = time.perf_counter() - t0
        seconds = sum(meta["duration"] for split in summary["shards"].values() for name in split
                      for _, _, meta in synthtalk.read_shard(Path(tmp) / "st" / name))
    return {"workers": workers, "clips": num, "wall_s": wall, "clips_per_s": num / wall,
            "video_seconds": seconds, "realtime_x": seconds / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    one, many = run(args.num, 1, args.seed), run(args.num, cores, args.seed)
    print(json.dumps({"clips_per_s": many["clips_per_s"], "clips_per_s_1_worker": one["clips_per_s"],
                      "speedup_all_cores": many["clips_per_s"] / one["clips_per_s"], "cores": cores,
                      "size": 64, "runs": [one, many]}, indent=2))


if __name__ == "__main__":
    main()
