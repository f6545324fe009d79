"""Stage II, online-rollout distillation (paper §4.2, Fig. 3, §5.1): the student streams K chunks from its own
outputs, and the last chunks are scored together by the real and fake scores.

Stage I trains each chunk from its *true* context (the clip's own motion, sink and history). At inference the
context is the model's own output, and its errors compound over minutes. Stage II trains on what inference
sees: from chunk 0 of a clip (its reference frame, prompt, transcript, reference voice), the student generates
K chunks exactly as `StreamSession` does, with the same record builder and state update
(streaming/record.py):

    chunk k:  record(inputs, state) -> the 4-step student, stopped at the rollout's exit step -> z_v, z_a
              the student's pointer on z_a -> spoken;  advance(state): motion <- z_v, sink <- chunk 0's z_v,
              history += z_a (15 s), E_txt per the lookback rule

The last `window` chunks (3 by default) are concatenated, (B, C, 3 x 9, h, w) and (B, 3 x 33, C_a), and scored
as one sample by the real and fake scores (train/distill_dmd.py `ScoreModels.dmd_terms`), under the record of
the state before the window with the transcript truncated at the pointer's endpoint after the window: the
scores judge the window against exactly the text the student says it spoke. Gradient reaches the last
`grad_chunks` chunks (default: the window); earlier chunks are generated without it.

Ablations (§5.5): `sink: false` in the student's stream config (no sink chunk, here and when it streams),
`one_chunk` (K = window = 1: isolated chunks from chunk 0), and `init` = the teacher (Stage I skipped).

    cfg = RolloutConfig.from_yaml(resolve_config("distill_rollout_tiny"))
    summary = run_distill_rollout(cfg)     # <out_dir>/final: the student
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from streamchar.diffusion.dmd import backward_simulation, randn_rows
from streamchar.diffusion.samplers import student_timesteps
from streamchar.errors import StreamCharError
from streamchar.streaming.record import StreamInputs, StreamState, advance, chunk_record
from streamchar.streaming.record import collate as collate_records
from streamchar.train import distributed
from streamchar.train.data import ResumableLoader
from streamchar.train.distill_dmd import (DMDConfig, Joint, ScoreModels, exit_step_of, fit_student,
                                          sample_generators)
from streamchar.train.pretrain import build_datasets, build_pipeline, check_codecs


@dataclass
class RolloutConfig(DMDConfig):
    teacher: str = ""  # the teacher's pipeline folder (real score; the fake score starts from it)
    chunks: int = 4  # K: chunks per rollout
    window: int = 3  # the last chunks scored together
    grad_chunks: int | None = None  # the last chunks gradient reaches; None: the window
    one_chunk: bool = False  # ablation: K = window = 1 (isolated chunks)
    sink: bool | None = None  # None: the student's stream.sink; false: the w/o-sink ablation

    def validate(self) -> "RolloutConfig":
        super().validate()

        def bad(name: str, why: str):
            raise StreamCharError(f"config field {name}: {why}")

        if not self.teacher:
            bad("teacher", "must be the teacher's pipeline folder (the real score)")
        if self.fake_updates != 1:
            bad("fake_updates", "Stage II updates the student every step (1)")
        if not 1 <= self.window <= self.chunks:
            bad("window", f"must be in [1, chunks = {self.chunks}], got {self.window}")
        if self.grad_chunks is not None and not 1 <= self.grad_chunks <= self.chunks:
            bad("grad_chunks", f"must be in [1, chunks = {self.chunks}], got {self.grad_chunks}")
        return self

    @property
    def rollout(self) -> tuple[int, int, int]:
        """(K, window, grad chunks) after the one-chunk switch."""
        if self.one_chunk:
            return 1, 1, 1
        return self.chunks, self.window, self.grad_chunks or self.window


class RolloutClips:
    """Clips of a latent folder as rollout starts: each item is a clip with at least K chunks, read as a stream
    from chunk 0 (its reference frame, prompt, transcript and a reference voice: `LatentChunks`' draws)."""

    def __init__(self, chunks, k: int):
        self.ds = chunks
        self.clip_ids = [c for c, clip in enumerate(chunks.clips) if len(clip["pap_end"]) >= k]
        if not self.clip_ids:
            raise StreamCharError(f"no clip in the data has {k} chunks: lower `chunks`")

    def __len__(self) -> int:
        return len(self.clip_ids)

    def sample(self, i: int, rng: np.random.Generator) -> dict:
        c = self.clip_ids[i]
        clip = self.ds.clips[c]
        ref_audio = self.ds.reference_voice(c, rng) if rng.random() < self.ds.ref_audio_prob else None
        prompt_ids, context = self.ds.clip_prompt(clip)
        inputs = StreamInputs(reference=clip["reference_latent"], ref_audio=ref_audio, prompt_ids=prompt_ids,
                              null_prompt_ids=self.ds.null_prompt_ids, transcript=clip["token_ids"], context=context,
                              audio_channels=clip["audio_latents"].shape[-1])
        return {"key": clip["key"], "inputs": inputs, "noise_seed": int(rng.integers(0, 2**62))}


def collate(samples: list[dict]) -> dict:
    return {"key": [s["key"] for s in samples], "inputs": [s["inputs"] for s in samples],
            "noise_seed": [s["noise_seed"] for s in samples]}


class RolloutLoader(ResumableLoader):
    """Batches of rollout starts; each epoch draws new reference voices, resumably (as LatentLoader)."""

    def __init__(self, dataset: RolloutClips, batch_size: int = 1, seed: int = 0, shuffle: bool = True):
        super().__init__(dataset, batch_size=batch_size, seed=seed, shuffle=shuffle, collate_fn=collate)

    def __iter__(self):
        for indices in self.sampler:
            epoch = self.sampler.epoch
            yield self.collate_fn([self.dataset.sample(i, np.random.default_rng([self.sampler.seed, epoch, i]))
                                   for i in indices])


def _inputs_to(inp: StreamInputs, device) -> StreamInputs:
    move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else x  # noqa: E731
    return dataclasses.replace(inp, reference=move(inp.reference), ref_audio=move(inp.ref_audio),
                               transcript=move(inp.transcript), context=move(inp.context))


def _snapshot(state: StreamState) -> StreamState:
    return dataclasses.replace(state, chunks=list(state.chunks))


class RolloutTrainable(ScoreModels):
    """The student streams K chunks; the DMD terms score the last `window` of them together."""

    def __init__(self, student: Joint, teacher: Joint, model_cfg, guidance, chunks: int = 4, window: int = 3,
                 grad_chunks: int = 3, sink: bool = True, **kw):
        super().__init__(student, teacher, guidance, **kw)
        self.student.orchestrator.pap.requires_grad_(False)  # the pointer is read, not trained, in Stage II
        s = model_cfg.stream
        self.timesteps = student_timesteps(s.student_timesteps, s.shift)
        self.history_frames, self.text_lookback = model_cfg.history_frames, s.text_lookback
        self.text_horizon = model_cfg.text_horizon_frames  # E_txt's reach, as the stream's
        self.frames_v, self.frames_a = model_cfg.video_latent_frames, model_cfg.audio_latent_frames  # one chunk's
        self.K, self.window, self.grad_chunks, self.sink = chunks, window, grad_chunks, sink
        self.trace = None  # a list: each forward appends what it recorded (tests)

    def rollout(self, inputs: list[StreamInputs], g: torch.Generator, exit_step: int):
        """-> per chunk (record, z_v, z_a, spoken (B,)), and the states before the window."""
        B, dev = len(inputs), inputs[0].transcript.device
        states = [StreamState() for _ in range(B)]
        chunks, before_window = [], None
        C, _, h, w = inputs[0].reference.shape
        for k in range(self.K):
            if k == self.K - self.window:
                before_window = [_snapshot(st) for st in states]
            rec = collate_records([chunk_record(inp, st, text_horizon=self.text_horizon)
                                   for inp, st in zip(inputs, states)])
            with torch.set_grad_enabled(k >= self.K - self.grad_chunks and torch.is_grad_enabled()):
                cache = self.student.conditions(rec)
                x_v = randn_rows((B, C, self.frames_v, h, w), g, dev)
                x_a = randn_rows((B, self.frames_a, inputs[0].audio_channels), g, dev)
                z_v, z_a = backward_simulation(lambda v, a, t: self.student.velocity(rec, cache, v, a, t),
                                               x_v, x_a, self.timesteps, exit_step, generator=g)
            with torch.no_grad():  # the pointer, as the stream reads it: on the chunk's clean audio at t = 0
                _, hidden, transcript, tmask = self.student.orchestrator.forward_full(
                    rec.orchestrator, z_a.detach(), torch.zeros(B, device=dev))
                end = self.student.orchestrator.pap(hidden, transcript, tmask).endpoint
                spoken = rec.text_offset.to(end.device) + end
            for b, st in enumerate(states):
                advance(st, z_v[b], z_a[b], float(spoken[b]), history_frames=self.history_frames,
                        text_lookback=self.text_lookback, sink=self.sink)
            chunks.append((rec, z_v, z_a, spoken))
        return chunks, before_window, states

    def forward(self, batch: dict, step: int = 0) -> dict[str, torch.Tensor]:
        dev = next(self.student.parameters()).device
        # the student streams as at inference: its own timeline plan of each transcript
        inputs = [_inputs_to(inp, dev) for inp in batch["inputs"]]
        inputs = [dataclasses.replace(inp, plan=self.student.orchestrator.plan(inp.transcript)) for inp in inputs]
        g = sample_generators(batch["noise_seed"], dev)
        exit_step = exit_step_of(step, len(self.timesteps))
        chunks, before, states = self.rollout(inputs, g, exit_step)

        # The window: the last chunks as one sample, under the state before it, with the transcript cut at the
        # pointer's endpoint after it.
        z_v = torch.cat([c[1] for c in chunks[-self.window:]], 2)  # (B, C, W x 9, h, w)
        z_a = torch.cat([c[2] for c in chunks[-self.window:]], 1)  # (B, W x 33, C_a)
        spoken = [max(1, round(st.spoken)) for st in states]
        cut = [dataclasses.replace(inp, transcript=inp.transcript[:n], plan=inp.plan[:n])
               for inp, n in zip(inputs, spoken)]
        rec = collate_records([chunk_record(inp, st, text_horizon=self.text_horizon) for inp, st in zip(cut, before)])
        uncond = collate_records([chunk_record(inp, st, drop_prompt=True, drop_reference=True, drop_audio_condition=True,
                                               text_horizon=self.text_horizon) for inp, st in zip(cut, before)])
        out = self.dmd_terms(rec, uncond, z_v, z_a, g, train_student=True)
        out["loss"] = out["loss_dmd"] + out["loss_fake"]
        out["exit_step"] = torch.tensor(float(exit_step))
        out["spoken_fraction"] = torch.tensor(float(np.mean([n / len(i.transcript) for n, i in zip(spoken, inputs)])))
        if self.trace is not None:
            self.trace.append({"chunks": chunks, "window_record": rec, "spoken": spoken, "before": before})
        return out


def build_trainable(cfg: RolloutConfig, pipe, teacher) -> RolloutTrainable:
    s = teacher.cfg.stream
    guidance = tuple(cfg.guidance) if cfg.guidance is not None else (s.guidance_video, s.guidance_audio)
    K, W, G = cfg.rollout
    sink = pipe.cfg.stream.sink if cfg.sink is None else cfg.sink
    return RolloutTrainable(Joint(pipe.dit, pipe.orchestrator), Joint(teacher.dit, teacher.orchestrator), pipe.cfg,
                             guidance, chunks=K, window=W, grad_chunks=G, sink=sink, shift=cfg.shift,
                             t_range=tuple(cfg.t_range), fake_lr_scale=cfg.fake_lr_scale,
                             audio_weight=cfg.audio_weight)


def run_distill_rollout(cfg: RolloutConfig) -> dict:
    """Build the student (init), the teacher and the data; resume; fit; write <out_dir>/final. -> a summary."""
    from streamchar.pipeline import StreamChar
    from streamchar.train.engine import Trainer

    cfg.validate()
    distributed.init_distributed()
    pipe = build_pipeline(cfg)
    check_codecs(cfg, pipe)
    teacher = StreamChar.from_pretrained(cfg.teacher)
    teacher.dit.float(), teacher.orchestrator.float()
    model = build_trainable(cfg, pipe, teacher)
    K = model.K
    clips = RolloutClips(build_datasets(cfg, pipe, cfg.train_split, train=True), K)
    loader = RolloutLoader(clips, batch_size=cfg.batch_size, seed=cfg.train.seed)
    trainer = Trainer(model, rollout_step, loader, cfg.train, blocks=model.blocks)
    return {"stage": "rollout", **fit_student(trainer, cfg, pipe, sink=model.sink),
            "rollout": {"chunks": K, "window": model.window, "grad_chunks": model.grad_chunks, "sink": model.sink},
            "guidance": list(model.guidance)}


def rollout_step(model, batch, step):
    """The Trainer's loss_fn."""
    out = model(batch, step)
    return out["loss"], {k: float(v.detach()) for k, v in out.items() if k != "loss"}
