"""The live server under load: 1, 2, 4 and 8 concurrent sessions of the `tiny` model (random weights).

Starts `streamchar serve --random-init --sampler student` in a subprocess on a free local port (the model loaded once, one
worker), then for each concurrency N opens N sessions together (each `--chunks` chunks of 1.375 s, streamed as
fast as the worker allows: `--max-lead` very large) and reads every WebSocket as a browser would. Per level:

    first_fragment_s   client: WebSocket opened -> init segment + first fragment received (mean, max)
    chunk_e2e_s        per chunk: the server's generation time + delivery (arrival - ready, same clock)
    rtf_steady         per session: (arrival of the last chunk - arrival of chunk 1) / ((n - 2) chunk seconds);
                       < 1: the session gets its chunks faster than it plays them
    deadline_hit_rate  chunks that arrived by their playback time (arrival of chunk 0 + k chunk seconds)

and `realtime_sessions`: the largest N whose every session has rtf_steady < 1 and a deadline-hit rate >= 0.95.
`ratio_rtf_8_vs_1` compares the loaded server with one session, in the same run.

    python benchmarks/bench_serve.py [--chunks 8] [--levels 1 2 4 8]

Prints one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import websockets

TEXT = ("Hello and welcome back to the stream, today we are talking about how a small model can keep a character "
        "speaking in real time for as long as you like.")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one_session(url: str, chunks: int, chunk_s: float, seed: int) -> dict:
    async with httpx.AsyncClient(timeout=120) as client:
        r = await client.post(f"{url}/v1/sessions", data={"text": TEXT, "seed": str(seed),
                                                          "max_seconds": str(chunks * chunk_s)})
        r.raise_for_status()
        session = r.json()
    arrivals, e2e, first = [], [], None
    opened = time.monotonic()
    async with websockets.connect(url.replace("http", "ws") + session["stream"], max_size=None) as ws:
        async for message in ws:
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            if event["type"] == "chunk":
                now = time.monotonic()
                first = first if first is not None else now - opened
                arrivals.append(now)
                e2e.append(event["total_s"] + max(0.0, time.time() - event["ready_unix"]))
            if event["type"] in ("end", "error"):
                break
    n = len(arrivals)
    hits = [arrivals[k] <= arrivals[0] + k * chunk_s + 1e-3 for k in range(n)]
    rtf = (arrivals[-1] - arrivals[1]) / ((n - 2) * chunk_s) if n > 2 else None
    return {"chunks": n, "first_fragment_s": first, "chunk_e2e_s": e2e, "rtf_steady": rtf, "hits": hits,
            "ended": event["type"]}


async def level(url: str, n: int, chunks: int, chunk_s: float) -> dict:
    results = await asyncio.gather(*(one_session(url, chunks, chunk_s, seed) for seed in range(n)))
    e2e = [x for r in results for x in r["chunk_e2e_s"]]
    hits = [h for r in results for h in r["hits"]]
    rtfs = [r["rtf_steady"] for r in results]
    return {"sessions": n, "completed": sum(r["ended"] == "end" for r in results),
            "first_fragment_s": {"mean": float(np.mean([r["first_fragment_s"] for r in results])),
                                 "max": max(r["first_fragment_s"] for r in results)},
            "chunk_e2e_s": {"mean": float(np.mean(e2e)), "p95": float(np.percentile(e2e, 95))},
            "rtf_steady": {"mean": float(np.mean(rtfs)), "max": max(rtfs)},
            "deadline_hit_rate": float(np.mean(hits)), "chunks": len(hits)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=8, help="chunks per session (>= 4)")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--sampler", default="student", choices=["student", "teacher"],
                    help="student: the 4-step sampler a distilled model streams with")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "streamchar.cli", "serve", "--random-init", "--port", str(port),
                               "--max-sessions", str(max(args.levels)), "--max-lead", "1e9", "--device", "cpu",
                               "--sampler", args.sampler],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"{url}/v1/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {server.stderr.read()[-2000:]}")
                time.sleep(0.2)
        chunk_s = health["chunk_seconds"]
        log("warm-up session")
        asyncio.run(level(url, 1, 3, chunk_s))
        levels = []
        for n in args.levels:
            log(f"{n} concurrent session(s) x {args.chunks} chunks")
            levels.append(asyncio.run(level(url, n, args.chunks, chunk_s)))
            log(json.dumps(levels[-1]))
    finally:
        server.terminate()
        server.wait(timeout=30)
    realtime = [lv["sessions"] for lv in levels
                if lv["rtf_steady"]["max"] < 1 and lv["deadline_hit_rate"] >= 0.95 and lv["completed"] == lv["sessions"]]
    by_n = {lv["sessions"]: lv for lv in levels}
    print(json.dumps({
        "levels": levels,
        "realtime_sessions": max(realtime) if realtime else 0,
        "ratio_rtf_8_vs_1": (by_n[8]["rtf_steady"]["mean"] / by_n[1]["rtf_steady"]["mean"]
                             if 1 in by_n and 8 in by_n else None),
        "chunks_per_session": args.chunks, "sampler": args.sampler, "chunk_seconds": chunk_s, "preset": health["preset"],
        "random_init": True, "device": "cpu", "cpu_cores": len(os.sched_getaffinity(0)),
    }, indent=2))


if __name__ == "__main__":
    main()
