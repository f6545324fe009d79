"""The joint audio-video DiT (paper §3.3) on the Wan2.2 block, with audio experts.

One sequence per denoise step (Eq. 4):  s = [ z_ref, z_sink, z_mot | x_t^v | x_t^a ]
                                            condition tokens (t=0)   noisy video   noisy audio

- Video latents are patchified by a Conv3d (`patch_embedding`, Wan's name); noisy audio latents are fused
  with the orchestrator's condition c_a by a lightweight transformer (`audio_encoder`).
- Each block: shared self-attention over all tokens (modality RoPE), cross-attention to the prompt
  embeddings, adaLN modulation from a per-token timestep, and a two-expert FFN: video tokens -> `ffn`
  (Wan's FFN), audio tokens -> `audio_ffn` (a replica of it, paper §5.1).
- Condition tokens use t = 0, and the asymmetric mask lets noisy tokens attend to everything while
  condition tokens attend only to condition tokens. Condition tokens therefore never see the noise: their
  keys and values are computed once per chunk (`encode_conditions`) and reused at every denoise step
  (`forward`). `forward_full` is the same computation as one masked sequence, the reference for tests.
- After the blocks, `head` gives the video velocity and `audio_decoder` + `audio_head` the audio velocity.

Parameter names follow Wan's original release (blocks.N.self_attn.q, norm3, ffn.0, modulation, head.head,
patch_embedding, text_embedding.0, time_embedding.0, time_projection.1) so Wan weights load by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from streamchar.config import DiTConfig
from streamchar.device import cpu_has_amx
from streamchar.models.audio_to_video import AudioToVideo
from streamchar.models.rope import ModalityRoPE, apply_rope, condition_layout

_CPU_AMX = cpu_has_amx()  # read once: the attention kernel's dtype on a CPU

# ---- small parts ---------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # normalised and scaled in float32 (one fused kernel), returned in the input dtype
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as Wan does), returned in the input dtype."""

    def forward(self, x):
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Wan's timestep embedding: t (...,) in [0, 1000] -> (..., dim) float32, [cos | sin]."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t.to(torch.float64)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()


def attention(q, k, v, mask=None):
    """(B, H, Lq, D) x (B, H, Lk, D) -> (B, Lq, H*D). SDPA: flash / memory-efficient kernels on CUDA.

    On a CPU without AMX tiles a half-precision model attends in float32: there PyTorch's CPU flash kernel is
    slower in bf16 than in float32 (AVX512-BF16 core, 8 heads x 576 tokens x 64: 16.5 ms against 12.4 ms),
    while on an AMX core bf16 is 2.3x faster (2.2 ms against 5.2 ms); see `device.cpu_has_amx`."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and not _CPU_AMX:
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask).to(q.dtype)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


def adaln(y, shift, scale):
    """adaLN modulation y * (1 + scale) + shift, in float32 (shift, scale are), one fused op; -> y's dtype."""
    return torch.addcmul(shift, y.float(), 1 + scale).to(y.dtype)


def gated(x, y, gate):
    """The gated residual x + y * gate, in float32 as Wan adds it, one fused op; -> x's dtype."""
    return torch.addcmul(x.float(), y.float(), gate).to(x.dtype)


_GELU_C = 2.0 * math.sqrt(2.0 / math.pi)  # 2 x the tanh approximation's sqrt(2 / pi)


class TanhGELU(nn.Module):
    """Wan's activation, GELU with the tanh approximation: x (1 + tanh z) / 2, z = sqrt(2/pi) (x + 0.044715 x^3).

    (1 + tanh z) / 2 = sigmoid(2 z), so on a CPU in float32 without gradients it is computed as
    x * sigmoid(2 z) in place: PyTorch's CPU tanh kernel is slow where its sigmoid is not (AVX2 EPYC, one thread,
    576 x 512: tanh-GELU 1.16 ms, this form 0.50 ms, max difference 5e-7; the GELU was 10-13% of a tiny DiT
    pass). Elsewhere (gradients, half precision, CUDA, torch.compile) it is PyTorch's fused kernel."""

    def forward(self, x):
        if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled() \
                or torch.compiler.is_compiling():
            return F.gelu(x, approximate="tanh")
        u = torch.mul(x, x)
        u.mul_(_GELU_C * 0.044715).add_(_GELU_C).mul_(x)  # 2 z
        return u.sigmoid_().mul_(x)


def feed_forward(dim: int, ffn_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ffn_dim), TanhGELU(), nn.Linear(ffn_dim, dim))


class Attention(nn.Module):
    """Wan's attention projections: q, k, v, o, with RMS qk-norm over the full width."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def heads(self, y):
        """(B, L, dim) -> (B, H, L, D)."""
        return y.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)


class SelfAttention(Attention):
    def qkv(self, x, rope):
        """x: (B, L, dim) -> q, k, v: (B, H, L, D), q and k rotated (in (B, L, H, D) order: contiguous pairs)."""
        q = apply_rope(self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1)), rope)
        k = apply_rope(self.norm_k(self.k(x)).unflatten(-1, (self.num_heads, -1)), rope)
        return q.transpose(1, 2), k.transpose(1, 2), self.heads(self.v(x))


class CrossAttention(Attention):
    def kv(self, context):
        """Prompt keys and values, (B, H, L_txt, D): constant for a whole stream, so cached."""
        return self.heads(self.norm_k(self.k(context))), self.heads(self.v(context))

    def forward(self, x, kv):
        return self.o(attention(self.heads(self.norm_q(self.q(x))), *kv))


# ---- the block -----------------------------------------------------------------------------------------

class JointBlock(nn.Module):
    """Wan2.2 block with shared self-attention over both modalities and a two-expert modality FFN."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3 = LayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm2 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = feed_forward(dim, cfg.ffn_dim)  # video expert (Wan's FFN)
        self.audio_ffn = feed_forward(dim, cfg.ffn_dim)  # audio expert (a replica of Wan's FFN)
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def modulate(self, e):
        """e: (B, L|1, 6, dim) per-token timestep projection -> six (B, L|1, dim) float32 tensors."""
        return (self.modulation.float().unsqueeze(0) + e.float()).unbind(2)

    def attn_input(self, x, mods, rope):
        return self.self_attn.qkv(adaln(self.norm1(x), mods[0], mods[1]), rope)

    def finish(self, x, attn_out, mods, text_kv, num_video: int):
        """Everything after the attention scores: output projection, cross-attention, modality FFN."""
        x = gated(x, self.self_attn.o(attn_out), mods[2])
        x = x + self.cross_attn(self.norm3(x), text_kv)
        y = adaln(self.norm2(x), mods[3], mods[4])
        if num_video == 0 or num_video == y.shape[1]:  # one modality: no routing copies
            return gated(x, (self.ffn if num_video else self.audio_ffn)(y), mods[5])
        y = torch.cat([self.ffn(y[:, :num_video]), self.audio_ffn(y[:, num_video:])], dim=1)  # MoE routing
        return gated(x, y, mods[5])

    def forward(self, x, e=None, rope=None, text_kv=None, num_video: int = 0, cond_kv=None, mask=None,
                kv_only: bool = False, prompt_kv: bool = False):
        """x: (B, L, dim) tokens [video | audio]; cond_kv: cached condition (k, v) prepended to the keys.
        Returns (x, (k, v)); with `kv_only`, (None, (k, v)) without the rest of the block. With `prompt_kv`,
        x is the embedded prompt and the result its cross-attention (k, v). Every use of the block's weights
        goes through forward, so FSDP's per-block hooks gather them."""
        if prompt_kv:
            return self.cross_attn.kv(x)
        mods = self.modulate(e)
        q, k, v = self.attn_input(x, mods, rope)
        if cond_kv is not None:
            k, v = torch.cat([cond_kv[0], k], dim=2), torch.cat([cond_kv[1], v], dim=2)
        if kv_only:
            return None, (k, v)
        return self.finish(x, attention(q, k, v, mask), mods, text_kv, num_video), (k, v)


class Head(nn.Module):
    """Wan's output head: adaLN (shift, scale) from the time embedding, then a linear projection."""

    def __init__(self, dim: int, out_dim: int, eps: float):
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x, e):
        """x: (B, L, dim); e: (B, L|1, dim) time embedding."""
        shift, scale = (self.modulation.float().unsqueeze(0) + e.float().unsqueeze(2)).unbind(2)
        return self.head(adaln(self.norm(x), shift, scale))


class AudioLayer(nn.Module):
    """A plain pre-norm transformer layer over audio tokens (the audio encoder and decoder are stacks)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, eps: float):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps)
        self.attn = SelfAttention(dim, num_heads, qk_norm=True, eps=eps)
        self.norm2 = LayerNorm(dim, eps)
        self.ffn = feed_forward(dim, ffn_dim)

    def forward(self, x, rope):
        q, k, v = self.attn.qkv(self.norm1(x), rope)
        x = x + self.attn.o(attention(q, k, v))
        return x + self.ffn(self.norm2(x))


# ---- condition tokens and their cache ------------------------------------------------------------------

@dataclass
class CondFrames:
    """A group of clean condition latents (reference, sink or motion) and its first temporal position."""

    latents: torch.Tensor  # (B, C, T, h, w)
    t0: int
    present: torch.Tensor | None = None  # (B,) bool: rows without this group (chunk 0 in a batch); None = all


@dataclass
class ConditionCache:
    """What the noisy tokens need from the conditions, computed once per chunk."""

    self_kv: list  # per block: (k, v) of the condition tokens, (B, H, L_cond, D), or None without conditions
    text_kv: list  # per block: (k, v) of the prompt, (B, H, L_txt, D)
    key_mask: torch.Tensor | None = None  # (B, L_cond) True = a real condition token; None = all real


# ---- the model -----------------------------------------------------------------------------------------

class JointDiT(nn.Module):
    def __init__(self, cfg: DiTConfig, video_channels: int, audio_channels: int, text_dim: int,
                 audio_rope_scale: float, frames_per_chunk: int):
        super().__init__()
        self.cfg = cfg
        self.video_channels, self.audio_channels = video_channels, audio_channels
        self.frames_per_chunk = frames_per_chunk  # K: video latent frames of one chunk (and of motion)
        dim, p = cfg.dim, tuple(cfg.patch_size)
        self.layout = condition_layout(frames_per_chunk, cfg.cond_gap)
        self.patch_embedding = nn.Conv3d(video_channels, dim, kernel_size=p, stride=p)
        self.text_embedding = nn.Sequential(nn.Linear(text_dim, dim), TanhGELU(), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.audio_embedding = nn.Linear(audio_channels, dim)
        self.audio_encoder = nn.ModuleList(AudioLayer(dim, cfg.num_heads, cfg.ffn_dim, cfg.eps)
                                           for _ in range(cfg.audio_encoder_layers))
        self.blocks = nn.ModuleList(JointBlock(cfg) for _ in range(cfg.num_layers))
        self.audio_decoder = nn.ModuleList(AudioLayer(dim, cfg.num_heads, cfg.ffn_dim, cfg.eps)
                                           for _ in range(cfg.audio_decoder_layers))
        self.head = Head(dim, video_channels * math.prod(p), cfg.eps)
        self.audio_head = Head(dim, audio_channels, cfg.eps)
        self.rope = ModalityRoPE(dim // cfg.num_heads, cfg.rope_theta, audio_rope_scale)
        # c_a into the video tokens of its frames (ours, `tiny`: models/audio_to_video.py); None in the paper
        self.audio_to_video = AudioToVideo(dim) if cfg.audio_to_video else None

    def add_audio_to_video(self) -> None:
        """Give a model without it the audio injection, zero-initialised: it computes what it did before."""
        if self.audio_to_video is None:
            w = self.patch_embedding.weight
            self.audio_to_video = AudioToVideo(self.cfg.dim).to(w.device, w.dtype)
            self.cfg.audio_to_video = True

    @classmethod
    def from_config(cls, cfg) -> "JointDiT":
        """The DiT of a `StreamCharConfig` (random weights; the pipeline loads them)."""
        return cls(cfg.dit, cfg.video.latent_channels, cfg.audio.latent_channels, cfg.text.dim,
                   cfg.audio_rope_scale, cfg.video_latent_frames)

    # -- embeddings --
    def patchify(self, latents):
        """(B, C, T, H, W) -> tokens (B, T*h*w, dim) and the token grid (T, h, w)."""
        x = self.patch_embedding(latents)
        # contiguous: a transposed view would carry its strides through every block's residual stream (each
        # norm and elementwise op then strided; measured in benchmarks/bench_peer.py)
        return x.flatten(2).transpose(1, 2).contiguous(), tuple(x.shape[2:])

    def unpatchify(self, tokens, grid):
        """(B, T*h*w, C*pt*ph*pw) -> (B, C, T*pt, h*ph, w*pw)."""
        (T, h, w), (pt, ph, pw) = grid, self.cfg.patch_size
        x = tokens.unflatten(1, (T, h, w)).unflatten(-1, (pt, ph, pw, self.video_channels))
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, T, pt, h, ph, w, pw)
        return x.reshape(x.shape[0], self.video_channels, T * pt, h * ph, w * pw)

    def time_embed(self, t):
        """t: (B,) or (B, L) in [0, 1] -> e (B, L|1, dim), e0 (B, L|1, 6, dim). Wan scales t to [0, 1000]."""
        t = t if t.ndim == 2 else t[:, None]
        e = self.time_embedding(sinusoidal_embedding(t * 1000.0, self.cfg.freq_dim).to(self.patch_embedding.weight.dtype))
        return e, self.time_projection(e).unflatten(-1, (6, -1))

    def embed_text(self, context):
        """Prompt embeddings (B, L_txt, text_dim) -> per-block cross-attention (k, v)."""
        ctx = self.text_embedding(context.to(self.patch_embedding.weight.dtype))
        return [blk(ctx, prompt_kv=True) for blk in self.blocks]

    def cond_tokens(self, conditions: list[CondFrames], keep_mask: bool = False):
        """Condition latents -> tokens (B, L_cond, dim), positions (L_cond, 3) and a key mask (B, L_cond)
        (None when every row has every group, unless `keep_mask`: static shapes for a compiled DiT)."""
        tokens, pos, keep = [], [], []
        for c in conditions:
            x, (T, h, w) = self.patchify(c.latents)
            t = torch.arange(T, device=x.device) + c.t0
            tokens.append(x)
            pos.append(self.rope.video_positions(t, h, w))
            present = c.present if c.present is not None else torch.ones(x.shape[0], dtype=torch.bool,
                                                                          device=x.device)
            keep.append(present[:, None].expand(-1, x.shape[1]))
        key_mask = None
        if keep_mask or any(c.present is not None and not bool(c.present.all()) for c in conditions):
            key_mask = torch.cat(keep, 1)
        return torch.cat(tokens, 1), torch.cat(pos, 0), key_mask

    def noisy_tokens(self, x_v, x_a, c_a):
        """Noisy video (B, C, T, H, W) or None (speech alone) + noisy audio (B, T_a, C_a) fused with c_a."""
        dtype = self.patch_embedding.weight.dtype
        if x_v is None:  # the audio path alone (pretraining stage 1, on speech without video)
            v_tokens, grid = torch.zeros(x_a.shape[0], 0, self.cfg.dim, device=x_a.device, dtype=dtype), None
            v_pos = torch.zeros(0, 3, dtype=torch.float64, device=x_a.device)
        else:
            v_tokens, grid = self.patchify(x_v)
            if self.audio_to_video is not None and c_a.shape[1]:  # each latent frame's c_a, on all its tokens
                inject = self.audio_to_video(c_a.to(dtype), grid[0], self.frames_per_chunk)  # (B, T, dim)
                v_tokens = (v_tokens.unflatten(1, (grid[0], -1)) + inject[:, :, None]).flatten(1, 2)
            v_pos = self.rope.video_positions(torch.arange(grid[0], device=x_v.device), grid[1], grid[2])
        a_pos = self.rope.audio_positions(x_a.shape[1], device=x_a.device)
        a_rope = self.rope(a_pos)
        a = self.audio_embedding(x_a.to(dtype)) + c_a.to(dtype)
        for layer in self.audio_encoder if x_a.shape[1] else ():  # no audio tokens: nothing to fuse
            a = layer(a, a_rope)
        x = torch.cat([v_tokens, a], 1) if x_a.shape[1] else v_tokens
        return x, torch.cat([v_pos, a_pos], 0), grid, a_rope

    def outputs(self, x, e, grid, num_video, a_rope):
        """Final tokens -> video velocity (B, C, T, H, W) and audio velocity (B, T_a, C_a)."""
        e_v, e_a = (e, e) if e.shape[1] == 1 else (e[:, :num_video], e[:, num_video:])
        v = self.unpatchify(self.head(x[:, :num_video], e_v), grid).float() if grid is not None else None
        a = x[:, num_video:]
        if a.shape[1] == 0:  # video alone (no audio tokens): no audio decoder work
            return v, a.new_zeros(a.shape[0], 0, self.audio_channels, dtype=torch.float32)
        for layer in self.audio_decoder:
            a = layer(a, a_rope)
        return v, self.audio_head(a, e_a).float()

    # -- the two passes --
    def encode_conditions(self, conditions: list[CondFrames], context, text_kv=None,
                          keep_mask: bool = False) -> ConditionCache:
        """Run the condition tokens (t = 0) alone, once per chunk, and keep each block's keys and values.

        Condition tokens attend only to condition tokens, so this is exactly what they compute inside the
        full sequence. The last block's output is never needed, only its keys and values. `text_kv`: the
        prompt's per-block keys and values from `embed_text(context)`, when the caller keeps them for a
        whole stream (the prompt does not change); else they are computed from `context`. `keep_mask`: pass
        the condition key mask even when nothing is masked (one graph for a compiled DiT).
        """
        text_kv = self.embed_text(context) if text_kv is None else text_kv
        if not conditions:
            return ConditionCache(self_kv=[None] * len(self.blocks), text_kv=text_kv)
        x, pos, key_mask = self.cond_tokens(conditions, keep_mask)
        rope = self.rope(pos)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L_cond)
        _, e0 = self.time_embed(torch.zeros(x.shape[0], device=x.device))
        self_kv = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, e0, rope, text_kv[i], num_video=x.shape[1], mask=mask,
                        kv_only=i == len(self.blocks) - 1)
            self_kv.append(kv)
        return ConditionCache(self_kv=self_kv, text_kv=text_kv, key_mask=key_mask)

    def forward(self, x_v, x_a, c_a, t, cache: ConditionCache):
        """One denoise step with cached conditions.

        x_v: (B, C, T, H, W) noisy video latents, or None for the audio path alone; x_a: (B, T_a, C_a);
        c_a: (B, T_a, dim) audio condition; t: (B,) or per-token (B, L_noisy) in [0, 1].
        Returns velocities (v_video (B, C, T, H, W), v_audio (B, T_a, C_a)), float32.
        """
        x, pos, grid, a_rope = self.noisy_tokens(x_v, x_a, c_a)
        num_video = math.prod(grid) if grid is not None else 0
        rope = self.rope(pos)
        e, e0 = self.time_embed(t)
        mask = None  # every noisy token sees every condition token, unless a row lacks some (key mask)
        if cache.key_mask is not None:
            keys = torch.cat([cache.key_mask, cache.key_mask.new_ones(x.shape[0], x.shape[1])], 1)
            mask = keys[:, None, None, :]  # (B, 1, 1, L_cond + L_noisy)
        for blk, kv, tkv in zip(self.blocks, cache.self_kv, cache.text_kv):
            x, _ = blk(x, e0, rope, tkv, num_video, cond_kv=kv, mask=mask)
        return self.outputs(x, e, grid, num_video, a_rope)

    def forward_full(self, x_v, x_a, c_a, t, conditions: list[CondFrames], context):
        """The same step as one sequence [cond | video | audio] with the asymmetric mask and no cache."""
        x, pos, grid, a_rope = self.noisy_tokens(x_v, x_a, c_a)
        num_video = math.prod(grid) if grid is not None else 0
        B, L = x.shape[:2]
        e, e0 = self.time_embed(t)
        n_cond, key_mask, mask = 0, None, None  # no conditions: one timestep for all, nothing masked
        if conditions:
            if e.shape[1] == 1:
                e, e0 = e.expand(B, L, -1), e0.expand(B, L, -1, -1)
            c, c_pos, key_mask = self.cond_tokens(conditions)
            n_cond = c.shape[1]
            _, c_e0 = self.time_embed(torch.zeros(B, device=x.device))
            x, pos = torch.cat([c, x], 1), torch.cat([c_pos, pos], 0)
            e0 = torch.cat([c_e0.expand(B, n_cond, -1, -1), e0], 1)
            # Asymmetric mask (True = may attend): condition rows see condition columns only.
            mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device)
            mask[:n_cond, n_cond:] = False
            if key_mask is not None:  # absent condition groups are no key for anyone
                keys = torch.cat([key_mask, key_mask.new_ones(B, L)], 1)  # (B, L_cond + L)
                mask = mask[None, None] & keys[:, None, None, :]
        rope, text_kv = self.rope(pos), self.embed_text(context)
        for blk, tkv in zip(self.blocks, text_kv):
            x, _ = blk(x, e0, rope, tkv, n_cond + num_video, mask=mask)
        return self.outputs(x[:, n_cond:], e, grid, num_video, a_rope)

    def condition_frames(self, reference, sink=None, motion=None, present=None) -> list[CondFrames]:
        """Place the reference frame, the sink chunk and the motion frames on the timeline (see rope.py).
        present: (B,) bool, which rows have a sink and motion (None: all that are given)."""
        conds = [CondFrames(reference, self.layout["reference"])]
        if sink is not None:
            conds.append(CondFrames(sink, self.layout["sink"], present))
        if motion is not None:
            conds.append(CondFrames(motion, self.layout["motion"], present))
        return conds
