"""FLOPs and bytes moved per streaming chunk: token counts, one formula per pass, codec decodes counted on meta.

What one chunk runs (streaming/session.py), and the parts reported here:

    orchestrator_prefix   [e_ref | prompt + transcript | e_hist]               once per chunk
    orchestrator_steps    33 E_cond tokens on the prefix KV cache              x steps, + 1 pointer pass (t = 0)
    dit_conditions        [reference | sink | motion] tokens + prompt K/V      once per chunk
    dit_steps             noisy tokens [9 video frames | 33 audio]             x steps
    video_decode          video VAE decode of 9 latent frames -> 33 frames     once per chunk
    audio_decode          audio VAE decode of 33 latents -> 1.375 s            once per chunk

Counting rules (the same as torch.utils.flop_counter.FlopCounterMode, which `flops_check` compares against):
- a multiply-add is 2 FLOPs; only matmuls, convolutions and the two attention products (Q K^T and P V) count;
  elementwise work (norms, RoPE, activations, softmax, adaLN modulation) is ignored (a few % at most);
- attention is counted over the full Lq x Lk matrix, also where it is causal (a causal flash kernel skips about
  half of the prefix's score/value products; at paper scale they are < 5 % of the prefix pass);
- bytes moved = weights read once per pass at 2 bytes (bf16) + the KV caches read (or written) by that pass;
  activation traffic of the transformer passes is ignored (fused kernels keep most of it on chip). The codec
  decodes are conv nets at full resolution, so for them activation traffic is counted (see `_codec_decode`).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from streamchar.config import StreamCharConfig
from streamchar.errors import StreamCharError

BF16 = 2  # bytes per weight / activation / cache element at inference


# ---- counting helpers ------------------------------------------------------------------------------------

def _mm(n: int, k: int, m: int) -> int:
    """n rows through a (k -> m) matmul: n*k*m multiply-adds = 2*n*k*m FLOPs."""
    return 2 * n * k * m


def _attn(nq: int, nk: int, width: int) -> int:
    """Attention products over all heads (H * D = width): Q K^T (2*nq*nk*D per head) + P V (the same)."""
    return 4 * nq * nk * width


def _lin(i: int, o: int) -> int:
    """Parameters of nn.Linear(i, o): weight + bias."""
    return i * o + o


def _pass(flops: int, params: int, kv_bytes: int = 0, count: int = 1, extra_flops: int = 0, **info) -> dict:
    """One part of the chunk: `count` identical passes, each reading `params` bf16 weights plus `kv_bytes`."""
    per_flops, per_bytes = flops, BF16 * params + kv_bytes
    return {"passes": count, "flops_per_pass": per_flops, "bytes_per_pass": per_bytes,
            "flops": count * per_flops + extra_flops, "bytes": count * per_bytes, **info}


# ---- token counts ----------------------------------------------------------------------------------------

def chunk_tokens(cfg: StreamCharConfig, prompt_tokens: int = 32, transcript_tokens: int = 200,
                 ref_audio_seconds: float = 5.0, history_seconds: float | None = None,
                 with_conditions: bool = True) -> dict:
    """Sequence lengths of one chunk's passes.

    with_conditions=True is the steady state (reference + sink + motion condition frames); False is the first
    chunk (reference frame only). history_seconds=None means the full window (history_frames audio latents, 15 s).
    """
    if prompt_tokens < 0 or transcript_tokens < 1 or ref_audio_seconds < 0:
        raise StreamCharError(f"need prompt_tokens >= 0, transcript_tokens >= 1, ref_audio_seconds >= 0; got "
                              f"{prompt_tokens}, {transcript_tokens}, {ref_audio_seconds}")
    if history_seconds is not None and history_seconds < 0:
        raise StreamCharError(f"history_seconds must be >= 0, got {history_seconds}")
    h, w = cfg.latent_size
    _, ph, pw = cfg.dit.patch_size
    per_frame = (h // ph) * (w // pw)  # video tokens per latent frame
    K = cfg.video_latent_frames  # 9 latent frames per chunk (and per sink / motion group)
    cond_frames = 1 + 2 * K if with_conditions else 1  # reference (1) [+ sink (K) + motion (K)]
    if history_seconds is None:
        hist = cfg.history_frames  # the full window: 15 s of audio latents
    else:  # the latents of history_seconds, capped at the window
        hist = min(round(history_seconds * cfg.audio_latent_rate), cfg.history_frames)
    ref = round(ref_audio_seconds * cfg.audio_latent_rate)  # reference-voice latents
    text = prompt_tokens + transcript_tokens
    return {"video": K * per_frame, "audio": cfg.audio_latent_frames, "conditions": cond_frames * per_frame,
            "prompt_context": cfg.text.max_length,  # the prompt embeddings are padded to max_length
            "ref_audio": ref, "text": text, "transcript": transcript_tokens, "history": hist,
            "prefix": ref + text + hist}


# ---- DiT -------------------------------------------------------------------------------------------------

def _dit_parts(cfg: StreamCharConfig) -> dict:
    """Parameter counts of the DiT's pieces (weights and biases; norm and modulation vectors left out)."""
    d, f, c = cfg.dit, cfg.dit.ffn_dim, cfg.dit.dim
    patch_in = cfg.video.latent_channels * math.prod(d.patch_size)  # values per video patch
    ffn = _lin(c, f) + _lin(f, c)
    return {"patch": patch_in * c + c, "time": _lin(d.freq_dim, c) + _lin(c, c) + _lin(c, 6 * c),
            "text": _lin(cfg.text.dim, c) + _lin(c, c), "audio_in": _lin(cfg.audio.latent_channels, c),
            "qkv": 3 * _lin(c, c), "o": _lin(c, c), "cross_q_o": 2 * _lin(c, c), "cross_kv": 2 * _lin(c, c),
            "ffn": ffn, "audio_layer": 4 * _lin(c, c) + ffn,
            "head_v": _lin(c, patch_in), "head_a": _lin(c, cfg.audio.latent_channels)}


def _time_flops(freq_dim: int, dim: int, n: int = 1) -> int:
    """Timestep embedding of n timesteps: freq -> dim -> dim, then the 6*dim adaLN projection."""
    return _mm(n, freq_dim, dim) + _mm(n, dim, dim) + _mm(n, dim, 6 * dim)


def _audio_layer_flops(n: int, dim: int, ffn: int) -> int:
    """One audio encoder/decoder layer over n tokens: q, k, v, o; self-attention; FFN in and out."""
    return 4 * _mm(n, dim, dim) + _attn(n, n, dim) + _mm(n, dim, ffn) + _mm(n, ffn, dim)


def dit_condition_pass(cfg: StreamCharConfig, n_cond: int, n_text: int) -> dict:
    """`JointDiT.encode_conditions`: prompt K/V for every block, then the condition tokens through the blocks
    (the last block computes only its q, k, v: its output is never used)."""
    d, c, f, L = cfg.dit, cfg.dit.dim, cfg.dit.ffn_dim, cfg.dit.num_layers
    p = _dit_parts(cfg)
    patch_in = cfg.video.latent_channels * math.prod(d.patch_size)
    flops = _mm(n_text, cfg.text.dim, c) + _mm(n_text, c, c)  # prompt embedding MLP
    flops += L * 2 * _mm(n_text, c, c)  # prompt K and V in every block
    flops += _mm(n_cond, patch_in, c)  # patch embedding (Conv3d) of the condition latents
    flops += _time_flops(d.freq_dim, c)  # the t = 0 embedding
    flops += L * 3 * _mm(n_cond, c, c)  # q, k, v in every block
    full = (_attn(n_cond, n_cond, c) + _mm(n_cond, c, c)  # self-attention + output projection
            + 2 * _mm(n_cond, c, c) + _attn(n_cond, n_text, c)  # cross-attention q, o + products
            + _mm(n_cond, c, f) + _mm(n_cond, f, c))  # video-expert FFN (condition tokens are video)
    flops += (L - 1) * full  # everything after q, k, v, in every block but the last
    params = (p["patch"] + p["time"] + p["text"] + L * (p["cross_kv"] + p["qkv"])
              + (L - 1) * (p["o"] + p["cross_q_o"] + p["ffn"]))
    kv_written = L * 2 * (n_cond + n_text) * c * BF16  # condition K, V and prompt K, V of every block
    return _pass(flops, params, kv_written)


def dit_step_pass(cfg: StreamCharConfig, n_video: int, n_audio: int, n_cond: int, n_text: int,
                  count: int = 1) -> dict:
    """`JointDiT.forward`: one denoise step of the noisy tokens on the cached condition and prompt K/V."""
    d, c, f, L = cfg.dit, cfg.dit.dim, cfg.dit.ffn_dim, cfg.dit.num_layers
    p = _dit_parts(cfg)
    patch_in = cfg.video.latent_channels * math.prod(d.patch_size)
    n = n_video + n_audio  # noisy tokens
    flops = _mm(n_video, patch_in, c)  # patch embedding (Conv3d)
    flops += _mm(n_audio, cfg.audio.latent_channels, c)  # audio latent embedding
    flops += d.audio_encoder_layers * _audio_layer_flops(n_audio, c, f)  # fuse c_a with the noisy audio
    flops += _time_flops(d.freq_dim, c)  # one timestep per sample
    block = (4 * _mm(n, c, c) + _attn(n, n_cond + n, c)  # q, k, v, o; attend to [conditions | noisy]
             + 2 * _mm(n, c, c) + _attn(n, n_text, c)  # cross-attention q, o + products (prompt K/V cached)
             + _mm(n, c, f) + _mm(n, f, c))  # one expert FFN per token (video or audio)
    flops += L * block
    flops += _mm(n_video, c, patch_in)  # video head
    flops += d.audio_decoder_layers * _audio_layer_flops(n_audio, c, f) + _mm(n_audio, c, cfg.audio.latent_channels)
    params = (p["patch"] + p["audio_in"] + p["time"] + L * (p["qkv"] + p["o"] + p["cross_q_o"] + 2 * p["ffn"])
              + (d.audio_encoder_layers + d.audio_decoder_layers) * p["audio_layer"] + p["head_v"] + p["head_a"])
    kv_read = L * 2 * (n_cond + n_text) * c * BF16  # cached condition and prompt K, V of every block
    return _pass(flops, params, kv_read, count)


# ---- orchestrator ----------------------------------------------------------------------------------------

def _lm_layer_params(cfg: StreamCharConfig) -> int:
    """One Qwen2 layer: q, k, v with bias (k, v at kv_heads width), o without, gated MLP without bias."""
    o = cfg.orchestrator
    h, kvd = o.hidden_size, o.num_kv_heads * (o.hidden_size // o.num_heads)
    return _lin(h, h) + 2 * _lin(h, kvd) + h * h + 3 * h * o.intermediate_size


def _lm_flops(cfg: StreamCharConfig, n: int, n_keys: int) -> int:
    """The LM over n new tokens attending to n_keys keys (cache + new): projections, attention, MLP."""
    o = cfg.orchestrator
    h, hd = o.hidden_size, o.hidden_size // o.num_heads
    kvd = o.num_kv_heads * hd  # GQA: k and v are kv_heads wide
    layer = (_mm(n, h, h) + 2 * _mm(n, h, kvd) + _mm(n, h, h)  # q, k, v, o
             + _attn(n, n_keys, h)  # all query heads attend (shared K/V heads do not save FLOPs)
             + 3 * _mm(n, h, o.intermediate_size))  # gate, up, down
    return o.num_layers * layer


def _lm_kv_bytes(cfg: StreamCharConfig, n: int) -> int:
    """K and V of n tokens in every layer: layers * 2 * kv_heads * head_dim * n * 2 bytes."""
    o = cfg.orchestrator
    return o.num_layers * 2 * o.num_kv_heads * (o.hidden_size // o.num_heads) * n * BF16


def orchestrator_prefix_pass(cfg: StreamCharConfig, n_ref: int, n_text: int, n_hist: int) -> dict:
    """`Orchestrator.encode_prefix`: [e_ref | text | e_hist] through the LM once; writes the prefix KV cache."""
    o, ca = cfg.orchestrator, cfg.audio.latent_channels
    n = n_ref + n_text + n_hist
    flops = _mm(n_ref, ca, o.hidden_size) + _mm(n_hist, ca, o.hidden_size)  # ref_proj, hist_proj
    flops += _lm_flops(cfg, n, n)  # token embeddings are a lookup: no FLOPs
    params = o.num_layers * _lm_layer_params(cfg) + 2 * _lin(ca, o.hidden_size)
    return _pass(flops, params, _lm_kv_bytes(cfg, n))


def orchestrator_step_pass(cfg: StreamCharConfig, n_prefix: int, n_audio: int) -> int:
    """FLOPs of `Orchestrator.condition`: E_cond (timestep MLP + cond_proj), the LM on the prefix cache, ca_proj."""
    o = cfg.orchestrator
    h = o.hidden_size
    flops = _mm(1, o.freq_dim, h) + _mm(1, h, h)  # timestep embedding (one timestep)
    flops += _mm(n_audio, cfg.audio.latent_channels, h)  # cond_proj of the noisy audio latents
    flops += _lm_flops(cfg, n_audio, n_prefix + n_audio)
    flops += _mm(n_audio, h, cfg.dit.dim)  # ca_proj -> c_a
    return flops


def _orchestrator_steps(cfg: StreamCharConfig, tok: dict, steps: int) -> dict:
    """`steps` condition passes + 1 at t = 0 for the pointer, plus the pointer head itself."""
    o, h = cfg.orchestrator, cfg.orchestrator.hidden_size
    n_a, N, pd = tok["audio"], tok["transcript"], cfg.pap.dim
    flops = orchestrator_step_pass(cfg, tok["prefix"], n_a)
    params = (o.num_layers * _lm_layer_params(cfg) + _lin(cfg.audio.latent_channels, h) + _lin(o.freq_dim, h)
              + _lin(h, h) + _lin(h, cfg.dit.dim))
    pointer = (_mm(n_a, h, pd) + _mm(N, h, pd)  # pointer q (audio frames), k (transcript states)
               + _mm(n_a, N, pd) + _mm(n_a, N, 1)  # scores, soft positions
               + 2 * _mm(n_a, h, 1))  # offset and confidence heads
    return _pass(flops, params, _lm_kv_bytes(cfg, tok["prefix"]), count=steps + 1, extra_flops=pointer)


# ---- codecs ----------------------------------------------------------------------------------------------
# Official configs of the paper-scale codecs (diffusers names), used when the config names no local folder:
WAN22_VAE = dict(  # Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json (z 48, 4x16x16)
    base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], in_channels=12, out_channels=12, patch_size=2, is_residual=True,
    scale_factor_spatial=16, scale_factor_temporal=4)
OOBLECK_SAO = dict(  # stabilityai/stable-audio-open-1.0 vae/config.json geometry (hop 2048, 64 channels, stereo)
    audio_channels=2, channel_multiples=[1, 2, 4, 8, 16], decoder_channels=128, decoder_input_channels=64,
    downsampling_ratios=[2, 4, 4, 8, 8], encoder_hidden_size=128)


class _Traffic(TorchDispatchMode):
    """Counts the elements every (non-view) op writes, and the largest single output."""

    def __init__(self):
        super().__init__()
        self.written, self.largest = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.written += t.numel()
                    self.largest = max(self.largest, t.numel())
        return out


def _folder_config(path: str) -> dict:
    """A local diffusers folder's config.json (or its vae/ subfolder's)."""
    for p in (Path(path), Path(path) / "vae"):
        if (p / "config.json").is_file():
            return json.loads((p / "config.json").read_text())
    raise StreamCharError(f"no codec config.json found at {path!r}")


def _video_codec(cfg: StreamCharConfig):
    """The video VAE on the meta device and what it is: the local folder's config, Wan2.2's, or the tiny one."""
    from diffusers import AutoencoderKLWan

    from streamchar.codecs import WanVideoCodec

    v = cfg.video
    if v.arch == "tiny":  # small: built for real on the CPU (its decode reshapes groups, see _codec_decode)
        from streamchar.codecs.load import build_video_codec

        return build_video_codec(v), f"tiny video codec ({'config at ' + v.path if v.path else 'random'})"
    with torch.device("meta"):
        if v.path:
            return AutoencoderKLWan.from_config(_folder_config(v.path)), f"config at {v.path}"
        if (v.latent_channels, v.spatial_factor) == (48, 16):
            return AutoencoderKLWan(**WAN22_VAE), "Wan2.2-TI2V-5B VAE (official config)"
        return WanVideoCodec.tiny(latent_channels=v.latent_channels, base_dim=v.base_dim).vae, "tiny random VAE"


def _audio_codec(cfg: StreamCharConfig):
    """The audio VAE on the meta device: the local folder's config, Stable Audio Open's geometry, or the tiny one."""
    from diffusers import AutoencoderOobleck

    from streamchar.codecs import OobleckAudioCodec

    a = cfg.audio
    if a.arch == "tiny":  # small, and its iSTFT has no meta kernel: built for real on the CPU
        from streamchar.codecs.load import build_audio_codec

        return build_audio_codec(a), f"tiny audio codec ({'config at ' + a.path if a.path else 'random'})"
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", FutureWarning)  # diffusers' Oobleck uses the deprecated weight_norm
        if a.path:
            return AutoencoderOobleck.from_config(_folder_config(a.path)), f"config at {a.path}"
        if (a.hop_length, a.latent_channels) == (2048, 64):
            return (AutoencoderOobleck(**dict(OOBLECK_SAO, audio_channels=a.channels, sampling_rate=a.sample_rate)),
                    "Oobleck, Stable Audio Open geometry (approximation of the paper's codec)")
        return OobleckAudioCodec.tiny().vae, "tiny random Oobleck"


@functools.lru_cache(maxsize=16)
def _codec_decode(kind: str, cfg_json: str) -> dict:
    """Run one chunk's decode on the meta device (shapes only, no memory) and count it.

    FLOPs: FlopCounterMode over the decoder (its convolutions). Bytes moved, an approximation for an unfused
    conv net: decoder weights once + every op's output written once and read once, at 2 bytes (bf16).
    Activation peak, an approximation: 3 x the largest single tensor (a conv's input, output and one temporary).
    """
    from streamchar.codecs.base import AudioCodec, VideoCodec

    cfg = StreamCharConfig.from_dict(json.loads(cfg_json))
    vae, what = _video_codec(cfg) if kind == "video" else _audio_codec(cfg)
    h, w = cfg.latent_size
    codec = vae if isinstance(vae, (VideoCodec, AudioCodec)) else None  # a tiny codec: its own decode
    with torch.device("cpu" if codec is not None else "meta"):
        if kind == "video":
            z = torch.zeros(1, cfg.video.latent_channels, cfg.video_latent_frames, h, w)
        else:
            z = torch.zeros(1, cfg.audio.latent_channels, cfg.audio_latent_frames)
            z = z.transpose(1, 2) if codec is not None else z  # the interface is time-major
    traffic = _Traffic()
    with torch.no_grad(), FlopCounterMode(display=False) as counter, traffic:
        (codec or vae).decode(z)
    vae = codec.vae if codec is not None else vae
    decoder = [m for name, m in vae.named_children() if name in ("decoder", "post_quant_conv")
               or name.startswith("dec_")]
    dec_params = sum(p.numel() for m in decoder for p in m.parameters())
    params = sum(p.numel() for p in vae.parameters())
    return {"flops": counter.get_total_flops(), "params": params, "decoder_params": dec_params,
            "bytes": BF16 * dec_params + 2 * BF16 * traffic.written, "activation_bytes": 3 * BF16 * traffic.largest,
            "codec": what}


def codec_decode(cfg: StreamCharConfig, kind: str) -> dict:
    """Decode cost of one chunk for kind 'video' or 'audio' (cached per config)."""
    return _codec_decode(kind, json.dumps(cfg.to_dict(), sort_keys=True))


# ---- the chunk -------------------------------------------------------------------------------------------

def chunk_cost(cfg: StreamCharConfig, steps: int | None = None, prompt_tokens: int = 32,
               transcript_tokens: int = 200, ref_audio_seconds: float = 5.0, history_seconds: float | None = None,
               with_conditions: bool = True) -> dict:
    """FLOPs and bytes moved per chunk, per part. Steps default to the student's (len(student_timesteps)).

    Defaults: a 32-token prompt, 200 transcript tokens in E_txt (the spoken text of the 15 s window plus what
    is still to come), 5 s of reference voice, the full history window, steady-state conditions.
    """
    steps = len(cfg.stream.student_timesteps) if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise StreamCharError(f"steps must be an integer >= 1, got {steps!r}")
    tok = chunk_tokens(cfg, prompt_tokens, transcript_tokens, ref_audio_seconds, history_seconds, with_conditions)
    video, audio = codec_decode(cfg, "video"), codec_decode(cfg, "audio")
    parts = {
        "orchestrator_prefix": orchestrator_prefix_pass(cfg, tok["ref_audio"], tok["text"], tok["history"]),
        "orchestrator_steps": _orchestrator_steps(cfg, tok, steps),
        "dit_conditions": dit_condition_pass(cfg, tok["conditions"], tok["prompt_context"]),
        "dit_steps": dit_step_pass(cfg, tok["video"], tok["audio"], tok["conditions"], tok["prompt_context"], steps),
        "video_decode": _pass(video["flops"], 0, video["bytes"], codec=video["codec"]),
        "audio_decode": _pass(audio["flops"], 0, audio["bytes"], codec=audio["codec"]),
    }
    return {"steps": steps, "tokens": tok, "parts": parts,
            "total_flops": sum(p["flops"] for p in parts.values()),
            "total_bytes": sum(p["bytes"] for p in parts.values()),
            "notes": "FLOPs: multiply-add = 2, matmuls/convs/attention products only, elementwise ops ignored, "
                     "attention over the full matrix. Bytes: bf16 weights once per pass + KV caches; codecs also "
                     "count unfused activation traffic. Prompt encoding (text encoder) runs once per stream, "
                     "not per chunk."}
