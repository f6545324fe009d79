"""Pretraining samples from a latent-shard folder (see streamchar/data/latents.py), built like inference.

One item = one (clip, chunk k) pair. `sample(i, rng)` builds the conditions that streaming inference
(streaming/session.py) gives chunk k, from ground-truth latents:

    target      video latents of chunk k (C, 9, h, w) and its audio latents (33, C_a)
    reference   the clip's first frame (C, 1, h, w)
    motion      chunk k-1's video latents, None at k = 0
    sink        chunk 0's video latents, None at k = 0
    history     audio latents of h whole previous chunks k-h .. k-1, h ~ U{0 .. min(k, history_chunks)}
                (a random h: inference sees every window length from 0 chunks up to 15 s)
    text        E_txt = prompt ids + [eos] + transcript[offset:], offset = pap_end[k-h-1] (0 if k-h-1 < 0):
                the transcript spoken before the history window is dropped, as inference does
                (clamped so at least one transcript token stays)
    pap_target  pap_end[k] - offset: transcript tokens of E_txt spoken by the end of chunk k
    ref_audio   with probability `ref_audio_prob`, the audio latents of another chunk of the same clip
                (same voice), else None

Condition dropout for classifier-free guidance (train samples only), each with probability `cfg_dropout`,
independently: `drop_prompt` (the DiT gets a zero prompt context, the orchestrator E_txt without the
prompt ids: [eos] + transcript, like a session with prompt "") and `drop_reference` (the reference frame
latent is zeroed; stage 2 only). The transcript, history and motion are never dropped.

`noise_seed` seeds the flow-matching draws of the sample (t, eps of both modalities; drawn by the
trainable module on its device): the noise belongs to the sample, not to the rank that happens to
process it, so N processes see the same draws as one process with the same global batch.

Randomness comes only from the numpy Generator passed to `sample`. `LatentLoader` seeds it from
(seed, epoch, index), so a resumed run rebuilds exactly the same samples; `dataset[i]` seeds it from
(seed, i) alone (same sample every time).

Batches hold ONE sample (`collate`): the orchestrator does not take padded batches yet (E_txt and the
history length vary per sample). Use `train.grad_accum` for a larger effective batch.
`audio_only=True` (pretraining stage 1) skips the video latents: no target video, no visual conditions.

Every clip is read into memory at start: right for SynthTalk-sized folders; a large corpus would want a
streaming (webdataset-style) reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from streamchar.data.latents import read_latent_shard
from streamchar.errors import StreamCharError
from streamchar.train.data import ResumableLoader


class LatentChunks:
    def __init__(self, folder: str | Path, split: str, *, prompt_ids: list[int], null_prompt_ids: list[int],
                 history_chunks: int, audio_frames: int = 33, audio_only: bool = False,
                 cfg_dropout: float = 0.1, ref_audio_prob: float = 0.5, train: bool = True, seed: int = 0):
        """prompt_ids: the orchestrator's prompt ids + separator (as StreamSession builds them);
        null_prompt_ids: the same for an empty prompt (used when the prompt is dropped)."""
        folder = Path(folder)
        index_file = folder / "index.json"
        if not index_file.is_file():
            raise StreamCharError(f"{folder} is not a latent folder (no index.json); build one with "
                                  "`streamchar data encode`")
        index = json.loads(index_file.read_text())
        if split not in index.get("shards", {}):
            raise StreamCharError(f"latent folder {folder} has no {split!r} split "
                                  f"(it has {sorted(index.get('shards', {}))})")
        if history_chunks < 0:
            raise StreamCharError(f"history_chunks must be >= 0, got {history_chunks}")
        self.folder, self.split, self.audio_only, self.train, self.seed = folder, split, audio_only, train, seed
        self.prompt_ids, self.null_prompt_ids = list(prompt_ids), list(null_prompt_ids)
        self.history_chunks, self.A = history_chunks, audio_frames
        self.cfg_dropout, self.ref_audio_prob = cfg_dropout if train else 0.0, ref_audio_prob

        self.clips = []  # per clip: dict of tensors + key + pap_end
        for name in index["shards"][split]:
            for key, t, meta in read_latent_shard(folder / name):
                n, ends = meta["chunks"], meta["pap_end"]
                if t["audio_latents"].shape[0] != n * audio_frames or len(ends) != n or len(t["token_ids"]) < 1:
                    raise StreamCharError(f"clip {key} in {folder / name} is inconsistent: {n} chunks, "
                                          f"audio latents {tuple(t['audio_latents'].shape)}, {len(ends)} pap_end, "
                                          f"{len(t['token_ids'])} tokens")
                if not audio_only and not {"video_latents", "reference_latent"} <= set(t):
                    raise StreamCharError(f"clip {key} in {folder / name} has no video latents (speech only?): "
                                          "audio-video training needs them (stage 1 trains on speech alone)")
                if audio_only:  # a speech corpus may have no video latents at all
                    t.pop("video_latents", None), t.pop("reference_latent", None)
                self.clips.append({"key": key, "pap_end": list(ends), "text": meta.get("text", ""), **t})
        self.items = [(c, k) for c, clip in enumerate(self.clips) for k in range(len(clip["pap_end"]))]
        if not self.items:
            raise StreamCharError(f"the {split!r} split of {folder} holds no chunks")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.sample(i, np.random.default_rng([self.seed, i]))

    def audio_chunk(self, clip: dict, k: int) -> torch.Tensor:
        return clip["audio_latents"][k * self.A:(k + 1) * self.A]  # (33, C_a)

    def sample(self, i: int, rng: np.random.Generator) -> dict:
        c, k = self.items[i]
        clip = self.clips[c]
        ends, ids = clip["pap_end"], clip["token_ids"]
        n = len(ends)

        h = int(rng.integers(0, min(k, self.history_chunks) + 1))  # whole history chunks k-h .. k-1
        offset = ends[k - h - 1] if k - h - 1 >= 0 else 0
        offset = min(offset, len(ids) - 1)  # at least one transcript token (inference clamps the same way)
        history = clip["audio_latents"][(k - h) * self.A:k * self.A] if h > 0 else None  # (h*33, C_a)

        ref_audio = None
        if n > 1 and rng.random() < self.ref_audio_prob:
            other = int(rng.integers(0, n - 1))
            ref_audio = self.audio_chunk(clip, other + (other >= k))  # (33, C_a) another chunk, same voice
        drop_prompt = bool(rng.random() < self.cfg_dropout)
        drop_reference = bool(rng.random() < self.cfg_dropout) and not self.audio_only

        prompt = self.null_prompt_ids if drop_prompt else self.prompt_ids
        sample = {
            "key": clip["key"], "chunk": k, "history_chunks": h, "text_offset": offset,
            "audio": self.audio_chunk(clip, k),  # (33, C_a)
            "history": history,
            "ref_audio": ref_audio,
            "text_ids": torch.cat([torch.tensor(prompt, dtype=torch.int64), ids[offset:]]),  # (L_txt,)
            "transcript_start": len(prompt),
            "pap_target": torch.tensor(float(ends[k] - offset)),  # ()
            "drop_prompt": drop_prompt, "drop_reference": drop_reference,
            "noise_seed": int(rng.integers(0, 2**62)),
            "video": None, "reference": None, "motion": None, "sink": None,
        }
        if not self.audio_only:
            v = clip["video_latents"]  # (n, C, 9, h, w)
            reference = clip["reference_latent"]  # (C, 1, h, w)
            sample.update(video=v[k], reference=torch.zeros_like(reference) if drop_reference else reference,
                          motion=v[k - 1] if k > 0 else None, sink=v[0] if k > 0 else None)
        return sample


def collate(samples: list[dict]) -> dict:
    """One sample -> a batch of one: tensors get a leading batch dim, None and python values stay."""
    if len(samples) != 1:
        raise StreamCharError(f"pretraining batches hold one sample (the orchestrator takes no padded batches "
                              f"yet), got {len(samples)}: use batch size 1 and train.grad_accum")
    (s,) = samples
    return {k: v[None] if isinstance(v, torch.Tensor) else v for k, v in s.items()}


class LatentLoader(ResumableLoader):
    """A ResumableLoader that hands `dataset.sample` a Generator seeded from (seed, epoch, index): each
    epoch draws new histories / dropouts, and a resumed run (same position) draws the same ones."""

    def __init__(self, dataset: LatentChunks, seed: int = 0, shuffle: bool = True, rank=None, world_size=None):
        super().__init__(dataset, batch_size=1, seed=seed, shuffle=shuffle, rank=rank, world_size=world_size,
                         collate_fn=collate)

    def __iter__(self):
        for indices in self.sampler:
            epoch = self.sampler.epoch  # the epoch being handed out (advanced after its last batch)
            yield self.collate_fn([self.dataset.sample(i, np.random.default_rng([self.sampler.seed, epoch, i]))
                                   for i in indices])
