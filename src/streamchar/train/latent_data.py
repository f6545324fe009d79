"""Pretraining samples from a latent-shard folder (see streamchar/data/latents.py), built as streaming builds them.

One item = one (clip, chunk k) pair. `sample(i, rng)` builds chunk k's record with the same function the
streaming session uses (streaming/record.py): `clip_state` gives the state a stream of the clip's true
latents has before chunk k (motion = chunk k-1, sink = chunk 0, history = exactly the last 15 s of audio
latents, the transcript spoken before the window dropped from E_txt), and `chunk_record` builds the inputs.
What varies per sample is what varies per stream:

    prompt      the clip's caption (its character's look, `data.identity.caption`), or a fixed prompt
    ref voice   with probability `ref_audio_prob`, a span of `ref_audio_seconds` (uniform in the range, up to
                the 15 s inference feeds) from another clip of the same voice, else none
    dropout     for classifier-free guidance (train samples only): with probability `uncond_prob` the
                prompt, the reference frame and the audio condition c_a are dropped together (the teacher
                sampler's unconditional pass); otherwise each is dropped alone with `cond_dropout`.
                The transcript, history and motion are never dropped.
    targets     video latents of chunk k (C, 9, h, w), its audio latents (33, C_a) and the pointer's target
                pap_end[k] - text_offset (transcript tokens of E_txt spoken by the chunk's end)

Clips are whole chunks ending in idle silence (data/synthtalk.py), so every clip's last chunk teaches the
pointer a fully spoken transcript.

`noise_seed` seeds the flow-matching draws of the sample (t, eps of both modalities; drawn by the
trainable module on its device): the noise belongs to the sample, not to the batch or rank that happens to
process it, so a batch of B gives the same losses as B batches of one, and N processes the same draws as
one process with the same global batch.

Randomness comes only from the numpy Generator passed to `sample`. `LatentLoader` seeds it from
(seed, epoch, index), so a resumed run rebuilds exactly the same samples; `dataset[i]` seeds it from
(seed, i) alone (same sample every time). `audio_only=True` (pretraining stage 1) skips the video latents.

Every clip is read into memory at start: right for SynthTalk-sized folders; a large corpus would want a
streaming (webdataset-style) reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from streamchar.data.latents import read_latent_shard
from streamchar.errors import StreamCharError
from streamchar.models.timeline import plan_from_spans
from streamchar.streaming.record import StreamInputs, chunk_record, clip_state
from streamchar.streaming.record import collate as collate_records
from streamchar.train.data import ResumableLoader

# A prompt for a clip: its metadata -> (the orchestrator's prompt ids + separator, the DiT context (L, dim)).
PromptFn = Callable[[dict], tuple[list[int], torch.Tensor]]
# A clip's frame-token targets (train/alignment.py): its metadata + token ids + audio frames -> (n * 33,) int64.
FrameTokensFn = Callable[[dict, dict, int], torch.Tensor]  # (clip metadata, clip tensors, frames) -> (frames,)


class LatentChunks:
    def __init__(self, folder: str | Path, split: str, *, prompt: PromptFn, null_prompt_ids: list[int],
                 history_frames: int, audio_frames: int = 33, audio_only: bool = False, uncond_prob: float = 0.1,
                 cond_dropout: float = 0.05, ref_audio_prob: float = 0.5,
                 ref_audio_seconds: tuple[float, float] = (1.0, 15.0), audio_rate: float = 24.0,
                 train: bool = True, seed: int = 0, frame_tokens: FrameTokensFn | None = None,
                 text_lookback: tuple[int, int] | None = None, uncond_record: bool = False, sink: bool = True,
                 pointer_error: float = 0.0, text_horizon: int | None = None):
        """prompt: a clip's prompt (see PromptFn); null_prompt_ids: the orchestrator's ids for no prompt;
        frame_tokens: each sample then carries its chunk's frame-token targets (train/alignment.py);
        text_lookback: (lo, hi): E_txt starts L tokens before the spoken endpoint, L uniform in [lo, hi] per
        sample (streaming/record.py; the spread covers the pointer's error at inference); None: the window
        rule; pointer_error: std (tokens) of noise on the spoken endpoint a chunk's record is built from (the
        pointer's error at inference; training only); text_horizon: E_txt's reach in audio latents from the
        chunk's start, as the stream's (`StreamCharConfig.text_horizon_frames`; None: to the clip's end)."""
        folder = Path(folder)
        index_file = folder / "index.json"
        if not index_file.is_file():
            raise StreamCharError(f"{folder} is not a latent folder (no index.json); build one with "
                                  "`streamchar data encode`")
        index = json.loads(index_file.read_text())
        if split not in index.get("shards", {}):
            raise StreamCharError(f"latent folder {folder} has no {split!r} split "
                                  f"(it has {sorted(index.get('shards', {}))})")
        if history_frames < 1:
            raise StreamCharError(f"history_frames must be >= 1, got {history_frames}")
        lo, hi = ref_audio_seconds
        if not 0 < lo <= hi:
            raise StreamCharError(f"ref_audio_seconds must be 0 < min <= max, got {ref_audio_seconds}")
        self.folder, self.split, self.audio_only, self.train, self.seed = folder, split, audio_only, train, seed
        self.prompt, self.null_prompt_ids = prompt, list(null_prompt_ids)
        self.history_frames, self.A = history_frames, audio_frames
        self.uncond_prob = uncond_prob if train else 0.0
        self.cond_dropout = cond_dropout if train else 0.0
        self.ref_audio_prob = ref_audio_prob
        self.ref_frames = (max(1, round(lo * audio_rate)), max(1, round(hi * audio_rate)))
        if text_lookback is not None and not 0 <= text_lookback[0] <= text_lookback[1]:
            raise StreamCharError(f"text_lookback must be 0 <= min <= max, got {text_lookback}")
        self.text_lookback = text_lookback
        self.uncond_record = uncond_record  # samples also carry the guidance pass's record (distillation)
        self.sink = sink  # False: no sink chunk in the records (the model's stream.sink)
        if not pointer_error >= 0:
            raise StreamCharError(f"pointer_error must be >= 0 tokens, got {pointer_error}")
        self.pointer_error = pointer_error if train else 0.0
        self.text_horizon = text_horizon

        self.clips = []  # per clip: dict of tensors + key + pap_end + meta
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
                if frame_tokens is not None:
                    t["frame_tokens"] = frame_tokens(meta, t, n * audio_frames)
                if "token_spans" not in t:
                    raise StreamCharError(f"clip {key} in {folder / name} has no token_spans (an older latent "
                                          "folder): re-encode it with `streamchar data encode`")
                t["plan"] = plan_from_spans(t["token_spans"], audio_rate)  # (N,) its tokens on the timeline
                self.clips.append({"key": key, "pap_end": list(ends), "text": meta.get("text", ""),
                                   "caption": meta.get("caption"), "identity": meta.get("identity"),
                                   "voice": voice_key(meta), **t})
        self.items = [(c, k) for c, clip in enumerate(self.clips) for k in range(len(clip["pap_end"]))]
        if not self.items:
            raise StreamCharError(f"the {split!r} split of {folder} holds no chunks")
        self.by_voice: dict[str, list[int]] = {}
        for c, clip in enumerate(self.clips):
            self.by_voice.setdefault(clip["voice"], []).append(c)
        self._prompts: dict = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.sample(i, np.random.default_rng([self.seed, i]))

    def lengths(self) -> list[int]:
        """Each item's orchestrator prefix length without the reference voice (history + transcript, all of
        it: an estimate under `text_lookback`), for batches of similar lengths (`group_by_length`)."""
        return [min(k * self.A, self.history_frames) + len(self.clips[c]["token_ids"]) for c, k in self.items]

    def clip_prompt(self, clip: dict) -> tuple[list[int], torch.Tensor]:
        key = (clip["caption"], clip["identity"])
        if key not in self._prompts:
            self._prompts[key] = self.prompt(clip)
        return self._prompts[key]

    def reference_voice(self, c: int, rng: np.random.Generator) -> torch.Tensor:
        """A span of reference-voice latents (T_ref, C_a) from another clip of the same voice (this one if
        it is the only one of its voice)."""
        same = self.by_voice[self.clips[c]["voice"]]
        others = [o for o in same if o != c] or [c]
        audio = self.clips[others[int(rng.integers(len(others)))]]["audio_latents"]
        lo, hi = self.ref_frames
        length = min(int(rng.integers(lo, hi + 1)), audio.shape[0])
        start = int(rng.integers(0, audio.shape[0] - length + 1))
        return audio[start:start + length]

    def sample(self, i: int, rng: np.random.Generator) -> dict:
        c, k = self.items[i]
        clip = self.clips[c]
        ends, A = clip["pap_end"], self.A
        video = clip.get("video_latents")  # (n, C, 9, h, w) or None (stage 1)

        ref_audio = self.reference_voice(c, rng) if rng.random() < self.ref_audio_prob else None
        uncond = bool(rng.random() < self.uncond_prob)
        drop = [uncond or bool(rng.random() < self.cond_dropout) for _ in range(3)]  # prompt, reference, c_a
        prompt_ids, context = self.clip_prompt(clip)
        inputs = StreamInputs(reference=clip.get("reference_latent"), ref_audio=ref_audio, prompt_ids=prompt_ids,
                              null_prompt_ids=self.null_prompt_ids, transcript=clip["token_ids"], context=context,
                              audio_channels=clip["audio_latents"].shape[-1], plan=clip["plan"])
        lookback = None if self.text_lookback is None else int(rng.integers(self.text_lookback[0],
                                                                             self.text_lookback[1] + 1))
        error = float(rng.normal(0.0, self.pointer_error)) if self.pointer_error > 0 and k > 0 else 0.0
        state = clip_state(video, clip["audio_latents"], ends, k, history_frames=self.history_frames,
                           text_lookback=lookback, sink=self.sink, pointer_error=error)
        record = chunk_record(inputs, state, drop_prompt=drop[0], drop_reference=drop[1] and video is not None,
                              drop_audio_condition=drop[2], text_horizon=self.text_horizon)
        extra = {}
        if self.uncond_record:  # what the teacher's unconditional pass reads: prompt, reference and c_a dropped
            extra["uncond_record"] = chunk_record(inputs, state, drop_prompt=True, drop_reference=video is not None,
                                                  drop_audio_condition=True, text_horizon=self.text_horizon)
        return {
            **extra, "key": clip["key"], "chunk": k, "record": record,
            "audio": clip["audio_latents"][k * A:(k + 1) * A],  # (33, C_a)
            "video": video[k] if video is not None else None,  # (C, 9, h, w)
            "pap_target": torch.tensor(float(ends[k]) - float(record.text_offset[0])),  # ()
            "noise_seed": int(rng.integers(0, 2**62)),
            **({"frame_tokens": clip["frame_tokens"][k * A:(k + 1) * A]} if "frame_tokens" in clip else {}),  # (33,)
        }


def voice_key(meta: dict) -> str:
    """Which voice a clip speaks with (SynthTalk: its espeak voice), as a hashable key."""
    v = meta.get("voice")
    return json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v)


def collate(samples: list[dict]) -> dict:
    """B samples -> one batch: the records padded together (streaming/record.py), targets stacked."""
    if not samples:
        raise StreamCharError("collate needs at least one sample")
    videos = [s["video"] for s in samples]
    return {
        "key": [s["key"] for s in samples], "chunk": [s["chunk"] for s in samples],
        "record": collate_records([s["record"] for s in samples]),
        **({"uncond_record": collate_records([s["uncond_record"] for s in samples])}
           if "uncond_record" in samples[0] else {}),
        "audio": torch.stack([s["audio"] for s in samples]),  # (B, 33, C_a)
        "video": torch.stack(videos) if videos[0] is not None else None,  # (B, C, 9, h, w)
        "pap_target": torch.stack([s["pap_target"] for s in samples]),  # (B,)
        "noise_seed": [s["noise_seed"] for s in samples],
        **({"frame_tokens": torch.stack([s["frame_tokens"] for s in samples])} if "frame_tokens" in samples[0] else {}),
    }


class LatentLoader(ResumableLoader):
    """A ResumableLoader that hands `dataset.sample` a Generator seeded from (seed, epoch, index): each
    epoch draws new reference voices / dropouts, and a resumed run (same position) draws the same ones.
    `group_by_length`: batches of items with similar prefix lengths (less padding in the orchestrator)."""

    def __init__(self, dataset: LatentChunks, batch_size: int = 1, seed: int = 0, shuffle: bool = True, rank=None,
                 world_size=None, group_by_length: bool = False):
        super().__init__(dataset, batch_size=batch_size, seed=seed, shuffle=shuffle, rank=rank,
                         world_size=world_size, collate_fn=collate,
                         lengths=dataset.lengths() if group_by_length else None)

    def __iter__(self):
        for indices in self.sampler:
            epoch = self.sampler.epoch  # the epoch being handed out (advanced after its last batch)
            yield self.collate_fn([self.dataset.sample(i, np.random.default_rng([self.sampler.seed, epoch, i]))
                                   for i in indices])
