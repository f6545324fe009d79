"""Hypothesis drives `generate`, `data synthtalk` and `eval` with odd arguments and odd input files: random bytes
as images, audio and videos, odd paths and numbers, unicode text. Every run ends in a one-line error with exit
code 2 (no traceback) and leaves no file behind. The inputs are drawn so that each run has at least one
undecodable file or a wrong number, so no run reaches the model; a few dozen examples per command keep it short."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamchar.cli import main

SETTINGS = settings(max_examples=int(os.environ.get("STREAMCHAR_FUZZ_EXAMPLES", 30)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                    derandomize=os.environ.get("STREAMCHAR_FUZZ_RANDOM") is None)

texts = st.text(min_size=0, max_size=40)  # any unicode, control characters and surrogate-free
numbers = st.one_of(st.sampled_from(["0", "-1", "1e400", "nan", "inf", "-inf", "", " ", "1_0", "0x10", "3.5", "١"]),
                    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(repr), texts)
blobs = st.binary(min_size=0, max_size=3000)
names = st.sampled_from(["in.png", "in.mp4", "in.wav", "in", "x y.png", "ünï côdé.jpg", ".hidden.png", "-dash.png"])
out_names = st.sampled_from(["out.mp4", "sub/out.mp4", "out", "ünï/out.mp4", "out.png", "-o.mp4", "."])


def check(capsys, argv: list[str], workdir: Path, before: set[str]) -> None:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, code, err)
    lines = err.splitlines()
    assert "Traceback" not in err and lines and ": error: " in lines[-1], (argv, err)
    assert all(line.startswith("streamchar eval: ") for line in lines[:-1]), (argv, err)  # eval's skip notes
    after = {str(p.relative_to(workdir)) for p in workdir.rglob("*")}
    assert after == before, (argv, sorted(after - before))


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _fresh(workdir: Path) -> Path:
    for p in workdir.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return workdir


@SETTINGS
@given(text=texts, image=blobs, image_name=names, audio=st.none() | blobs, out=out_names,
       max_seconds=st.none() | numbers, seed=st.none() | numbers, guidance=st.none() | st.tuples(numbers, numbers))
def test_fuzz_generate(capsys, workdir, text, image, image_name, audio, out, max_seconds, seed, guidance):
    d = _fresh(workdir)
    (d / image_name).write_bytes(image)
    argv = ["generate", "--text", text, "--ref-image", str(d / image_name), "--out", str(d / out), "--random-init",
            "--quiet"]
    if audio is not None:
        (d / "voice.wav").write_bytes(audio)
        argv += ["--ref-audio", str(d / "voice.wav")]
    for flag, value in (("--max-seconds", max_seconds), ("--seed", seed)):
        if value is not None:
            argv += [f"{flag}={value}"]
    if guidance is not None:
        argv += ["--guidance", *(f" {g}" if g.startswith("-") else g for g in guidance)]
    check(capsys, argv, d, {str(p.relative_to(d)) for p in d.rglob("*")})


@SETTINGS
@given(num=numbers, size=st.none() | numbers, long=st.none() | numbers, shard=st.none() | numbers,
       workers=st.none() | numbers, seed=st.none() | numbers, out=st.sampled_from(["st", "a/b", "file", "", "ü"]))
def test_fuzz_data_synthtalk(capsys, workdir, num, size, long, shard, workers, seed, out):
    d = _fresh(workdir)
    (d / "file").write_text("x")
    # a wrong number is guaranteed: --num <= 0 or not a number, so no clip is ever made
    try:
        num = str(-abs(int(num)))  # what argparse's int() reads ("1_0", "١" too) becomes <= 0
    except ValueError:
        pass
    argv = ["data", "synthtalk", f"--num={num}", "--out", str(d / out) if out else "", "--quiet"]
    for flag, value in (("--size", size), ("--long", long), ("--shard-size", shard), ("--workers", workers),
                        ("--seed", seed)):
        if value is not None:
            argv += [f"{flag}={value}"]
    check(capsys, argv, d, {str(p.relative_to(d)) for p in d.rglob("*")})


@SETTINGS
@given(videos=st.lists(st.tuples(st.sampled_from(["a.mp4", "b.webm", "c d.mkv", "ü.mp4"]), blobs), min_size=0,
                       max_size=3), transcript=st.none() | texts, protocol=st.sampled_from(["short", "long", "x"]),
       stride=st.none() | numbers, window=st.none() | numbers, out=st.sampled_from(["r", "videos", "a/b", "f"]))
def test_fuzz_eval(capsys, workdir, videos, transcript, protocol, stride, window, out):
    d = _fresh(workdir)
    (d / "f").write_text("x")
    (d / "videos").mkdir()
    for name, blob in videos:
        (d / "videos" / name).write_bytes(blob)
        if transcript is not None:
            (d / "videos" / name).with_suffix(".txt").write_text(transcript)
    argv = ["eval", "--videos", str(d / "videos"), "--out", str(d / out), "--protocol", protocol, "--quiet"]
    for flag, value in (("--frame-stride", stride), ("--sync-window", window)):
        if value is not None:
            argv += [f"{flag}={value}"]
    check(capsys, argv, d, {str(p.relative_to(d)) for p in d.rglob("*")})
