"""SynthTalk: a talking-character data set the project generates itself.

One clip = a transcript from the corpus, spoken by one espeak-ng voice (with word and phoneme timings), and a
2D character whose mouth follows the phonemes, who blinks, sways and gestures while speaking. Clips are
5-20 s; `long` clips are >= 60 s, for long-horizon tests. A clip is a whole number of 33-frame chunks: after
the last word comes >= 0.4 s of idle silence up to the chunk's end (one more idle chunk in 1 of 5 clips), so
the progress-aware pointer sees chunks whose transcript is fully spoken and learns where a stream ends. Splits: train clips use train sentences and the
train identities; val and test clips use their own sentences and the held-out identities.

Shards are WebDataset tars (`synthtalk-{split}-{n:05d}.tar`): per clip `{key}.mp4` (H.264 + AAC) and
`{key}.json` (transcript, word and phoneme timings, identity, voice, split). Everything is deterministic by
seed: the same seed gives the same audio samples and frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamchar.data.corpus import sentences
from streamchar.data.shards import add_member, read_samples
from streamchar.errors import StreamCharError

LEAD_S = 0.4  # idle silence before the first word, and at least this much after the last
CHUNK_FRAMES = 33  # clips are whole streaming chunks: the last chunk holds the end of speech and idle silence
IDLE_CHUNK_PROB = 0.2  # a clip gets one more whole chunk of idle silence after its speech
WORDS_PER_SECOND = 2.6  # espeak-ng at ~160 wpm, used only to plan transcript lengths
SPLITS = ("train", "val", "test")


@dataclass
class ClipSpec:
    key: str
    split: str
    sentences: list[str]
    identity: int
    voice: int
    seed: int
    max_seconds: float  # drop trailing sentences until the speech fits


MAX_CLIPS = 1_000_000  # SynthTalk's largest set (about 3 days of one 2-core machine at 64x64)


def plan(num: int, seed: int = 0, long: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.05,
         min_seconds: float = 5.0, max_seconds: float = 20.0) -> list[ClipSpec]:
    """Which clips to make: split, sentences, identity, voice. Deterministic by seed."""
    from streamchar.data.identity import HELDOUT_IDENTITIES, TRAIN_IDENTITIES
    from streamchar.data.speech import VOICES

    if not 1 <= num <= MAX_CLIPS:
        raise StreamCharError(f"--num must be between 1 and {MAX_CLIPS:,}, got {num}")
    if long < 0 or long > num:
        raise StreamCharError(f"--long must be between 0 and --num ({num}), got {long}")
    n_val = max(1, round(num * val_fraction)) if num >= 3 else 0
    n_test = max(1, round(num * test_fraction)) if num >= 3 else 0
    splits = ["val"] * n_val + ["test"] * n_test + ["train"] * (num - n_val - n_test)
    rng = np.random.default_rng(seed)
    need = {s: 8 * splits.count(s) + 20 * long + 64 for s in SPLITS}  # sentences each split may use
    pools = {s: iter(sentences(s, need[s], seed)) for s in SPLITS}
    is_long = set(rng.choice(num, long, replace=False).tolist()) if long else set()
    specs = []
    for i, split in enumerate(splits):
        target = 65.0 if i in is_long else rng.uniform(min_seconds, max_seconds - 2.0)
        texts, words = [], 0
        while words < target * WORDS_PER_SECOND:
            texts.append(next(pools[split]))
            words += len(texts[-1].split())
        ids = TRAIN_IDENTITIES if split == "train" else HELDOUT_IDENTITIES
        specs.append(ClipSpec(key=f"{split}-{i:06d}", split=split, sentences=texts,
                              identity=int(ids[rng.integers(len(ids))]), voice=int(rng.integers(len(VOICES))),
                              seed=int(rng.integers(2**31)), max_seconds=1e9 if i in is_long else max_seconds))
    return specs


def make_clip(spec: ClipSpec, size: int = 64, fps: int = 24) -> tuple[bytes, dict]:
    """Speak and render one clip -> (MP4 bytes, metadata)."""
    from streamchar.data.identity import IDENTITIES
    from streamchar.data.render import render_clip
    from streamchar.data.speech import VOICES, synthesize
    from streamchar.streaming.writer import MP4Writer

    voice = VOICES[spec.voice]
    texts = list(spec.sentences)
    while True:  # drop trailing sentences until the clip fits its length
        speech = synthesize(" ".join(texts), voice)
        duration = len(speech.audio) / speech.sample_rate + 2 * LEAD_S
        if duration <= spec.max_seconds or len(texts) == 1:
            break
        texts.pop()
    sr = speech.sample_rate
    chunks = int(np.ceil(duration * fps / CHUNK_FRAMES))  # whole chunks, the tail idle and silent
    chunks += int(np.random.default_rng([spec.seed, 1]).random() < IDLE_CHUNK_PROB)
    n_frames = chunks * CHUNK_FRAMES
    duration = n_frames / fps  # the audio is padded with silence to match exactly
    lead = int(round(LEAD_S * sr))
    audio = np.zeros(int(round(duration * sr)), dtype=np.float32)
    audio[lead: lead + len(speech.audio)] = speech.audio[: len(audio) - lead]
    words = [dataclasses.replace(w, start=w.start + LEAD_S, end=w.end + LEAD_S) for w in speech.words]
    phonemes = [dataclasses.replace(p, start=p.start + LEAD_S, end=p.end + LEAD_S) for p in speech.phonemes]
    frames = render_clip(IDENTITIES[spec.identity], [(p.ipa, p.start, p.end) for p in phonemes],
                         [(w.start, w.end) for w in words], duration, size=size, fps=fps, seed=spec.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with MP4Writer(path, fps=fps, width=size, height=size, sample_rate=sr, channels=1) as writer:
            writer.write(frames, audio)
        mp4 = path.read_bytes()
    meta = {
        "key": spec.key, "split": spec.split, "text": " ".join(texts), "duration": duration, "fps": fps,
        "frames": n_frames, "size": size, "sample_rate": sr, "identity": spec.identity,
        "voice": {"index": spec.voice, **dataclasses.asdict(voice)}, "seed": spec.seed,
        "words": [{"text": w.text, "start": round(w.start, 4), "end": round(w.end, 4),
                   "char_start": w.char_start, "char_end": w.char_end} for w in words],
        "phonemes": [{"ipa": p.ipa, "start": round(p.start, 4), "end": round(p.end, 4)} for p in phonemes],
    }
    return mp4, meta


def _make(args):
    spec, size, fps = args
    return spec, *make_clip(spec, size, fps)


def generate(out: str | Path, num: int, seed: int = 0, size: int = 64, long: int = 0, shard_size: int = 50,
             workers: int | None = None, progress: bool = True) -> dict:
    """Generate `num` clips into WebDataset shards under `out`. Returns a summary (also written as index.json)."""
    import multiprocessing as mp

    import tqdm

    from streamchar.data.speech import espeak_available

    out = Path(out)
    if not out.parent.is_dir():
        raise StreamCharError(f"--out: folder {out.parent} does not exist")
    if not 16 <= size <= 2048 or size % 16:
        raise StreamCharError(f"--size must be a multiple of 16 between 16 and 2048, got {size}")
    if shard_size < 1:
        raise StreamCharError(f"--shard-size must be >= 1 clip, got {shard_size}")
    if workers is not None and workers < 1:
        raise StreamCharError(f"--workers must be >= 1 (or left out: one per CPU core), got {workers}")
    if not espeak_available():
        raise StreamCharError("espeak-ng is not installed: apt-get install -y espeak-ng")
    specs = plan(num, seed, long)
    out.mkdir(exist_ok=True)
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    shards: dict[str, list] = {s: [] for s in SPLITS}
    open_tars: dict[str, tuple] = {}
    counts = {s: 0 for s in SPLITS}

    def close(split):
        tar, tmp, final = open_tars.pop(split)
        tar.close()
        os.replace(tmp, final)
        shards[split].append(final.name)

    jobs = [(s, size, 24) for s in specs]
    ctx = mp.get_context("spawn")  # no fork: libespeak-ng keeps global state
    with ctx.Pool(workers) if workers > 1 else _Serial() as pool, \
            tqdm.tqdm(total=num, unit="clip", disable=not progress, desc="synthtalk") as bar:
        for spec, mp4, meta in pool.imap(_make, jobs):
            split = spec.split
            if split not in open_tars:
                final = out / f"synthtalk-{split}-{len(shards[split]):05d}.tar"
                tmp = final.with_name(f".{final.name}.partial")
                open_tars[split] = (tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT), tmp, final)
            tar = open_tars[split][0]
            add_member(tar, f"{spec.key}.mp4", mp4)
            add_member(tar, f"{spec.key}.json", json.dumps(meta, sort_keys=True).encode())
            counts[split] += 1
            if counts[split] % shard_size == 0:
                close(split)
            bar.update(1)
    for split in list(open_tars):
        close(split)
    summary = {"clips": counts, "shards": shards, "seed": seed, "size": size, "fps": 24, "long": long}
    tmp = out / ".index.json.partial"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "index.json")
    return summary


class _Serial:
    """A stand-in for a process pool when workers == 1."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, items):
        return map(fn, items)


def read_shard(path: str | Path):
    """Yield (key, mp4 bytes, metadata) from one SynthTalk shard; a corrupt shard is an error naming it."""
    for key, files in read_samples(path, ("mp4", "json"), "SynthTalk shard"):
        try:
            meta = json.loads(files["json"])
        except json.JSONDecodeError as e:
            raise StreamCharError(f"corrupt SynthTalk shard {path}: {key}.json: {e}") from None
        yield key, files["mp4"], meta
