import math

import pytest

from streamchar.errors import StreamCharError
from streamchar.train import TrainConfig, lr_at


@pytest.mark.parametrize("field, value, words", [
    ("steps", 0, "train.steps: must be >= 1"),
    ("grad_accum", 0, "train.grad_accum: must be >= 1"),
    ("lr", 0.0, "train.lr: must be > 0"),
    ("betas", (0.9, 1.0), "train.betas"),
    ("ema_decay", 1.0, "train.ema_decay"),
    ("precision", "fp16", "train.precision: unknown value 'fp16'"),
    ("strategy", "zero3", "train.strategy: unknown value 'zero3'"),
    ("schedule", "linear", "train.schedule"),
    ("warmup_steps", -1, "train.warmup_steps: must be >= 0"),
])
def test_validation_names_the_field(field, value, words):
    with pytest.raises(StreamCharError, match=words.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**{field: value}).validate()


def test_yaml_round_trip_and_unknown_key(tmp_path):
    cfg = TrainConfig(steps=7, betas=(0.8, 0.95), ema_decay=0.99, strategy="fsdp")
    cfg.to_yaml(tmp_path / "train.yaml")
    assert TrainConfig.from_yaml(tmp_path / "train.yaml") == cfg
    with pytest.raises(StreamCharError, match="train.stepz: unknown key"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(StreamCharError, match="train.grad_accum: expected an integer"):
        TrainConfig.from_dict({"grad_accum": "2"})


def test_warmup_then_constant():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, steps=10)
    assert [lr_at(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_at(0, TrainConfig(lr=3e-4)) == 3e-4  # no warm-up


def test_warmup_then_cosine():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=2, steps=12, schedule="cosine")
    assert [lr_at(s, cfg) for s in range(2)] == [0.5, 1.0]
    assert lr_at(2, cfg) == 1.0
    assert math.isclose(lr_at(7, cfg), 0.55)  # half way: (1 + 0.1) / 2
    assert math.isclose(lr_at(12, cfg), 0.1) and math.isclose(lr_at(50, cfg), 0.1)
