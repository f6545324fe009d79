import json

import pytest
import torch

from streamchar.codecs import OobleckAudioCodec, WanVideoCodec
from streamchar.codecs.load import (
    build_audio_codec,
    build_video_codec,
    codec_folder_arch,
    load_audio_codec,
    load_pipeline_codecs,
    load_video_codec,
)
from streamchar.codecs.tiny_audio import TinyAudioCodec
from streamchar.codecs.tiny_video import TinyVideoCodec
from streamchar.config import paper, tiny
from streamchar.errors import StreamCharError


def test_build_by_arch():
    cfg = tiny()
    assert isinstance(build_video_codec(cfg.video), TinyVideoCodec)
    assert isinstance(build_audio_codec(cfg.audio), TinyAudioCodec)
    assert build_audio_codec(cfg.audio).latent_channels == cfg.audio.latent_channels
    assert (paper().video.arch, paper().audio.arch) == ("wan", "oobleck")


@pytest.mark.parametrize("make, kind, cls", [(TinyVideoCodec.tiny, "video", TinyVideoCodec),
                                             (WanVideoCodec.tiny, "video", WanVideoCodec),
                                             (TinyAudioCodec.tiny, "audio", TinyAudioCodec),
                                             (OobleckAudioCodec.tiny, "audio", OobleckAudioCodec)])
def test_folders_load_as_their_class(tmp_path, make, kind, cls):
    torch.manual_seed(0)
    make().save_pretrained(tmp_path / "c")
    codec = (load_video_codec if kind == "video" else load_audio_codec)(tmp_path / "c")
    assert type(codec) is cls
    wrong = "audio" if kind == "video" else "video"
    with pytest.raises(StreamCharError, match=f"a {wrong} codec must be one of"):
        codec_folder_arch(tmp_path / "c", wrong)


def test_bad_folders(tmp_path):
    with pytest.raises(StreamCharError, match="not found"):
        load_video_codec(tmp_path / "absent")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StreamCharError, match="is a file"):
        load_audio_codec(tmp_path / "f")
    (tmp_path / "d").mkdir()
    with pytest.raises(StreamCharError, match="config.json"):
        load_video_codec(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(StreamCharError, match="UNet2DModel"):
        load_video_codec(tmp_path / "d")
    with pytest.raises(StreamCharError, match="no config.yaml"):
        load_pipeline_codecs(tmp_path / "d")


def test_codecs_only_skeleton_round_trip(tmp_path):
    from streamchar.cli import main

    torch.manual_seed(0)
    TinyVideoCodec.tiny().save_pretrained(tmp_path / "v")
    TinyAudioCodec.tiny().save_pretrained(tmp_path / "a")
    (tmp_path / "card.md").write_text("# card\n")
    assert main(["convert", "--preset", "tiny", "--codecs-only", "--video-vae", str(tmp_path / "v"),
                 "--audio-vae", str(tmp_path / "a"), "--card", str(tmp_path / "card.md"),
                 "--out", str(tmp_path / "skel")]) == 0
    video, audio, cfg = load_pipeline_codecs(tmp_path / "skel")
    assert (cfg.video.arch, cfg.audio.arch, cfg.audio.latent_channels) == ("tiny", "tiny", 32)
    assert json.loads((tmp_path / "skel" / "model_index.json").read_text())["skeleton"] is True
    assert (tmp_path / "skel" / "README.md").read_text() == "# card\n"
    # a skeleton cannot generate: it says so
    assert main(["generate", "--text", "hi", "--ref-image", "x.png", "--out", str(tmp_path / "o.mp4"),
                 "--checkpoint", str(tmp_path / "skel")]) == 2
