import numpy as np
import pytest
import torch

from streamchar.config import tiny
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar, parameter_counts
from streamchar.streaming.session import StreamSession


@pytest.fixture(scope="module")
def model():
    return StreamChar.from_config(tiny(), seed=0)


def first_chunk(model):
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return StreamSession(model, text="hello world", ref_image=img, seed=3, max_seconds=1.0).step()


def test_save_and_load_reproduce_the_outputs(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "audio_codec", "config.yaml", "dit", "model_index.json", "orchestrator", "text_encoder", "tokenizer",
        "video_codec"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    back = StreamChar.from_pretrained(tmp_path / "ckpt")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    a, b = first_chunk(model), first_chunk(back)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert back.tokenizer("hello world")["input_ids"] == model.tokenizer("hello world")["input_ids"]


def test_codecs_shared_with_a_sibling_folder(model, tmp_path):
    """A bundled pipeline may point its codecs at another folder's (model_index.json paths), as `tiny-teacher`
    shares `tiny-codecs`': it loads the same model; a path to nothing is named in the error."""
    import json
    import shutil

    model.save_pretrained(tmp_path / "full")
    shutil.copytree(tmp_path / "full", tmp_path / "lean")
    (tmp_path / "codecs").mkdir()
    index = json.loads((tmp_path / "lean" / "model_index.json").read_text())
    for name in ("video_codec", "audio_codec"):
        shutil.move(tmp_path / "lean" / name, tmp_path / "codecs" / name)
        index[name]["path"] = f"../codecs/{name}"
    (tmp_path / "lean" / "model_index.json").write_text(json.dumps(index))
    back = StreamChar.from_pretrained(tmp_path / "lean")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    shutil.rmtree(tmp_path / "codecs" / "audio_codec")
    with pytest.raises(StreamCharError, match=r"missing audio_codec \(at ../codecs/audio_codec\)"):
        StreamChar.from_pretrained(tmp_path / "lean")


def test_bad_checkpoints(model, tmp_path):
    with pytest.raises(StreamCharError, match="nothing: no such folder, and not a bundled model"):
        StreamChar.from_pretrained(tmp_path / "nothing")
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "tokenizer").rename(tmp_path / "tok")
    with pytest.raises(StreamCharError, match="missing tokenizer"):
        StreamChar.from_pretrained(tmp_path / "ckpt")
    (tmp_path / "tok").rename(tmp_path / "ckpt" / "tokenizer")
    weights = tmp_path / "ckpt" / "dit" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(StreamCharError, match="model.safetensors"):
        StreamChar.from_pretrained(tmp_path / "ckpt")


def test_config_dims_disagreeing_with_weights(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    cfg_path = tmp_path / "ckpt" / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("ffn_dim: 384", "ffn_dim: 256"))
    with pytest.raises(StreamCharError, match="model.safetensors"):
        StreamChar.from_pretrained(tmp_path / "ckpt")


def test_parameter_counts_on_meta_device():
    counts = parameter_counts(tiny())
    real = StreamChar.from_config(tiny())
    assert counts["dit"] == sum(p.numel() for p in real.dit.parameters())
    assert counts["orchestrator"] + counts["pap"] == sum(p.numel() for p in real.orchestrator.parameters())
    assert 1e6 < counts["dit"] < 1e7  # "a few M params"


@pytest.mark.parametrize("component", ["video_codec", "audio_codec", "text_encoder"])
def test_damaged_component_folders_name_the_folder(model, tmp_path, component):
    """Every component of a pipeline folder, not only the DiT and orchestrator: a truncated weights file is a
    one-line error naming the component's folder."""
    model.save_pretrained(tmp_path / "ckpt")
    files = sorted((tmp_path / "ckpt" / component).rglob("*.safetensors"))
    assert files
    files[0].write_bytes(files[0].read_bytes()[:1000])  # truncated
    with pytest.raises(StreamCharError, match=f"cannot load the {component.replace('_', ' ')} from .*{component}"):
        StreamChar.from_pretrained(tmp_path / "ckpt")


def test_export_to_the_bundle_shares_equal_codecs(model, tmp_path):
    """bundled/export.py: a pipeline whose codecs equal the shared folder's keeps only a path to them; other
    codecs are copied; the exported folder loads the same model and has its card."""
    from streamchar.bundled.export import export_pipeline
    from streamchar.codecs.load import load_pipeline_codecs

    root = tmp_path / "bundle"
    root.mkdir()
    model.save_pretrained(tmp_path / "trained")
    model.save_pretrained(root / "codecs")  # the same codecs
    out = export_pipeline(tmp_path / "trained", "teacher", "# card\ntrained here", share="codecs", root=root)
    assert not (out / "video_codec").exists() and not (out / "audio_codec").exists()
    assert (out / "README.md").read_text().startswith("# card")
    back = StreamChar.from_pretrained(out)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert load_pipeline_codecs(out)[2].preset == "tiny"
    other = StreamChar.from_config(tiny(), seed=1)  # different random codecs: copied in
    other.save_pretrained(tmp_path / "other")
    out = export_pipeline(tmp_path / "other", "teacher", "# card", share="codecs", root=root)
    assert (out / "video_codec").is_dir() and (out / "audio_codec").is_dir()
    with pytest.raises(StreamCharError, match="card"):
        export_pipeline(tmp_path / "other", "x", "  ", share="codecs", root=root)
