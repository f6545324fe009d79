"""The whole system in one module: DiT, orchestrator (with its pointer), codecs, prompt encoder, tokenizer.

`StreamChar.from_config(cfg)` builds it (random weights, or components from the local paths named in the
config); `save_pretrained(dir)` / `from_pretrained(dir)` write and read a checkpoint folder:

    dir/config.yaml          the StreamCharConfig
    dir/tokenizer/           the orchestrator's (and tiny prompt encoder's) tokenizer, HF format
    dir/model.safetensors    every weight, keys prefixed by component (dit., orchestrator., video_codec., ...)

Writes are atomic: a temporary folder is renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from streamchar.config import StreamCharConfig
from streamchar.errors import StreamCharError


class StreamChar(nn.Module):
    def __init__(self, cfg: StreamCharConfig, dit, orchestrator, video_codec, audio_codec, text_encoder, tokenizer):
        super().__init__()
        self.cfg = cfg
        self.dit, self.orchestrator = dit, orchestrator
        self.video_codec, self.audio_codec, self.text_encoder = video_codec, audio_codec, text_encoder
        self.tokenizer = tokenizer

    @property
    def dtype(self) -> torch.dtype:
        return self.dit.patch_embedding.weight.dtype

    @classmethod
    def from_config(cls, cfg: StreamCharConfig, seed: int = 0, tokenizer=None) -> "StreamChar":
        from streamchar.codecs import build_tiny_tokenizer, load_tokenizer

        cfg.validate()
        if tokenizer is None:
            tokenizer = load_tokenizer(cfg.orchestrator.tokenizer) if cfg.orchestrator.tokenizer else \
                build_tiny_tokenizer(cfg.orchestrator.vocab_size)
        if len(tokenizer) > cfg.orchestrator.vocab_size:
            raise StreamCharError(f"config field orchestrator.vocab_size: {cfg.orchestrator.vocab_size} is smaller "
                                  f"than the tokenizer's {len(tokenizer)} tokens")
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
            torch.manual_seed(seed)
            return cls._build(cfg, tokenizer)

    @classmethod
    def _build(cls, cfg: StreamCharConfig, tokenizer) -> "StreamChar":
        from streamchar.codecs import OobleckAudioCodec, T5PromptEncoder, WanVideoCodec
        from streamchar.models.dit import JointDiT
        from streamchar.models.orchestrator import Orchestrator

        v, a, t = cfg.video, cfg.audio, cfg.text
        video = WanVideoCodec.from_pretrained(v.path, fps=v.fps) if v.path else \
            WanVideoCodec.tiny(latent_channels=v.latent_channels, base_dim=v.base_dim, fps=v.fps)
        audio = OobleckAudioCodec.from_pretrained(a.path) if a.path else OobleckAudioCodec.tiny()
        text = T5PromptEncoder.from_pretrained(t.path, max_length=t.max_length) if t.path else \
            T5PromptEncoder.tiny(tokenizer, dim=t.dim, max_length=t.max_length)
        _check_codecs(cfg, video, audio, text)
        if cfg.orchestrator.path:
            raise StreamCharError("loading a pretrained Qwen2 orchestrator from orchestrator.path is not "
                                  "implemented yet (the paper-scale loaders come with the weights issue)")
        dit = JointDiT(cfg.dit, v.latent_channels, a.latent_channels, t.dim, cfg.audio_rope_scale,
                       cfg.video_latent_frames)
        orchestrator = Orchestrator(cfg.orchestrator, a.latent_channels, cfg.dit.dim, cfg.pap.dim)
        return cls(cfg, dit, orchestrator, video, audio, text, tokenizer).eval()

    # -- checkpoint folder --
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        if not path.parent.is_dir():
            raise StreamCharError(f"cannot save the model: folder {path.parent} does not exist")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            self.cfg.to_yaml(tmp / "config.yaml")
            self.tokenizer.save_pretrained(tmp / "tokenizer")
            save_model(self, str(tmp / "model.safetensors"))
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def from_pretrained(cls, path: str | Path, device="cpu") -> "StreamChar":
        from streamchar.codecs import load_tokenizer

        path = Path(path)
        if not path.is_dir():
            raise StreamCharError(f"checkpoint folder not found: {path}")
        for name in ("config.yaml", "tokenizer", "model.safetensors"):
            if not (path / name).exists():
                raise StreamCharError(f"checkpoint {path} is missing {name}")
        cfg = StreamCharConfig.from_yaml(path / "config.yaml")
        model = cls.from_config(cfg, tokenizer=load_tokenizer(path / "tokenizer"))
        try:
            missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False, device=str(device))
        except (SafetensorError, OSError, RuntimeError) as e:
            raise StreamCharError(f"cannot read {path / 'model.safetensors'}: {e}") from None
        if missing or unexpected:
            raise StreamCharError(f"{path / 'model.safetensors'} does not match the config: "
                                  f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        return model.to(device).eval()


def _check_codecs(cfg: StreamCharConfig, video, audio, text) -> None:
    """The codecs must honour the chunk contract the config promises."""
    checks = [("video.latent_channels", cfg.video.latent_channels, video.latent_channels),
              ("video.temporal_factor", cfg.video.temporal_factor, video.temporal_factor),
              ("video.spatial_factor", cfg.video.spatial_factor, video.spatial_factor),
              ("audio.sample_rate", cfg.audio.sample_rate, audio.sample_rate),
              ("audio.hop_length", cfg.audio.hop_length, audio.hop_length),
              ("audio.latent_channels", cfg.audio.latent_channels, audio.latent_channels),
              ("audio.channels", cfg.audio.channels, audio.channels),
              ("text.dim", cfg.text.dim, text.dim)]
    for name, want, got in checks:
        if want != got:
            raise StreamCharError(f"config field {name}: {want}, but the codec has {got}")


def parameter_counts(cfg: StreamCharConfig) -> dict[str, int]:
    """Parameters per component, built on the meta device (no memory), so `paper` reports its real size."""
    from streamchar.models.dit import JointDiT
    from streamchar.models.orchestrator import Orchestrator

    with torch.device("meta"):
        dit = JointDiT(cfg.dit, cfg.video.latent_channels, cfg.audio.latent_channels, cfg.text.dim,
                       cfg.audio_rope_scale, cfg.video_latent_frames)
        orch = Orchestrator(cfg.orchestrator, cfg.audio.latent_channels, cfg.dit.dim, cfg.pap.dim)
    count = lambda ps: sum(p.numel() for p in ps)
    audio_experts = count(p for b in dit.blocks for p in b.audio_ffn.parameters())
    audio_path = count(p for m in (dit.audio_embedding, dit.audio_encoder, dit.audio_decoder, dit.audio_head)
                       for p in m.parameters())
    pap = count(orch.pap.parameters())
    lm = count(orch.lm.parameters())
    return {
        "dit": count(dit.parameters()),
        "dit_audio_experts": audio_experts,
        "dit_audio_encoder_decoder": audio_path,
        "orchestrator": count(orch.parameters()) - pap,
        "orchestrator_lm": lm,
        "pap": pap,
        "total": count(dit.parameters()) + count(orch.parameters()),
    }
