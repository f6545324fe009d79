import json
import math

import pytest

from streamchar.config import paper, tiny
from streamchar.cost import GPUS, cost_report, estimate, flops_check, format_report, gpu_spec, train_memory
from streamchar.errors import StreamCharError

PAPER = paper()


def test_flop_formulas_match_torch_flop_counter_on_tiny():
    for name, r in flops_check(tiny()).items():
        assert r["counted"] > 0, name
        assert abs(r["ratio"] - 1) < 0.10, (name, r)


def test_paper_report_memory_and_format():
    report = cost_report(PAPER, "h100", train_gpus=8)
    weights = report["memory"]["weights_gb"]
    assert weights["dit"] == pytest.approx(16.3, abs=0.1)  # 8.15 B params x 2 bytes
    assert weights["orchestrator"] == pytest.approx(6.2, abs=0.1)  # Qwen2.5-3B + projections + pointer
    assert weights["text_encoder"] == pytest.approx(11.4, abs=0.2)  # UMT5-XXL encoder, ~5.7 B
    assert report["chunk"]["steps"] == 4 and report["chunk"]["tokens"]["video"] == 9 * 16 * 16
    assert report["paper_h100"]["total_s"] == 1.34
    json.dumps(report)  # the dict is the JSON form
    text = format_report(report)
    assert "dit_steps" in text and "RTF" in text and "paper" in text


def test_rtf_finite_and_positive_for_every_gpu():
    for name in GPUS:
        r = estimate(PAPER, name)
        assert math.isfinite(r["rtf"]) and r["rtf"] > 0, name
        assert r["total_s"] == pytest.approx(sum(r["latency_s"].values()))
    # more bandwidth never makes a chunk slower
    assert estimate(PAPER, "h200")["total_s"] <= estimate(PAPER, "h100")["total_s"]


def test_fsdp_training_memory_per_gpu_falls_with_more_gpus():
    for stage in ("pretrain", "dmd", "rollout"):
        per_gpu = [train_memory(PAPER, gpus=n, stage=stage)["total_per_gpu_gb"] for n in (1, 2, 8, 64)]
        assert all(a > b for a, b in zip(per_gpu, per_gpu[1:])), (stage, per_gpu)
    # DMD holds a trainable critic and a frozen teacher on top of the generator
    assert train_memory(PAPER, 8, "dmd")["total_per_gpu_gb"] > train_memory(PAPER, 8, "pretrain")["total_per_gpu_gb"]
    # Stage II's activations grow with the chunks that keep their graph and the scored window
    acts = [train_memory(PAPER, 8, "rollout", window=w, grad_chunks=w)["per_gpu_gb"]["activations"] for w in (1, 2, 3)]
    assert acts[0] < acts[1] < acts[2] and acts[0] == pytest.approx(
        train_memory(PAPER, 8, "dmd")["per_gpu_gb"]["activations"])


def test_bad_inputs_error():
    with pytest.raises(StreamCharError, match="h100"):  # the message lists the known GPUs
        gpu_spec("v100")
    with pytest.raises(StreamCharError):
        estimate(PAPER, "h100", steps=0)
    with pytest.raises(StreamCharError):
        train_memory(PAPER, gpus=0)
