"""Upstream weights into our models, checked against the upstream implementations (tiny, random, real formats)."""

import inspect
import json
import shutil

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from streamchar.config import DiTConfig, OrchestratorConfig
from streamchar.errors import StreamCharError
from streamchar.models.dit import JointDiT
from streamchar.models.orchestrator import Orchestrator
from streamchar.models.weights import (
    NEW_PARTS,
    dit_config_from_wan,
    load_orchestrator_weights,
    load_qwen2,
    load_wan_into_dit,
    wan_state_dict_to_ours,
)

# diffusers -> original Wan release names, written out here independently of weights.py.
TOP = {"patch_embedding": "patch_embedding", "proj_out": "head.head", "scale_shift_table": "head.modulation",
       "condition_embedder.time_embedder.linear_1": "time_embedding.0",
       "condition_embedder.time_embedder.linear_2": "time_embedding.2",
       "condition_embedder.time_proj": "time_projection.1",
       "condition_embedder.text_embedder.linear_1": "text_embedding.0",
       "condition_embedder.text_embedder.linear_2": "text_embedding.2"}
BLOCK = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
         "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
         "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
         "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
         "norm2": "norm3", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2", "scale_shift_table": "modulation"}


def to_original(sd):
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "blocks":
            head, rest = ".".join(parts[:2]), ".".join(parts[2:])
            table = BLOCK
        else:
            head, rest, table = "", k, TOP
        module, param = (rest, None) if rest in table else rest.rsplit(".", 1)
        name = table[module] + ("" if param is None else "." + param)
        out[f"{head}.{name}" if head else name] = v.contiguous()
    return out


ORIGINAL_CONFIG = {"_class_name": "WanModel", "dim": 64, "eps": 1e-6, "ffn_dim": 128, "freq_dim": 256, "in_dim": 16,
                   "model_type": "ti2v", "num_heads": 2, "num_layers": 2, "out_dim": 16, "text_len": 512,
                   "text_dim": 32}


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    """A tiny random diffusers Wan transformer saved in its folder, its inputs and its velocity."""
    torch.manual_seed(0)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=16,
                              out_channels=16, text_dim=32, freq_dim=256, ffn_dim=128, num_layers=2,
                              cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                              rope_max_seq_len=1024).eval()
    with torch.no_grad():
        for p in m.parameters():  # some are zero / one at init: randomise all of them
            p.normal_(0, 0.05)
    folder = tmp_path_factory.mktemp("wan") / "diffusers"
    m.save_pretrained(folder)
    g = torch.Generator().manual_seed(1)
    lat, ctx = torch.randn(1, 16, 3, 8, 8, generator=g), torch.randn(1, 12, 32, generator=g)
    ts = torch.full((1, 3 * 4 * 4), 700.0)
    ts[:, :16] = 0.0  # TI2V: the first latent frame's tokens are clean
    with torch.no_grad():
        v = m(hidden_states=lat, timestep=ts, encoder_hidden_states=ctx, return_dict=False)[0]
    return dict(model=m, folder=folder, lat=lat, ctx=ctx, ts=ts, v=v, sd=m.state_dict())


def ours(ffn_dim=128, num_layers=2):
    torch.manual_seed(5)
    cfg = DiTConfig(dim=64, num_layers=num_layers, num_heads=2, ffn_dim=ffn_dim, freq_dim=256)
    return JointDiT(cfg, video_channels=16, audio_channels=8, text_dim=32, audio_rope_scale=0.25,
                    frames_per_chunk=9).eval()


def velocity(dit, w):
    """Video-only step: no audio tokens, no condition tokens, per-token t in [0, 1]."""
    with torch.no_grad():
        cache = dit.encode_conditions([], w["ctx"])
        v, a = dit(w["lat"], torch.zeros(1, 0, 8), torch.zeros(1, 0, 64), w["ts"] / 1000.0, cache)
    assert a.shape == (1, 0, 8)
    return v


def check_loaded(dit, report, w):
    assert (velocity(dit, w) - w["v"]).abs().max() <= 1e-4
    for blk in dit.blocks:
        for a, b in zip(blk.audio_ffn.parameters(), blk.ffn.parameters()):
            assert torch.equal(a, b)
    assert report.missing == [] and report.unexpected == []
    assert len(report.replicated) == 2 * 4 and all(".audio_ffn." in k for k in report.replicated)
    new = [k for k in dit.state_dict() if k.split(".")[0] in NEW_PARTS]
    parts = set(NEW_PARTS) - ({"audio_to_video"} if dit.audio_to_video is None else set())  # ours, optional
    assert report.new == new and {k.split(".")[0] for k in new} == parts
    assert "missing" in report.summary()


# ---- Wan -------------------------------------------------------------------------------------------------

def test_fresh_dit_differs_from_diffusers(wan):  # so the oracle tests below can fail
    assert (velocity(ours(), wan) - wan["v"]).abs().max() > 1e-2


@pytest.mark.parametrize("sharded", [False, True])
def test_diffusers_folder_matches_diffusers(wan, tmp_path, sharded):
    folder = wan["folder"]
    if sharded:
        folder = tmp_path / "sharded"
        wan["model"].save_pretrained(folder, max_shard_size="60KB")
        assert len(list(folder.glob("*.safetensors"))) > 1 and list(folder.glob("*.index.json"))
    dit = ours()
    check_loaded(dit, load_wan_into_dit(dit, folder), wan)


@pytest.mark.parametrize("form", ["file", "shards", "pth", "prefixed"])
def test_original_layout_matches_diffusers(wan, tmp_path, form):
    sd = to_original(wan["sd"])
    if form == "file":
        path = tmp_path / "wan.safetensors"
        save_file(sd, path)
    elif form == "shards":  # as the Wan2.2 release: config.json + index + diffusion_pytorch_model-*.safetensors
        path, keys = tmp_path, sorted(sd)
        weight_map = {}
        for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):
            name = f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"
            save_file({k: sd[k] for k in part}, path / name)
            weight_map.update({k: name for k in part})
        (path / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        (path / "config.json").write_text(json.dumps(ORIGINAL_CONFIG))
    elif form == "pth":
        path = tmp_path / "wan.pth"
        torch.save(sd, path)
    else:
        path = tmp_path / "wan.safetensors"
        save_file({f"model.diffusion_model.{k}": v for k, v in sd.items()}, path)
    dit = ours()
    check_loaded(dit, load_wan_into_dit(dit, path), wan)


def test_state_dict_conversion(wan):
    expected = to_original(wan["sd"])
    got = wan_state_dict_to_ours(wan["sd"])
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in got)
    assert set(wan_state_dict_to_ours(expected)) == set(expected)  # the original layout is ours already
    assert set(got) == {k for k in ours().state_dict() if k.split(".")[0] not in NEW_PARTS and "audio_ffn" not in k}


def test_unexpected_keys_are_reported(wan, tmp_path):
    sd = to_original(wan["sd"])
    sd["blocks.0.cross_attn.k_img.weight"] = torch.zeros(64, 64)
    save_file(sd, tmp_path / "wan.safetensors")
    report = load_wan_into_dit(ours(), tmp_path / "wan.safetensors")
    assert report.unexpected == ["blocks.0.cross_attn.k_img.weight"]
    assert "k_img" in report.summary()


def test_shape_mismatch_names_file_key_and_shapes_and_leaves_model_untouched(wan, tmp_path):
    save_file(to_original(wan["sd"]), tmp_path / "wan.safetensors")
    dit = ours(ffn_dim=96)
    before = {k: v.clone() for k, v in dit.state_dict().items()}
    with pytest.raises(StreamCharError) as e:
        load_wan_into_dit(dit, tmp_path / "wan.safetensors")
    assert e.match(r"wan\.safetensors: tensor blocks\.0\.ffn\.0\.(weight|bias) has shape \(128(, 64)?,?\), "
                   r"the model expects \(96(, 64)?,?\)")
    assert all(torch.equal(v, before[k]) for k, v in dit.state_dict().items())


def test_config_mismatch_names_the_field(wan):
    with pytest.raises(StreamCharError, match=r"config\.json: field num_layers is 2 .* num_layers = 3"):
        load_wan_into_dit(ours(num_layers=3), wan["folder"])


def test_truncated_and_missing_files(wan, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(wan["folder"], folder)
    f = folder / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(StreamCharError, match="diffusion_pytorch_model.safetensors"):
        load_wan_into_dit(ours(), folder)
    with pytest.raises(StreamCharError, match="not found"):
        load_wan_into_dit(ours(), tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamCharError, match="no weights"):
        load_wan_into_dit(ours(), tmp_path / "empty")


def test_dit_config_from_wan(wan):
    expected = dict(dim=64, num_heads=2, num_layers=2, ffn_dim=128, freq_dim=256, eps=1e-6, qk_norm=True,
                    cross_attn_norm=True, patch_size=(1, 2, 2), video_latent_channels=16, text_dim=32)
    assert dit_config_from_wan(wan["folder"]) == expected
    assert dit_config_from_wan(ORIGINAL_CONFIG) == expected
    d = dit_config_from_wan(wan["folder"])
    channels, text_dim = d.pop("video_latent_channels"), d.pop("text_dim")
    dit = JointDiT(DiTConfig(**d), channels, 8, text_dim, 0.25, 9)
    assert load_wan_into_dit(dit, wan["folder"]).missing == []
    # Fields a config leaves out take the class defaults: diffusers' must be the installed class's.
    defaults = {k: p.default for k, p in inspect.signature(WanTransformer3DModel.__init__).parameters.items()}
    d = dit_config_from_wan({"_class_name": "WanTransformer3DModel"})
    assert d["dim"] == defaults["num_attention_heads"] * defaults["attention_head_dim"]
    assert (d["num_layers"], d["ffn_dim"], d["text_dim"], d["video_latent_channels"], d["patch_size"]) == (
        defaults["num_layers"], defaults["ffn_dim"], defaults["text_dim"], defaults["in_channels"],
        tuple(defaults["patch_size"]))
    with pytest.raises(StreamCharError, match="out_dim"):
        dit_config_from_wan({**ORIGINAL_CONFIG, "in_dim": 36})
    with pytest.raises(StreamCharError, match="not a Wan transformer config"):
        dit_config_from_wan({"hidden_size": 3})


# ---- Qwen2 ---------------------------------------------------------------------------------------------

QWEN = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    torch.manual_seed(3)
    m = Qwen2ForCausalLM(Qwen2Config(**QWEN, tie_word_embeddings=True)).eval()
    folder = tmp_path_factory.mktemp("qwen") / "qwen2"
    m.save_pretrained(folder)
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        h = m.model(input_ids=ids).last_hidden_state
    return dict(folder=folder, ids=ids, h=h, rope_theta=m.config.rope_parameters["rope_theta"])


def orch_cfg(qwen, **kw):
    base = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128, vocab_size=300,
                rope_theta=qwen["rope_theta"])
    return OrchestratorConfig(**{**base, **kw})


def test_load_qwen2_matches_the_original(qwen):
    lm = load_qwen2(qwen["folder"])
    with torch.no_grad():
        h = lm(input_ids=qwen["ids"]).last_hidden_state
    assert torch.allclose(h, qwen["h"], atol=1e-6)
    assert load_qwen2(qwen["folder"], dtype=torch.bfloat16).embed_tokens.weight.dtype == torch.bfloat16


def test_load_orchestrator_weights(qwen):
    torch.manual_seed(0)
    o = Orchestrator(orch_cfg(qwen), audio_channels=8, dit_dim=64, pap_dim=16).eval()
    with torch.no_grad():
        assert not torch.allclose(o.lm(input_ids=qwen["ids"]).last_hidden_state, qwen["h"], atol=1e-3)
        load_orchestrator_weights(o, qwen["folder"])
        assert torch.allclose(o.lm(input_ids=qwen["ids"]).last_hidden_state, qwen["h"], atol=1e-6)


@pytest.mark.parametrize("field,value,label", [("num_kv_heads", 4, "num_key_value_heads"),
                                               ("intermediate_size", 96, "intermediate_size"),
                                               ("rope_theta", 1e6, "rope_theta")])
def test_orchestrator_mismatch_names_the_field(qwen, field, value, label):
    o = Orchestrator(orch_cfg(qwen, **{field: value}), audio_channels=8, dit_dim=64, pap_dim=16)
    with pytest.raises(StreamCharError, match=rf"config\.json: field {label} .* orchestrator\.{field}"):
        load_orchestrator_weights(o, qwen["folder"])


def test_qwen2_bad_folders(qwen, tmp_path):
    with pytest.raises(StreamCharError, match="not found"):
        load_qwen2(tmp_path / "nowhere")
    (tmp_path / "noconfig").mkdir()
    with pytest.raises(StreamCharError, match="no config.json"):
        load_qwen2(tmp_path / "noconfig")
    broken = tmp_path / "broken"
    shutil.copytree(qwen["folder"], broken)
    f = broken / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(StreamCharError, match="broken"):
        load_qwen2(broken)
    o = Orchestrator(orch_cfg(qwen), audio_channels=8, dit_dim=64, pap_dim=16)
    with pytest.raises(StreamCharError, match="model.safetensors"):
        load_orchestrator_weights(o, broken)
