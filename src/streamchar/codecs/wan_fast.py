"""CPU fast paths for diffusers' Wan VAE (`AutoencoderKLWan`), at any size (tiny and Wan2.2 alike).

diffusers' Wan decoder (and encoder) runs one latent frame at a time at batch 1. For such inputs PyTorch's
CPU `conv3d` heuristics pick `slow_conv3d_forward` (im2col + GEMM) instead of oneDNN: 4-9x slower per call
than `aten::mkldnn_convolution` on the very same tensors (same results to ~2e-6). Its RMS norm uses
`F.normalize`, which is ~4x slower than `x * rsqrt(sum(x^2))` on these shapes.

`accelerate(vae)` reroutes both, per module instance, for inference only:
- every `nn.Conv3d` (diffusers' `WanCausalConv3d` pads causally, then calls `Conv3d._conv_forward`) takes
  oneDNN when the input is on the CPU, float32 or bfloat16, and no gradient is needed; anything else (CUDA,
  training) takes PyTorch's own path, unchanged;
- every `WanRMS_norm` computes `x / max(||x||, 1e-12)` as `x * rsqrt(max(sum x^2, 1e-24))` (same maths).
Nothing in the weights or the state dict changes; `benchmarks/bench_codecs.py` measures both paths.
"""

from __future__ import annotations

import types

import torch
import torch.nn as nn


def _conv3d_forward(self: nn.Conv3d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    fast = (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and weight.dtype == x.dtype
            and self.padding_mode == "zeros" and not isinstance(self.padding, str)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))
    if not fast:
        return nn.Conv3d._conv_forward(self, x, weight, bias)
    return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight.contiguous(), bias, list(self.padding),
                                             list(self.stride), list(self.dilation), self.groups)


def _rms_norm_forward(self, x: torch.Tensor) -> torch.Tensor:
    dim = 1 if self.channel_first else -1
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    normalized = (xf * torch.rsqrt(xf.square().sum(dim, keepdim=True).clamp_min(1e-24))).to(x.dtype)
    return normalized * self.scale * self.gamma + self.bias


def accelerate(vae: nn.Module) -> nn.Module:
    """Route `vae`'s 3D convolutions and RMS norms through the fast paths above (in place; returns `vae`)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    for m in vae.modules():
        if isinstance(m, nn.Conv3d):
            m._conv_forward = types.MethodType(_conv3d_forward, m)
        elif isinstance(m, WanRMS_norm):
            m.forward = types.MethodType(_rms_norm_forward, m)
    return vae


def plain(vae: nn.Module) -> nn.Module:
    """Undo `accelerate` (PyTorch's and diffusers' own paths again): for comparisons."""
    for m in vae.modules():
        m.__dict__.pop("_conv_forward", None)
        m.__dict__.pop("forward", None)
    return vae

