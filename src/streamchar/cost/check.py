"""Checking the per-pass FLOP formulas against torch's FLOP counter (FlopCounterMode) on a small config."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from streamchar.config import StreamCharConfig
from streamchar.cost.flops import (
    chunk_tokens,
    dit_condition_pass,
    dit_step_pass,
    orchestrator_prefix_pass,
    orchestrator_step_pass,
)


def flops_check(cfg: StreamCharConfig, **tokens) -> dict:
    """Run small-config modules (e.g. `tiny`) on the CPU under FlopCounterMode and compare with the formulas.

    SDPA is forced to its math backend: torch's CPU flash kernel is not counted by FlopCounterMode, the math
    path is (as its matmuls, over the full matrix). Returns {pass: {counted, predicted, ratio}}.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from streamchar.models.dit import JointDiT
    from streamchar.models.orchestrator import Orchestrator, OrchestratorInputs

    tok = chunk_tokens(cfg, **tokens)
    h, w = cfg.latent_size
    C, K, ca = cfg.video.latent_channels, cfg.video_latent_frames, cfg.audio.latent_channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dit, orch = JointDiT.from_config(cfg).eval(), Orchestrator.from_config(cfg).eval()
        context = torch.randn(1, cfg.text.max_length, cfg.text.dim)
        conds = dit.condition_frames(torch.randn(1, C, 1, h, w), torch.randn(1, C, K, h, w), torch.randn(1, C, K, h, w))
        x_v, x_a = torch.randn(1, C, K, h, w), torch.randn(1, tok["audio"], ca)
        c_a, t = torch.randn(1, tok["audio"], cfg.dit.dim), torch.tensor([0.5])
        ref, hist = torch.randn(1, tok["ref_audio"], ca), torch.randn(1, tok["history"], ca)
        ids = torch.randint(0, cfg.orchestrator.vocab_size, (1, tok["text"]))

    def count(fn):
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            out = fn()
        return counter.get_total_flops(), out

    counted = {}
    counted["dit_conditions"], cache = count(lambda: dit.encode_conditions(conds, context))
    counted["dit_step"], _ = count(lambda: dit(x_v, x_a, c_a, t, cache))
    inp = OrchestratorInputs.unpadded(ref, ids, tok["text"] - tok["transcript"], hist, ca)
    counted["orchestrator_prefix"], prefix = count(lambda: orch.encode_prefix(inp))
    counted["orchestrator_step"], _ = count(lambda: orch.condition(prefix, x_a, t))
    predicted = {
        "dit_conditions": dit_condition_pass(cfg, tok["conditions"], tok["prompt_context"])["flops"],
        "dit_step": dit_step_pass(cfg, tok["video"], tok["audio"], tok["conditions"], tok["prompt_context"])["flops"],
        "orchestrator_prefix": orchestrator_prefix_pass(cfg, tok["ref_audio"], tok["text"], tok["history"])["flops"],
        "orchestrator_step": orchestrator_step_pass(cfg, tok["prefix"], tok["audio"]),
    }
    return {k: {"counted": counted[k], "predicted": predicted[k], "ratio": predicted[k] / max(counted[k], 1)}
            for k in predicted}
