"""Stage II, online-rollout distillation (train/distill_rollout.py) on random latents at `tiny`."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from streamchar.config import tiny
from streamchar.data.latents import write_random_latents
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.train.distill_dmd import Joint
from streamchar.train.distill_rollout import (RolloutClips, RolloutConfig, RolloutTrainable, collate,
                                              run_distill_rollout)
from streamchar.train.pretrain import build_datasets

pytestmark = pytest.mark.usefixtures("one_thread")
K = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout")
    StreamChar.from_config(tiny(), seed=0).save_pretrained(root / "teacher")
    StreamChar.from_config(tiny(), seed=1).save_pretrained(root / "student")  # "Stage I's": not the teacher
    latents = write_random_latents(root / "latents", tiny(), {"train": [K, K + 1, 2], "val": [K]})
    return root, latents


def config(root, latents, out, **kw):
    kw.setdefault("chunks", K)
    c = RolloutConfig(init=str(root / "student"), teacher=str(root / "teacher"), data=str(latents), batch_size=2,
                      guidance=(2.0, 2.0), val_samples=0, **kw)
    c.train.out_dir, c.train.ckpt_every, c.train.warmup_steps, c.train.lr, c.train.ema_decay = str(out), 2, 0, 1e-3, None
    c.train.val_every = 0
    return c.validate()


def model_and_batch(root, latents, **kw):
    cfg = config(root, latents, root / "unused", **kw)
    student, teacher = StreamChar.from_pretrained(root / "student"), StreamChar.from_pretrained(root / "teacher")
    K_, W, G = cfg.rollout
    sink = student.cfg.stream.sink if cfg.sink is None else cfg.sink
    model = RolloutTrainable(Joint(student.dit, student.orchestrator), Joint(teacher.dit, teacher.orchestrator),
                             student.cfg, cfg.guidance, chunks=K_, window=W, grad_chunks=G, sink=sink)
    clips = RolloutClips(build_datasets(cfg, student, "train", train=True), K_)
    batch = collate([clips.sample(i, np.random.default_rng(i)) for i in range(2)])
    model.trace = []
    return model, batch


def test_the_rollout_feeds_its_own_chunks_and_keeps_the_sink(setup):
    """Chunk k's video latents are chunk k+1's motion frames, chunk 0's are every later chunk's sink, and the
    history holds the generated audio: checked on the recorded tensors."""
    root, latents = setup
    model, batch = model_and_batch(*setup)
    model(batch)
    chunks = model.trace[0]["chunks"]
    assert len(chunks) == K and chunks[0][0].motion is None
    for k in range(1, K):
        rec, z_v_prev, z_a_prev = chunks[k][0], chunks[k - 1][1], chunks[k - 1][2]
        assert torch.equal(rec.motion, z_v_prev) and torch.equal(rec.sink, chunks[0][1])
        hist = rec.orchestrator.history  # (B, T, C_a): the generated audio so far (within 15 s)
        assert torch.equal(hist[:, -z_a_prev.shape[1]:], z_a_prev)


def test_the_window_is_scored_on_the_pointers_prefix(setup):
    """The scores' record: the state before the window (3 chunks back), and E_txt ends exactly where the
    pointer says the window's speech ended."""
    model, batch = model_and_batch(*setup)
    out = model(batch)
    tr = model.trace[0]
    rec, spoken = tr["window_record"], tr["spoken"]
    first = tr["chunks"][K - 3][0]  # the record the student's first window chunk was generated under
    assert torch.equal(rec.motion, first.motion) and torch.equal(rec.orchestrator.history, first.orchestrator.history)
    for b, inp in enumerate(batch["inputs"]):
        o = rec.orchestrator
        ids = o.text_ids[b, int(o.transcript_start[b]):int(o.text_len[b])]
        offset = int(rec.text_offset[b])
        assert ids.tolist() == inp.transcript[offset:spoken[b]].tolist()
    assert 0 < out["spoken_fraction"] <= 1


@pytest.mark.parametrize("grad_chunks", [1, 3])
def test_gradient_reaches_the_configured_chunks_only(setup, grad_chunks):
    model, batch = model_and_batch(*setup, grad_chunks=grad_chunks)
    model(batch)["loss"].backward()
    chunks = model.trace[0]["chunks"]
    assert [c[1].requires_grad for c in chunks] == [k >= K - grad_chunks for k in range(K)]
    assert all(p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.dit.parameters())


def test_ablation_switches_change_what_they_say(setup):
    """--no-sink: no record has a sink, the rest of the rollout is the same draw (chunk 0 is identical);
    --one-chunk: one isolated chunk, scored alone."""
    with_sink, batch = model_and_batch(*setup)
    without, _ = model_and_batch(*setup, sink=False)
    with torch.no_grad():
        with_sink(batch), without(batch)
    a, b = with_sink.trace[0]["chunks"], without.trace[0]["chunks"]
    assert torch.equal(a[0][1], b[0][1]) and torch.equal(a[0][2], b[0][2])  # chunk 0 needs no sink
    assert all(c[0].sink is None for c in b) and all(c[0].sink is not None for c in a[1:])
    one, batch = model_and_batch(*setup, one_chunk=True)
    with torch.no_grad():
        one(batch)
    assert len(one.trace[0]["chunks"]) == 1 and one.trace[0]["window_record"].motion is None


def test_run_resumes_exactly_and_exports_the_student(setup, tmp_path):
    root, latents = setup
    a_cfg = config(root, latents, tmp_path / "a")
    a_cfg.train.steps = 4
    straight = run_distill_rollout(a_cfg)
    b2, b4 = config(root, latents, tmp_path / "b"), config(root, latents, tmp_path / "b")
    b2.train.steps, b4.train.steps = 2, 4
    run_distill_rollout(b2)
    resumed = run_distill_rollout(b4)
    assert resumed["start_step"] == 2 and straight["losses"][2:] == pytest.approx(resumed["losses"], rel=1e-5)
    a = load_file(str(tmp_path / "a" / "final" / "dit" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "final" / "dit" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    student = StreamChar.from_pretrained(tmp_path / "b" / "final")
    assert student.cfg.stream.sampler == "student" and student.cfg.stream.sink


def test_config_errors(setup):
    root, latents = setup
    with pytest.raises(StreamCharError, match="teacher"):
        RolloutConfig(init="s", data="x").validate()
    with pytest.raises(StreamCharError, match="window"):
        RolloutConfig(init="s", teacher="t", data="x", chunks=2, window=3).validate()
    with pytest.raises(StreamCharError, match="grad_chunks"):
        RolloutConfig(init="s", teacher="t", data="x", chunks=2, window=1, grad_chunks=5).validate()
    cfg = config(root, latents, root / "x", chunks=9)
    with pytest.raises(StreamCharError, match="no clip"):
        RolloutClips(build_datasets(cfg, StreamChar.from_pretrained(root / "student"), "train", train=True), 9)
    assert dataclasses.replace(cfg, one_chunk=True).rollout == (1, 1, 1)


def test_cli_train_distill_rollout(setup, tmp_path, capsys):
    from streamchar.cli import main

    root = setup[0]
    latents = write_random_latents(tmp_path / "latents", tiny(), {"train": [K] * 4})  # the config's batch of 4
    code = main(["train", "distill-rollout", "--init", str(root / "student"), "--teacher", str(root / "teacher"),
                 "--data", str(latents), "--out-dir", str(tmp_path / "run"), "--steps", "1", "--no-sink",
                 "--config", "distill_rollout_tiny"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["rollout"]["sink"] is False and report["steps"] == 1
    assert StreamChar.from_pretrained(tmp_path / "run" / "final").cfg.stream.sink is False


TORCHRUN = """
import json, sys
from streamchar.train import destroy_distributed, init_distributed, is_main
from streamchar.train.distill_rollout import RolloutConfig, run_distill_rollout

init_distributed()
student, teacher, latents, out, batch, strategy = sys.argv[1:7]
c = RolloutConfig(init=student, teacher=teacher, data=latents, batch_size=int(batch), guidance=(2.0, 2.0),
                  val_samples=0, ref_audio_prob=0.0, chunks=2, window=2)
c.train.steps, c.train.out_dir, c.train.ckpt_every, c.train.warmup_steps, c.train.lr = 2, out, 0, 0, 1e-3
c.train.ema_decay, c.train.val_every, c.train.strategy, c.train.seed = None, 0, strategy, 0
report = run_distill_rollout(c.validate())
if is_main():
    with open(out + "/losses.json", "w") as f:
        json.dump(report["losses"], f)
destroy_distributed()
"""


def test_two_processes_match_one(setup, tmp_path):
    """Under torchrun (gloo, DDP), 2 ranks with a micro-batch of 1 give the loss curve of 1 process with 2: each
    rollout's draws are its own sample's, and the exit step is the step's."""
    from torchrun_helper import alone, torchrun

    root, latents = setup
    script = tmp_path / "rollout2.py"
    script.write_text(TORCHRUN)
    args = [str(root / "student"), str(root / "teacher"), str(latents)]
    torchrun(str(script), *args, str(tmp_path / "two"), "1", "ddp")
    alone(str(script), *args, str(tmp_path / "one"), "2", "single")
    a = json.loads((tmp_path / "two" / "losses.json").read_text())
    b = json.loads((tmp_path / "one" / "losses.json").read_text())
    assert len(a) == 2 and a == pytest.approx(b, rel=1e-4, abs=1e-5)
