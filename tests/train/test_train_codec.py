import json

import pytest
import torch

from streamchar.codecs.oobleck_audio import OobleckAudioCodec
from streamchar.codecs.tiny_audio import TinyAudioCodec
from streamchar.codecs.tiny_video import TinyVideoCodec
from streamchar.codecs.wan_video import WanVideoCodec
from streamchar.configs import CONFIGS
from streamchar.errors import StreamCharError
from streamchar.train.clips import AudioCrops, EpochLoader, VideoChunks, load_clips
from streamchar.train.codec import (
    CodecTrainConfig,
    audio_crop_samples,
    build_codec,
    make_loss_fn,
    run_codec_training,
    training_module,
)
from streamchar.train.config import TrainConfig
from streamchar.train.data import ResumableLoader
from streamchar.train.engine import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def synthtalk(tmp_path_factory):
    from streamchar.data.synthtalk import generate

    out = tmp_path_factory.mktemp("codec") / "synthtalk"
    generate(out, 3, seed=0, workers=1, progress=False)  # 1 train, 1 val, 1 test clip
    return out


def small_cfg(kind, data, out_dir, **kw):
    train = TrainConfig(steps=kw.pop("steps", 3), lr=1e-3, log_every=1, out_dir=str(out_dir))
    return CodecTrainConfig(kind=kind, data=str(data), eval_splits=["test"], eval_clips=1, eval_chunks=1,
                            frames=5, crop_seconds=0.25, train=train, **kw)


def overfit(cfg, batch, steps=20):
    codec = build_codec(cfg)
    trainer = Trainer(training_module(cfg, codec), make_loss_fn(cfg), ResumableLoader([batch[0]] * len(batch), 1,
                                                                                  shuffle=False), cfg.train)
    return trainer.fit()


def test_crops_are_deterministic_by_index_and_epoch(synthtalk):
    clips = load_clips(synthtalk, ["train"], 24576, 1, keep="both")
    video, audio = VideoChunks(clips, 5, items_per_clip=4), AudioCrops(clips, 6144, items_per_clip=4)
    assert video[1].shape == (3, 5, 64, 64) and audio[1].shape == (1, 6144)
    assert video[1].min() >= -1 and video[1].max() <= 1
    assert torch.equal(audio[2], audio[2]) and not torch.equal(audio[1], audio[2])
    first = audio[1].clone()
    audio.epoch = 1
    assert not torch.equal(audio[1], first)
    loader = EpochLoader(audio, 2, seed=0)
    list(loader)
    assert audio.epoch == 0 and loader.sampler.epoch == 1  # the loader sets the epoch of each pass


@pytest.mark.parametrize("kind, arch", [("video", "tiny"), ("video", "wan"), ("audio", "tiny"), ("audio", "oobleck")])
def test_loss_falls_on_a_fixed_batch(synthtalk, tmp_path, kind, arch):
    # audio: 40 steps (the tiny audio codec's loss is noisy step to step: after 20 steps its last three were
    # 0.87 of its first three on one machine, 0.64 after 40); video: 20
    cfg = small_cfg(kind, synthtalk, tmp_path, steps=40 if kind == "audio" else 20, **{f"{kind}_arch": arch})
    clips = load_clips(synthtalk, ["train"], 24576, 1, keep=kind)
    torch.manual_seed(0)
    if kind == "video":
        item = VideoChunks(clips, cfg.frames)[0]
    else:  # the loudest of a few crops, so it is speech, not silence
        crops = AudioCrops(clips, audio_crop_samples(cfg, OobleckAudioCodec.tiny()), items_per_clip=8)
        item = max((crops[i] for i in range(8)), key=lambda c: float(c.abs().mean()))
    losses = overfit(cfg, [item])
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3]), losses


@pytest.mark.parametrize("arch, cls", [("tiny", TinyVideoCodec), ("wan", WanVideoCodec)])
def test_video_run_saves_a_loadable_codec(synthtalk, tmp_path, arch, cls):
    report = run_codec_training(small_cfg("video", synthtalk, tmp_path, video_arch=arch))
    assert report["steps"] == 3 and len(report["losses"]) == 3
    assert report["psnr_before"] > 0 and report["psnr_after"] > 0 and 0 < report["ssim_after"] <= 1
    assert json.loads((tmp_path / "report.json").read_text())["psnr_after"] == report["psnr_after"]
    trained = report["codec"]
    loaded = cls.from_pretrained(tmp_path / "codec")
    assert loaded.latents_std.flatten().tolist() == pytest.approx(report["latents_std"])
    x = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.encode(x), trained.encode(x), atol=1e-5)


@pytest.mark.parametrize("arch, cls", [("tiny", TinyAudioCodec), ("oobleck", OobleckAudioCodec)])
def test_audio_run_saves_a_loadable_normalising_codec(synthtalk, tmp_path, arch, cls):
    report = run_codec_training(small_cfg("audio", synthtalk, tmp_path, audio_arch=arch, audio_dim=64))
    assert report["steps"] == 3
    assert 0 <= report["wer_original"] and 0 <= report["wer_roundtrip"] and report["wer_backend"]
    trained = report["codec"]
    loaded = cls.from_pretrained(tmp_path / "codec")
    clip = load_clips(synthtalk, ["train"], loaded.sample_rate, 1, keep="audio")[0]
    wave = torch.from_numpy(clip.audio)[None]  # (1, 1, S)
    with torch.no_grad():
        z = loaded.encode(wave)  # (1, T_a, C_a)
        assert torch.allclose(z, trained.encode(wave), atol=1e-5)
    assert z.mean(dim=(0, 1)).abs().max() < 1e-3  # the training latents, normalised
    assert (z.std(dim=(0, 1)) - 1).abs().max() < 1e-2


def test_config_yaml_and_errors(tmp_path):
    cfg = CodecTrainConfig(kind="audio", train=TrainConfig(steps=7, out_dir="x"))
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    back = CodecTrainConfig.from_yaml(path)
    assert back == cfg and back.train.steps == 7
    with pytest.raises(StreamCharError, match="unknown key"):
        CodecTrainConfig.from_dict({"kind": "video", "nope": 1})
    with pytest.raises(StreamCharError, match="train.lr"):
        CodecTrainConfig.from_dict({"train": {"lr": 0}})
    with pytest.raises(StreamCharError, match="frames"):
        CodecTrainConfig.from_dict({"frames": 32})
    for name in ("codec_video_tiny", "codec_audio_tiny"):
        CodecTrainConfig.from_yaml(CONFIGS / f"{name}.yaml")


def test_cli_rejects_a_config_of_the_other_kind(capsys):
    from streamchar.cli import main

    assert main(["train", "codec-audio", "--config", "configs/codec_video_tiny.yaml", "--steps", "1"]) == 2
    assert "kind: audio" in capsys.readouterr().err


def test_rerendered_characters_are_deterministic_and_new(synthtalk):
    from streamchar.data.identity import IDENTITIES, codec_identities

    characters = codec_identities(32)
    assert len(characters) == 32 and not {c.skin for c in characters} <= {IDENTITIES[0].skin}
    assert all(c.name.startswith("codec-") for c in characters)
    clips = load_clips(synthtalk, ["train"], 24576, 1, keep="video")
    plain = VideoChunks(clips, 5, items_per_clip=8)
    mixed = VideoChunks(clips, 5, items_per_clip=8, characters=characters, rerender=1.0)
    assert torch.equal(mixed[3], mixed[3]) and mixed[3].shape == plain[3].shape
    assert mixed[3].min() >= -1 and mixed[3].max() <= 1
    assert all(not torch.equal(mixed[i], plain[i]) for i in range(8))  # the same run, another character
    means = torch.stack([mixed[i].mean(dim=(1, 2, 3)) for i in range(8)])  # (8, 3): colours vary by item
    assert means.std(0).min() > 0.01
    with pytest.raises(StreamCharError, match="rerender"):
        VideoChunks(clips, 5, characters=characters, rerender=1.5)




def test_log_mel_loss_compares_what_is_heard():
    from streamchar.train.codec import LogMelLoss

    loss = LogMelLoss(24576)
    t = torch.arange(24576) / 24576
    tone = (0.3 * torch.sin(2 * torch.pi * 440 * t)).view(1, 1, -1)
    assert loss(tone, tone).item() == 0.0
    shifted = torch.roll(tone, 7, dims=-1)  # same sound, other phase: close
    other = (0.3 * torch.sin(2 * torch.pi * 1800 * t)).view(1, 1, -1)  # another pitch: far
    assert loss(shifted, tone).item() < 0.1 * loss(other, tone).item()
    with pytest.raises(StreamCharError, match="mel_weight"):
        CodecTrainConfig(kind="audio", mel_weight=-1.0).validate()
