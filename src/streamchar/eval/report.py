"""`streamchar eval`: score a folder of generated videos under a protocol and write the report.

Inputs
  --videos DIR   `<key>.mp4` per stream, with `<key>.txt` (the transcript it was asked to speak; WER needs it)
                 and `<key>.timings.json` (per-chunk timings from `streamchar generate --timings`; the latency
                 plot needs it; `--timings DIR` may hold them instead).
  --refs DIR     optional: `<key>.mp4` ground-truth clips (FID and FVD pool all of them against all generated
                 videos) and `<key>.png` reference portraits (identity against the reference; without one the
                 stream's own first frame is the reference, as VBench-2.0 does).

Every metric is reported under its own name with its backend, whether it is a proxy, and the sha256 of its
weights file. A learned metric whose weights are missing is skipped with one line naming the metric, the file
and the option / environment variable; the others still run. The weights-free proxies always run.

One pass over each video's frames (never the whole video in memory): per frame (every `frame_stride`-th) the
quality scorers and identity; VBench's sampled frame pairs for Dynamic degree; evenly spaced frames for FID and
the first 16-frame clip(s) for FVD; and, every `sync_window` seconds (10 s: the whole clip of the short
protocol), the window's sync scores (the proxy at the video's own rate, SyncNet at 25 fps). A video's sync is
the mean over its windows. Aggregates: corpus WER over all transcripts (long streams transcribed window by
window); means over videos for the rest; Dynamic degree is the share of dynamic videos (`<metric>_pairs`: the
mean share of frame pairs that move, its continuous companion); Human Identity is
VBench-2.0's mean of per-video scores; Quality Drift (long protocol) is the mean over streams of each stream's
drift.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import platform
import sys
from pathlib import Path

import numpy as np

from streamchar.errors import StreamCharError
from streamchar.eval.backends import Backends, EvalOptions
from streamchar.eval.media import UnreadableVideo, iter_frames, read_audio, read_frames, video_info
from streamchar.eval.protocols import get_protocol
from streamchar.eval.stream_end import stream_end, stream_end_metrics, voice_end

EMBED_BATCH = 32  # face crops per embedder call
MIN_LAST_WINDOW = 2.0  # seconds: a shorter tail of a video is left out of the sync windows (unless it is all)
NOT_IMPLEMENTED = {
    "human_anatomy": "VBench-2.0's Human Anatomy scores frames with its own anomaly detectors (ViT classifiers "
                     "trained on its annotated anatomy failures); no loader for them exists here, so it is not "
                     "computed",
}


# ---------------------------------------------------------------- one video


def evenly_spaced(total: int, n: int) -> list[int]:
    """n frame indices spread over [0, total): round((i + 0.5) * total / n); all frames when n >= total."""
    if total <= n:
        return list(range(total))
    return [int((i + 0.5) * total / n) for i in range(n)]


def _xyxy(box) -> tuple[int, int, int, int]:
    top, left, h, w = box
    return left, top, left + w, top + h


def _window_sync(backends: Backends, frames: np.ndarray, audio: np.ndarray, sr: int, fps: float,
                 start: int) -> dict:
    """Sync scores of one window of frames (T, H, W, 3) with its audio (S,)."""
    from streamchar.eval import sync
    from streamchar.eval.identity import face_box

    out = {"start_s": start / fps, "end_s": (start + len(frames)) / fps}
    if frames.shape[1] == frames.shape[2]:  # the proxy reads the SynthTalk layout's mouth: square frames only
        p = sync.sync_proxy(frames, audio, sr, fps)
        out["sync_proxy"] = {"sync_c": p.sync_c, "sync_d": p.sync_d, "offset": p.offset}
    if backends.syncnet is not None:
        from streamchar.eval import syncnet

        if backends.face_detector is not None:
            boxes = backends.face_detector.track(frames)
        else:
            boxes = _xyxy(face_box(frames.shape[1], frames.shape[2]))
        s = syncnet.syncnet_scores(frames, audio, sr, fps, backends.syncnet, boxes=boxes)
        out["syncnet"] = {k: s[k] for k in ("sync_c", "sync_d", "offset")}
    return out


def score_video(path: Path, backends: Backends, opts: EvalOptions, transcript: str | None = None,
                reference: np.ndarray | None = None) -> tuple[dict, dict]:
    """All per-video metrics of one file. Returns (the report entry, what the aggregates and plots need)."""
    from streamchar.eval import asr, dynamic, identity
    from streamchar.eval.drift import quality_drift
    from streamchar.eval.features import clip_starts

    protocol = get_protocol(opts.protocol)
    info = video_info(path)
    fps, H, W = info.fps, info.height, info.width
    entry: dict = {"key": path.stem, "file": path.name, "fps": fps, "width": W, "height": H}
    extra: dict = {"key": path.stem}
    if info.has_audio:
        audio, sr = read_audio(path)
        entry["voice_end_s"] = voice_end(audio, sr)
    else:
        audio, sr = None, 0
        entry["warnings"] = ["no audio stream: WER and sync are not computed for this video"]
    if reference is not None and reference.shape != (H, W, 3):
        from streamchar.streaming.media import fit_image

        reference = fit_image(reference, H, W)

    box = identity.face_box(H, W)
    stride = int(opts.frame_stride)
    interval = dynamic.sample_interval(fps)
    fid_idx = set(evenly_spaced(info.frames, opts.fid_frames)) if backends.inception is not None else set()
    fvd_idx: set[int] = set()
    if backends.i3d is not None:
        try:
            fvd_idx = {s + j for s in clip_starts(info.frames, opts.fvd_clips) for j in range(16)}
        except StreamCharError as e:
            entry.setdefault("warnings", []).append(str(e))
    window_len = max(1, round(opts.sync_window * fps))

    quality = {s.metric: [] for s in backends.scorers}  # per scored frame
    ident_ssim, ident_hist, embeddings, faces = [], [], [], []
    flow_scores = {f.metric: [] for f in backends.flows}
    fid_frames, fvd_frames, windows, window, prev = [], [], [], [], None
    n = 0

    def flush(start: int, frames: list) -> None:
        if audio is None:
            return
        a0, a1 = round(start / fps * sr), round((start + len(frames)) / fps * sr)
        windows.append(_window_sync(backends, np.stack(frames), audio[a0:a1], sr, fps, start))

    for i, frame in enumerate(iter_frames(path)):
        n += 1
        if i == 0:
            reference = frame if reference is None else reference
            if backends.face_detector is not None:  # the face of the reference: one box for the whole video
                found = backends.face_detector.detect(reference)
                if found is None:
                    entry.setdefault("warnings", []).append("no face found in the reference: the fixed box is used")
                else:
                    x0, y0, x1, y1 = (int(round(v)) for v in found)
                    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
                    box = (y0, x0, y1 - y0, x1 - x0)
        if i % stride == 0:
            for s in backends.scorers:
                quality[s.metric].append(float(s.score_frame(frame)))
            face, ref_face = identity.crop(frame, box), identity.crop(reference, box)
            ident_ssim.append(identity.ssim(face, ref_face))
            ident_hist.append(identity.color_hist_distance(face, ref_face))
            if backends.embedder is not None:
                faces.append(face)
                if len(faces) == EMBED_BATCH:
                    embeddings.append(backends.embedder.embed(np.stack(faces)))  # (B, D)
                    faces = []
        if i % interval == 0:
            if prev is not None:
                for f in backends.flows:
                    flow_scores[f.metric].append(dynamic.flow_score(f.flow(prev, frame)))
            prev = frame
        if i in fid_idx:
            fid_frames.append(frame)
        if i in fvd_idx:
            fvd_frames.append(frame)
        window.append(frame)
        if len(window) == window_len:
            flush(i + 1 - window_len, window)
            window = []
    if n == 0:
        raise UnreadableVideo(f"{path}: no video frames decoded")
    if window and (not windows or len(window) >= MIN_LAST_WINDOW * fps):
        flush(n - len(window), window)
    entry.update(frames=n, seconds=n / fps)

    # WER: the whole transcript against the recognised speech (long streams window by window)
    if transcript is not None and audio is not None and "wer" not in backends.skipped:
        hyp = asr.transcribe_windows(audio, sr, protocol.wer_window, backends.transcriber)
        entry["wer"] = {"value": asr.wer(transcript, hyp), "hypothesis": hyp}
        extra["wer_pair"] = (transcript, hyp)
    elif transcript is None:
        entry.setdefault("warnings", []).append(f"no {path.stem}.txt transcript: WER is not computed")

    if windows and "sync_proxy" not in windows[0]:
        entry.setdefault("warnings", []).append("sync_proxy reads the SynthTalk layout (square frames): not computed")
    if windows:
        entry["sync_windows"] = windows
        for name in ("sync_proxy", "syncnet"):
            if name in windows[0]:
                entry[name] = {k: float(np.mean([w[name][k] for w in windows])) for k in ("sync_c", "sync_d")}
                entry[name]["abs_offset"] = float(np.mean([abs(w[name]["offset"]) for w in windows]))

    for f in backends.flows:
        scores = flow_scores[f.metric]
        thres = dynamic.threshold(H, W, fps)
        entry[f.metric] = {"dynamic": dynamic.is_dynamic(scores, H, W, fps), "pairs": len(scores),
                           "mean_score": float(np.mean(scores)) if scores else 0.0,
                           "moving_share": float(np.mean([s > thres for s in scores])) if scores else 0.0,
                           "threshold": thres}

    entry["identity_proxy"] = {"ssim": float(np.mean(ident_ssim)), "hist_distance": float(np.mean(ident_hist)),
                               "box": list(box)}
    if faces:
        embeddings.append(backends.embedder.embed(np.stack(faces)))
    if embeddings:
        e = np.concatenate(embeddings)  # (N, D)
        ref_e = backends.embedder.embed(identity.crop(reference, box)[None])[0]
        sims_first = identity.cosine(e[1:], e[0]) if len(e) > 1 else np.zeros(0)
        entry["human_identity"] = {"score": identity.identity_consistency(sims_first), "counted": len(sims_first)}
        entry["identity_similarity"] = {"value": float(identity.cosine(e, ref_e).mean())}

    q_fps = fps / stride
    extra["quality"], extra["quality_fps"], extra["identity_ssim"] = quality, q_fps, ident_ssim
    for s in backends.scorers:
        entry[s.metric] = {"value": float(np.mean(quality[s.metric])), "frames_scored": len(quality[s.metric])}
        if protocol.drift:
            name = "quality_drift" if not s.proxy else "quality_drift_proxy"
            try:
                d = quality_drift(quality[s.metric], q_fps)
            except StreamCharError as e:
                entry.setdefault("warnings", []).append(f"{name}: {e}")
                continue
            entry[name] = dataclasses.asdict(d)
    extra["fid_frames"] = np.stack(fid_frames) if fid_frames else None
    extra["fvd_video"] = np.stack(fvd_frames) if len(fvd_frames) == 16 * opts.fvd_clips else None
    return entry, extra


# ---------------------------------------------------------------- the folder


def _find_videos(folder: Path) -> list[Path]:
    from streamchar.paths import input_folder

    input_folder(folder, "--videos")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mp4", ".webm", ".mkv") and p.is_file())
    if not videos:
        raise StreamCharError(f"no videos (.mp4, .webm, .mkv) in {folder}")
    return videos


def _reference_image(refs: Path | None, key: str) -> np.ndarray | None:
    if refs is None:
        return None
    png = refs / f"{key}.png"
    if png.is_file():
        from PIL import Image

        with Image.open(png) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    mp4 = refs / f"{key}.mp4"
    return read_frames(mp4, [0])[0] if mp4.is_file() else None


def per_chunk(extra: dict, chunk_seconds: float, fps: float) -> dict:
    """The scored frames' identity SSIM (face crop to the reference) and quality, averaged per generated chunk
    (chunk k: frames [k n, (k + 1) n), n = chunk_seconds x fps; a last partial chunk is left out), so a long
    stream's drift can be read against chunk index."""
    n = max(1, round(chunk_seconds * fps))
    step = fps / extra["quality_fps"]  # frames per scored frame (the stride)
    series = {"identity_proxy_ssim": extra["identity_ssim"], **extra["quality"]}
    out = {"chunk_frames": n}
    for name, values in series.items():
        v = np.asarray(values, dtype=np.float64)
        chunk_of = (np.arange(len(v)) * step // n).astype(int)  # (scored frames,) -> chunk index
        chunks = int(round(len(v) * step)) // n
        out[name] = [float(v[chunk_of == k].mean()) for k in range(chunks) if (chunk_of == k).any()]
    return out


def _timings(videos: Path, timings: Path | None, key: str) -> dict | None:
    for folder in ([timings] if timings is not None else []) + [videos]:
        p = folder / f"{key}.timings.json"
        if p.is_file():
            try:
                t = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise StreamCharError(f"{p} is not valid JSON: {e}") from None
            if not isinstance(t, dict) or "per_chunk" not in t or "chunk_seconds" not in t:
                raise StreamCharError(f"{p} is not a timings file from `streamchar generate --timings` "
                                      "(no per_chunk / chunk_seconds)")
            return t
    return None


def _reference_features(backends: Backends, opts: EvalOptions, log) -> tuple:
    """FID frames and FVD clips of every reference clip in --refs."""
    from streamchar.eval.features import clip_starts, i3d_features, inception_features

    if backends.inception is None and backends.i3d is None:
        return None, None
    clips = sorted(opts.refs.glob("*.mp4"))
    if not clips:
        for m in ("fid", "fvd"):
            backends._skip(m, f"no reference clips (.mp4) in {opts.refs}")
        backends.inception = backends.i3d = None
        return None, None
    fid_frames, fvd_videos = [], []
    for clip in clips:
        info = video_info(clip)
        want = set(evenly_spaced(info.frames, opts.fid_frames)) if backends.inception is not None else set()
        if backends.i3d is not None and info.frames >= 16 * opts.fvd_clips:
            want |= {s + j for s in clip_starts(info.frames, opts.fvd_clips) for j in range(16)}
        frames = dict(zip(sorted(want), read_frames(clip, sorted(want))))
        fid_frames += [frames[i] for i in evenly_spaced(info.frames, opts.fid_frames) if i in frames]
        if backends.i3d is not None and info.frames >= 16 * opts.fvd_clips:
            fvd_videos.append(np.stack([frames[s + j] for s in clip_starts(info.frames, opts.fvd_clips)
                                        for j in range(16)]))
    dev = opts.device
    fid_feats = inception_features(np.stack(fid_frames), backends.inception, device=dev) \
        if backends.inception is not None else None
    fvd_feats = i3d_features(fvd_videos, backends.i3d, opts.fvd_clips, device=dev) \
        if backends.i3d is not None and fvd_videos else None
    return fid_feats, fvd_feats


def _metric(value, backend_record: dict, direction: str, videos: int, **extra) -> dict:
    return {"value": value, "direction": direction, "videos": videos, **backend_record, **extra}


def aggregate(entries: list[dict], extras: list[dict], backends: Backends, opts: EvalOptions,
              ref_fid=None, ref_fvd=None) -> dict:
    """The model's numbers from the per-video entries."""
    from streamchar.eval import asr
    from streamchar.eval.features import fid, fvd, i3d_features, inception_features
    from streamchar.eval.identity import human_identity_mean

    rec, out = backends.records, {}

    def mean_of(name, key):
        vals = [e[name][key] for e in entries if name in e and e[name].get(key) is not None]
        return (float(np.mean(vals)), len(vals)) if vals else (None, 0)

    pairs = [x["wer_pair"] for x in extras if "wer_pair" in x]
    if pairs and "wer" in rec:
        out["wer"] = _metric(asr.wer([r for r, _ in pairs], [h for _, h in pairs]), rec["wer"], "lower", len(pairs),
                             aggregate="corpus WER over all videos' words (jiwer.process_words, normalised text)")
    for name, metric in (("syncnet", "sync"), ("sync_proxy", "sync_proxy")):
        if any(name in e for e in entries):
            c, nv = mean_of(name, "sync_c")
            d, _ = mean_of(name, "sync_d")
            o, _ = mean_of(name, "abs_offset")
            r = rec.get("sync_c" if name == "syncnet" else "sync_proxy", {})
            out[f"{metric}_c"] = _metric(c, r, "higher", nv)
            out[f"{metric}_d"] = _metric(d, r, "lower", nv)
            out[f"{metric}_abs_offset"] = _metric(o, r, "lower", nv, unit="frames")
    for f in backends.flows:
        vals = [e[f.metric]["dynamic"] for e in entries if f.metric in e]
        out[f.metric] = _metric(float(np.mean(vals)), rec[f.metric], "higher", len(vals),
                                aggregate="share of videos judged dynamic (VBench)")
        # VBench's decision is per video (a quarter of its pairs must move): a talking character that moves in
        # a tenth of its pairs counts as static, as one that never moves does. The share of moving pairs tells
        # the two apart (SynthTalk's true clips: ~0.3 at tiny; a stiff generator: ~0)
        share, nv = mean_of(f.metric, "moving_share")
        out[f"{f.metric}_pairs"] = _metric(share, rec[f.metric], "higher", nv,
                                           aggregate="mean over videos of the share of sampled frame pairs whose "
                                                     "flow score exceeds VBench's threshold")
    s, nv = mean_of("identity_proxy", "ssim")
    h, _ = mean_of("identity_proxy", "hist_distance")
    out["identity_proxy_ssim"] = _metric(s, rec["identity_proxy"], "higher", nv)
    out["identity_proxy_hist_distance"] = _metric(h, rec["identity_proxy"], "lower", nv)
    if backends.embedder is not None:
        scores = [e["human_identity"]["score"] for e in entries if "human_identity" in e]
        try:
            value = human_identity_mean(scores)
        except StreamCharError:
            value = None
        out["human_identity"] = _metric(value, rec["human_identity"], "higher",
                                        sum(x is not None for x in scores),
                                        aggregate="VBench-2.0: mean of per-video scores (first-frame reference, "
                                                  "cosine >= 0.4; videos with < 20 counted frames left out)")
        v, nv = mean_of("identity_similarity", "value")
        out["identity_similarity"] = _metric(v, rec["identity_similarity"], "higher", nv)
    for sc in backends.scorers:
        v, nv = mean_of(sc.metric, "value")
        out[sc.metric] = _metric(v, rec[sc.metric], "higher", nv)
    for name in ("quality_drift", "quality_drift_proxy"):
        v, nv = mean_of(name, "drift")
        if nv:
            out[name] = _metric(v, rec[name], "lower", nv, aggregate="mean over streams of each stream's drift")
    if ref_fid is not None:
        frames = [x["fid_frames"] for x in extras if x.get("fid_frames") is not None]
        gen = inception_features(np.concatenate(frames), backends.inception, device=opts.device)
        out["fid"] = _metric(fid(gen, ref_fid), rec["fid"], "lower", len(frames), generated_frames=len(gen),
                             reference_frames=len(ref_fid), frames_per_video=opts.fid_frames)
    if ref_fvd is not None:
        videos = [x["fvd_video"] for x in extras if x.get("fvd_video") is not None]
        if videos:
            gen = i3d_features(videos, backends.i3d, opts.fvd_clips, device=opts.device)
            out["fvd"] = _metric(fvd(gen, ref_fvd), rec["fvd"], "lower", len(videos), generated_clips=len(gen),
                                 reference_clips=len(ref_fvd))
    timed = [e["latency"] for e in entries if "latency" in e]
    if timed:
        out["rtf"] = _metric(float(np.mean([t["rtf"] for t in timed])), {"backend": "timings files", "proxy": False},
                             "lower", len(timed), aggregate="mean over streams of the mean chunk time / chunk "
                                                            "duration (< 1: faster than playback)")
        out["first_chunk_s"] = _metric(float(np.mean([t["first_chunk_s"] for t in timed])),
                                       {"backend": "timings files", "proxy": False}, "lower", len(timed))
    judged = [e["stream_end"] for e in entries if "stream_end" in e]
    for name, value in stream_end_metrics(judged, backends.skipped).items():
        out[name] = _metric(**value)
    return out


def evaluate(videos: str | Path, out: str | Path, opts: EvalOptions, progress: bool = True, log=None,
             overwrite: bool = False) -> dict:
    """Score every video in `videos` and write `report.json`, `summary.md` and `plots/` into the folder `out`,
    whole (a failed run leaves nothing there; an existing folder with data in it is replaced only when
    `overwrite`). A video that cannot be read is reported and skipped; the others are scored."""
    import tqdm

    from streamchar.atomic import atomic_folder
    from streamchar.eval import plots
    from streamchar.paths import output_folder
    from streamchar.streaming.generate import write_json

    log = log or (lambda msg: print(msg, file=sys.stderr))
    opts = opts.validate()
    videos, out = Path(videos), output_folder(out, "--out", overwrite)
    files, unreadable = _find_videos(videos), {}
    for path in files:  # files that do not even open are set aside before any network is loaded
        try:
            video_info(path)
        except UnreadableVideo as e:
            unreadable[path.name] = str(e)
    if len(unreadable) == len(files):
        raise StreamCharError(f"no video in {videos} could be read: " + "; ".join(f"{k}: {v}"
                                                                                  for k, v in unreadable.items()))
    for name, reason in unreadable.items():
        log(f"streamchar eval: {name} skipped: {reason}")
    protocol = get_protocol(opts.protocol)
    backends = Backends(opts, log)
    ref_fid, ref_fvd = _reference_features(backends, opts, log) if opts.refs is not None else (None, None)

    entries, extras = [], []
    for path in tqdm.tqdm([f for f in files if f.name not in unreadable], unit="video", disable=not progress,
                          dynamic_ncols=True):
        txt = path.with_suffix(".txt")
        transcript = _transcript(txt)
        try:
            entry, extra = score_video(path, backends, opts, transcript, _reference_image(opts.refs, path.stem))
        except UnreadableVideo as e:
            unreadable[path.name] = str(e)
            log(f"streamchar eval: {path.name} skipped: {e}")
            continue
        timings = _timings(videos, opts.timings, path.stem)
        if timings is not None:
            entry["latency"] = {"rtf": float(timings["rtf"]), "first_chunk_s": float(timings["first_chunk_s"]),
                                "max_chunk_s": max(float(c["total_s"]) for c in timings["per_chunk"]),
                                "chunks": len(timings["per_chunk"])}
            if timings.get("speech_end_s") is not None:  # did the stream end where the truth's speech ends?
                entry["stream_end"] = stream_end(timings, protocol.seconds, entry.get("voice_end_s"))
            extra["timings"] = timings
            if protocol.drift:  # long streams: the per-chunk curves the sink is meant to keep flat
                entry["per_chunk"] = per_chunk(extra, float(timings["chunk_seconds"]), entry["frames"] / entry["seconds"])
        entries.append(entry)
        extras.append(extra)
    if not entries:
        raise StreamCharError(f"no video in {videos} could be read: " + "; ".join(f"{k}: {v}"
                                                                                  for k, v in unreadable.items()))

    metrics = aggregate(entries, extras, backends, opts, ref_fid, ref_fvd)
    partial = [f"{name} covers {m['videos']} of {len(entries)} videos (see the videos' warnings)"
               for name, m in metrics.items() if m["videos"] < len(entries)]
    for name, m in metrics.items():
        m["covers"] = f"{m['videos']} of {len(entries)}"
    short = [e["key"] for e in entries if e["seconds"] < protocol.seconds - 1.5]  # a chunk of slack
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "streamchar": _version(),
        "python": platform.python_version(),
        "protocol": dataclasses.asdict(protocol) | {"videos_expected": protocol.num, "videos_found": len(files),
                                                    "videos_scored": len(entries)},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()},
        "metrics": metrics,
        "backends": backends.records,
        "skipped": backends.skipped,
        "unreadable": unreadable,
        "not_implemented": NOT_IMPLEMENTED,
        "warnings": ([f"{len(entries)} videos scored, the protocol has {protocol.num}"]
                     if len(entries) != protocol.num else [])
                    + ([f"shorter than the protocol's {protocol.seconds:g} s: {short}"] if short else [])
                    + [f"{k} could not be read and is not scored: {v}" for k, v in unreadable.items()] + partial,
        "videos": entries,
    }
    with atomic_folder(out) as tmp:  # nothing is left behind by a failed run
        report["plots"] = [str(out / Path(p).relative_to(tmp)) for p in plots.write_all(tmp / "plots", entries,
                                                                                         extras)]
        write_json(report, tmp / "report.json")
        _write_text(tmp / "summary.md", summary_markdown(report))
    return report


def _transcript(txt: Path) -> str | None:
    if not txt.is_file():
        return None
    try:
        transcript = txt.read_text().strip()
    except UnicodeDecodeError:
        raise StreamCharError(f"{txt} is not UTF-8 text: WER needs the transcript the video was asked to speak") \
            from None
    if transcript == "":
        raise StreamCharError(f"{txt} is empty: WER needs the transcript the video was asked to speak")
    return transcript


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("streamchar")
    except PackageNotFoundError:
        return "unknown"


def _write_text(path: Path, text: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return str(v)


def summary_markdown(report: dict) -> str:
    """The report's headline numbers as Markdown."""
    p = report["protocol"]
    lines = [f"# streamchar eval: {p['name']} protocol", "",
             f"{p['videos_scored']} of {p['videos_found']} videos scored (the protocol has {p['videos_expected']} of "
             f"{p['seconds']:g} s); "
             f"{report['created']}, streamchar {report['streamchar']}.", "",
             "| metric | value | better | videos | backend | proxy |", "|---|---|---|---|---|---|"]
    for name, m in report["metrics"].items():
        lines.append(f"| {name} | {_fmt(m['value'])} | {m['direction']} | {m['covers']} | {m.get('backend', '')} | "
                     f"{'yes' if m.get('proxy') else 'no'} |")
    if report["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- **{k}**: {v}" for k, v in report["skipped"].items()]
    lines += ["", "## Not implemented", ""] + [f"- **{k}**: {v}" for k, v in report["not_implemented"].items()]
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    lines += ["", "## Videos", "", "| video | seconds | WER | sync proxy offset | identity SSIM | quality proxy |",
              "|---|---|---|---|---|---|"]
    for e in report["videos"]:
        lines.append(f"| {e['key']} | {e['seconds']:.2f} | {_fmt(e.get('wer', {}).get('value'))} | "
                     f"{_fmt(e.get('sync_proxy', {}).get('abs_offset'))} | {_fmt(e['identity_proxy']['ssim'])} | "
                     f"{_fmt(e.get('imaging_quality_proxy', {}).get('value'))} |")
    if report["plots"]:
        lines += ["", "## Plots", ""] + [f"- [{Path(p).name}](plots/{Path(p).name})" for p in report["plots"]]
    return "\n".join(lines) + "\n"
