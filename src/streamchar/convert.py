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
    from streamchar.codecs.load import codec_folder_arch
    from streamchar.models.weights import dit_config_from_wan

    cfg = preset(base)
    if video_vae is not None:
        c = _read_config(video_vae, "video VAE")
        _, arch = codec_folder_arch(video_vae, "video")
        spatial = 8 if arch == "tiny" else 2 ** (len(c.get("dim_mult", [1, 2, 4, 4])) - 1) * (c.get("patch_size") or 1)
        cfg.video = dataclasses.replace(cfg.video, arch=arch, path=str(video_vae), latent_channels=c["z_dim"],
                                        spatial_factor=spatial)
    if audio_vae is not None:
        c = _read_config(audio_vae, "audio VAE")
        _, arch = codec_folder_arch(audio_vae, "audio")
        if arch == "tiny":
            cfg.audio = dataclasses.replace(cfg.audio, arch=arch, path=str(audio_vae), sample_rate=c["sampling_rate"],
                                            hop_length=c["hop_length"], latent_channels=c["latent_channels"],
                                            channels=1)
        else:
            cfg.audio = dataclasses.replace(cfg.audio, arch=arch, path=str(audio_vae), sample_rate=c["sampling_rate"],
                                            hop_length=math.prod(c["downsampling_ratios"]),
                                            latent_channels=c["decoder_input_channels"], channels=c["audio_channels"])
    if text_encoder is not None:
        c = _read_config(text_encoder, "text encoder")
        cfg.text = dataclasses.replace(cfg.text, path=str(text_encoder), dim=c["d_model"])
    if qwen is not None:
        c = _read_config(qwen, "Qwen2")
        cfg.orchestrator = dataclasses.replace(
            cfg.orchestrator, path=str(qwen), tokenizer=str(qwen), text_frontend="text", hidden_size=c["hidden_size"],
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


def convert(out: str | Path, base: str = "paper", dtype: torch.dtype = torch.bfloat16,
            settings: list[str] | None = None, seed: int = 0, **folders) -> dict:
    """Build the system from the folders (see `config_from_folders`), with `section.field=value` settings
    for what no folder defines (e.g. a tiny DiT's size), and save it as a pipeline folder; fresh weights
    come from `seed`."""
    from streamchar.pipeline import StreamChar

    cfg = config_from_folders(base, **folders)
    if settings:
        cfg = cfg.override(settings)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the fresh parts are created in `dtype`: half the memory in bf16
    try:
        model = StreamChar.from_config(cfg, seed=seed)
    finally:
        torch.set_default_dtype(previous)
    model.to(dtype).save_pretrained(out)
    return {"out": str(out), "preset": base, "dtype": str(dtype).removeprefix("torch."),
            "from": {k: str(v) for k, v in folders.items() if v is not None}, "settings": list(settings or []),
            "parameters": {"dit": sum(p.numel() for p in model.dit.parameters()),
                           "orchestrator": sum(p.numel() for p in model.orchestrator.parameters())}}


def codecs_skeleton(out: str | Path, video_vae, audio_vae, base: str = "tiny", card: str | None = None) -> dict:
    """A codecs-only pipeline folder (`config.yaml`, `video_codec/`, `audio_codec/`, `model_index.json` marked
    `"skeleton": true`, `README.md` card): what `eval-codecs`, `data encode`-style tools and later training
    stages start from. Written to a temporary folder, then renamed into place."""
    import json

    from streamchar import __version__
    from streamchar.atomic import atomic_folder
    from streamchar.codecs.load import load_audio_codec, load_video_codec

    if video_vae is None or audio_vae is None:
        raise StreamCharError("--codecs-only needs both --video-vae and --audio-vae")
    cfg = config_from_folders(base, video_vae=video_vae, audio_vae=audio_vae)
    video, audio = load_video_codec(video_vae, fps=cfg.video.fps), load_audio_codec(audio_vae)
    out = Path(out)
    with atomic_folder(out) as tmp:
        cfg.video.path = cfg.audio.path = None
        cfg.to_yaml(tmp / "config.yaml")
        video.save_pretrained(tmp / "video_codec")
        audio.save_pretrained(tmp / "audio_codec")
        index = {"_class_name": "StreamChar", "_streamchar_version": __version__, "preset": base, "skeleton": True,
                 "video_codec": {"class": f"{type(video).__module__}.{type(video).__name__}", "path": "video_codec"},
                 "audio_codec": {"class": f"{type(audio).__module__}.{type(audio).__name__}", "path": "audio_codec"}}
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
        if card is not None:
            (tmp / "README.md").write_text(card)
    return {"out": str(out), "preset": base, "skeleton": True, "video_codec": str(video_vae),
            "audio_codec": str(audio_vae)}
