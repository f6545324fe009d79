"""Stage I, DMD step distillation (train/distill_dmd.py) on random latents at `tiny`."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from streamchar.config import tiny
from streamchar.data.latents import write_random_latents
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.streaming.session import prompt_context, prompt_ids
from streamchar.diffusion.samplers import student_timesteps
from streamchar.train.distill_dmd import DMDConfig, DMDTrainable, run_distill_dmd
from streamchar.train.latent_data import LatentChunks, collate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dmd")
    pipe = StreamChar.from_config(tiny(), seed=0)
    pipe.save_pretrained(root / "teacher")
    latents = write_random_latents(root / "latents", tiny(), {"train": [3, 2], "val": [2]})
    return root, pipe, latents


def batch_of(pipe, latents, n=2):
    tok = pipe.tokenizer
    ds = LatentChunks(latents, "train", prompt=lambda c: (prompt_ids(tok, "a person"), prompt_context(pipe, "a person")[0]),
                      null_prompt_ids=prompt_ids(tok, ""), history_frames=pipe.cfg.history_frames,
                      ref_audio_prob=0.0, train=False, uncond_record=True)
    return collate([ds.sample(i, np.random.default_rng(i)) for i in range(n)])


def trainable(pipe, guidance, **kw):
    s = pipe.cfg.stream
    fresh = StreamChar.from_config(tiny(), seed=0)  # the same weights as `pipe`, its own modules
    return DMDTrainable(fresh.dit, fresh.orchestrator, student_timesteps(s.student_timesteps, s.shift), guidance, **kw)


def test_the_dmd_gradient_vanishes_when_fake_equals_real(setup):
    """At the start the fake score is the teacher; without guidance the real score is the teacher too, so the
    DMD gradient is ~0; with guidance the real score differs and the gradient does not vanish."""
    _, pipe, latents = setup
    batch = batch_of(pipe, latents)
    with torch.no_grad():
        same = trainable(pipe, (1.0, 1.0))(batch)
        guided = trainable(pipe, (3.0, 3.0))(batch)
    assert same["dmd_grad_norm_video"] < 1e-4 and same["dmd_grad_norm_audio"] < 1e-4
    assert guided["dmd_grad_norm_video"] > 1e-2 and guided["dmd_grad_norm_audio"] > 1e-2


def test_gradients_reach_what_each_part_trains(setup):
    """loss_dmd moves the student only, loss_fake the fake score only; the teacher gets nothing; with
    fake_updates = 2 the student sits out every other step (no gradient at all)."""
    _, pipe, latents = setup
    batch = batch_of(pipe, latents)
    model = trainable(pipe, (3.0, 3.0), fake_updates=2)
    model(batch, step=0)["loss"].backward()
    student = [p.grad for p in model.student.dit.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in student)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fake.dit.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert set(dict(model.named_parameters())) == {n for n, _ in model.named_parameters()
                                                   if n.startswith(("student.", "fake."))}
    model.zero_grad(set_to_none=True)
    out = model(batch, step=1)
    assert "loss_dmd" not in out
    out["loss"].backward()
    assert all(p.grad is None for p in model.student.parameters())
    assert any(p.grad is not None for p in model.fake.parameters())


def test_the_fake_score_learns_the_students_samples(setup):
    """Trained alone on the (fixed) student's samples, the fake score's flow loss falls."""
    _, pipe, latents = setup
    batch = batch_of(pipe, latents, n=3)
    model = trainable(pipe, (1.0, 1.0))
    opt = torch.optim.Adam(model.fake.parameters(), lr=1e-3)
    torch.manual_seed(0)
    with torch.no_grad():
        before = np.mean([model(batch, step=1)["loss_fake"].item() for _ in range(3)])
    model.fake_updates = 10 ** 9  # the student never trains: only the fake score's part
    for step in range(1, 41):
        opt.zero_grad()
        model(batch, step=step)["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = np.mean([model(batch, step=1)["loss_fake"].item() for _ in range(3)])
    assert after < 0.8 * before, (before, after)


def test_run_resumes_exactly_and_exports_the_student(setup, tmp_path):
    root, pipe, latents = setup

    def cfg(out, steps):
        c = DMDConfig(init=str(root / "teacher"), data=str(latents), batch_size=2, guidance=(2.0, 2.0),
                      val_samples=2)
        c.train.steps, c.train.out_dir, c.train.ckpt_every, c.train.val_every, c.train.warmup_steps = \
            steps, str(out), 2, 2, 0
        c.train.lr, c.train.ema_decay = 1e-3, None
        return c.validate()

    straight = run_distill_dmd(cfg(tmp_path / "a", 4))
    run_distill_dmd(cfg(tmp_path / "b", 2))
    resumed = run_distill_dmd(cfg(tmp_path / "b", 4))
    assert resumed["start_step"] == 2 and straight["losses"][2:] == pytest.approx(resumed["losses"], rel=1e-5)
    a = load_file(str(tmp_path / "a" / "final" / "dit" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "final" / "dit" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    student = StreamChar.from_pretrained(tmp_path / "a" / "final")
    assert student.cfg.stream.sampler == "student"
    moved = [k for k, v in student.dit.state_dict().items() if not torch.equal(v, pipe.dit.state_dict()[k])]
    assert moved  # the student is not the teacher any more


def test_config_errors():
    with pytest.raises(StreamCharError, match="init"):
        DMDConfig(data="x").validate()
    with pytest.raises(StreamCharError, match="stage"):
        DMDConfig(data="x", init="t", stage=1).validate()
    c = DMDConfig(data="x", init="t", fake_updates=2)
    c.train.strategy = "ddp"
    with pytest.raises(StreamCharError, match="fake_updates"):
        c.validate()
    with pytest.raises(StreamCharError, match="t_range"):
        DMDConfig(data="x", init="t", t_range=(0.5, 0.2)).validate()


def test_cli_train_distill_dmd(setup, tmp_path, capsys):
    from streamchar.cli import main

    root = setup[0]
    latents = write_random_latents(tmp_path / "latents", tiny(), {"train": [5, 4], "val": [2]})  # a batch of 8
    code = main(["train", "distill-dmd", "--init", str(root / "teacher"), "--data", str(latents),
                 "--out-dir", str(tmp_path / "run"), "--steps", "1"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 1 and report["stage"] == "dmd"
    assert (tmp_path / "run" / "final" / "model_index.json").is_file()


TORCHRUN = """
import json, sys
from streamchar.train import destroy_distributed, init_distributed, is_main
from streamchar.train.distill_dmd import DMDConfig, run_distill_dmd

init_distributed()
teacher, latents, out, batch, strategy = sys.argv[1:6]
c = DMDConfig(init=teacher, data=latents, batch_size=int(batch), guidance=(2.0, 2.0), val_samples=0,
              ref_audio_prob=0.0)
c.train.steps, c.train.out_dir, c.train.ckpt_every, c.train.warmup_steps, c.train.lr = 3, out, 0, 0, 1e-3
c.train.ema_decay, c.train.val_every, c.train.strategy, c.train.seed = None, 0, strategy, 0
report = run_distill_dmd(c.validate())
if is_main():
    with open(out + "/losses.json", "w") as f:
        json.dump(report["losses"], f)
destroy_distributed()
"""


def test_two_processes_match_one(setup, tmp_path):
    """Under torchrun (gloo), 2 ranks with a micro-batch of 1 give the loss curve of 1 process with 2: each
    sample's draws are its own, and the exit step is the step's."""
    from torchrun_helper import alone, torchrun

    root, _, latents = setup
    script = tmp_path / "dmd2.py"
    script.write_text(TORCHRUN)
    torchrun(str(script), str(root / "teacher"), str(latents), str(tmp_path / "two"), "1", "ddp")
    alone(str(script), str(root / "teacher"), str(latents), str(tmp_path / "one"), "2", "single")
    a = json.loads((tmp_path / "two" / "losses.json").read_text())
    b = json.loads((tmp_path / "one" / "losses.json").read_text())
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
