"""Codecs by architecture: a random one from its config section, or a saved one from its folder.

A codec folder says what it holds in its config.json's `_class_name` (diffusers writes it on save):
`AutoencoderKLWan` (arch 'wan'), `TinyVideoVAE` ('tiny'), `AutoencoderOobleck` ('oobleck'), `TinyAudioVAE`
('tiny'). A pipeline folder's `vae/` subfolder is looked into as diffusers pipelines lay it out.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamchar.errors import StreamCharError

VIDEO_CLASSES = {"AutoencoderKLWan": "wan", "TinyVideoVAE": "tiny"}
AUDIO_CLASSES = {"AutoencoderOobleck": "oobleck", "TinyAudioVAE": "tiny"}


def codec_folder_arch(path: str | Path, kind: str) -> tuple[Path, str]:
    """(the folder holding config.json, its arch) for a video or audio codec folder; errors name the path."""
    path = Path(path)
    if not path.exists():
        raise StreamCharError(f"{kind} codec folder not found: {path}")
    if not path.is_dir():
        raise StreamCharError(f"{kind} codec path {path} is a file, not a folder")
    folder = path if (path / "config.json").is_file() else path / "vae"
    if not (folder / "config.json").is_file():
        raise StreamCharError(f"no {kind} codec at {path} (expected a folder with config.json)")
    try:
        name = json.loads((folder / "config.json").read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError) as e:
        raise StreamCharError(f"{folder / 'config.json'} is not a valid codec config ({e})") from None
    classes = VIDEO_CLASSES if kind == "video" else AUDIO_CLASSES
    if name not in classes:
        raise StreamCharError(f"{folder / 'config.json'}: a {kind} codec must be one of {sorted(classes)}, "
                              f"got _class_name {name!r}")
    return folder, classes[name]


def load_video_codec(path: str | Path, fps: int = 24):
    from streamchar.codecs.tiny_video import TinyVideoCodec
    from streamchar.codecs.wan_video import WanVideoCodec

    folder, arch = codec_folder_arch(path, "video")
    return (TinyVideoCodec if arch == "tiny" else WanVideoCodec).from_pretrained(folder, fps=fps)


def load_audio_codec(path: str | Path):
    from streamchar.codecs.oobleck_audio import OobleckAudioCodec
    from streamchar.codecs.tiny_audio import TinyAudioCodec

    folder, arch = codec_folder_arch(path, "audio")
    return (TinyAudioCodec if arch == "tiny" else OobleckAudioCodec).from_pretrained(folder)


def build_video_codec(v):
    """The video codec of a `VideoCodecConfig`: loaded from `v.path`, else random of `v.arch`."""
    from streamchar.codecs.tiny_video import TinyVideoCodec
    from streamchar.codecs.wan_video import WanVideoCodec

    if v.path:
        return load_video_codec(v.path, fps=v.fps)
    if v.arch == "tiny":
        return TinyVideoCodec.tiny(latent_channels=v.latent_channels, fps=v.fps)
    return WanVideoCodec.tiny(latent_channels=v.latent_channels, base_dim=v.base_dim, fps=v.fps)


def build_audio_codec(a):
    """The audio codec of an `AudioCodecConfig`: loaded from `a.path`, else random of `a.arch`."""
    from streamchar.codecs.oobleck_audio import OobleckAudioCodec
    from streamchar.codecs.tiny_audio import TinyAudioCodec

    if a.path:
        return load_audio_codec(a.path)
    if a.arch == "tiny":
        return TinyAudioCodec.tiny(latent_channels=a.latent_channels)
    return OobleckAudioCodec.tiny()


def load_pipeline_codecs(path: str | Path):
    """(video codec, audio codec, config) of a pipeline folder, or of a codecs-only skeleton such as the
    bundled `tiny-codecs`: `config.yaml`, `video_codec/`, `audio_codec/`."""
    from streamchar.config import StreamCharConfig

    path = Path(path)
    where = {name: path / name for name in ("video_codec", "audio_codec")}
    if (path / "model_index.json").is_file():  # a pipeline may keep its codecs in a sibling folder
        index = json.loads((path / "model_index.json").read_text())
        where = {n: (path / index[n]["path"]).resolve() if isinstance(index.get(n), dict) and "path" in index[n]
                 else p for n, p in where.items()}
    for name, p in [("config.yaml", path / "config.yaml"), *where.items()]:
        if not p.exists():
            raise StreamCharError(f"{path} is not a pipeline folder: it has no {name}")
    cfg = StreamCharConfig.from_yaml(path / "config.yaml")
    return load_video_codec(where["video_codec"], fps=cfg.video.fps), load_audio_codec(where["audio_codec"]), cfg
