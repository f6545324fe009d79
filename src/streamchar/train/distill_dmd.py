"""Stage I, DMD step distillation (paper §4.2, §5.1): the few-step student from the teacher, on true-context chunks.

Three copies of the joint model (orchestrator + DiT), all starting from the teacher:

    student  the generator: the 4-step sampler of inference (diffusion/dmd.py `backward_simulation`: pure
             noise, stopped at a random exit step, gradient through that step only) -> z = (z_v, z_a)
    real     the frozen teacher with classifier-free guidance (the sampler's guidance pair, or `guidance`)
    fake     trained with the flow-matching loss on the student's samples (it tracks the student's
             distribution)

Per micro-batch (each sample one chunk of a clip, its record built as streaming builds it, train/latent_data.py):

    z = student(noise; record)                                   # both modalities together
    x_t = (1 - t) z + t eps,  t ~ U(t_range) (shifted)
    grad = (x0_fake(x_t) - x0_real(x_t)) / mean|z - x0_real(x_t)|  # per modality, per sample (DMD)
    loss = 0.5 |z - sg(z - grad)|^2  (student)  +  flow loss of the fake score on sg(z)  (fake)
         + pap_weight * pointer loss of the student's orchestrator on the true audio (keeps the end rule)

The two parts touch disjoint parameters, so one optimizer step updates both, the fake score at
`fake_lr_scale` x the student's lr (paper: 2e-6 and 4e-7). With `fake_updates` = n > 1 the student's part
is left out of n - 1 steps in n (DMD2 trains the fake score more often than the generator).

Conditions are the data's (no dropout): the student is a conditional sampler; guidance lives in the real
score only. The exported pipeline is the student, with `stream.sampler: student` in its config.

    cfg = DMDConfig.from_yaml(resolve_config("distill_dmd_tiny"))   # init: the teacher's pipeline folder
    summary = run_distill_dmd(cfg)                                   # <out_dir>/final: the student
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from streamchar.diffusion import flow
from streamchar.diffusion.dmd import backward_simulation, dmd_gradient, dmd_loss, randn_rows, renoise
from streamchar.diffusion.samplers import guided, student_timesteps
from streamchar.errors import StreamCharError
from streamchar.models.pap import pointer_loss
from streamchar.streaming.record import collate as collate_records
from streamchar.train import distributed
from streamchar.train.pretrain import BlockChain, PretrainConfig, build_datasets, build_pipeline, check_codecs


@dataclass
class DMDConfig(PretrainConfig):
    uncond_prob: float = 0.0  # the student learns the conditional chunk; guidance is the real score's
    cond_dropout: float = 0.0
    fake_lr_scale: float = 0.2  # the fake score's lr / the student's (paper §5.1: 4e-7 / 2e-6)
    fake_updates: int = 1  # fake-score updates per student update
    guidance: tuple[float, float] | None = None  # the real score's (video, audio); None: the teacher's stream.guidance
    t_range: tuple[float, float] = (0.02, 0.98)  # the re-noising t of the DMD gradient, before the shift

    def validate(self) -> "DMDConfig":
        super().validate()

        def bad(name: str, why: str):
            raise StreamCharError(f"config field {name}: {why}")

        if self.stage != 2:
            bad("stage", f"distillation trains the whole model on audio-video (2), got {self.stage}")
        if not self.init:
            bad("init", "must be the teacher's pipeline folder (the student and the fake score start from it)")
        if not self.fake_lr_scale > 0:
            bad("fake_lr_scale", f"must be > 0, got {self.fake_lr_scale}")
        if self.fake_updates < 1:
            bad("fake_updates", f"must be >= 1, got {self.fake_updates}")
        lo, hi = self.t_range
        if not 0 < lo < hi <= 1:
            bad("t_range", f"need 0 < min < max <= 1, got {self.t_range}")
        if self.fake_updates > 1 and self.train.strategy != "single":
            bad("fake_updates", "> 1 leaves the student out of some steps, which DDP / FSDP's gradient sync does "
                "not allow: use 1 under torchrun")
        if self.guidance is not None and not all(s > 0 for s in self.guidance):
            bad("guidance", f"must be two scales > 0 (video, audio), got {self.guidance}")
        return self


class Joint(nn.Module):
    """Orchestrator + DiT as one velocity field over a batch of chunk records."""

    def __init__(self, dit, orchestrator):
        super().__init__()
        self.dit, self.orchestrator = dit, orchestrator

    def conditions(self, rec):
        """The DiT's condition keys and values for `rec` (once per chunk, reused by every step)."""
        return self.dit.encode_conditions(rec.conditions(self.dit), rec.context)

    def velocity(self, rec, cache, x_v, x_a, t):
        c_a, _ = self.orchestrator.forward_full(rec.orchestrator, x_a, t)[:2]
        c_a = c_a * rec.keep_audio_condition.to(c_a.dtype)[:, None, None]  # (B, 33, dim)
        return self.dit(x_v, x_a, c_a, t, cache)


def guided_velocity(model: Joint, rec, uncond, x_v, x_a, t, scales):
    """The teacher's classifier-free guided velocity: [conditional | unconditional] rows in one DiT pass, as
    the teacher sampler runs it (streaming/session.py)."""
    rows = collate_records([rec, uncond])
    cache = model.conditions(rows)
    c_a, _ = model.orchestrator.forward_full(rec.orchestrator, x_a, t)[:2]
    c_a = c_a * rec.keep_audio_condition.to(c_a.dtype)[:, None, None]
    v = model.dit(torch.cat([x_v, x_v]), torch.cat([x_a, x_a]), torch.cat([c_a, torch.zeros_like(c_a)]),
                  torch.cat([t, t]), cache)
    return guided(v, scales)


def sample_generators(seeds: list[int], device) -> list[torch.Generator]:
    """One Generator per sample, from its seed (the data's draw: resumable)."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def exit_step_of(step: int, n: int, seed: int = 0) -> int:
    """The backward simulation's exit step at optimizer step `step`: uniform in [0, n), the same on every rank."""
    return int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed * 1_000_003 + step)))


class ScoreModels(nn.Module):
    """The student and the fake score (trained) and the teacher (frozen, kept out of the parameters and the
    checkpoints: it is a pipeline folder), with the DMD terms of a student sample. Shared by both stages."""

    def __init__(self, student: Joint, teacher: Joint, guidance: tuple[float, float], shift: float = 5.0,
                 t_range: tuple[float, float] = (0.02, 0.98), fake_lr_scale: float = 0.2, audio_weight: float = 1.0):
        super().__init__()
        self.student = student
        self.fake = copy.deepcopy(teacher)
        self.__dict__["teacher"] = copy.deepcopy(teacher).requires_grad_(False).eval()  # not a submodule
        for p in self.parameters():
            p.requires_grad_(True)
        self.fake.orchestrator.pap.requires_grad_(False)  # the fake score never points
        self.guidance, self.shift, self.t_range = tuple(guidance), shift, tuple(t_range)
        self.fake_lr_scale, self.audio_weight = fake_lr_scale, audio_weight

    def lr_scales(self) -> dict[str, float]:
        return {"fake": self.fake_lr_scale}

    @property
    def blocks(self) -> BlockChain:
        return BlockChain(self.student.dit.blocks, self.student.orchestrator.lm.layers,
                          self.fake.dit.blocks, self.fake.orchestrator.lm.layers)

    def _teacher_on(self, device) -> Joint:
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return self.teacher

    def dmd_terms(self, rec, uncond, z_v, z_a, g, train_student: bool) -> dict[str, torch.Tensor]:
        """The student's sample (z_v, z_a) (with its graph when `train_student`) scored under records `rec`
        (conditional) and `uncond` (the guidance pass): loss_dmd (student), loss_fake (fake score).
        g: one Generator per sample (its draws do not depend on the batch it is in)."""
        dev = z_a.device
        u = torch.cat([torch.rand(1, generator=r, device=dev) for r in g])
        t = flow.shift_sigma(u * (self.t_range[1] - self.t_range[0]) + self.t_range[0], self.shift)
        xt_v, _ = renoise(z_v.detach(), t, g)
        xt_a, _ = renoise(z_a.detach(), t, g)
        out = {}
        with torch.no_grad():
            vr_v, vr_a = guided_velocity(self._teacher_on(dev), rec, uncond, xt_v, xt_a, t, self.guidance)
            vf_v, vf_a = self.fake.velocity(rec, self.fake.conditions(rec), xt_v, xt_a, t)
            real_v, real_a = flow.predict_x0(xt_v, vr_v.to(xt_v.dtype), t), flow.predict_x0(xt_a, vr_a.to(xt_a.dtype), t)
            fake_v, fake_a = flow.predict_x0(xt_v, vf_v.to(xt_v.dtype), t), flow.predict_x0(xt_a, vf_a.to(xt_a.dtype), t)
            grad_v, grad_a = dmd_gradient(z_v, real_v, fake_v), dmd_gradient(z_a, real_a, fake_a)
            out["dmd_grad_norm_video"] = grad_v.float().pow(2).mean().sqrt()
            out["dmd_grad_norm_audio"] = grad_a.float().pow(2).mean().sqrt()
        if train_student:
            out["loss_dmd"] = dmd_loss(z_v, grad_v) + self.audio_weight * dmd_loss(z_a, grad_a)

        # The fake score learns the student's distribution: flow matching on its (detached) samples.
        t2 = torch.cat([flow.sample_t(1, self.shift, generator=r, device=dev) for r in g])
        e_v, e_a = randn_rows(z_v.shape, g, dev, z_v.dtype), randn_rows(z_a.shape, g, dev, z_a.dtype)
        s_v, s_a = z_v.detach(), z_a.detach()
        v_v, v_a = self.fake.velocity(rec, self.fake.conditions(rec), flow.noisy(s_v, e_v, t2),
                                      flow.noisy(s_a, e_a, t2), t2)
        out["loss_fake"], _, _ = flow.flow_loss(v_v, v_a, s_v, s_a, e_v, e_a, self.audio_weight)
        return out


class DMDTrainable(ScoreModels):
    """Stage I: the student's sample of one chunk from its true context, by backward simulation."""

    def __init__(self, dit, orchestrator, timesteps: list[float], guidance: tuple[float, float], shift: float = 5.0,
                 t_range: tuple[float, float] = (0.02, 0.98), fake_lr_scale: float = 0.2, fake_updates: int = 1,
                 pap_weight: float = 0.1, audio_weight: float = 1.0):
        student = Joint(dit, orchestrator)
        super().__init__(student, student, guidance, shift, t_range, fake_lr_scale, audio_weight)
        self.timesteps, self.fake_updates, self.pap_weight = list(timesteps), fake_updates, pap_weight

    def forward(self, batch: dict, step: int = 0) -> dict[str, torch.Tensor]:
        rec, uncond, z_a = batch["record"], batch["uncond_record"], batch["audio"]
        B, dev = z_a.shape[0], z_a.device
        g = sample_generators(batch["noise_seed"], dev)
        train_student = step % self.fake_updates == 0

        # The student's sample, as its 4-step sampler makes it, stopped at a random exit step (one per step,
        # the same on every rank).
        x_v = randn_rows(batch["video"].shape, g, dev, batch["video"].dtype)
        x_a = randn_rows(z_a.shape, g, dev, z_a.dtype)
        exit_step = exit_step_of(step, len(self.timesteps))
        with torch.set_grad_enabled(train_student and torch.is_grad_enabled()):
            cache = self.student.conditions(rec)
            z_v, z_a_gen = backward_simulation(lambda v, a, t: self.student.velocity(rec, cache, v, a, t),
                                               x_v, x_a, self.timesteps, exit_step, generator=g)
        out = self.dmd_terms(rec, uncond, z_v, z_a_gen, g, train_student)
        loss = out["loss_fake"]
        if train_student:
            # the student's pointer on the true audio at t = 0, as inference reads it
            _, hidden0, transcript, tmask = self.student.orchestrator.forward_full(
                rec.orchestrator, z_a, torch.zeros(B, device=dev))
            out["loss_pap"] = pointer_loss(self.student.orchestrator.pap(hidden0, transcript, tmask),
                                           batch["pap_target"])
            loss = loss + out["loss_dmd"] + self.pap_weight * out["loss_pap"]
        out["loss"] = loss
        out["exit_step"] = torch.tensor(float(exit_step))
        return out


def dmd_step(model, batch, step):
    """The Trainer's loss_fn."""
    out = model(batch, step)
    return out["loss"], {k: float(v.detach()) for k, v in out.items() if k != "loss"}


def build_trainable(cfg: DMDConfig, pipe) -> DMDTrainable:
    s = pipe.cfg.stream
    guidance = tuple(cfg.guidance) if cfg.guidance is not None else (s.guidance_video, s.guidance_audio)
    return DMDTrainable(pipe.dit, pipe.orchestrator, student_timesteps(s.student_timesteps, s.shift), guidance,
                        shift=cfg.shift, t_range=tuple(cfg.t_range), fake_lr_scale=cfg.fake_lr_scale,
                        fake_updates=cfg.fake_updates, pap_weight=cfg.pap_weight, audio_weight=cfg.audio_weight)


def make_val_fn(dataset, n: int, seed: int = 1234, batch_size: int = 8):
    """val_fn(model, step): the DMD parts on `n` fixed val samples with fixed noise (the generator's seeds are
    the samples'): loss_dmd, loss_fake, and the DMD gradient's size per modality."""
    import numpy as np

    from streamchar.train.engine import to_device
    from streamchar.train.latent_data import collate

    picks = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int)
    samples = [dataset.sample(int(i), np.random.default_rng([seed, int(i)])) for i in picks]
    batches = [collate(samples[i:i + batch_size]) for i in range(0, len(samples), batch_size)]

    def val_fn(model, step):
        dev = next(model.parameters()).device
        sums, count = {}, 0
        for batch in batches:
            out = model(to_device(batch, dev), 0)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(batch["key"])
            count += len(batch["key"])
        return {k: v / count for k, v in sums.items() if k != "exit_step"}

    return val_fn


def run_distill_dmd(cfg: DMDConfig) -> dict:
    """Build the three models and the data; resume; fit; write <out_dir>/final (the student). -> a summary."""
    from streamchar.train.engine import Trainer
    from streamchar.train.latent_data import LatentLoader

    cfg.validate()
    distributed.init_distributed()
    pipe = build_pipeline(cfg)
    check_codecs(cfg, pipe)
    model = build_trainable(cfg, pipe)
    train_ds = build_datasets(cfg, pipe, cfg.train_split, train=True)
    train_ds.uncond_record = True
    loader = LatentLoader(train_ds, batch_size=cfg.batch_size, seed=cfg.train.seed, group_by_length=cfg.group_by_length)
    val_fn = None
    if cfg.train.val_every and cfg.val_samples:
        val_ds = build_datasets(cfg, pipe, cfg.val_split, train=False)
        val_ds.uncond_record = True
        val_fn = make_val_fn(val_ds, cfg.val_samples, batch_size=cfg.batch_size)
    trainer = Trainer(model, dmd_step, loader, cfg.train, blocks=model.blocks, val_fn=val_fn)
    return {"stage": "dmd", **fit_student(trainer, cfg, pipe), "guidance": list(model.guidance),
            "ema": trainer.ema is not None}


def fit_student(trainer, cfg, pipe, **stream) -> dict:
    """Resume, fit, and export the student to <out_dir>/final with `stream.sampler: student` (and the
    `stream` settings given) in its config. Both distillation stages end here. -> the run's summary."""
    import dataclasses

    from streamchar.train.pretrain import export_pipeline

    start = trainer.resume()
    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        cfg.to_yaml(out_dir / "distill_config.yaml")
    losses = trainer.fit()
    student_cfg = copy.deepcopy(pipe.cfg)
    student_cfg.stream = dataclasses.replace(student_cfg.stream, sampler="student", **stream)
    final = out_dir / "final"
    export_pipeline(trainer, pipe, final, prefix="student.", model_cfg=student_cfg)
    return {"start_step": start, "steps": trainer.step, "losses": losses, "final": str(final)}
