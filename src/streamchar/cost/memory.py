"""Memory: resident inference memory (weights, KV caches, activation peak) and FSDP training memory per GPU.

All figures are decimal GB (1e9 bytes).
"""

from __future__ import annotations

import functools
import json

import torch

from streamchar.config import StreamCharConfig
from streamchar.cost.flops import BF16, _dit_parts, _lm_kv_bytes, chunk_tokens, codec_decode
from streamchar.errors import StreamCharError

GB = 1e9
TRAIN_STAGES = ("pretrain", "dmd", "rollout")


@functools.lru_cache(maxsize=16)
def _param_counts(cfg_json: str) -> dict:
    from streamchar.pipeline import parameter_counts

    return parameter_counts(StreamCharConfig.from_dict(json.loads(cfg_json)))


class _VocabStub:
    """Just enough of a tokenizer to build the tiny T5 prompt encoder on the meta device."""

    pad_token_id, eos_token_id = 0, 1

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n


def text_encoder_params(cfg: StreamCharConfig) -> tuple[int, str]:
    """Parameters of the prompt encoder and what they are.

    paper (text dim 4096): UMT5-XXL encoder, counted from its config (vocab 256384, d_model 4096, 24 layers,
    64 heads x 64, gated FFN 10240, a relative-position bias (32 buckets) per layer): ~5.7 B. Otherwise the tiny
    T5 of `T5PromptEncoder.tiny`, built on the meta device with the orchestrator's vocab_size (an upper bound:
    it uses the tokenizer's length).
    """
    if cfg.text.dim == 4096:
        d, layers, heads, dkv, dff, vocab = 4096, 24, 64, 64, 10240, 256384
        per_layer = 4 * d * heads * dkv + 3 * d * dff + 2 * d + 32 * heads  # q k v o, wi_0 wi_1 wo, 2 norms, bias
        return vocab * d + layers * per_layer + d, "UMT5-XXL encoder (from its config)"
    from streamchar.codecs import T5PromptEncoder

    with torch.device("meta"):
        enc = T5PromptEncoder.tiny(_VocabStub(cfg.orchestrator.vocab_size), dim=cfg.text.dim,
                                   max_length=cfg.text.max_length)
    return sum(p.numel() for p in enc.parameters()), "tiny T5 encoder (counted on the meta device)"


def _layer_activation_bytes(n: int, dim: int, ffn: int) -> int:
    """Inference working set of one transformer layer over n tokens, an approximation: bf16 x, normed input,
    q, k, v, attention output (6 * dim), the FFN hidden (ffn), plus fp32 norm/modulation temporaries
    (2 * dim at 4 bytes = 4 * dim bf16 elements). Flash / memory-efficient attention holds no L x L matrix."""
    return BF16 * n * (10 * dim + ffn)


def inference_memory(cfg: StreamCharConfig, chunk: dict) -> dict:
    """Resident inference memory (GB): bf16 weights, KV caches, activations of the largest single pass."""
    pc = _param_counts(json.dumps(cfg.to_dict(), sort_keys=True))
    tok = chunk["tokens"]
    text_params, text_what = text_encoder_params(cfg)
    video, audio = codec_decode(cfg, "video"), codec_decode(cfg, "audio")
    weights = {"dit": pc["dit"] * BF16, "orchestrator": (pc["orchestrator"] + pc["pap"]) * BF16,
               "text_encoder": text_params * BF16,  # runs once per stream: could be offloaded after the prompt
               "video_codec": video["params"] * BF16, "audio_codec": audio["params"] * BF16}
    c, L = cfg.dit.dim, cfg.dit.num_layers
    kv = {"orchestrator_prefix": _lm_kv_bytes(cfg, tok["prefix"] + tok["audio"]),  # prefix + one step's E_cond
          "dit_conditions": L * 2 * c * tok["conditions"] * BF16,  # layers * 2 (K, V) * dim * L_cond * 2 bytes
          "dit_prompt": L * 2 * c * tok["prompt_context"] * BF16}  # the cached prompt K, V of every block
    o = cfg.orchestrator
    n_noisy = tok["video"] + tok["audio"]
    acts = {  # the largest single pass decides the activation peak
        "dit_conditions": _layer_activation_bytes(tok["conditions"], c, cfg.dit.ffn_dim),
        "dit_steps": _layer_activation_bytes(n_noisy, c, cfg.dit.ffn_dim)
                     + 2 * (tok["conditions"] + n_noisy) * c * BF16,  # [cached | new] K, V concatenated
        "orchestrator_prefix": _layer_activation_bytes(tok["prefix"], o.hidden_size, o.intermediate_size),
        "video_decode": video["activation_bytes"], "audio_decode": audio["activation_bytes"]}
    largest = max(acts, key=acts.get)
    total = sum(weights.values()) + sum(kv.values()) + acts[largest]
    to_gb = lambda d: {k: v / GB for k, v in d.items()}
    return {"weights_gb": to_gb(weights), "kv_cache_gb": to_gb(kv), "activations_gb": to_gb(acts),
            "largest_pass": largest, "total_gb": total / GB,
            "notes": f"bf16 weights; text encoder = {text_what}; codecs = {video['codec']} / {audio['codec']}, "
                     "encoder and decoder resident; activations = the largest single pass (approximation)."}


def _dit_block_params(cfg: StreamCharConfig) -> int:
    p = _dit_parts(cfg)
    return p["qkv"] + p["o"] + p["cross_q_o"] + p["cross_kv"] + 2 * p["ffn"] + 6 * cfg.dit.dim


def train_memory(cfg: StreamCharConfig, gpus: int = 8, stage: str = "pretrain", micro_batch: int = 1,
                 window: int = 3, grad_chunks: int | None = None, **tokens) -> dict:
    """Training memory per GPU (GB) with FSDP (full sharding) over `gpus` GPUs and mixed precision.

    stage 'pretrain' (pretraining stage 2): DiT + orchestrator trainable. 'dmd' (Stage I, train/distill_dmd.py):
    the student and the fake score (each a DiT + orchestrator) trainable, the teacher (the real score) frozen in
    bf16. 'rollout' (Stage II, train/distill_rollout.py): the same three models; the student keeps the graph of
    its last `grad_chunks` chunks (default: the window) and the scores read `window` chunks as one sample.
    Latents and prompt embeddings are precomputed: no codec or text encoder is resident.
    - trainable: bf16 param (2) + fp32 master (4) + AdamW m, v (2 x 4) + fp32 grad (4) = 18 bytes/param, / gpus
    - frozen: bf16 (2 bytes/param), / gpus
    - FSDP gather: the largest unit (a DiT block or the LM's embedding table) unsharded in bf16, x2 (prefetch)
    - activations (not sharded: each GPU holds its own micro-batch), per-layer activation checkpointing:
      each layer's bf16 input is stored (layers x L x dim x 2 bytes) and one layer is recomputed in backward,
      ~34 x L x dim bytes (Korthikanti et al. 2022, bf16, without the 5as^2 attention-matrix term that flash /
      memory-efficient attention avoids). The DiT trains on the full sequence [conditions | video | audio];
      the orchestrator on [prefix | E_cond]. Distillation stores the student's exit-step pass per chunk with
      gradient and the fake score's flow-matching pass on the scored sample (the real and fake scores' DMD
      passes run without gradient).
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise StreamCharError(f"gpus must be an integer >= 1, got {gpus!r}")
    if stage not in TRAIN_STAGES:
        raise StreamCharError(f"stage must be one of {list(TRAIN_STAGES)}, got {stage!r}")
    if not 1 <= window or (grad_chunks is not None and grad_chunks < 1):
        raise StreamCharError(f"window and grad_chunks must be >= 1, got {window}, {grad_chunks}")
    pc = _param_counts(json.dumps(cfg.to_dict(), sort_keys=True))
    tok = chunk_tokens(cfg, **tokens)
    dit, orch = pc["dit"], pc["orchestrator"] + pc["pap"]
    trainable, frozen = (dit + orch, 0) if stage == "pretrain" else (2 * (dit + orch), dit + orch)
    o, d = cfg.orchestrator, cfg.dit
    unit = max(_dit_block_params(cfg), o.vocab_size * o.hidden_size)  # largest FSDP unit
    chunks = {"pretrain": 1, "dmd": 1, "rollout": grad_chunks or window}[stage]  # student passes with gradient
    scored = {"pretrain": 0, "dmd": 1, "rollout": window}[stage]  # chunks in the fake score's training sample
    L_dit = tok["conditions"] + tok["video"] + tok["audio"]
    L_lm = tok["prefix"] + tok["audio"]

    def layer_inputs(n_dit: int, n_lm: int) -> int:
        return micro_batch * (d.num_layers * n_dit * d.dim + o.num_layers * n_lm * o.hidden_size) * BF16

    stored = chunks * layer_inputs(L_dit, L_lm)
    if scored:
        w_dit = tok["conditions"] + scored * (tok["video"] + tok["audio"])
        stored += layer_inputs(w_dit, tok["prefix"] + scored * tok["audio"])
        L_dit, L_lm = max(L_dit, w_dit), max(L_lm, tok["prefix"] + scored * tok["audio"])
    working = micro_batch * 34 * max(L_dit * d.dim, L_lm * o.hidden_size)  # one layer recomputed at a time
    acts = stored + working
    parts = {"params_grads_optimizer": 18 * trainable / gpus, "frozen_weights": BF16 * frozen / gpus,
             "fsdp_gather": 2 * BF16 * unit, "activations": acts}
    out = {k: v / GB for k, v in parts.items()}
    return {"stage": stage, "gpus": gpus, "micro_batch": micro_batch, "trainable_params": trainable,
            "frozen_params": frozen, "sequence": {"dit": L_dit, "orchestrator": L_lm},
            **({"window": window, "grad_chunks": chunks} if stage == "rollout" else {}),
            "per_gpu_gb": out, "total_per_gpu_gb": sum(out.values())}
