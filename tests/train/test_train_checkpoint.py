import os

import pytest
import torch
from safetensors.torch import load_file
from train_toy import make_run, noisy_loss

from streamchar.errors import StreamCharError
from streamchar.train import Trainer, latest_checkpoint
from streamchar.train import checkpoint as ckpt


def _run(out_dir, loss_fn=noisy_loss, model_seed=0, **kw):
    model, data, cfg = make_run(out_dir, model_seed=model_seed, steps=10, ckpt_every=5, ema_decay=0.8,
                                ema_start=2, warmup_steps=3, schedule="cosine", **kw)
    return Trainer(model, loss_fn, data, cfg, blocks=model.blocks), model


def test_resume_after_a_crash_reproduces_the_run_bitwise(tmp_path):
    # 8 examples / batch, 96 examples: 12 batches / epoch; grad_accum 2 -> an epoch boundary inside the run
    full, full_model = _run(tmp_path / "full", grad_accum=2)
    losses = full.fit()

    def crash_at_7(model, batch, step):
        if step == 7:
            raise KeyboardInterrupt
        return noisy_loss(model, batch, step)

    crashed, _ = _run(tmp_path / "crash", loss_fn=crash_at_7, grad_accum=2)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    assert latest_checkpoint(tmp_path / "crash").name == "step_00000005"

    resumed, model = _run(tmp_path / "crash", model_seed=99, grad_accum=2)  # other init: weights must load
    assert resumed.resume() == 5
    assert resumed.fit() == losses[5:]  # exact: same data order, same noise, same optimizer state
    for (name, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    for name in full.ema.shadow:
        assert torch.equal(full.ema.shadow[name], resumed.ema.shadow[name]), name
    ema_file = load_file(tmp_path / "crash" / "checkpoints" / "step_00000010" / "ema.safetensors")
    assert set(ema_file) == set(model.state_dict())
    assert torch.equal(ema_file["blocks.0.fc.weight"], full.ema.shadow["blocks.0.fc.weight"])


def test_interrupted_write_leaves_nothing_resume_would_pick(tmp_path, monkeypatch):
    trainer, _ = _run(tmp_path)
    real_save = torch.save

    def failing_save(obj, path, *a, **kw):
        if "step_00000010" in str(path) and str(path).endswith("state.pt"):
            raise OSError("disk full (simulated)")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        trainer.fit()
    root = tmp_path / "checkpoints"
    assert sorted(os.listdir(root)) == ["step_00000005"]  # no step_10, no temp folder left
    assert latest_checkpoint(tmp_path) == root / "step_00000005"

    # a hard kill mid-write leaves a temp dot-folder; a damaged step folder lacks files: both are skipped
    (root / ".tmp-step_00000015-x").mkdir()
    (root / ".tmp-step_00000015-x" / "model.safetensors").write_bytes(b"partial")
    (root / "step_00000012").mkdir()
    (root / "step_00000012" / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == root / "step_00000005"
    with pytest.raises(StreamCharError, match="step_00000012 is incomplete: missing optimizer.pt, state.pt"):
        trainer.resume(root / "step_00000012")


def test_corrupt_checkpoint_is_named(tmp_path):
    trainer, _ = _run(tmp_path)
    trainer.fit()
    last = latest_checkpoint(tmp_path)
    assert last.name == "step_00000010" and (last / "train_config.yaml").is_file()
    (last / "model.safetensors").write_bytes(b"\x00" * 100)  # truncated / overwritten
    fresh, _ = _run(tmp_path)
    with pytest.raises(StreamCharError, match=r"step_00000010 is corrupt: cannot read model.safetensors"):
        fresh.resume()


def test_keeps_the_last_k(tmp_path):
    model, data, cfg = make_run(tmp_path, steps=6, ckpt_every=1, keep_checkpoints=2)
    seen = []
    Trainer(model, noisy_loss, data, cfg, on_checkpoint=lambda path, step: seen.append((path.name, step))).fit()
    assert seen == [(f"step_{s:08d}", s) for s in range(1, 7)]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step_00000005", "step_00000006"]


def test_state_file_contents(tmp_path):
    model, data, cfg = make_run(tmp_path, steps=2, ckpt_every=2)
    Trainer(model, noisy_loss, data, cfg).fit()
    state = torch.load(tmp_path / "checkpoints" / "step_00000002" / "state.pt", weights_only=False)
    assert state["step"] == 2 and state["world_size"] == 1
    assert set(state["ranks"][0]["rng"]) >= {"python", "numpy", "torch"}
    assert state["ranks"][0]["data"] == {"epoch": 0, "batch": 2, "seed": 1, "world_size": 1}
    assert ckpt.missing_files(tmp_path / "checkpoints" / "step_00000002") == []
