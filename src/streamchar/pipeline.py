"""The whole system in one module: DiT, orchestrator (with its pointer), codecs, prompt encoder, tokenizer.

`StreamChar.from_config(cfg)` builds it (random weights, or components from the local paths named in the
config); `save_pretrained(dir)` / `from_pretrained(dir)` write and read a pipeline folder, one subfolder per
component, like a diffusers pipeline:

    dir/model_index.json            what is where: component -> class and files
    dir/config.yaml                 the StreamCharConfig (component paths cleared: the folder is self-contained)
    dir/dit/model.safetensors       the joint DiT, our (Wan-original) key names
    dir/orchestrator/model.safetensors   the Qwen2 LM (`lm.*`), the projections and the pointer (`pap.*`)
    dir/tokenizer/                  the orchestrator's tokenizer (HF format)
    dir/video_codec/                a diffusers AutoencoderKLWan folder (latent mean/std in its config)
    dir/audio_codec/                a diffusers AutoencoderOobleck folder + latents_stats.json
    dir/text_encoder/               a transformers T5/UMT5 encoder folder with its tokenizer

Writes are atomic: everything goes into a temporary folder that is renamed into place.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from streamchar import __version__
from streamchar.atomic import atomic_folder
from streamchar.config import StreamCharConfig
from streamchar.errors import StreamCharError

logger = logging.getLogger("streamchar")


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
        from streamchar.codecs.phonemes import build_phoneme_tokenizer

        cfg.validate()
        if tokenizer is None:
            o = cfg.orchestrator
            tokenizer = (load_tokenizer(o.tokenizer) if o.tokenizer else build_phoneme_tokenizer()
                         if o.text_frontend == "phonemes" else build_tiny_tokenizer(o.vocab_size))
        _check_frontend(cfg, tokenizer)
        if len(tokenizer) > cfg.orchestrator.vocab_size:
            raise StreamCharError(f"config field orchestrator.vocab_size: {cfg.orchestrator.vocab_size} is smaller "
                                  f"than the tokenizer's {len(tokenizer)} tokens")
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
            torch.manual_seed(seed)
            return cls._build(cfg, tokenizer)

    @classmethod
    def _build(cls, cfg: StreamCharConfig, tokenizer, empty: bool = False) -> "StreamChar":
        """Codecs and prompt encoder from their paths (or tiny random); DiT and orchestrator from the config,
        with parameters left unallocated when `empty` (the caller loads them)."""
        from accelerate import init_empty_weights

        from streamchar.codecs import T5PromptEncoder
        from streamchar.codecs.load import build_audio_codec, build_video_codec
        from streamchar.models.dit import JointDiT
        from streamchar.models.orchestrator import Orchestrator
        from streamchar.models.weights import load_orchestrator_weights, load_wan_into_dit

        v, a, t = cfg.video, cfg.audio, cfg.text
        video = _component("video codec", v.path, lambda: build_video_codec(v))
        audio = _component("audio codec", a.path, lambda: build_audio_codec(a))
        text = _component("text encoder", t.path, lambda: T5PromptEncoder.from_pretrained(t.path, max_length=t.max_length)
                          if t.path else T5PromptEncoder.tiny(_text_tokenizer(cfg, tokenizer), dim=t.dim,
                                                              max_length=t.max_length))
        _check_codecs(cfg, video, audio, text)
        with init_empty_weights(include_buffers=False) if empty else contextlib.nullcontext():
            dit, orchestrator = JointDiT.from_config(cfg), Orchestrator.from_config(cfg)
        if cfg.dit.path and not empty:  # Wan2.2 weights; the audio experts start as copies of the FFNs
            report = load_wan_into_dit(dit, cfg.dit.path)
            if report.missing:
                raise StreamCharError(f"incomplete Wan checkpoint: {report.summary()}")
            logger.info(report.summary())
        if cfg.orchestrator.path and not empty:  # Qwen2 / Qwen2.5 weights into the LM
            load_orchestrator_weights(orchestrator, cfg.orchestrator.path)
        return cls(cfg, dit, orchestrator, video, audio, text, tokenizer).eval()

    # -- pipeline folder --
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        if not path.parent.is_dir():
            raise StreamCharError(f"cannot save the model: folder {path.parent} does not exist")
        with atomic_folder(path) as tmp:
            cfg = copy.deepcopy(self.cfg)
            cfg.video.path = cfg.audio.path = cfg.text.path = cfg.dit.path = None
            cfg.orchestrator.path = cfg.orchestrator.tokenizer = None
            cfg.to_yaml(tmp / "config.yaml")
            for name in ("dit", "orchestrator"):
                (tmp / name).mkdir()
                sd = {k: v.contiguous() for k, v in getattr(self, name).state_dict().items()}
                save_file(sd, str(tmp / name / WEIGHTS), metadata={"format": "pt"})
            self.tokenizer.save_pretrained(str(tmp / "tokenizer"))
            self.video_codec.save_pretrained(tmp / "video_codec")
            self.audio_codec.save_pretrained(tmp / "audio_codec")
            self.text_encoder.save_pretrained(tmp / "text_encoder")
            classes = {**COMPONENTS, "video_codec": _qualname(self.video_codec), "audio_codec": _qualname(self.audio_codec)}
            index = {"_class_name": "StreamChar", "_streamchar_version": __version__, "preset": self.cfg.preset,
                     **{name: {"class": cls, "path": name} for name, cls in classes.items()}}
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device="cpu") -> "StreamChar":
        from streamchar.codecs import load_tokenizer

        from streamchar.bundled import resolve_checkpoint

        path = resolve_checkpoint(path, option="checkpoint")  # a folder, or a bundled name ("tiny-teacher")
        for name in ("model_index.json", "config.yaml"):
            if not (path / name).exists():
                raise StreamCharError(f"checkpoint {path} is missing {name}")
        where = component_paths(path)
        cfg = StreamCharConfig.from_yaml(path / "config.yaml")
        cfg.video.path, cfg.audio.path, cfg.text.path = (str(where[n]) for n in ("video_codec", "audio_codec",
                                                                                   "text_encoder"))
        tokenizer = load_tokenizer(where["tokenizer"])
        _check_frontend(cfg, tokenizer)
        model = cls._build(cfg, tokenizer, empty=True)  # weights come from the files
        for name in ("dit", "orchestrator"):
            load_weights(getattr(model, name), where[name] / WEIGHTS)
        return model.to(device).eval()


def component_paths(path: Path) -> dict[str, Path]:
    """Each component's folder, as model_index.json gives it (relative to the pipeline folder; a bundled
    pipeline may share a sibling's codecs: "../tiny-codecs/video_codec"), or the component's name."""
    try:
        index = json.loads((path / "model_index.json").read_text())
    except json.JSONDecodeError as e:
        raise StreamCharError(f"checkpoint {path}: model_index.json is not JSON ({e})") from e
    out = {}
    for name in COMPONENTS:
        entry = index.get(name)
        rel = entry.get("path", name) if isinstance(entry, dict) else name
        out[name] = (path / rel).resolve()
        if not out[name].exists():
            raise StreamCharError(f"checkpoint {path} is missing {name}" + (f" (at {rel})" if rel != name else ""))
    return out


def _check_frontend(cfg: StreamCharConfig, tokenizer) -> None:
    from streamchar.codecs.phonemes import PhonemeTokenizer

    reads = "phonemes" if isinstance(tokenizer, PhonemeTokenizer) else "text"
    if reads != cfg.orchestrator.text_frontend:
        raise StreamCharError(f"config field orchestrator.text_frontend is {cfg.orchestrator.text_frontend!r} but "
                              f"the tokenizer reads {reads} (set the field to {reads!r}, or give a "
                              f"{cfg.orchestrator.text_frontend} tokenizer)")


def _text_tokenizer(cfg: StreamCharConfig, tokenizer):
    """The tiny prompt encoder's tokenizer: the orchestrator's, or the tiny BPE when that one reads phonemes
    (a prompt is read as text by the prompt encoder whatever the orchestrator's frontend)."""
    from streamchar.codecs import build_tiny_tokenizer

    return build_tiny_tokenizer(cfg.orchestrator.vocab_size) if cfg.orchestrator.text_frontend == "phonemes" \
        else tokenizer


COMPONENTS = {
    "dit": "streamchar.models.dit.JointDiT",
    "orchestrator": "streamchar.models.orchestrator.Orchestrator",
    "tokenizer": "transformers.PreTrainedTokenizerFast",
    "video_codec": "streamchar.codecs.VideoCodec",  # the saved index names the codec's own class
    "audio_codec": "streamchar.codecs.AudioCodec",
    "text_encoder": "streamchar.codecs.T5PromptEncoder",
}
WEIGHTS = "model.safetensors"


def _qualname(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _component(name: str, path: str | None, build):
    """Build one component from its folder; a damaged folder (truncated weights, bad config) is a one-line
    error naming it, not a library traceback."""
    try:
        return build()
    except StreamCharError:
        raise
    except Exception as e:  # diffusers / transformers / safetensors raise many kinds
        where = f" from {path}" if path else ""
        raise StreamCharError(f"cannot load the {name}{where}: {e.__class__.__name__}: {str(e).splitlines()[0][:200]}"
                              ) from None


def load_weights(module: nn.Module, file: Path) -> None:
    """Load a safetensors file into `module` (all keys, exact shapes), naming the file in every error."""
    if not file.is_file():
        raise StreamCharError(f"weights file not found: {file}")
    try:
        # .clone(): safetensors hands out 16-byte-aligned buffers, on which CPU BLAS takes other code paths
        # (results differ in the last bit); a fresh allocation is 64-byte aligned, so loads reproduce exactly.
        with safe_open(str(file), framework="pt") as f:
            sd = {key: f.get_tensor(key).clone() for key in f.keys()}
    except (SafetensorError, OSError) as e:
        raise StreamCharError(f"cannot read {file}: {e}") from None
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise StreamCharError(f"{file} does not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, value in sd.items():
        if own[key].shape != value.shape:
            raise StreamCharError(f"{file}: {key} has shape {tuple(value.shape)}, the config expects "
                                  f"{tuple(own[key].shape)}")
    module.load_state_dict(sd, assign=True)


def _check_codecs(cfg: StreamCharConfig, video, audio, text) -> None:
    """The codecs must honour the chunk contract the config promises."""
    from streamchar.codecs.tiny_audio import TinyAudioCodec
    from streamchar.codecs.tiny_video import TinyVideoCodec

    checks = [("video.arch", cfg.video.arch, "tiny" if isinstance(video, TinyVideoCodec) else "wan"),
              ("audio.arch", cfg.audio.arch, "tiny" if isinstance(audio, TinyAudioCodec) else "oobleck"),
              ("video.latent_channels", cfg.video.latent_channels, video.latent_channels),
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
        dit, orch = JointDiT.from_config(cfg), Orchestrator.from_config(cfg)
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
