"""Decoded SynthTalk clips held in memory, and random crops of them for codec training.

`load_clips` decodes each clip's MP4 once and keeps its frames (T, H, W, 3) uint8 and audio (ch, S) float32.
Memory: a 64x64 clip costs 12 KB per frame (288 KB per second at 24 fps) plus 4 bytes per audio sample
(~96 KB per second at 24,576 Hz mono): ~2 MB for a 5 s clip, ~8 MB for a 20 s one. `max_clips` bounds the
total (64 clips <= ~0.5 GB); keep only what you need with `keep` ('video' or 'audio').

Crops are deterministic: item i of epoch e is cut with a generator seeded by (seed, epoch, i), so a run
resumed from a checkpoint sees the same crops. The epoch comes from `EpochLoader`, which sets
`dataset.epoch` before each pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamchar.errors import StreamCharError
from streamchar.train.data import ResumableLoader


@dataclass
class Clip:
    key: str
    text: str
    frames: np.ndarray | None  # (T, H, W, 3) uint8, or None when only audio was kept
    audio: np.ndarray | None  # (channels, S) float32 at the loader's sample rate, or None
    meta: dict = field(repr=False, default_factory=dict)


def shard_paths(root: str | Path, splits: list[str] | tuple[str, ...]) -> list[Path]:
    """The shards of `splits` listed in `root`/index.json, in order."""
    root = Path(root)
    index_file = root / "index.json"
    if not index_file.is_file():
        raise StreamCharError(f"no SynthTalk index at {index_file} (generate one with `streamchar data synthtalk`)")
    try:
        shards = json.loads(index_file.read_text())["shards"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise StreamCharError(f"{index_file} is not a SynthTalk index ({e})") from None
    return [root / name for split in splits for name in shards.get(split, [])]


def load_clips(root: str | Path, splits: list[str] | tuple[str, ...], sample_rate: int, channels: int = 1,
               max_clips: int | None = None, keep: str = "both") -> list[Clip]:
    """Decode up to `max_clips` clips of `splits` (in shard order) into memory. `keep`: 'video', 'audio', 'both'."""
    from streamchar.data.latents import decode_audio, decode_mp4
    from streamchar.data.synthtalk import read_shard

    if keep not in ("video", "audio", "both"):
        raise StreamCharError(f"keep must be 'video', 'audio' or 'both', got {keep!r}")
    clips: list[Clip] = []
    for path in shard_paths(root, splits):
        for key, mp4, meta in read_shard(path):
            if max_clips is not None and len(clips) >= max_clips:
                return clips
            if keep == "audio":
                frames, audio = None, decode_audio(mp4, sample_rate, channels)
            else:
                frames, audio = decode_mp4(mp4, sample_rate, channels)
            clips.append(Clip(key=key, text=meta["text"], meta=meta,
                              frames=frames if keep != "audio" else None,
                              audio=audio if keep != "video" else None))
    return clips


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


class VideoChunks:
    """Item i: a random run of `frames` consecutive frames of clip i % len(clips), as (3, frames, H, W) in [-1, 1].

    `items_per_clip` items per clip make one epoch. Clips shorter than `frames` are an error. With `characters`
    (SynthTalk identities, see `data.identity.codec_identities`), a share `rerender` of the items is the same
    run of speech and motion rendered afresh as a random one of them: the 16 training characters alone teach a
    codec their palettes, and held-out characters then come back in the wrong colours.
    """

    def __init__(self, clips: list[Clip], frames: int, items_per_clip: int = 1, seed: int = 0,
                 characters: list | None = None, rerender: float = 0.5):
        if not clips:
            raise StreamCharError("no clips to train on (is the split empty?)")
        short = [c.key for c in clips if c.frames is None or len(c.frames) < frames]
        if short:
            raise StreamCharError(f"clip {short[0]} has no video or fewer than {frames} frames")
        if not 0.0 <= rerender <= 1.0:
            raise StreamCharError(f"rerender must be in [0, 1], got {rerender}")
        if characters and any("phonemes" not in c.meta or "words" not in c.meta for c in clips):
            raise StreamCharError("re-rendering characters needs the clips' phoneme and word timings (meta)")
        self.clips, self.frames, self.items_per_clip, self.seed = clips, frames, items_per_clip, seed
        self.characters, self.rerender = list(characters or []), rerender
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips) * self.items_per_clip

    def __getitem__(self, i: int) -> torch.Tensor:
        clip = self.clips[i % len(self.clips)]
        rng = _rng(self.seed, self.epoch, i)
        start = int(rng.integers(len(clip.frames) - self.frames + 1))
        if self.characters and rng.random() < self.rerender:
            character = self.characters[int(rng.integers(len(self.characters)))]
            x = torch.from_numpy(render_run(clip, character, start, self.frames, int(rng.integers(2**31))))
        else:
            x = torch.from_numpy(clip.frames[start: start + self.frames])  # (F, H, W, 3) uint8
        return x.permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, F, H, W)


def render_run(clip: Clip, character, start: int, frames: int, seed: int) -> np.ndarray:
    """Frames [start, start + frames) of `clip`'s speech, rendered as `character` -> (frames, H, W, 3) uint8.

    The phoneme and word timings of that stretch drive the mouth and the motion (`seed`) of a fresh render."""
    from streamchar.data.render import render_clip

    fps, size = clip.meta["fps"], clip.frames.shape[1]
    t0, t1 = start / fps, (start + frames) / fps

    def window(items, *head):
        return [(*[it[k] for k in head], max(0.0, it["start"] - t0), min(t1, it["end"]) - t0)
                for it in items if it["end"] > t0 and it["start"] < t1]

    return render_clip(character, window(clip.meta["phonemes"], "ipa"), window(clip.meta["words"]),
                       frames / fps, size=size, fps=fps, seed=seed)


class AudioCrops:
    """Item i: a random crop of `samples` samples of clip i % len(clips)'s audio, (channels, samples) in [-1, 1].

    Clips shorter than the crop are zero-padded at the end.
    """

    def __init__(self, clips: list[Clip], samples: int, items_per_clip: int = 1, seed: int = 0):
        if not clips:
            raise StreamCharError("no clips to train on (is the split empty?)")
        if any(c.audio is None for c in clips):
            raise StreamCharError("AudioCrops needs clips loaded with their audio")
        self.clips, self.samples, self.items_per_clip, self.seed = clips, samples, items_per_clip, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips) * self.items_per_clip

    def __getitem__(self, i: int) -> torch.Tensor:
        audio = self.clips[i % len(self.clips)].audio  # (ch, S)
        start = int(_rng(self.seed, self.epoch, i).integers(max(1, audio.shape[1] - self.samples + 1)))
        crop = audio[:, start: start + self.samples]
        crop = np.pad(crop, ((0, 0), (0, self.samples - crop.shape[1])))
        return torch.from_numpy(np.ascontiguousarray(crop))  # (ch, samples)


class EpochLoader(ResumableLoader):
    """A ResumableLoader that tells its dataset the epoch (`dataset.epoch`) before each pass."""

    def __iter__(self):
        self.dataset.epoch = self.sampler.epoch
        return super().__iter__()
