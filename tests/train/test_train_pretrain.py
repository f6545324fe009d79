"""Pretraining (train/pretrain.py, train/latent_data.py) on a fake latent folder: no espeak, no video codec."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamchar.config import tiny
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


def make_cfg(latents, out_dir, stage=2, **train):
    train = {"steps": 6, "lr": 1e-3, "log_every": 1, "precision": "fp32", "out_dir": str(out_dir), **train}
    return PretrainConfig.from_dict({"stage": stage, "data": str(latents), "train": train})


def setup(cfg):
    pipe = StreamChar.from_config(tiny(), seed=cfg.model_seed)
    return pipe, build_trainable(cfg, pipe), build_datasets(cfg, pipe, "train", train=True)


def dataset(latents, **kw):
    args = {"prompt_ids": [1, 2, 0], "null_prompt_ids": [0], "history_chunks": 2, **kw}
    return LatentChunks(latents, "train", **args)


# ---- samples -------------------------------------------------------------------------------------------

def test_samples_carry_the_inference_conditions(latents):
    ds = dataset(latents, cfg_dropout=0.0)
    assert len(ds) == 8
    seen_h = set()
    for i in range(len(ds)):
        for epoch in range(4):
            s = ds.sample(i, np.random.default_rng([0, epoch, i]))
            c, k = ds.items[i]
            clip = ds.clips[c]
            v = clip["video_latents"]
            assert s["chunk"] == k and torch.equal(s["video"], v[k]) and s["audio"].shape == (33, CA)
            assert torch.equal(s["reference"], clip["reference_latent"])
            if k == 0:
                assert s["motion"] is None and s["sink"] is None
            else:
                assert torch.equal(s["motion"], v[k - 1]) and torch.equal(s["sink"], v[0])
            h = s["history_chunks"]
            seen_h.add(h)
            assert 0 <= h <= min(k, 2)
            if h:
                assert torch.equal(s["history"], clip["audio_latents"][(k - h) * 33:k * 33])
            else:
                assert s["history"] is None
            ends = clip["pap_end"]
            offset = ends[k - h - 1] if k - h - 1 >= 0 else 0
            assert s["text_offset"] == min(offset, len(clip["token_ids"]) - 1)
            assert s["pap_target"].item() == ends[k] - s["text_offset"] >= 0
            assert s["text_ids"].tolist() == [1, 2, 0] + clip["token_ids"][s["text_offset"]:].tolist()
            assert s["transcript_start"] == 3 and len(s["text_ids"]) > 3
            if s["ref_audio"] is not None:
                assert s["ref_audio"].shape == (33, CA)
    assert seen_h == {0, 1, 2}


def test_samples_are_deterministic_by_index_and_epoch(latents):
    ds = dataset(latents, cfg_dropout=0.5)
    same = lambda a, b: all((a[k] is None and b[k] is None) or
                            (torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]) for k in a)
    assert all(same(ds[i], ds[i]) for i in range(len(ds)))
    batches = [list(LatentLoader(ds, seed=3)) + list(LatentLoader(ds, seed=3)) for _ in range(2)]
    assert all(same(a, b) for a, b in zip(*batches))
    loader = LatentLoader(ds, seed=3)
    epoch0, epoch1 = list(loader), list(loader)  # the same items, new draws
    assert not all(same(a, b) for a, b in zip(sorted(epoch0, key=lambda b: (b["key"], b["chunk"])),
                                             sorted(epoch1, key=lambda b: (b["key"], b["chunk"]))))
    # drops: the prompt leaves E_txt, the reference frame is zeroed
    dropped = [s for s in epoch0 + epoch1 if s["drop_prompt"]]
    assert dropped and all(s["transcript_start"] == 1 for s in dropped)
    assert all(not s["reference"].any() for s in epoch0 + epoch1 if s["drop_reference"])
    batch = collate([ds[0]])
    assert batch["audio"].shape == (1, 33, CA) and batch["pap_target"].shape == (1,)
    with pytest.raises(StreamCharError, match="one sample"):
        collate([ds[0], ds[1]])


def test_audio_only_samples_have_no_video(latents):
    ds = dataset(latents, audio_only=True)
    s = ds[3]
    assert all(s[k] is None for k in ("video", "reference", "motion", "sink"))
    assert s["audio"].shape == (33, CA)


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


def test_resume_gives_the_same_losses(latents, tmp_path):
    def run(out, steps, resume=False):
        cfg = make_cfg(latents, out, steps=steps, ckpt_every=3, ema_decay=0.9)
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
    cfg.sample_every, cfg.sample_seconds = 2, 1.375
    summary = run_pretrain(cfg)
    assert (tmp_path / "run" / "samples" / "step_00000002.mp4").stat().st_size > 0
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
        LatentChunks(latents, "test", prompt_ids=[0], null_prompt_ids=[0], history_chunks=1)
    cfg = make_cfg(latents, tmp_path)
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert PretrainConfig.from_yaml(path) == cfg
    root = Path(__file__).resolve().parents[2] / "configs"
    for name, stage in (("pretrain_tiny.yaml", 2), ("pretrain_paper.yaml", 2), ("pretrain_paper_stage1.yaml", 1)):
        assert PretrainConfig.from_yaml(root / name).stage == stage


def test_cli_train_pretrain(latents, tmp_path, capsys):
    from streamchar.cli import main

    code = main(["train", "pretrain", "--config", "configs/pretrain_tiny.yaml", "--data", str(latents),
                 "--out-dir", str(tmp_path / "run"), "--steps", "2", "--stage", "1"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "final" / "model_index.json").is_file()
    assert main(["train", "pretrain", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def _losses(out_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_pretraining_matches_one(latents, tmp_path, strategy):
    """torchrun x2 (gloo) on the real model: the loss curve of 1 process with the same global batch. The
    ranks draw different conditions (history, reference audio, dropout), so parameters unused on one rank
    only would break DDP / FSDP gradient reduction; the noise belongs to the sample (noise_seed)."""
    import os
    import socket
    import subprocess
    import sys

    def cfg(strategy, grad_accum):
        c = make_cfg(latents, tmp_path / strategy, steps=4, grad_accum=grad_accum, warmup_steps=1,
                     strategy=strategy, activation_checkpointing=True, val_every=0)
        c.to_yaml(tmp_path / f"{strategy}.yaml")
        return c

    run_pretrain(cfg("single", 2))  # 8 chunks: 2 per optimizer step, as 2 ranks x 1
    cfg(strategy, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "streamchar.cli", "train", "pretrain", "--config", str(tmp_path / f"{strategy}.yaml")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
    image, text = sample_inputs(pipe, build_datasets(cfg, pipe, "val", train=False))
    assert text == "hello there" and image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 0  # the decoded reference latent, not the gray fallback
    gray, sentence = sample_inputs(pipe, None)
    assert (gray == 128).all() and sentence
