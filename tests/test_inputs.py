"""Every input a user can give gets a one-line answer naming the problem, and nothing is destroyed silently.

Run in-process through `streamchar.cli.main` (an exception other than the one-line error fails the test)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from streamchar.cli import build_parser, main
from streamchar.errors import StreamCharError

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(capsys, argv: list[str], *words: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("streamchar: error: "), err
    assert all(w in err for w in words), err
    return err


@pytest.fixture
def image(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (200, 120, 60)).save(path)
    return path


# -- 1. a wrong kind of path, found before any work -------------------------------------------------


def test_paths_of_the_wrong_kind(capsys, tmp_path, image):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    gen = ["generate", "--text", "hi", "--random-init", "--quiet"]
    one_line_error(capsys, gen + ["--ref-image", str(tmp_path / "adir"), "--out", str(tmp_path / "o.mp4")],
                   "--ref-image", "is a folder")
    one_line_error(capsys, gen + ["--ref-image", str(image), "--out", str(tmp_path / "afile" / "o.mp4")],
                   "afile is a file, not a folder")
    one_line_error(capsys, gen + ["--ref-image", str(image), "--out", str(tmp_path / "adir")], "is a folder")
    one_line_error(capsys, ["eval", "--videos", str(tmp_path / "afile"), "--out", str(tmp_path / "r")],
                   "--videos", "is a file")
    one_line_error(capsys, ["eval", "--videos", str(tmp_path / "adir"), "--out", str(tmp_path / "afile")],
                   "--out", "is a file")
    one_line_error(capsys, ["data", "synthtalk", "--num", "1", "--out", str(tmp_path / "afile")], "is a file")
    one_line_error(capsys, ["train", "pretrain", "--data", str(tmp_path / "afile")], "--data", "is a file")
    one_line_error(capsys, ["convert", "--out", str(tmp_path / "c"), "--video-vae", str(tmp_path / "afile")],
                   "--video-vae", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "face.png"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_output_is_found_before_the_model_is_built(capsys, image):
    """/proc takes no new files, not even for root: the error comes before any model is built or chunk made."""
    one_line_error(capsys, ["generate", "--text", "hi", "--random-init", "--ref-image", str(image), "--out",
                            "/proc/streamchar.mp4"], "--out", "cannot write into folder /proc")
    one_line_error(capsys, ["eval", "--videos", "/proc", "--out", "/proc/report"], "--out", "cannot write")


# -- 2. nothing destroyed silently ----------------------------------------------------------------


def test_training_into_a_folder_of_other_data_is_refused(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    one_line_error(capsys, ["train", "codec-video", "--out-dir", str(out)], "--out-dir", "not a training run",
                   "--overwrite")
    assert (out / "thesis.tex").read_text() == "precious"


def test_eval_refuses_an_existing_report_folder(capsys, tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text("{}")
    one_line_error(capsys, ["eval", "--videos", str(tmp_path / "videos"), "--out", str(report)],
                   "already holds data", "--overwrite")
    assert (report / "report.json").read_text() == "{}"


# -- 6. help and habits --------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser, prefix: tuple = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, prefix + (name,))
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield prefix, parser, action


def test_every_option_has_help_with_its_default():
    seen = 0
    for prefix, parser, action in _options(build_parser()):
        name = " ".join(prefix + (action.option_strings[-1],))
        assert action.help, f"{name} has no help text"
        text = parser.formatter_class(parser.prog)._get_help_string(action) % {"default": action.default}
        if action.default not in (None, False):
            assert "default" in text, f"{name}: the help does not show the default {action.default!r}"
        seen += 1
    assert seen > 80


def test_choices_come_from_the_code():
    from streamchar.config import PRESETS

    for prefix, _, action in _options(build_parser()):
        if action.dest == "preset":
            assert sorted(action.choices) == sorted(PRESETS), prefix


def test_installed_configs_work_from_any_folder(capsys, tmp_path, monkeypatch):
    from streamchar.configs import resolve_config
    from streamchar.train.pretrain import PretrainConfig

    monkeypatch.chdir(tmp_path)
    for name in ("pretrain_tiny", "pretrain_tiny.yaml", "configs/pretrain_tiny.yaml"):
        assert PretrainConfig.from_yaml(resolve_config(name)).preset == "tiny"
    with pytest.raises(StreamCharError, match="installed config: .*pretrain_tiny"):
        resolve_config("pretrain_huge")
    # the default config is found from here; what stops the run is the data it names, said in one line
    one_line_error(capsys, ["train", "pretrain", "--steps", "1", "--out-dir", str(tmp_path / "run")], "data")


def test_readme_python_snippet_runs_as_written(monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "the README has no Python snippet"
    monkeypatch.chdir(ROOT)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out.splitlines()
    assert out and out[0].startswith("0 (33, 64, 64, 3) (1, 33792)"), out


def test_api_errors_name_the_dtype_they_got():
    from streamchar.config import tiny
    from streamchar.pipeline import StreamChar
    from streamchar.streaming.session import StreamSession

    model = StreamChar.from_config(tiny())
    with pytest.raises(StreamCharError, match=r"got a \(64, 64, 3\) float64 array"):
        StreamSession(model, text="hi", ref_image=np.zeros((64, 64, 3)))
    with pytest.raises(StreamCharError, match=r"reference audio must be .* got a \(2, 100\) int16 array"):
        StreamSession(model, text="hi", ref_image=np.zeros((64, 64, 3), np.uint8),
                      ref_audio=np.zeros((2, 100), np.int16))


def test_version_matches_the_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"streamchar {version('streamchar')}"
    assert sys.modules["streamchar"].__version__ == version("streamchar")


# -- odd numbers where everything else is valid (the fuzz test guarantees one bad input; these are single) ----


@pytest.mark.parametrize("extra,words", [
    (["--shard-size", "0"], ["--shard-size must be >= 1"]),
    (["--workers", "-2"], ["--workers must be >= 1"]),
    (["--size", "4096"], ["--size must be a multiple of 16 between 16 and 2048"]),
    (["--num", "100000000000"], ["--num must be between 1 and 1,000,000"]),
    (["--seed", "-1"], ["--seed", "between 0 and"]),
])
def test_synthtalk_odd_numbers(capsys, tmp_path, extra, words):
    argv = ["data", "synthtalk", "--num", "1", "--out", str(tmp_path / "st"), "--quiet", *extra]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own one-line usage error
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert list(tmp_path.iterdir()) == []


def test_guidance_must_be_finite(capsys, tmp_path, image):
    one_line_error(capsys, ["generate", "--text", "hi", "--random-init", "--ref-image", str(image), "--out",
                            str(tmp_path / "o.mp4"), "--guidance", "inf", "1"], "--guidance", "> 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]
