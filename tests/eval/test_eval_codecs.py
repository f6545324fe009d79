import json

import pytest
import torch

from streamchar.bundled import bundled_names, resolve_checkpoint
from streamchar.cli import main
from streamchar.errors import StreamCharError


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory):
    from streamchar.codecs.tiny_audio import TinyAudioCodec
    from streamchar.codecs.tiny_video import TinyVideoCodec
    from streamchar.eval.judge import JudgeConfig, JudgeNet, SpeechJudge, WordLexicon

    root = tmp_path_factory.mktemp("skel")
    torch.manual_seed(0)
    TinyVideoCodec.tiny().save_pretrained(root / "v")
    TinyAudioCodec.tiny(dim=64).save_pretrained(root / "a")
    assert main(["convert", "--preset", "tiny", "--codecs-only", "--video-vae", str(root / "v"),
                 "--audio-vae", str(root / "a"), "--out", str(root / "skel")]) == 0
    SpeechJudge(JudgeNet(JudgeConfig(phonemes=["a", "b"], channels=16, blocks=1)),
                WordLexicon({"hello": [["a", "b"]]})).save_pretrained(root / "judge")
    return root


def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint(tmp_path) == tmp_path
    with pytest.raises(StreamCharError, match="not a bundled model"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StreamCharError, match="is a file"):
        resolve_checkpoint(tmp_path / "f")
    for name in bundled_names():
        assert resolve_checkpoint(name).is_dir()


def test_train_init_takes_a_bundled_name_and_names_the_option(skeleton, capsys):
    from streamchar.cli.options import model_folder

    for name in bundled_names():
        if (resolve_checkpoint(name) / "dit").is_dir():  # a trained pipeline (tiny-stage1, ...) starts a stage
            assert model_folder(name, "--init") == resolve_checkpoint(name)
    assert main(["train", "pretrain", "--init", "no-such-model", "--steps", "1"]) != 0
    assert "--init no-such-model: no such folder, and not a bundled model (bundled: " in capsys.readouterr().err
    with pytest.raises(StreamCharError, match="--teacher .* holds the codecs only"):
        model_folder(str(skeleton / "skel"), "--teacher")


def test_eval_codecs_json(make_synthtalk, skeleton, capsys, one_thread):
    data = make_synthtalk(3, seed=0)
    code = main(["eval-codecs", "--data", str(data), "--checkpoint", str(skeleton / "skel"), "--json",
                 "--clips", "1", "--chunks", "1", "--judge", str(skeleton / "judge")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("video_psnr", "video_ssim", "wer_original", "wer_roundtrip", "decode_s_per_chunk"):
        assert isinstance(out[key], float), key
    assert out["clips"] == 1 and out["wer_backend"].startswith("judge:") and 0 < out["video_ssim"] < 1
    assert out["decode_s_per_chunk"] == pytest.approx(out["video_decode_s"] + out["audio_decode_s"])


def test_eval_codecs_bad_input(tmp_path, skeleton, capsys):
    assert main(["eval-codecs", "--data", str(tmp_path / "absent")]) == 2
    assert "--data folder not found" in capsys.readouterr().err
    assert main(["eval-codecs", "--data", str(tmp_path)]) == 2
    assert "not a SynthTalk folder" in capsys.readouterr().err
    (tmp_path / "index.json").write_text("{}")
    assert main(["eval-codecs", "--data", str(tmp_path), "--checkpoint", "no-such-model"]) == 2
    assert "not a bundled model" in capsys.readouterr().err
    assert main(["eval-codecs", "--data", str(tmp_path), "--checkpoint", str(skeleton / "judge")]) == 2
    assert "not a pipeline folder" in capsys.readouterr().err


def test_score_truth(make_synthtalk, skeleton, tmp_path, capsys, one_thread):
    data = make_synthtalk(3, seed=0)
    code = main(["eval", "--score-truth", "--data", str(data), "--videos", str(tmp_path / "truth"),
                 "--out", str(tmp_path / "report"), "--judge", str(skeleton / "judge"), "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["metrics"]["wer"]["backend"] == "synthtalk-judge"
    assert len(report["videos"]) == 1 and (tmp_path / "truth" / f"{report['videos'][0]['key']}.txt").is_file()
    assert main(["eval", "--score-truth", "--videos", str(tmp_path / "t2"), "--out", str(tmp_path / "r2")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["eval", "--score-truth", "--data", str(data), "--protocol", "long", "--videos",
                 str(tmp_path / "t3"), "--out", str(tmp_path / "r3")]) == 2
    assert "--protocol short" in capsys.readouterr().err
