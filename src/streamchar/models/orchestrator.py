"""LLM orchestrator (paper §3.2): a causal LM reads one packed sequence of embeddings (Eq. 3)

    u = [ e_ref | E_txt | e_hist | E_cond(x_t^a, t) ]

- e_ref:  reference-voice audio latents, linearly projected into the LM (`ref_proj`);
- E_txt:  the prompt and the not-yet-dropped transcript, through the LM's own token embeddings;
- e_hist: the last <= 15 s of generated audio latents, linearly projected (`hist_proj`);
- E_cond: the current noisy audio latents x_t^a (`cond_proj`) plus an embedding of the shared timestep t;
          with `frame_hint` (ours, `tiny`) also the token embedding of what the timeline plan speaks at each
          frame (models/timeline.py `spoken_at`).

c_a is the final-layer hidden states at the E_cond positions, projected to the DiT width (`ca_proj`). No
discrete audio tokens are generated: the LM is a conditioner, not a sampler.

The prefix (e_ref, E_txt, e_hist) does not depend on the denoise step, so `encode_prefix` runs it once per
chunk and keeps its keys and values; `condition` then runs only the 33 E_cond tokens per step on top of
that cache. `forward_full` recomputes the whole sequence (training, and the reference for tests).

Positions (`orchestrator.positions`): 'sequence' numbers the packed tokens 0, 1, 2, ... as a pretrained LM
expects (the paper's). 'timeline' (ours, `tiny`) places them in audio-latent time, with E_cond's first frame
at 0: history latent m of H at m - H, each transcript token at the latent where it is spoken
(`text_positions`: the clip's timings in training, the stream's plan at inference, models/timeline.py), the
prompt and the reference voice before all of it (then the row is shifted to start at 0). A small LM then
finds the text a frame speaks by RoPE distance instead of learning to count through a variable-length
prefix. Causality stays by sequence order.

Batches: B samples' prefixes differ in length (reference voice, transcript left, history), so `pack`
left-pads them to the longest with an attention mask and per-row positions that start at each row's first
real token; a padded row computes exactly what it computes alone. Without padding no mask is passed.
The progress-aware pointer (`pap`) is part of the orchestrator (§4.2): it reads the transcript states of
the prefix pass and the audio-condition states.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import DynamicCache, Qwen2Config, Qwen2Model

from streamchar.config import OrchestratorConfig
from streamchar.models.dit import sinusoidal_embedding
from streamchar.models.pap import PointerOutput, ProgressAwarePointer
from streamchar.models.timeline import plan_from_durations, spoken_at


def qwen2_config(cfg: OrchestratorConfig) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta, rms_norm_eps=cfg.rms_norm_eps, tie_word_embeddings=True,
    )


@dataclass
class OrchestratorInputs:
    """The prefix parts of B packed sequences, each part zero-padded on the right with its lengths.

    Sample i's prefix is [ref_audio[i, :ref_len[i]] | text_ids[i, :text_len[i]] | history[i, :hist_len[i]]];
    its transcript is text_ids[i, transcript_start[i]:text_len[i]] (before it: the prompt ids).
    """

    ref_audio: torch.Tensor  # (B, T_ref, C_a) reference-voice latents
    ref_len: torch.Tensor  # (B,) int64
    text_ids: torch.Tensor  # (B, L_txt) prompt ids + transcript ids
    text_len: torch.Tensor  # (B,)
    transcript_start: torch.Tensor  # (B,)
    history: torch.Tensor  # (B, T_hist, C_a) generated audio latents, <= 15 s
    hist_len: torch.Tensor  # (B,)
    # (B, N) float, zero-padded: each transcript token's latent relative to E_cond's first frame (timeline
    # positions); None: planned from the token durations, the first token at 0
    text_positions: torch.Tensor | None = None

    FIELDS = ("ref_audio", "ref_len", "text_ids", "text_len", "transcript_start", "history", "hist_len",
              "text_positions")

    @property
    def batch_size(self) -> int:
        return self.text_ids.shape[0]

    @classmethod
    def unpadded(cls, ref_audio, text_ids, transcript_start: int, history, audio_channels: int) -> "OrchestratorInputs":
        """Rows of equal lengths: ref_audio (B, T_ref, C_a) or None, text_ids (B, L_txt), history or None."""
        B = text_ids.shape[0]
        dtype = next((x.dtype for x in (ref_audio, history) if x is not None), torch.float32)
        empty = torch.zeros(B, 0, audio_channels, dtype=dtype, device=text_ids.device)
        ref_audio = empty if ref_audio is None else ref_audio
        history = empty if history is None else history

        def full(n):
            return torch.full((B,), n, dtype=torch.int64, device=text_ids.device)

        return cls(ref_audio, full(ref_audio.shape[1]), text_ids, full(text_ids.shape[1]), full(transcript_start),
                   history, full(history.shape[1]))


@dataclass
class Packed:
    """B prefixes packed into one left-padded batch, so that the E_cond tokens of every sample line up."""

    embeds: torch.Tensor  # (B, L, hidden)
    mask: torch.Tensor | None  # (B, L) 1 = real token, 0 = padding; None when nothing is padded
    lengths: torch.Tensor  # (B,) real prefix length
    transcript_index: torch.Tensor  # (B, N) positions of the transcript tokens in the padded sequence
    transcript_mask: torch.Tensor | None  # (B, N) True = real transcript token; None when all have N
    positions: torch.Tensor | None  # (B, L) RoPE positions; None: 0..L-1 (sequence positions, no padding)
    cond_start: torch.Tensor  # (B,) the position of the first E_cond token


@dataclass
class Prefix:
    """The orchestrator's per-chunk prefix: its KV cache and the transcript states the pointer reads."""

    kv: list  # per LM layer: (k, v), (B, kv_heads, L_prefix, D)
    mask: torch.Tensor | None  # (B, L_prefix) padding mask, None without padding
    lengths: torch.Tensor  # (B,)
    cond_start: torch.Tensor  # (B,) the position of the first E_cond token
    transcript: torch.Tensor  # (B, N, hidden) final-layer states of the transcript tokens
    transcript_mask: torch.Tensor | None  # (B, N)
    inputs: OrchestratorInputs | None = None  # what it was packed from (the frame hint reads its plan)
    hints: dict = field(default_factory=dict, repr=False)  # T_a -> the frame hint's ids, made at the first step


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
        # the timeline plan's mean latents per token type and the silence before the first token
        # (models/timeline.py); pretraining measures them on its training split
        self.register_buffer("token_durations", torch.full((self.lm.config.vocab_size,), float(cfg.timeline_rate)))
        self.register_buffer("lead_in", torch.zeros(()))
        params = inspect.signature(self.lm.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.x renamed it

    @classmethod
    def from_config(cls, cfg) -> "Orchestrator":
        """The orchestrator of a `StreamCharConfig` (random weights; the pipeline loads them)."""
        return cls(cfg.orchestrator, cfg.audio.latent_channels, cfg.dit.dim, cfg.pap.dim)

    # -- the packed sequence --
    def pack(self, inp: OrchestratorInputs) -> Packed:
        """[e_ref | E_txt | e_hist] of each sample, left-padded to the longest: the E_cond tokens appended
        after it then sit at the same positions in every row (and the KV cache is one tensor)."""
        # The projections run on the padded tensors (zero rows when a part is absent): every parameter is
        # then in every graph, which DDP / FSDP need when ranks draw different conditions.
        dtype = self.ref_proj.weight.dtype
        ref = self.ref_proj(inp.ref_audio.to(dtype))  # (B, T_ref, h)
        txt = self.lm.embed_tokens(inp.text_ids)  # (B, L_txt, h)
        hist = self.hist_proj(inp.history.to(dtype))  # (B, T_hist, h)
        lengths = inp.ref_len + inp.text_len + inp.hist_len  # (B,)
        B, L = inp.batch_size, int(lengths.max())
        rows = []
        for i in range(B):
            r, n, m = int(inp.ref_len[i]), int(inp.text_len[i]), int(inp.hist_len[i])
            row = torch.cat([ref[i, :r], txt[i, :n], hist[i, :m]], 0)
            rows.append(F.pad(row, (0, 0, L - row.shape[0], 0)))  # left padding
        embeds = torch.stack(rows)  # (B, L, h)
        pad = L - lengths  # (B,)
        start = pad + inp.ref_len + inp.transcript_start  # transcript [start, end) in the padded rows
        count = inp.text_len - inp.transcript_start  # (B,)
        N = int(count.max())
        ar = torch.arange(N, device=embeds.device)
        index = (start[:, None] + ar).clamp(max=L - 1)  # (B, N)
        equal = bool((pad == 0).all())
        mask = None if equal else (torch.arange(L, device=embeds.device) >= pad[:, None]).long()
        tmask = None if bool((count == N).all()) else ar[None] < count[:, None]
        if self.cfg.positions == "timeline":
            positions, cond_start = self.timeline_positions(inp, L)
        else:
            positions, cond_start = self._positions(mask), lengths
        return Packed(embeds, mask, lengths, index, tmask, positions, cond_start)

    def plan(self, ids: torch.Tensor, start: float | None = None, pace: float = 1.0) -> torch.Tensor:
        """A stream's timeline plan of transcript ids (N,): each token's start in audio latents, the first at
        `start` (default: the measured lead-in), every duration times `pace` (models/timeline.py)."""
        return plan_from_durations(ids, self.token_durations, float(self.lead_in) if start is None else start, pace)

    def timeline_positions(self, inp: OrchestratorInputs, L: int):
        """Timeline positions of the left-padded prefixes (module docstring) -> (B, L) int64 (0 on padding),
        and (B,) the position of E_cond's first frame."""
        dev = inp.text_ids.device
        rows, starts = [], []
        for i in range(inp.batch_size):
            R, P, H = int(inp.ref_len[i]), int(inp.transcript_start[i]), int(inp.hist_len[i])
            n = int(inp.text_len[i]) - P
            hist = torch.arange(-H, 0, device=dev)  # E_cond's first frame at 0
            if inp.text_positions is not None:
                words = torch.round(inp.text_positions[i, :n].float()).long()
            else:
                words = torch.round(self.plan(inp.text_ids[i, P:P + n], start=0.0)).long()
            first = min(-H, int(words[0])) if n else -H
            before = torch.arange(first - P - R, first, device=dev)  # reference voice, then prompt
            row = torch.cat([before, words, hist]) - (first - P - R)  # shifted to start at 0
            rows.append(F.pad(row, (L - row.shape[0], 0)))
            starts.append(-(first - P - R))
        return torch.stack(rows), torch.tensor(starts, device=dev)

    def frame_hint(self, inp: OrchestratorInputs, frames: int) -> torch.Tensor | None:
        """The frame hint's token ids: (B, T_a) int64, -1 where the plan speaks nothing; None when the config
        has no hint. The plan is E_txt's (`text_positions`, or planned from the durations as positions are)."""
        if not self.cfg.frame_hint:
            return None
        rows = []
        for i in range(inp.batch_size):
            P = int(inp.transcript_start[i])
            n = int(inp.text_len[i]) - P
            ids = inp.text_ids[i, P:P + n]
            plan = inp.text_positions[i, :n] if inp.text_positions is not None else self.plan(ids, start=0.0)
            rows.append(spoken_at(plan, ids, self.token_durations, frames))
        return torch.stack(rows)

    def cond_embeds(self, x_a, t, hint=None):
        """E_cond(x_t^a, t): (B, T_a, C_a) noisy audio latents + timestep (B,) in [0, 1] (+ the frame hint's
        token embeddings, hint (B, T_a) ids, -1 for none) -> (B, T_a, hidden).

        The hint's embedding is RMS-normalised (unit scale): summed raw, a token embedding initialised at std
        0.02 is ~25x weaker than the audio projection and the LM barely reads it (measured in stage 1: the
        alignment aid's accuracy 0.20 after 1,000 steps raw, 0.97 after 250 normalised)."""
        dtype = self.cond_proj.weight.dtype
        te = self.time_embedding(sinusoidal_embedding(t * 1000.0, self.cfg.freq_dim).to(dtype))
        e = self.cond_proj(x_a.to(dtype)) + te[:, None, :]
        if hint is not None:  # RMS-normalised: an LM's embeddings start ~25x weaker than these projections
            said = (hint >= 0).to(dtype)[..., None]  # (B, T_a, 1)
            token = self.lm.embed_tokens(hint.clamp(min=0)).float()
            e = e + F.rms_norm(token, token.shape[-1:], eps=self.cfg.rms_norm_eps).to(dtype) * said
        return e

    @staticmethod
    def _positions(mask):
        """Positions counting from each row's first real token: (B, L), or None (plain 0..L-1) unpadded."""
        return None if mask is None else (mask.cumsum(1) - 1).clamp(min=0)

    @staticmethod
    def _gather(states, index):
        """states (B, L, h), index (B, N) -> (B, N, h)."""
        return states.gather(1, index[..., None].expand(-1, -1, states.shape[-1]))

    # -- cached path --
    def encode_prefix(self, inp: OrchestratorInputs) -> Prefix:
        """Run [e_ref | E_txt | e_hist] once per chunk; keep its KV cache and the transcript states."""
        p = self.pack(inp)
        out = self.lm(inputs_embeds=p.embeds, attention_mask=p.mask, position_ids=p.positions, use_cache=True)
        cache = out.cache if self._cache_kwarg == "cache" else out.past_key_values
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        return Prefix(kv=kv, mask=p.mask, lengths=p.lengths, cond_start=p.cond_start,
                      transcript=self._gather(out.last_hidden_state, p.transcript_index),
                      transcript_mask=p.transcript_mask, inputs=inp)

    def condition(self, prefix: Prefix, x_a, t):
        """One denoise step's c_a on top of the cached prefix.

        -> c_a (B, T_a, dit_dim) for the DiT, and the hidden states (B, T_a, hidden) for the pointer.
        """
        cache = DynamicCache(ddp_cache_data=prefix.kv, config=self.lm.config)  # fresh: the prefix stays intact
        T = x_a.shape[1]
        mask = positions = None
        if prefix.mask is not None:
            mask = torch.cat([prefix.mask, prefix.mask.new_ones(prefix.mask.shape[0], T)], 1)
        if prefix.mask is not None or self.cfg.positions == "timeline":
            positions = prefix.cond_start[:, None] + torch.arange(T, device=x_a.device)
        kwargs = {self._cache_kwarg: cache}
        if self.cfg.frame_hint and T not in prefix.hints:  # the same for every denoise step of the chunk
            if prefix.inputs is None:
                raise ValueError("condition: this orchestrator has a frame hint; the prefix must come from encode_prefix")
            prefix.hints[T] = self.frame_hint(prefix.inputs, T)
        hint = prefix.hints.get(T)
        hidden = self.lm(inputs_embeds=self.cond_embeds(x_a, t, hint), attention_mask=mask, position_ids=positions,
                         use_cache=True, **kwargs).last_hidden_state
        return self.ca_proj(hidden), hidden

    def pointer(self, prefix: Prefix, hidden) -> PointerOutput:
        return self.pap(hidden, prefix.transcript, prefix.transcript_mask)

    # -- the whole sequence (training) --
    def forward_full(self, inp: OrchestratorInputs, x_a, t):
        """The whole sequence in one pass, no cache.

        -> c_a (B, T_a, dit_dim), hidden (B, T_a, hidden), transcript states (B, N, hidden), transcript mask.
        """
        (c_a,), (hidden,), transcript, tmask = self.forward_tails(inp, [(x_a, t)])
        return c_a, hidden, transcript, tmask

    def forward_tails(self, inp: OrchestratorInputs, tails: list):
        """One pass over [prefix | E_cond(x_1, t_1) | E_cond(x_2, t_2) | ...]: every tail sees the prefix and
        itself, never another tail, and sits at the positions right after the prefix, so each computes exactly
        what [prefix | E_cond(x_j, t_j)] alone computes while the prefix is run once (training: the noisy audio
        for c_a and the clean audio at t = 0 for the pointer).

        tails: [(x_a (B, T_a, C_a), t (B,)), ...] -> lists of c_a and hidden per tail, transcript states, mask.
        """
        p = self.pack(inp)
        B, L = p.embeds.shape[:2]
        T = tails[0][0].shape[1]
        n, dev = L + len(tails) * T, p.embeds.device
        hint = self.frame_hint(inp, T)  # (B, T) or None: the same plan for every tail
        embeds = torch.cat([p.embeds] + [self.cond_embeds(x, t, hint) for x, t in tails], 1)
        mask = positions = None
        # a mask whenever positions are passed: without one, transformers reads non-increasing positions as
        # packed documents and would cut the attention at them
        if len(tails) > 1 or p.mask is not None or p.positions is not None:
            idx = torch.arange(n, device=dev)
            block = torch.where(idx < L, -1, (idx - L) // T)  # -1: prefix, j: tail j
            allow = (idx[None, :] <= idx[:, None]) & ((block[None, :] == -1) | (block[None, :] == block[:, None]))
            allow = allow[None].expand(B, n, n)
            if p.mask is not None:  # padded keys are nobody's; a padded row sees itself (no empty softmax row)
                keys = torch.cat([p.mask.bool(), p.mask.new_ones(B, n - L, dtype=torch.bool)], 1)
                allow = (allow & keys[:, None, :]) | torch.eye(n, dtype=torch.bool, device=dev)[None]
            mask = allow[:, None]  # (B, 1, n, n)
            prefix_pos = p.positions if p.positions is not None else torch.arange(L, device=dev)[None].expand(B, L)
            tail_pos = p.cond_start[:, None] + torch.arange(T, device=dev)
            positions = torch.cat([prefix_pos] + [tail_pos] * len(tails), 1)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
        states = out.last_hidden_state
        hidden = [states[:, L + j * T:L + (j + 1) * T] for j in range(len(tails))]
        return [self.ca_proj(h) for h in hidden], hidden, self._gather(states, p.transcript_index), p.transcript_mask
