"""`streamchar eval --generate`: stream every item of a protocol into the layout `streamchar eval` scores.

For each `EvalItem` (see `protocols`) one `StreamSession` speaks the item's transcript with the item's first
frame as the reference portrait and the item's prompt (SynthTalk: its character's caption), with the model's
sampler (the teacher's, guided, unless the model is distilled), for the protocol's length, or a longer true
clip's length plus two chunks (`stream_cap`); it ends earlier when the pointer reaches the end of the
transcript. Written per item, each file atomically:

    videos/<key>.mp4            the stream (H.264 + AAC)
    videos/<key>.txt            the transcript it was asked to speak (WER's reference)
    videos/<key>.timings.json   per-chunk timings (the latency plot), and when the item's truth says when its
                                speech ends (SynthTalk), `speech_end_s`: where the stream should end
    refs/<key>.png              the reference portrait at the model's size (identity)
    refs/<key>.mp4              the ground-truth clip, when the item has one (FID / FVD)

An item with a reference voice (`--ref-voice`) streams with it and its text: the voice's timbre in e_ref and its
pace in the plan; the timings record the pace and the reference clip.

An item whose `.mp4` and `.timings.json` both exist is not generated again, so a stopped run resumes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from streamchar.eval.protocols import EvalItem, Protocol
from streamchar.streaming.generate import stream_to_file, write_json
from streamchar.streaming.media import fit_image, load_audio
from streamchar.streaming.session import StreamSession


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_png(path: Path, image) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)


def stream_cap(item: EvalItem, protocol: Protocol, chunk_seconds: float) -> float:
    """How long an item's stream may run: the protocol's length, or for an item whose ground-truth clip is
    longer (SynthTalk's test clips speak 5-20 s; the paper's short clips are 10 s) that clip's duration plus two
    chunks, so the whole transcript can be spoken and the pointer, not the cap, ends the stream (a stream cut
    mid-transcript would count the unspoken words as WER deletions)."""
    duration = item.meta.get("duration")
    if duration is None:
        return protocol.seconds
    return max(protocol.seconds, float(duration) + 2 * chunk_seconds)


def generate_items(model, items: list[EvalItem], protocol: Protocol, videos: Path, refs: Path, *,
                   seconds: float | None = None, sampler: str | None = None, seed: int = 0,
                   prompt: str | None = None, guidance: tuple[float, float] | None = None,
                   solver: str | None = None, progress: bool = True) -> dict:
    """Stream each item into `videos` / `refs` (module docstring). Returns counts of generated / kept items.
    sampler None: the model's; prompt None: each item's own; guidance / solver None: the model's."""
    import tqdm

    videos, refs = Path(videos), Path(refs)
    videos.mkdir(parents=True, exist_ok=True)
    refs.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    generated = kept = 0
    for i, item in enumerate(tqdm.tqdm(items, unit="stream", disable=not progress, dynamic_ncols=True)):
        mp4, timings = videos / f"{item.key}.mp4", videos / f"{item.key}.timings.json"
        reference = fit_image(item.reference, cfg.video.height, cfg.video.width)  # (H, W, 3) uint8
        _write_png(refs / f"{item.key}.png", reference)
        if item.truth is not None:
            if isinstance(item.truth, bytes):
                _write_bytes(refs / f"{item.key}.mp4", item.truth)
            elif Path(item.truth).resolve() != (refs / f"{item.key}.mp4").resolve():
                shutil.copyfile(item.truth, refs / f".{item.key}.mp4.tmp")
                os.replace(refs / f".{item.key}.mp4.tmp", refs / f"{item.key}.mp4")
        if mp4.is_file() and timings.is_file():
            kept += 1
            continue
        text_prompt = item.prompt if prompt is None else prompt
        ref_audio = None if item.ref_voice is None else load_audio(
            item.ref_voice if isinstance(item.ref_voice, bytes) else Path(item.ref_voice),
            cfg.audio.sample_rate, cfg.audio.channels)
        session = StreamSession(model, text=item.transcript, ref_image=reference, ref_audio=ref_audio,
                                ref_text=item.ref_text if ref_audio is not None else None,
                                prompt=text_prompt, seed=seed + i,
                                max_seconds=seconds or stream_cap(item, protocol, cfg.chunk_seconds),
                                sampler=sampler, guidance=guidance, solver=solver)
        report = stream_to_file(session, mp4, progress=False)
        report.update(key=item.key, sampler=session.sampler, guidance=session.guidance, solver=session.solver,
                      prompt=text_prompt,
                      seed=seed + i, protocol=protocol.name, speech_end_s=item.meta.get("speech_end"),
                      pace=session.pace, ref_voice=item.meta.get("ref_key"))
        _write_bytes(videos / f"{item.key}.txt", (item.transcript + "\n").encode())
        write_json(report, timings)
        generated += 1
    return {"generated": generated, "kept": kept, "videos": str(videos), "refs": str(refs)}
