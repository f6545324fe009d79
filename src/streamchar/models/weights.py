"""Upstream weights into our models: Wan2.2 transformer -> `JointDiT`, Qwen2 / Qwen2.5 -> the orchestrator's LM.

Wan (paper §5.1). Two layouts exist on disk and both load:
- the original release (Wan-Video/Wan2.x `WanModel`): `blocks.N.self_attn.q`, `norm3`, `ffn.0`, `modulation`,
  `head.head`, `time_embedding.0`, ... These are our names, so it loads by name.
- diffusers (`WanTransformer3DModel`): `attn1.to_q`, `norm2`, `ffn.net.0.proj`, `scale_shift_table`, `proj_out`,
  `condition_embedder.*`, ... renamed by `wan_state_dict_to_ours` (the inverse of diffusers'
  `convert_wan_transformer_to_diffusers`; note diffusers' affine cross-attention norm `norm2` is Wan's `norm3`).
A `model.diffusion_model.` / `diffusion_model.` / `model.` prefix (single-file checkpoints) is stripped.

Files are read lazily (`safetensors.safe_open`, one tensor at a time, copied into the parameter in its dtype and
device), and every shape is checked before anything is written, so a bad checkpoint leaves the model untouched.

What the DiT gets:
- every Wan parameter, by name;
- the audio expert `blocks.N.audio_ffn` = a copy of the Wan FFN `blocks.N.ffn` (paper §5.1), unless the
  checkpoint has its own `audio_ffn` (e.g. our own trained weights in the original layout);
- the new parts `audio_embedding`, `audio_encoder`, `audio_decoder`, `audio_head` are not in Wan: they keep
  JointDiT's default init (PyTorch's default Linear init, LayerNorm/RMSNorm weights 1, the `audio_head`
  modulation randn / sqrt(dim) as Wan's head). So the audio velocity starts random, not at 0.
  `audio_to_video` (ours, when the config has it) starts at zero.

Qwen2: `load_qwen2` builds a `transformers.Qwen2Model` from a local `Qwen2ForCausalLM` folder (transformers
strips the `model.` prefix); `load_orchestrator_weights` copies such a folder into an existing Orchestrator's LM,
lazily, after checking its config.json against the orchestrator's config.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from streamchar.errors import StreamCharError

NEW_PARTS = ("audio_embedding", "audio_encoder", "audio_decoder", "audio_head", "audio_to_video")  # not in Wan: fresh init
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "")

# diffusers module name -> ours (original Wan). Top level, then inside `blocks.N.`.
_DIFFUSERS_TOP = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "proj_out": "head.head",
}
_DIFFUSERS_BLOCK = {
    "norm2": "norm3",  # the affine cross-attention norm (diffusers swapped norm2 / norm3)
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}
for _d, _o in (("attn1", "self_attn"), ("attn2", "cross_attn")):
    _DIFFUSERS_BLOCK.update({f"{_d}.to_q": f"{_o}.q", f"{_d}.to_k": f"{_o}.k", f"{_d}.to_v": f"{_o}.v",
                             f"{_d}.to_out.0": f"{_o}.o", f"{_d}.norm_q": f"{_o}.norm_q",
                             f"{_d}.norm_k": f"{_o}.norm_k"})

# Class defaults, used for fields a config.json leaves out. diffusers: WanTransformer3DModel.__init__;
# original: Wan's WanModel.__init__.
_DIFFUSERS_DEFAULTS = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16,
                           out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40,
                           cross_attn_norm=True, eps=1e-6)
_ORIGINAL_DEFAULTS = dict(patch_size=(1, 2, 2), in_dim=16, dim=2048, ffn_dim=8192, freq_dim=256, text_dim=4096,
                          out_dim=16, num_heads=16, num_layers=32, qk_norm=True, cross_attn_norm=True, eps=1e-6)


# ---- names ---------------------------------------------------------------------------------------------

def _layout(keys, source: str) -> tuple[str, str]:
    """-> (prefix, "diffusers" | "original") of a Wan transformer checkpoint's keys."""
    keys = set(keys)
    prefix = next((p for p in _PREFIXES if f"{p}patch_embedding.weight" in keys), None)
    if prefix is None:
        raise StreamCharError(f"{source}: not a Wan transformer checkpoint (no patch_embedding.weight)")
    if f"{prefix}proj_out.weight" in keys or f"{prefix}condition_embedder.time_proj.weight" in keys:
        return prefix, "diffusers"
    if f"{prefix}head.head.weight" in keys or f"{prefix}time_projection.1.weight" in keys:
        return prefix, "original"
    raise StreamCharError(f"{source}: cannot tell the Wan layout (neither proj_out.weight nor head.head.weight)")


def _diffusers_key(k: str) -> str:
    """One diffusers key -> ours; keys we do not know keep their name (they end up 'unexpected')."""
    if k == "scale_shift_table":
        return "head.modulation"
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", k)
    if m:
        n, rest = m.groups()
        if rest == "scale_shift_table":
            return f"blocks.{n}.modulation"
        module, _, param = rest.rpartition(".")
        return f"blocks.{n}.{_DIFFUSERS_BLOCK[module]}.{param}" if module in _DIFFUSERS_BLOCK else k
    module, _, param = k.rpartition(".")
    return f"{_DIFFUSERS_TOP[module]}.{param}" if module in _DIFFUSERS_TOP else k


def _rename(keys, source: str) -> dict[str, str]:
    """Checkpoint keys -> {checkpoint key: our key}."""
    keys = list(keys)
    prefix, layout = _layout(keys, source)
    out = {}
    for k in keys:
        name = k.removeprefix(prefix)
        out[k] = _diffusers_key(name) if layout == "diffusers" else name
    return out


def wan_state_dict_to_ours(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Wan transformer state dict (diffusers or original layout, optional prefix) in our (original) names."""
    return {ours: sd[k] for k, ours in _rename(sd.keys(), "state dict").items()}


# ---- files ---------------------------------------------------------------------------------------------

class _Reader:
    """One weights file: keys, shapes and tensors, read lazily (safetensors) or via torch.load (.pth/.pt/.bin)."""

    def __init__(self, file: Path):
        self.file = file
        try:
            if file.suffix == ".safetensors":
                self.f, self.sd = safe_open(str(file), framework="pt", device="cpu"), None
            else:
                try:
                    sd = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
                    sd = torch.load(file, map_location="cpu", weights_only=True)
                for wrapper in ("state_dict", "model", "module"):
                    if isinstance(sd, dict) and set(sd) == {wrapper} and isinstance(sd[wrapper], dict):
                        sd = sd[wrapper]
                if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
                    raise ValueError("not a state dict of tensors")
                self.f, self.sd = None, sd
        except Exception as e:
            raise StreamCharError(f"cannot read weights file {file}: {type(e).__name__}: {e}") from e

    def keys(self) -> list[str]:
        return list(self.f.keys()) if self.f is not None else list(self.sd)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.f.get_slice(key).get_shape()) if self.f is not None else tuple(self.sd[key].shape)

    def tensor(self, key: str) -> torch.Tensor:
        if self.sd is not None:
            return self.sd[key]
        try:
            return self.f.get_tensor(key)
        except Exception as e:
            raise StreamCharError(f"cannot read tensor {key} from {self.file}: {type(e).__name__}: {e}") from e


def _weight_files(path: Path) -> list[Path]:
    """A weights file, an *.index.json, or a folder (index json > *.safetensors > *.pth/*.pt/*.bin) -> files."""
    if not path.exists():
        raise StreamCharError(f"weights not found: {path}")
    if path.is_file() and not path.name.endswith(".index.json"):
        return [path]
    index = [path] if path.is_file() else sorted(path.glob("*.safetensors.index.json"))
    if len(index) > 1:
        raise StreamCharError(f"{path} holds several index files ({', '.join(i.name for i in index)}); "
                              f"pass the one to load")
    if index:
        try:
            shards = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
            raise StreamCharError(f"{index[0]} is not a valid index file (needs a weight_map): {e}") from None
        files = [index[0].parent / s for s in shards]
        for f in files:
            if not f.is_file():
                raise StreamCharError(f"{index[0]} names shard {f.name}, which is missing")
        return files
    for patterns in (("*.safetensors",), ("*.pth", "*.pt", "*.bin")):
        files = sorted(f for p in patterns for f in path.glob(p))
        if files:
            return files
    raise StreamCharError(f"no weights in {path} (expected *.safetensors or *.pth / *.pt / *.bin)")


def _open_all(files: list[Path]) -> dict[str, _Reader]:
    """{checkpoint key: reader of the file holding it}."""
    where = {}
    for file in files:
        r = _Reader(file)
        for k in r.keys():
            where[k] = r
    return where


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StreamCharError(f"cannot read {file}: {e}") from None
    if not isinstance(data, dict):
        raise StreamCharError(f"{file} must hold a JSON object")
    return data


def _copy_into(own: dict[str, torch.Tensor], plan: dict[str, tuple[_Reader, str]]) -> None:
    """Check every shape, then copy: {our key: (reader, checkpoint key)} into the tensors of `own`."""
    for ours, (r, k) in plan.items():
        found, expected = r.shape(k), tuple(own[ours].shape)
        if found != expected:
            named = k if k == ours else f"{k} (our {ours})"
            raise StreamCharError(f"{r.file}: tensor {named} has shape {found}, the model expects {expected}")
    with torch.no_grad():
        for ours, (r, k) in plan.items():
            own[ours].copy_(r.tensor(k))  # casts to the model's dtype / device


# ---- Wan -> JointDiT -----------------------------------------------------------------------------------

@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)  # our keys filled from the checkpoint
    missing: list[str] = field(default_factory=list)  # our keys the checkpoint lacks (left at init)
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys we do not use (checkpoint names)
    replicated: list[str] = field(default_factory=list)  # audio_ffn keys copied from the Wan FFN
    new: list[str] = field(default_factory=list)  # our new parts (NEW_PARTS), fresh init

    def summary(self) -> str:
        def some(names):
            return f" ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})" if names else ""

        return (f"Wan weights from {self.source}: {len(self.loaded)} tensors loaded, {len(self.replicated)} audio_ffn "
                f"tensors copied from the FFN, {len(self.new)} new ({', '.join(NEW_PARTS)}: fresh init), "
                f"{len(self.missing)} missing{some(self.missing)}, "
                f"{len(self.unexpected)} unexpected{some(self.unexpected)}")


def _wan_fields(c: dict) -> dict[str, tuple[object, str, bool]]:
    """A Wan config.json -> {our field: (value, its name in the config, written in the config?)}."""
    diffusers = "num_attention_heads" in c or c.get("_class_name") == "WanTransformer3DModel"
    if not diffusers and not ("num_heads" in c or c.get("_class_name") == "WanModel"):
        raise ValueError("not a Wan transformer config (no num_attention_heads / num_heads)")
    d = {**(_DIFFUSERS_DEFAULTS if diffusers else _ORIGINAL_DEFAULTS), **c}

    def f(name):
        return d[name], name, name in c

    if diffusers:
        heads, head_dim = d["num_attention_heads"], d["attention_head_dim"]
        out = dict(dim=(heads * head_dim, "num_attention_heads*attention_head_dim",
                        "num_attention_heads" in c or "attention_head_dim" in c),
                   num_heads=f("num_attention_heads"), video_latent_channels=f("in_channels"),
                   out_channels=(d["out_channels"] or d["in_channels"], "out_channels", "out_channels" in c),
                   # diffusers' WanAttention always builds norm_q / norm_k, whatever config.qk_norm says
                   qk_norm=(True, "qk_norm", False))
    else:
        out = dict(dim=f("dim"), num_heads=f("num_heads"), video_latent_channels=f("in_dim"),
                   out_channels=f("out_dim"), qk_norm=(bool(d["qk_norm"]), "qk_norm", "qk_norm" in c))
    for name in ("num_layers", "ffn_dim", "freq_dim", "text_dim", "eps"):
        out[name] = f(name)
    out["patch_size"] = (tuple(d["patch_size"]), "patch_size", "patch_size" in c)
    out["cross_attn_norm"] = (bool(d["cross_attn_norm"]), "cross_attn_norm", "cross_attn_norm" in c)
    return out


def _wan_config_file(path_or_config) -> tuple[dict, str]:
    if isinstance(path_or_config, dict):
        return path_or_config, "Wan config"
    p = Path(path_or_config)
    file = p / "config.json" if p.is_dir() else p
    if not p.exists():
        raise StreamCharError(f"Wan transformer not found: {p}")
    if file.suffix != ".json" or not file.is_file():
        raise StreamCharError(f"Wan transformer folder {p} has no config.json")
    return _read_json(file), str(file)


def dit_config_from_wan(path_or_config_dict) -> dict:
    """A Wan config (folder, config.json, or its dict; diffusers or original) -> our DiTConfig fields
    (dim, num_layers, num_heads, ffn_dim, patch_size, freq_dim, eps, qk_norm, cross_attn_norm) plus
    `video_latent_channels` and `text_dim`. Fields the config leaves out take the Wan class's defaults."""
    c, source = _wan_config_file(path_or_config_dict)
    try:
        fields = _wan_fields(c)
    except ValueError as e:
        raise StreamCharError(f"{source}: {e}") from None
    values = {k: v for k, (v, _, _) in fields.items()}
    out_channels = values.pop("out_channels")
    if out_channels != values["video_latent_channels"]:
        raise StreamCharError(f"{source}: {fields['out_channels'][1]} ({out_channels}) differs from "
                              f"{fields['video_latent_channels'][1]} ({values['video_latent_channels']}); "
                              f"the DiT needs the same video channels in and out")
    return values


def _check_wan_config(dit, file: Path) -> None:
    """Every field written in config.json must agree with the DiT (left-out fields are checked by shape)."""
    try:
        fields = _wan_fields(_read_json(file))
    except ValueError as e:
        raise StreamCharError(f"{file}: {e}") from None
    ours = {k: getattr(dit.cfg, k) for k in ("dim", "num_heads", "num_layers", "ffn_dim", "freq_dim", "eps",
                                             "qk_norm", "cross_attn_norm")}
    ours.update(patch_size=tuple(dit.cfg.patch_size), video_latent_channels=dit.video_channels,
                out_channels=dit.video_channels, text_dim=dit.text_embedding[0].in_features)
    for name, (value, label, written) in fields.items():
        same = abs(value - ours[name]) <= 1e-12 if name == "eps" else value == ours[name]
        if written and not same:
            theirs = "video_channels" if name in ("video_latent_channels", "out_channels") else name
            raise StreamCharError(f"{file}: field {label} is {value} but the DiT has {theirs} = {ours[name]}")


def load_wan_into_dit(dit, path) -> LoadReport:
    """Load a Wan transformer (diffusers or original folder, an index json, or one weights file) into a JointDiT.

    The Wan FFN is copied into each block's audio expert; the new audio parts keep their init (module doc).
    Raises StreamCharError for a missing path, a config.json or tensor shape that disagrees with the DiT, or an
    unreadable file. Returns what was loaded, replicated, left new, missing and unused.
    """
    path = Path(path)
    if not path.exists():
        raise StreamCharError(f"Wan transformer not found: {path}")
    if path.is_dir() and (path / "config.json").is_file():
        _check_wan_config(dit, path / "config.json")
    where = _open_all(_weight_files(path))
    names = _rename(where, str(path))  # checkpoint key -> our key
    own = dit.state_dict()
    plan = {ours: (where[k], k) for k, ours in names.items() if ours in own}
    _copy_into(own, plan)

    report = LoadReport(source=str(path), loaded=[k for k in own if k in plan],
                        unexpected=sorted(k for k, ours in names.items() if ours not in own))
    with torch.no_grad():
        for k in own:
            if k in plan:
                continue
            m = re.fullmatch(r"blocks\.(\d+)\.audio_ffn\.(.+)", k)
            ffn = m and f"blocks.{m[1]}.ffn.{m[2]}"
            if ffn and ffn in plan:
                own[k].copy_(own[ffn])  # the audio expert starts as Wan's FFN (paper §5.1)
                report.replicated.append(k)
            elif k.split(".")[0] in NEW_PARTS:
                report.new.append(k)
            else:
                report.missing.append(k)
    return report


# ---- Qwen2 -> the orchestrator -------------------------------------------------------------------------

def _qwen2_config(path: Path) -> dict:
    if not path.is_dir():
        raise StreamCharError(f"Qwen2 folder not found: {path}")
    file = path / "config.json"
    if not file.is_file():
        raise StreamCharError(f"Qwen2 folder {path} has no config.json")
    c = _read_json(file)
    if c.get("model_type") != "qwen2":
        raise StreamCharError(f"{file}: model_type is {c.get('model_type')!r}, expected 'qwen2' (Qwen2 / Qwen2.5)")
    return c


def load_qwen2(path, dtype=None):
    """A local Qwen2 / Qwen2.5 folder (config.json + safetensors, as Qwen2ForCausalLM saves it) -> Qwen2Model.

    dtype None keeps the checkpoint's dtype.
    """
    from transformers import Qwen2Model

    path = Path(path)
    _qwen2_config(path)
    try:
        lm, info = Qwen2Model.from_pretrained(path, local_files_only=True, dtype=dtype or "auto",
                                              output_loading_info=True)
    except Exception as e:
        raise StreamCharError(f"cannot load the Qwen2 weights in {path}: {type(e).__name__}: {e}") from e
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise StreamCharError(f"Qwen2 weights in {path} lack {len(missing)} tensors, e.g. {missing[:3]}")
    return lm.eval()


def load_orchestrator_weights(orchestrator, path) -> None:
    """Copy a local Qwen2 / Qwen2.5 folder into `orchestrator.lm` in place (its dtype and device).

    config.json must agree with orchestrator.cfg (dims, rope theta, norm eps); read lazily, shard by shard.
    """
    path = Path(path)
    c, cfg = _qwen2_config(path), orchestrator.cfg
    rope = c.get("rope_theta", (c.get("rope_parameters") or {}).get("rope_theta"))
    pairs = [("hidden_size", c.get("hidden_size"), "hidden_size"),
             ("num_hidden_layers", c.get("num_hidden_layers"), "num_layers"),
             ("num_attention_heads", c.get("num_attention_heads"), "num_heads"),
             ("num_key_value_heads", c.get("num_key_value_heads", c.get("num_attention_heads")), "num_kv_heads"),
             ("intermediate_size", c.get("intermediate_size"), "intermediate_size"),
             ("vocab_size", c.get("vocab_size"), "vocab_size"),
             ("rope_theta", rope, "rope_theta"), ("rms_norm_eps", c.get("rms_norm_eps"), "rms_norm_eps")]
    for label, value, ours in pairs:
        if value is not None and value != getattr(cfg, ours):
            raise StreamCharError(f"{path / 'config.json'}: field {label} is {value} but the orchestrator has "
                                  f"orchestrator.{ours} = {getattr(cfg, ours)}")
    where = _open_all(_weight_files(path))
    own = orchestrator.lm.state_dict()
    plan = {}
    for k in where:
        name = k.removeprefix("model.")
        if name in own:
            plan[name] = (where[k], k)
    missing = [k for k in own if k not in plan]
    if missing:
        raise StreamCharError(f"Qwen2 weights in {path} lack {len(missing)} tensors, e.g. {missing[:3]}")
    _copy_into(own, plan)
