"""Assemble a pipeline folder from the separate upstream folders users have on disk (paper §5.1):

    Wan2.2-TI2V-5B transformer (diffusers or original layout)  -> the DiT (FFNs replicated into audio experts)
    Qwen2.5-3B (config, safetensors, tokenizer)                 -> the orchestrator's LM and tokenizer
    UMT5 encoder (+ tokenizer)                                  -> the prompt encoder
    Wan2.2 VAE, Oobleck VAE (diffusers folders)                 -> the codecs

The config starts from a preset and takes every dimension the folders define from their own config.json,
so a consistent set of folders converts whatever its size; folders that disagree with each other (the DiT's
input channels vs the VAE's latent channels, its text width vs the encoder's) are an error naming both.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from streamchar.config import StreamCharConfig, preset
from streamchar.errors import StreamCharError


def _read_config(path: str | Path, what: str) -> dict:
    file = Path(path) / "config.json"
    if not file.is_file():
        raise StreamCharError(f"{what} folder {path} has no config.json")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise StreamCharError(f"{file} is not valid JSON: {e}") from None


def config_from_folders(base: str = "paper", *, wan=None, qwen=None, text_encoder=None, video_vae=None,
                        audio_vae=None) -> StreamCharConfig:
    """A StreamCharConfig whose component paths point at the given folders and whose dims are theirs."""
    from streamchar.models.weights import dit_config_from_wan

    cfg = preset(base)
    if video_vae is not None:
        c = _read_config(video_vae, "video VAE")
        spatial = 2 ** (len(c.get("dim_mult", [1, 2, 4, 4])) - 1) * (c.get("patch_size") or 1)
        cfg.video = dataclasses.replace(cfg.video, path=str(video_vae), latent_channels=c["z_dim"],
                                        spatial_factor=spatial)
    if audio_vae is not None:
        c = _read_config(audio_vae, "audio VAE")
        cfg.audio = dataclasses.replace(cfg.audio, path=str(audio_vae), sample_rate=c["sampling_rate"],
                                        hop_length=math.prod(c["downsampling_ratios"]),
                                        latent_channels=c["decoder_input_channels"], channels=c["audio_channels"])
    if text_encoder is not None:
        c = _read_config(text_encoder, "text encoder")
        cfg.text = dataclasses.replace(cfg.text, path=str(text_encoder), dim=c["d_model"])
    if qwen is not None:
        c = _read_config(qwen, "Qwen2")
        cfg.orchestrator = dataclasses.replace(
            cfg.orchestrator, path=str(qwen), tokenizer=str(qwen), hidden_size=c["hidden_size"],
            num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
            num_kv_heads=c.get("num_key_value_heads", c["num_attention_heads"]),
            intermediate_size=c["intermediate_size"], vocab_size=c["vocab_size"],
            max_position_embeddings=c.get("max_position_embeddings", cfg.orchestrator.max_position_embeddings),
            rope_theta=float(c.get("rope_theta", (c.get("rope_parameters") or {}).get("rope_theta",
                                                                                     cfg.orchestrator.rope_theta))),
            rms_norm_eps=c.get("rms_norm_eps", cfg.orchestrator.rms_norm_eps))
    if wan is not None:
        d = dit_config_from_wan(wan)
        channels, text_dim = d.pop("video_latent_channels"), d.pop("text_dim")
        if channels != cfg.video.latent_channels:
            raise StreamCharError(f"the Wan transformer at {wan} takes {channels} latent channels but the video "
                                  f"VAE {'at ' + str(video_vae) if video_vae else 'of the preset'} has "
                                  f"{cfg.video.latent_channels}")
        if text_dim != cfg.text.dim:
            raise StreamCharError(f"the Wan transformer at {wan} reads {text_dim}-d prompt embeddings but the text "
                                  f"encoder {'at ' + str(text_encoder) if text_encoder else 'of the preset'} "
                                  f"gives {cfg.text.dim}")
        cfg.dit = dataclasses.replace(cfg.dit, path=str(wan), **d)
    return cfg.validate()


def convert(out: str | Path, base: str = "paper", dtype: torch.dtype = torch.bfloat16, **folders) -> dict:
    """Build the system from the folders (see `config_from_folders`) and save it as a pipeline folder."""
    from streamchar.pipeline import StreamChar

    cfg = config_from_folders(base, **folders)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the fresh parts are created in `dtype`: half the memory in bf16
    try:
        model = StreamChar.from_config(cfg)
    finally:
        torch.set_default_dtype(previous)
    model.to(dtype).save_pretrained(out)
    return {"out": str(out), "preset": base, "dtype": str(dtype).removeprefix("torch."),
            "from": {k: str(v) for k, v in folders.items() if v is not None}}
