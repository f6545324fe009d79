"""Pretraining (train/pretrain.py, train/latent_data.py) on a fake latent folder: no espeak, no video codec."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamchar.config import tiny
from streamchar.configs import CONFIGS
from streamchar.data.latents import write_random_latents
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.streaming.session import StreamSession
from streamchar.train import Trainer
from streamchar.train.latent_data import LatentChunks, LatentLoader, collate
from streamchar.train.pretrain import (
    PretrainConfig,
    build_datasets,
    build_trainable,
    make_val_fn,
    pretrain_loss,
    run_pretrain,
)

CHUNKS = {"train": [5, 3], "val": [2]}  # chunks per clip
CA = tiny().audio.latent_channels  # audio latent channels of the tiny preset


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return write_random_latents(tmp_path_factory.mktemp("lat") / "latents", tiny(), CHUNKS)


def make_cfg(latents, out_dir, stage=2, batch_size=1, **train):
    train = {"steps": 6, "lr": 1e-3, "log_every": 1, "precision": "fp32", "out_dir": str(out_dir), **train}
    return PretrainConfig.from_dict({"stage": stage, "data": str(latents), "batch_size": batch_size,
                                     "train": train})


def setup(cfg):
    pipe = StreamChar.from_config(tiny(), seed=cfg.model_seed)
    return pipe, build_trainable(cfg, pipe), build_datasets(cfg, pipe, "train", train=True)


def dataset(latents, **kw):
    ctx = torch.randn(4, tiny().text.dim, generator=torch.Generator().manual_seed(0))
    args = {"prompt": lambda clip: ([1, 2, 0], ctx), "null_prompt_ids": [0], "history_frames": 50, **kw}
    return LatentChunks(latents, "train", **args)


# ---- samples -------------------------------------------------------------------------------------------

def test_samples_carry_the_inference_conditions(latents):
    """Each sample is chunk k of a clip with what a stream of the clip has before chunk k: the last 50
    latents of audio as history (a window that ends inside a chunk), the transcript that left the window
    dropped, motion = chunk k-1, sink = chunk 0; a reference voice from another clip of the same voice."""
    ds = dataset(latents, uncond_prob=0.0, cond_dropout=0.0, ref_audio_prob=0.5, ref_audio_seconds=(0.5, 3.0))
    assert len(ds) == 8
    voices = 0
    for i in range(len(ds)):
        for epoch in range(4):
            s = ds.sample(i, np.random.default_rng([0, epoch, i]))
            r, o = s["record"], s["record"].orchestrator
            c, k = ds.items[i]
            clip = ds.clips[c]
            v, ends = clip["video_latents"], clip["pap_end"]
            assert s["chunk"] == k and torch.equal(s["video"], v[k]) and s["audio"].shape == (33, CA)
            assert torch.equal(r.reference[0], clip["reference_latent"])
            if k == 0:
                assert r.motion is None and r.sink is None and not r.has_motion[0]
            else:
                assert torch.equal(r.motion[0], v[k - 1]) and torch.equal(r.sink[0], v[0])
            start = max(0, 33 * k - 50)
            assert torch.equal(o.history[0], clip["audio_latents"][start:33 * k]) and o.hist_len[0] == 33 * k - start
            gone = [j for j in range(k) if 33 * (j + 1) <= start]
            offset = min(max([ends[j] for j in gone], default=0), len(clip["token_ids"]) - 1)
            assert r.text_offset[0] == offset
            assert s["pap_target"].item() == ends[k] - offset >= 0
            assert o.text_ids[0].tolist() == [1, 2, 0] + clip["token_ids"][offset:].tolist()
            assert o.transcript_start[0] == 3 and o.text_len[0] == o.text_ids.shape[1]
            if o.ref_len[0]:
                voices += 1
                assert 12 <= o.ref_len[0] <= 72  # 0.5 .. 3 s at 24 Hz
    assert voices > 0


def test_lookback_samples_start_the_transcript_near_the_spoken_end(latents):
    """Under a text lookback, E_txt starts L tokens before what chunks 0..k-1 spoke, L drawn per sample from
    the range (both ends reached), never before the window rule's offset; the pointer's target counts from there."""
    ds = dataset(latents, uncond_prob=0.0, cond_dropout=0.0, text_lookback=(1, 3))
    seen = set()
    for i in range(len(ds)):
        c, k = ds.items[i]
        ends, N = ds.clips[c]["pap_end"], len(ds.clips[c]["token_ids"])
        for epoch in range(12):
            s = ds.sample(i, np.random.default_rng([0, epoch, i]))
            offset = int(s["record"].text_offset[0])
            if k == 0:
                assert offset == 0
                continue
            spoken = max(ends[:k])
            L = spoken - offset
            assert 1 <= L <= 3 or offset == N - 1, (k, spoken, offset)
            seen.add(L)
            assert s["pap_target"].item() == ends[k] - offset
    assert seen == {1, 2, 3}
    with pytest.raises(StreamCharError, match="text_lookback"):
        dataset(latents, text_lookback=(3, 1))


def test_samples_are_deterministic_by_index_and_epoch(latents):
    ds = dataset(latents, uncond_prob=0.3, cond_dropout=0.3)

    def same(a, b):
        ra, rb = a["record"], b["record"]
        return (torch.equal(ra.orchestrator.text_ids, rb.orchestrator.text_ids) and
                torch.equal(ra.orchestrator.ref_audio, rb.orchestrator.ref_audio) and
                torch.equal(ra.context, rb.context) and torch.equal(ra.keep_audio_condition, rb.keep_audio_condition)
                and a["noise_seed"] == b["noise_seed"])

    assert all(same(ds[i], ds[i]) for i in range(len(ds)))
    order = lambda batches: sorted((b for b in batches), key=lambda b: (b["key"], b["chunk"]))
    runs = [list(LatentLoader(ds, seed=3)) + list(LatentLoader(ds, seed=3)) for _ in range(2)]
    assert all(same(a, b) for a, b in zip(*runs))
    loader = LatentLoader(ds, seed=3)
    epoch0, epoch1 = list(loader), list(loader)  # the same items, new draws
    assert not all(same(a, b) for a, b in zip(order(epoch0), order(epoch1)))
    # drops: the prompt leaves E_txt and the context, the reference frame is zeroed, c_a is switched off
    rows = [b["record"] for b in epoch0 + epoch1]
    dropped = [r for r in rows if r.orchestrator.transcript_start[0] == 1]
    assert dropped and all(not r.context.any() for r in dropped)
    assert any(not r.reference.any() for r in rows) and any(r.keep_audio_condition[0] == 0 for r in rows)
    batch = collate([ds[0], ds[1], ds[5]])
    assert batch["audio"].shape == (3, 33, CA) and batch["pap_target"].shape == (3,)
    assert batch["record"].batch_size == 3 and batch["video"].shape[0] == 3


def test_audio_only_samples_have_no_video(latents):
    ds = dataset(latents, audio_only=True)
    s = ds[3]
    assert s["video"] is None and s["record"].reference is None and s["record"].motion is None
    assert s["audio"].shape == (33, CA)


def test_a_batch_gives_the_losses_of_its_samples_one_by_one(latents, tmp_path):
    """B ragged samples (chunk 0 and later chunks, reference voices of different lengths, dropped
    conditions) in one micro-batch: the same losses and gradients as the B samples one at a time."""
    cfg = make_cfg(latents, tmp_path)
    cfg.ref_audio_prob, cfg.uncond_prob, cfg.cond_dropout, cfg.ref_audio_seconds = 1.0, 0.3, 0.3, (0.5, 4.0)
    _, model, ds = setup(cfg)
    samples = [ds.sample(i, np.random.default_rng([7, i])) for i in range(len(ds))]
    assert len({s["record"].orchestrator.text_len[0].item() for s in samples}) > 1
    assert {bool(s["record"].has_motion[0]) for s in samples} == {False, True}
    out = model(collate(samples))
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    alone = [model(collate([s])) for s in samples]
    (sum(o["loss"] for o in alone) / len(alone)).backward()
    for key in ("loss", "loss_video", "loss_audio", "loss_pap"):
        mean = sum(o[key].item() for o in alone) / len(alone)
        assert out[key].item() == pytest.approx(mean, rel=1e-5, abs=1e-6), key
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(grads[n], p.grad, rtol=1e-4, atol=1e-6), n


@pytest.mark.parametrize("stage", [1, 2])
def test_noise_draws_give_the_losses_of_each_draw_alone(latents, tmp_path, stage):
    """noise_draws = 3: the three (t, eps) draws of each sample share one orchestrator prefix pass and one
    condition pass, and give the mean of the flow losses each draw gives alone (as fixed draws)."""
    cfg = make_cfg(latents, tmp_path, stage=stage)
    cfg.noise_draws, cfg.ref_audio_prob, cfg.uncond_prob = 3, 1.0, 0.3
    _, model, ds = setup(cfg)
    batch = collate([ds.sample(i, np.random.default_rng([3, i])) for i in range(3)])
    t, eps_v, eps_a = model.draw_noise(batch)  # (3, B), ...
    assert t.shape == (3, 3) and len(set(t.flatten().tolist())) == 9  # every draw its own t
    out = model(batch)
    alone = [model(batch, t[d], None if eps_v is None else eps_v[d], eps_a[d]) for d in range(3)]
    for key in ("loss_flow", "loss_audio") + (("loss_video",) if stage == 2 else ()):
        assert out[key].item() == pytest.approx(sum(o[key].item() for o in alone) / 3, rel=1e-5), key
    assert out["loss_pap"].item() == pytest.approx(alone[0]["loss_pap"].item(), rel=1e-5)  # one clean tail


# ---- training ------------------------------------------------------------------------------------------

def test_stage2_val_loss_falls(latents, tmp_path):
    cfg = make_cfg(latents, tmp_path, steps=20, lr=2e-3, warmup_steps=3)
    pipe, model, ds = setup(cfg)
    val_ds = build_datasets(cfg, pipe, "val", train=False)
    val_fn = make_val_fn(val_ds, 2, stage=2)
    with torch.no_grad():
        before = val_fn(model.eval(), 0)
    trainer = Trainer(model, pretrain_loss, LatentLoader(ds, seed=0), cfg.train, blocks=model.blocks)
    losses = trainer.fit()
    with torch.no_grad():
        after = val_fn(model.eval(), 20)
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert after["loss_flow"] < 0.8 * before["loss_flow"], (before, after)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert {"train/loss_video", "train/loss_audio", "train/loss_pap", "train/pap_abs_err"} <= set(record)


def test_stage1_trains_only_the_audio_path(latents, tmp_path):
    cfg = make_cfg(latents, tmp_path, stage=1, steps=2)
    pipe, model, ds = setup(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = Trainer(model, pretrain_loss, LatentLoader(ds, seed=0), cfg.train)
    batch = next(iter(LatentLoader(ds, seed=0)))
    assert batch["video"] is None
    loss, logs = pretrain_loss(model, batch, 0)
    loss.backward()
    assert "loss_video" not in logs
    for name in ("dit.patch_embedding.weight", "dit.head.head.weight", "dit.blocks.0.ffn.0.weight",
                 "dit.blocks.0.self_attn.q.weight"):
        assert model.get_parameter(name).grad is None, name
    model.zero_grad(set_to_none=True)
    trainer.fit()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "dit.patch_embedding.weight" not in changed and "dit.head.head.weight" not in changed
    assert {"dit.audio_head.head.weight", "dit.blocks.0.audio_ffn.0.weight", "dit.audio_embedding.weight",
            "orchestrator.cond_proj.weight", "orchestrator.pap.q.weight"} <= changed
    assert all(n.startswith("orchestrator.") or "audio" in n for n in changed)


def test_stage1_all_trains_the_shared_dit_but_not_the_video_only_parts(latents, tmp_path):
    cfg = make_cfg(latents, tmp_path, stage=1, steps=2)
    cfg.stage1_dit = "all"
    pipe, model, ds = setup(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Trainer(model, pretrain_loss, LatentLoader(ds, seed=0), cfg.train).fit()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {"dit.blocks.0.self_attn.q.weight", "dit.blocks.0.modulation", "dit.time_embedding.0.weight",
            "dit.blocks.0.audio_ffn.0.weight"} <= changed
    # no video in stage 1: the video-only parts get no gradient and stay as they were
    assert not {"dit.patch_embedding.weight", "dit.head.head.weight", "dit.blocks.0.ffn.0.weight"} & changed
    assert not any(model.get_parameter(n).requires_grad for n in ("dit.patch_embedding.weight", "dit.head.head.weight",
                                                                   "dit.blocks.0.ffn.0.weight"))
    with pytest.raises(StreamCharError, match="config field stage1_dit"):
        PretrainConfig.from_dict({"data": "x", "stage": 1, "stage1_dit": "video"})


@pytest.mark.parametrize("stage, stage1_dit", [(2, "audio_path"), (1, "all")])
def test_resume_gives_the_same_losses(latents, tmp_path, stage, stage1_dit):
    def run(out, steps, resume=False):
        cfg = make_cfg(latents, out, stage=stage, steps=steps, ckpt_every=3, ema_decay=0.9)
        cfg.stage1_dit = stage1_dit
        _, model, ds = setup(cfg)
        trainer = Trainer(model, pretrain_loss, LatentLoader(ds, seed=0), cfg.train, blocks=model.blocks)
        if resume:
            assert trainer.resume() == 3
        return trainer.fit()

    full = run(tmp_path / "a", 6)
    first = run(tmp_path / "b", 3)
    rest = run(tmp_path / "b", 6, resume=True)
    assert first + rest == full


def test_activation_checkpointing_gives_the_same_loss(latents, tmp_path):
    losses = []
    for ac in (False, True):
        cfg = make_cfg(latents, tmp_path / str(ac), steps=2, activation_checkpointing=ac)
        _, model, ds = setup(cfg)
        losses.append(Trainer(model, pretrain_loss, LatentLoader(ds, seed=0), cfg.train, blocks=model.blocks).fit())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_run_pretrain_writes_a_loadable_pipeline(latents, tmp_path):
    cfg = make_cfg(latents, tmp_path / "run", steps=2, val_every=2, ckpt_every=2, ema_decay=0.5)
    cfg.sample_every, cfg.sample_seconds, cfg.export_every = 2, 1.375, 2
    summary = run_pretrain(cfg)
    assert (tmp_path / "run" / "samples" / "step_00000002.mp4").stat().st_size > 0
    latest, final = StreamChar.from_pretrained(tmp_path / "run" / "latest"), StreamChar.from_pretrained(summary["final"])
    for a, b in zip(latest.dit.state_dict().values(), final.dit.state_dict().values()):  # step 2 = the last step
        assert torch.equal(a, b)
    assert summary["steps"] == 2 and len(summary["losses"]) == 2 and "val/loss_flow" in summary
    assert (tmp_path / "run" / "pretrain_config.yaml").is_file()
    model = StreamChar.from_pretrained(summary["final"])
    session = StreamSession(model, text="hello there", ref_image=np.zeros((64, 64, 3), np.uint8), max_seconds=2.0)
    chunk = session.step()
    assert chunk.frames.shape == (33, 64, 64, 3)
    again = run_pretrain(cfg)  # everything done: resumes at the last step, trains nothing
    assert again["start_step"] == 2 and again["losses"] == []


def test_config_errors_name_the_field(latents, tmp_path):
    with pytest.raises(StreamCharError, match="config field bogus: unknown key"):
        PretrainConfig.from_dict({"data": "x", "bogus": 1})
    with pytest.raises(StreamCharError, match="config field train.bogus: unknown key"):
        PretrainConfig.from_dict({"data": "x", "train": {"bogus": 1}})
    with pytest.raises(StreamCharError, match="config field stage"):
        PretrainConfig.from_dict({"data": "x", "stage": 3})
    with pytest.raises(StreamCharError, match="no 'test' split"):
        dataset(latents).__class__(latents, "test", prompt=lambda c: ([0], torch.zeros(1, 4)), null_prompt_ids=[0],
                                   history_frames=1)
    cfg = make_cfg(latents, tmp_path)
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert PretrainConfig.from_yaml(path) == cfg
    root = CONFIGS
    for name, stage in (("pretrain_tiny.yaml", 2), ("pretrain_paper.yaml", 2), ("pretrain_paper_stage1.yaml", 1)):
        assert PretrainConfig.from_yaml(root / name).stage == stage


def test_cli_train_pretrain(latents, tmp_path, capsys):
    from streamchar.cli import main

    code = main(["train", "pretrain", "--config", "configs/pretrain_tiny.yaml", "--data", str(latents),
                 "--out-dir", str(tmp_path / "run"), "--steps", "2", "--stage", "1", "--set", "noise_draws=2",
                 "--set", "train.lr=1e-4"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "final" / "model_index.json").is_file()
    saved = PretrainConfig.from_yaml(tmp_path / "run" / "pretrain_config.yaml")
    assert (saved.noise_draws, saved.train.lr, saved.stage) == (2, 1e-4, 1)
    assert main(["train", "pretrain", "--data", str(latents), "--out-dir", str(tmp_path / "bad"),
                 "--set", "noise_draws=0"]) == 2
    assert "noise_draws" in capsys.readouterr().err
    assert main(["train", "pretrain", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "--config not found" in capsys.readouterr().err


def _losses(out_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_pretraining_matches_one(latents, tmp_path, strategy):
    """torchrun x2 (gloo) on the real model: the loss curve of 1 process with the same global batch. The
    ranks draw different conditions (history, reference audio, dropout), so parameters unused on one rank
    only would break DDP / FSDP gradient reduction; the noise belongs to the sample (noise_seed)."""
    from torchrun_helper import torchrun

    def cfg(strategy, batch_size):
        c = make_cfg(latents, tmp_path / strategy, batch_size=batch_size, steps=4, warmup_steps=1,
                     strategy=strategy, activation_checkpointing=True, val_every=0)
        c.to_yaml(tmp_path / f"{strategy}.yaml")
        return c

    run_pretrain(cfg("single", 2))  # 8 chunks: one batch of 2 per optimizer step, as 2 ranks x 1
    cfg(strategy, 1)
    torchrun("-m", "streamchar.cli", "train", "pretrain", "--config", str(tmp_path / f"{strategy}.yaml"))
    single, two = _losses(tmp_path / "single"), _losses(tmp_path / strategy)
    assert len(single) == len(two) == 4
    assert two == pytest.approx(single, rel=1e-5)
    assert two[-1] < two[0]
    assert (tmp_path / strategy / "final" / "model_index.json").is_file()


def test_latents_from_other_codecs_are_refused(latents, tmp_path):
    import shutil

    from streamchar.data.latents import codec_fingerprint
    from streamchar.train.pretrain import check_codecs

    folder = tmp_path / "lat"
    shutil.copytree(latents, folder)
    cfg = make_cfg(folder, tmp_path / "run")
    pipe = StreamChar.from_config(tiny(), seed=cfg.model_seed)
    index = json.loads((folder / "index.json").read_text())
    for fingerprint, ok in ((codec_fingerprint(pipe), True), (codec_fingerprint(StreamChar.from_config(tiny(), seed=1)), False)):
        (folder / "index.json").write_text(json.dumps({**index, "codec_sha256": fingerprint, "codecs": "ckpt/a"}))
        if ok:
            check_codecs(cfg, pipe)
        else:
            with pytest.raises(StreamCharError, match=r"encoded by other codecs \(ckpt/a\) than those of a fresh"):
                run_pretrain(cfg)


def test_sample_inputs_come_from_a_val_clip(latents, tmp_path):
    from streamchar.train.pretrain import sample_inputs

    cfg = make_cfg(latents, tmp_path)
    pipe = StreamChar.from_config(tiny(), seed=0)
    image, text, prompt = sample_inputs(cfg, pipe, build_datasets(cfg, pipe, "val", train=False))
    assert text == "hello there" and image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 0  # the decoded reference latent, not the gray fallback
    assert prompt.startswith("a cartoon person")  # the clip's character's caption (identity 0)
    gray, sentence, fixed = sample_inputs(cfg, pipe, None)
    assert (gray == 128).all() and sentence and fixed == cfg.prompt
