"""`streamchar eval` as a real subprocess: generation for a protocol, the report, resuming, bad input."""

import json
import os
import subprocess
import sys

import pytest

WEIGHT_ENVS = ("STREAMCHAR_INCEPTION", "STREAMCHAR_I3D", "STREAMCHAR_SYNCNET", "STREAMCHAR_FACE_DETECTOR",
               "STREAMCHAR_FACE_EMBEDDER", "STREAMCHAR_MUSIQ", "STREAMCHAR_RAFT", "STREAMCHAR_WHISPER")
ENV = {k: v for k, v in os.environ.items() if k not in WEIGHT_ENVS} | {"HF_HUB_OFFLINE": "1",
                                                                        "TRANSFORMERS_OFFLINE": "1"}


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "streamchar.cli", "eval", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def synthtalk(make_synthtalk):
    return make_synthtalk(30, seed=2, workers=2)  # 2 of them held-out test clips


@pytest.mark.slow
def test_generate_then_score(synthtalk, tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "report"
    args = ["--generate", "--random-init", "--data", str(synthtalk), "--limit", "2", "--seconds", "2.75",
            "--videos", str(videos), "--out", str(out), "--quiet", "--device", "cpu"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "RANDOM weights" in r.stderr and "2 stream(s) generated" in r.stderr
    keys = sorted(p.stem for p in videos.glob("*.mp4"))
    assert len(keys) == 2
    for key in keys:  # the layout the scorer reads
        assert (videos / f"{key}.txt").read_text().strip()
        timings = json.loads((videos / f"{key}.timings.json").read_text())
        assert timings["chunks"] == 2 and timings["speech_end_s"] > 1.0  # where the truth's last word ends
        assert timings["prompt"].startswith("a cartoon person") and timings["sampler"] == "teacher"
        assert (videos / "refs" / f"{key}.png").is_file() and (videos / "refs" / f"{key}.mp4").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["videos_found"] == 2 and report["options"]["refs"] == str(videos / "refs")
    m = report["metrics"]
    assert m["rtf"]["value"] > 0 and m["first_chunk_s"]["videos"] == 2
    assert m["wer"]["value"] > 0.5  # random weights do not speak
    # cut at 2 chunks by --seconds, the truth speaks for 5-20 s: where the pointer would end them is unknown
    assert {json.loads((videos / f"{k}.timings.json").read_text())["ended_by"] for k in keys} == {"max_seconds"}
    assert "stream_end_within_one_chunk" not in m and "censored" in report["skipped"]["stream_end_within_one_chunk"]
    assert {f"{k}.latency.png" for k in keys} <= {p.name for p in (out / "plots").iterdir()}
    assert "wer " in r.stdout and "proxy" in r.stdout
    # a second run refuses to replace the report, before generating anything; with --overwrite it keeps the videos
    refused = run_cli(*args)
    assert refused.returncode == 2 and "already holds data; pass --overwrite" in refused.stderr
    assert "generated" not in refused.stderr
    again = run_cli(*args, "--overwrite")
    assert again.returncode == 0 and "0 stream(s) generated, 2 kept" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--videos", "VIDEOS", "--out", "OUT", "--protocol", "medium"], "invalid choice: 'medium'"),
    (["--videos", "NOPE", "--out", "OUT"], "--videos folder not found"),
    (["--videos", "VIDEOS", "--out", "OUT", "--generate", "--data", "VIDEOS"], "--generate needs the model"),
    (["--videos", "VIDEOS", "--out", "OUT", "--generate", "--random-init", "--data", "X"], "--data folder not found"),
    (["--videos", "VIDEOS", "--out", "OUT", "--generate", "--random-init"], "--generate needs the items"),
    (["--videos", "VIDEOS", "--out", "OUT", "--random-init"], "add --generate"),
    (["--videos", "VIDEOS", "--out", "OUT", "--ref-voice"], "--ref-voice is what the streams are generated with"),
    (["--videos", "VIDEOS", "--out", "OUT", "--generate", "--random-init", "--emtd", "VIDEOS", "--ref-voice"],
     "--ref-voice takes another clip of each item's voice: it needs --data"),
    (["--videos", "VIDEOS", "--out", "OUT", "--frame-stride", "0"], "frame-stride must be >= 1"),
    (["--videos", "VIDEOS", "--out", "OUT", "--eval-device", "gpu0"], "--eval-device 'gpu0' is not a device"),
    (["--videos", "VIDEOS", "--out", "OUT", "--generate", "--random-init", "--data", "VIDEOS", "--seconds", "-1"],
     "--seconds must be > 0"),
])
def test_bad_input_fails_in_one_line(tmp_path, args, message):
    (tmp_path / "videos").mkdir()
    args = [a.replace("VIDEOS", str(tmp_path / "videos")).replace("NOPE", str(tmp_path / "nope"))
            .replace("OUT", str(tmp_path / "out")) for a in args]
    r = run_cli(*args, timeout=120)
    assert r.returncode == 2 and message in r.stderr
    assert "Traceback" not in r.stderr
