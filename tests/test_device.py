"""Device and dtype choices: the dtype `--device auto` streams in."""

import pytest
import torch

from streamchar import device as dev
from streamchar.errors import StreamCharError


def test_pick_device_names_a_bad_device():
    assert dev.pick_device("cpu").type == "cpu"
    with pytest.raises(StreamCharError, match="not a device"):
        dev.pick_device("gpu-please")


@pytest.mark.parametrize("has_bf16", [True, False])
def test_inference_dtype_on_cpu_follows_width_and_hardware(monkeypatch, has_bf16):
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: has_bf16)
    cpu = torch.device("cpu")
    assert dev.inference_dtype(cpu) == torch.float32  # no model width: the reference dtype
    assert dev.inference_dtype(cpu, dev.CPU_BF16_MIN_DIM - 1) == torch.float32
    wide = dev.inference_dtype(cpu, dev.CPU_BF16_MIN_DIM)
    assert wide == (torch.bfloat16 if has_bf16 else torch.float32)
    assert dev.inference_dtype(torch.device("cuda"), 8) == torch.bfloat16
