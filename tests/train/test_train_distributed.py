"""2 processes (torchrun, CPU/gloo) give the loss curve of 1 process with the same global batch."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torchrun_helper import torchrun
from train_toy import make_run, mse_loss

from streamchar.train import Trainer

SCRIPT = """
import json, sys
sys.path.insert(0, {toy_dir!r})
from torchrun_helper import torchrun
from train_toy import make_run, mse_loss
from streamchar.train import Trainer, destroy_distributed, init_distributed, is_main

strategy, out = sys.argv[1], sys.argv[2]
init_distributed()

def run(out_dir, resume_from=None):
    model, data, cfg = make_run(out_dir, batch_size=4, **{overrides!r}, strategy=strategy)
    trainer = Trainer(model, mse_loss, data, cfg, blocks=model.blocks)
    if resume_from:
        trainer.resume(resume_from)
    return trainer.fit()

losses = run(out + "/a")
resumed = run(out + "/b", resume_from=out + "/a/checkpoints/step_00000003")
if is_main():
    with open(out + "/result.json", "w") as f:
        json.dump({{"losses": losses, "resumed": resumed}}, f)
destroy_distributed()
"""
OVERRIDES = dict(steps=6, grad_accum=2, ckpt_every=3, ema_decay=0.9, warmup_steps=2, weight_decay=0.1,
                 activation_checkpointing=True)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path, strategy):
    script = tmp_path / "train2.py"
    script.write_text(SCRIPT.format(toy_dir=str(Path(__file__).parent), overrides=OVERRIDES))
    torchrun(str(script), strategy, str(tmp_path), timeout=120)
    result = json.loads((tmp_path / "result.json").read_text())

    model, data, cfg = make_run(tmp_path / "single", batch_size=8, **OVERRIDES)  # same global batch
    single = Trainer(model, mse_loss, data, cfg, blocks=model.blocks).fit()
    assert result["losses"] == pytest.approx(single, abs=1e-5)
    assert result["resumed"] == result["losses"][3:]  # resumed from step 3, 2 ranks

    for name in ("model.safetensors", "ema.safetensors"):
        two = load_file(tmp_path / "a" / "checkpoints" / "step_00000006" / name)
        one = load_file(tmp_path / "single" / "checkpoints" / "step_00000006" / name)
        assert set(two) == set(one) == set(model.state_dict())
        for key in one:
            torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=f"{name} {key}")
    final = tmp_path / "a" / "checkpoints" / "step_00000006"
    ema, weights = load_file(final / "ema.safetensors"), load_file(final / "model.safetensors")
    assert not torch.equal(ema["out.weight"], weights["out.weight"])  # the EMA is not a copy of the weights
