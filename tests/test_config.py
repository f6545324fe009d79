import pytest

from streamchar.config import StreamCharConfig, paper, preset, tiny
from streamchar.errors import StreamCharError


def test_tiny_chunk_contract():
    cfg = tiny()
    assert cfg.chunk_seconds == 33 / 24
    assert cfg.video_latent_frames == 9
    assert cfg.audio_latent_frames == 33
    assert cfg.audio_rope_scale == 0.25  # 6 fps video latents vs 24 Hz audio latents
    assert cfg.history_frames == 360  # exactly 15 s of 24 Hz audio latents (not whole chunks)


def test_paper_preset_matches_upstream_dims():
    cfg = paper()
    d, o = cfg.dit, cfg.orchestrator
    assert (d.dim, d.num_layers, d.num_heads, d.ffn_dim, tuple(d.patch_size)) == (3072, 30, 24, 14336, (1, 2, 2))
    assert cfg.video.latent_channels == 48 and cfg.text.dim == 4096
    assert (o.hidden_size, o.num_layers, o.num_heads, o.num_kv_heads, o.vocab_size) == (2048, 36, 16, 2, 151936)
    # the paper's codecs: 49,152 Hz / 2048 = 24 Hz audio latents, 512 / 16 = 32 latent pixels
    assert cfg.audio_latent_rate == 24 and cfg.latent_size == (32, 32) and cfg.audio_latent_frames == 33


def test_yaml_round_trip(tmp_path):
    cfg = paper()
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    back = StreamCharConfig.from_yaml(path)
    assert back == cfg
    assert back.dit.patch_size == (1, 2, 2)


@pytest.mark.parametrize("section,key,value,message", [
    ("dit", "num_heads", 5, "dit.num_heads"),
    ("dit", "dim", -4, "dit.dim"),
    ("dit", "num_layers", "four", "dit.num_layers"),
    ("video", "height", 60, "video.height"),
    ("stream", "frames_per_chunk", 32, "stream.frames_per_chunk"),
    ("stream", "student_timesteps", [250, 500], "stream.student_timesteps"),
    ("audio", "hop_length", 1000, "audio.hop_length"),
    ("orchestrator", "num_kv_heads", 3, "orchestrator.num_kv_heads"),
    ("dit", "no_such_key", 1, "dit.no_such_key"),
])
def test_bad_value_names_the_field(section, key, value, message):
    data = tiny().to_dict()
    data[section][key] = value
    with pytest.raises(StreamCharError, match=message.replace(".", r"\.")):
        StreamCharConfig.from_dict(data)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(StreamCharError, match="not found"):
        StreamCharConfig.from_yaml(tmp_path / "missing.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(StreamCharError, match="mapping"):
        StreamCharConfig.from_yaml(p)
    with pytest.raises(StreamCharError, match="unknown preset"):
        preset("huge")


def test_override_settings():
    cfg = tiny().override(["dit.dim=192", "dit.ffn_dim=576", "stream.guidance_video=3.5", "stream.sampler=student"])
    assert cfg.dit.dim == 192 and cfg.dit.ffn_dim == 576 and cfg.stream.guidance_video == 3.5
    assert cfg.stream.sampler == "student" and tiny().dit.dim == 128  # a copy
    for bad, match in (("dit.dimm=3", "unknown key dit.dimm"), ("dit.dim", "KEY=VALUE"), ("dit.dim=abc", "dit.dim"),
                       ("stream.sampler=euler", "stream.sampler"), ("nope.x=1", "not a config section"),
                       ("dit.num_heads=5", "dit.num_heads")):
        with pytest.raises(StreamCharError, match=match):
            tiny().override([bad])
