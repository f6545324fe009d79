"""The report's figures (matplotlib, Agg: no display needed), one PNG per stream and kind:

- `<key>.drift.png`   per-frame quality over the stream (1 s moving mean), the first-5 s reference, and each
                      30 s segment's last-5 s mean: Quality Drift is the largest gap (long streams only);
- `<key>.sync.png`    sync per window: the offset (frames) and the confidence, proxy and SyncNet (streams with
                      two windows or more);
- `<key>.chunks.png`  identity SSIM and per-frame quality averaged per chunk, against chunk index (long streams
                      with a timings file: what the sink chunk should keep flat);
- `<key>.latency.png` per-chunk time by stage (orchestrator, DiT, decode, write) against the chunk's own
                      duration, the real-time budget (when a timings file is there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

STAGES = ("orchestrator", "dit", "decode", "write")


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)
    return str(path)


def drift_curve(path: Path, key: str, entry: dict, quality: dict, fps: float) -> str | None:
    names = [n for n in ("quality_drift", "quality_drift_proxy") if n in entry]
    if not names:
        return None
    plt = _figure()
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 3 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        metric = "imaging_quality" if name == "quality_drift" else "imaging_quality_proxy"
        q = np.asarray(quality[metric], dtype=np.float64)
        k = max(1, round(fps))
        smooth = np.convolve(q, np.ones(k) / k, mode="valid")  # 1 s moving mean
        ax.plot((np.arange(len(smooth)) + k - 1) / fps, smooth, lw=0.8, label=f"{metric} (1 s mean)")
        d = entry[name]
        ax.axhline(d["reference"], color="k", ls="--", lw=0.8, label="first 5 s")
        ax.plot(d["segment_end_s"], d["segment_quality"], "o", color="C3", label="last 5 s of each 30 s")
        ax.set_title(f"{key}: {name} = {d['drift']:.4f}")
        ax.set_xlabel("seconds")
        ax.legend(fontsize=7, loc="best")
    return _close(plt, fig, path)


def chunk_curves(path: Path, key: str, per_chunk: dict | None) -> str | None:
    names = [n for n in (per_chunk or {}) if n != "chunk_frames" and len(per_chunk[n]) >= 2]
    if not names:
        return None
    plt = _figure()
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.4 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        ax.plot(per_chunk[name], lw=0.9)
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel(f"chunk index ({per_chunk['chunk_frames']} frames each)")
    axes[0, 0].set_title(f"{key}: per chunk")
    return _close(plt, fig, path)


def sync_windows(path: Path, key: str, windows: list[dict]) -> str | None:
    names = [n for n in ("sync_proxy", "syncnet") if windows and n in windows[0]]
    if len(windows) < 2 or not names:
        return None
    plt = _figure()
    mid = [(w["start_s"] + w["end_s"]) / 2 for w in windows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for name in names:
        a.plot(mid, [w[name]["offset"] for w in windows], "o-", label=name)
        b.plot(mid, [w[name]["sync_c"] for w in windows], "o-", label=name)
    a.axhline(0, color="k", lw=0.6)
    a.set_ylabel("offset (frames)")
    b.set_ylabel("confidence (Sync-C)")
    b.set_xlabel("window centre (s)")
    a.set_title(f"{key}: sync per window")
    a.legend(fontsize=7)
    return _close(plt, fig, path)


def latency_timeline(path: Path, key: str, timings: dict) -> str:
    plt = _figure()
    chunks = timings["per_chunk"]
    x = np.arange(len(chunks))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    bottom = np.zeros(len(chunks))
    for stage in STAGES:
        h = np.array([float(c.get(f"{stage}_s", 0.0)) for c in chunks])
        ax.bar(x, h, bottom=bottom, label=stage, width=0.85)
        bottom += h
    ax.axhline(timings["chunk_seconds"], color="C3", ls="--", lw=1, label="chunk duration (real time)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("chunk")
    ax.set_ylabel("seconds")
    ax.set_title(f"{key}: per-chunk latency, RTF {timings['rtf']:.2f}")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return _close(plt, fig, path)


def _close(plt, fig, path: Path) -> str:
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_all(folder: Path, entries: list[dict], extras: list[dict]) -> list[str]:
    """Every figure the entries call for, into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for entry, extra in zip(entries, extras):
        key = entry["key"]
        written.append(drift_curve(folder / f"{key}.drift.png", key, entry, extra["quality"], extra["quality_fps"]))
        written.append(sync_windows(folder / f"{key}.sync.png", key, entry.get("sync_windows", [])))
        written.append(chunk_curves(folder / f"{key}.chunks.png", key, entry.get("per_chunk")))
        if "timings" in extra:
            written.append(latency_timeline(folder / f"{key}.latency.png", key, extra["timings"]))
    return [p for p in written if p is not None]
