import json

import pytest
import torch
import torch.nn as nn
from train_toy import make_run, mse_loss

from streamchar.errors import StreamCharError
from streamchar.train import EMA, Trainer


def test_loss_falls_and_metrics_are_written(tmp_path):
    model, data, cfg = make_run(tmp_path, steps=40, warmup_steps=5, log_every=10)
    losses = Trainer(model, mse_loss, data, cfg, blocks=model.blocks).fit()
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert {"train/loss", "train/pred_loss", "train/lr", "train/grad_norm"} <= set(records[0])
    assert records[-1]["train/loss"] == losses[-1]


def test_grad_accumulation_matches_the_big_batch(tmp_path):
    runs = []
    for batch_size, accum in ((8, 1), (4, 2)):
        model, data, cfg = make_run(tmp_path / f"b{batch_size}", batch_size=batch_size, steps=4, grad_accum=accum)
        trainer = Trainer(model, mse_loss, data, cfg)
        runs.append((trainer.fit(), model))
    (loss_a, model_a), (loss_b, model_b) = runs
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    norms = [[json.loads(line)["train/grad_norm"] for line in (tmp_path / f"b{b}" / "metrics.jsonl").open()]
             for b in (8, 4)]
    assert norms[0] == pytest.approx(norms[1], abs=1e-6)  # same gradients (AdamW alone would hide a scale)
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert loss_a[0] != loss_a[1]  # the parameters did move


def test_activation_checkpointing_changes_nothing_but_memory(tmp_path):
    out = []
    for ac in (False, True):
        model, data, cfg = make_run(tmp_path / str(ac), steps=3, activation_checkpointing=ac)
        out.append(Trainer(model, mse_loss, data, cfg, blocks=model.blocks).fit())
        keys = list(model.state_dict())
    assert out[0] == out[1]
    assert "blocks.0.fc.weight" in keys and not any("checkpoint" in k for k in keys)


def test_ema_math():
    p = nn.Parameter(torch.zeros(3))
    module = nn.Module()
    module.p = p
    ema = EMA(module, decay=0.9, start=2)
    values = [1.0, 2.0, 3.0, 4.0]
    expected = 0.0
    for step, v in enumerate(values, start=1):
        p.data.fill_(v)
        ema.update(step)
        expected = v if step <= 2 else 0.9 * expected + 0.1 * v  # copies until `start`, then averages
        assert ema.shadow["p"].dtype == torch.float32
        torch.testing.assert_close(ema.shadow["p"], torch.full((3,), expected))
    assert expected == pytest.approx(0.9 * (0.9 * 2 + 0.1 * 3) + 0.1 * 4)
    with ema.swapped():
        assert p.data.tolist() == pytest.approx([expected] * 3)
    assert p.data.tolist() == [4.0] * 3


def test_validation_runs_every_val_every_steps(tmp_path):
    calls = []

    def val_fn(model, step):
        calls.append((step, model.training, torch.is_grad_enabled()))
        return {"mse": 1.0}

    model, data, cfg = make_run(tmp_path, steps=6, val_every=3)
    Trainer(model, mse_loss, data, cfg, val_fn=val_fn).fit()
    assert calls == [(3, False, False), (6, False, False)]
    assert model.training


def test_bad_inputs_are_named(tmp_path):
    model, data, cfg = make_run(tmp_path, steps=2)
    with pytest.raises(StreamCharError, match="has no state_dict"):
        Trainer(model, mse_loss, [1, 2, 3], cfg)
    with pytest.raises(StreamCharError, match="needs a process group"):
        Trainer(model, mse_loss, data, make_run(tmp_path, strategy="ddp")[2])

    def nan_loss(model, batch, step):
        return model(batch[0]).sum() * float("nan"), {}

    with pytest.raises(StreamCharError, match="loss is nan at step 1"):
        Trainer(model, nan_loss, data, cfg).fit()


def test_lr_scales_per_submodule(tmp_path):
    """A model's lr_scales() gives its parts their own learning rate (DMD: student and fake score); the
    first AdamW step moves each parameter by about lr x scale (Adam's first step is lr x sign(grad))."""
    from train_toy import ToyMLP

    class Scaled(ToyMLP):
        def lr_scales(self):
            return {"out": 0.2, "blocks.1": 0.5}

    model, data, cfg = make_run(tmp_path, steps=1, warmup_steps=0)
    scaled = Scaled()
    scaled.load_state_dict(model.state_dict())
    before = {n: p.detach().clone() for n, p in scaled.named_parameters()}
    trainer = Trainer(scaled, mse_loss, data, cfg)
    trainer.fit()
    lr = cfg.lr
    for name, p in scaled.named_parameters():
        scale = 0.2 if name.startswith("out.") else 0.5 if name.startswith("blocks.1.") else 1.0
        step = (p.detach() - before[name]).abs()
        moved = step[step > 0]
        assert moved.numel() and torch.allclose(moved, torch.full_like(moved, lr * scale), rtol=0.05), name
    assert sorted({g["lr_scale"] for g in trainer.optimizer.param_groups}) == [0.2, 0.5, 1.0]

    class Bad(ToyMLP):
        def lr_scales(self):
            return {"out": 0.0}

    with pytest.raises(StreamCharError, match="lr scale of 'out' must be > 0"):
        Trainer(Bad(), mse_loss, data, cfg)
