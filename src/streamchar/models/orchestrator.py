"""LLM orchestrator (paper §3.2): a causal LM reads one packed sequence of embeddings (Eq. 3)

    u = [ e_ref | E_txt | e_hist | E_cond(x_t^a, t) ]

- e_ref:  reference-voice audio latents, linearly projected into the LM (`ref_proj`);
- E_txt:  the prompt and the not-yet-dropped transcript, through the LM's own token embeddings;
- e_hist: the last <= 15 s of generated audio latents, linearly projected (`hist_proj`);
- E_cond: the current noisy audio latents x_t^a (`cond_proj`) plus an embedding of the shared timestep t.

c_a is the final-layer hidden states at the E_cond positions, projected to the DiT width (`ca_proj`). No
discrete audio tokens are generated: the LM is a conditioner, not a sampler.

The prefix (e_ref, E_txt, e_hist) does not depend on the denoise step, so `encode_prefix` runs it once per
chunk and keeps its keys and values; `condition` then runs only the 33 E_cond tokens per step on top of
that cache. `forward_full` recomputes the whole sequence (the reference for tests and benchmarks).
The progress-aware pointer (`pap`) is part of the orchestrator (§4.2): it reads the transcript states of
the prefix pass and the audio-condition states.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn as nn
from transformers import DynamicCache, Qwen2Config, Qwen2Model

from streamchar.config import OrchestratorConfig
from streamchar.models.dit import sinusoidal_embedding
from streamchar.models.pap import PointerOutput, ProgressAwarePointer


def qwen2_config(cfg: OrchestratorConfig) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta, rms_norm_eps=cfg.rms_norm_eps, tie_word_embeddings=True,
    )


@dataclass
class Prefix:
    """The orchestrator's per-chunk prefix: its KV cache and the transcript states the pointer reads."""

    kv: list  # per LM layer: (k, v), (B, kv_heads, L_prefix, D)
    length: int  # L_prefix
    transcript: torch.Tensor  # (B, N, hidden) final-layer states of the transcript tokens


class Orchestrator(nn.Module):
    def __init__(self, cfg: OrchestratorConfig, audio_channels: int, dit_dim: int, pap_dim: int,
                 lm: Qwen2Model | None = None):
        super().__init__()
        self.cfg = cfg
        self.lm = lm if lm is not None else Qwen2Model(qwen2_config(cfg))
        h = self.lm.config.hidden_size
        self.ref_proj = nn.Linear(audio_channels, h)  # e_ref
        self.hist_proj = nn.Linear(audio_channels, h)  # e_hist
        self.cond_proj = nn.Linear(audio_channels, h)  # E_cond: noisy audio latents
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, h), nn.SiLU(), nn.Linear(h, h))  # E_cond: t
        self.ca_proj = nn.Linear(h, dit_dim)  # c_a -> DiT width
        self.pap = ProgressAwarePointer(h, pap_dim)
        params = inspect.signature(self.lm.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.x renamed it

    # -- the packed sequence --
    def prefix_embeds(self, ref_audio, text_ids, transcript_start: int, hist_audio):
        """-> (B, L_prefix, hidden) embeddings and the [start, end) of the transcript tokens in them.

        ref_audio: (B, T_ref, C_a) or None; text_ids: (B, L_txt) = prompt ids + transcript ids, the
        transcript starting at `transcript_start`; hist_audio: (B, T_hist, C_a) or None.
        """
        # e_ref and e_hist are always computed, on zero rows when absent: then every parameter is in every
        # graph, which DDP / FSDP need when ranks draw different conditions (they get zero gradients).
        dtype = self.ref_proj.weight.dtype
        B, C_a = text_ids.shape[0], self.ref_proj.in_features
        empty = text_ids.new_zeros((B, 0, C_a), dtype=dtype)
        ref_audio = empty if ref_audio is None else ref_audio.to(dtype)
        hist_audio = empty if hist_audio is None else hist_audio.to(dtype)
        offset = ref_audio.shape[1]
        parts = [self.ref_proj(ref_audio), self.lm.embed_tokens(text_ids), self.hist_proj(hist_audio)]
        span = (offset + transcript_start, offset + text_ids.shape[1])
        return torch.cat(parts, 1), span

    def cond_embeds(self, x_a, t):
        """E_cond(x_t^a, t): (B, T_a, C_a) noisy audio latents + timestep (B,) in [0, 1] -> (B, T_a, hidden)."""
        dtype = self.cond_proj.weight.dtype
        te = self.time_embedding(sinusoidal_embedding(t * 1000.0, self.cfg.freq_dim).to(dtype))
        return self.cond_proj(x_a.to(dtype)) + te[:, None, :]

    def _lm(self, embeds, cache=None):
        kwargs = {self._cache_kwarg: cache} if cache is not None else {}
        return self.lm(inputs_embeds=embeds, use_cache=True, **kwargs)

    # -- cached path --
    def encode_prefix(self, ref_audio, text_ids, transcript_start: int, hist_audio) -> Prefix:
        """Run [e_ref | E_txt | e_hist] once per chunk; keep its KV cache and the transcript states."""
        embeds, (a, b) = self.prefix_embeds(ref_audio, text_ids, transcript_start, hist_audio)
        out = self._lm(embeds)
        cache = out.cache if self._cache_kwarg == "cache" else out.past_key_values
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        return Prefix(kv=kv, length=embeds.shape[1], transcript=out.last_hidden_state[:, a:b])

    def condition(self, prefix: Prefix, x_a, t):
        """One denoise step's c_a on top of the cached prefix.

        -> c_a (B, T_a, dit_dim) for the DiT, and the hidden states (B, T_a, hidden) for the pointer.
        """
        cache = DynamicCache(ddp_cache_data=prefix.kv, config=self.lm.config)  # fresh: the prefix stays intact
        hidden = self._lm(self.cond_embeds(x_a, t), cache).last_hidden_state
        return self.ca_proj(hidden), hidden

    def pointer(self, prefix: Prefix, hidden) -> PointerOutput:
        return self.pap(hidden, prefix.transcript)

    # -- reference path --
    def forward_full(self, ref_audio, text_ids, transcript_start: int, hist_audio, x_a, t):
        """The whole sequence in one pass, no cache: -> c_a (B, T_a, dit_dim), hidden, transcript states."""
        embeds, (a, b) = self.prefix_embeds(ref_audio, text_ids, transcript_start, hist_audio)
        n = embeds.shape[1]
        out = self.lm(inputs_embeds=torch.cat([embeds, self.cond_embeds(x_a, t)], 1), use_cache=False)
        hidden = out.last_hidden_state[:, n:]
        return self.ca_proj(hidden), hidden, out.last_hidden_state[:, a:b]
