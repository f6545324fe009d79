"""The bundled models hold what their cards promise (on a handful of fresh held-out samples)."""

import numpy as np
import pytest

from streamchar.bundled import ROOT, bundled_names
from streamchar.data.speech import espeak_available

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng is not installed")
judge_bundled = pytest.mark.skipif(not (ROOT / "judge" / "model.safetensors").is_file(),
                                   reason="no bundled judge in this checkout")


@pytest.fixture(scope="module")
def true_speech():
    """Held-out sentences (test split: unseen words) spoken by every SynthTalk voice, as SynthTalk pads them."""
    from streamchar.data.corpus import sentences
    from streamchar.data.speech import VOICES, synthesize

    texts = sentences("test", 2 * len(VOICES), seed=123)
    out = []
    for i, voice in enumerate(VOICES):
        text = " ".join(texts[2 * i: 2 * i + 2])
        speech = synthesize(text, voice)
        pad = np.zeros(int(0.4 * speech.sample_rate), np.float32)
        out.append((text, np.concatenate([pad, speech.audio, pad]), speech.sample_rate))
    return out


@needs_espeak
@judge_bundled
def test_bundled_judge_reads_true_speech_and_rejects_noise(true_speech, one_thread):
    from streamchar.eval.asr import wer
    from streamchar.eval.judge import load_judge

    judge = load_judge()
    refs = [t for t, _, _ in true_speech]
    hyps = [judge.transcribe(a, sr) for _, a, sr in true_speech]
    assert wer(refs, hyps) <= 0.25, list(zip(refs, hyps))
    rng = np.random.default_rng(0)
    noise = [judge.transcribe(rng.normal(0, 0.1, len(a)).astype(np.float32), sr) for _, a, sr in true_speech]
    assert wer(refs, noise) >= 0.9
    reversed_ = [judge.transcribe(a[::-1].copy(), sr) for _, a, sr in true_speech]
    assert wer(refs, reversed_) >= 0.9
    assert judge.card["weights_sha256"] and judge.card["trained_by"] == "streamchar train asr-judge"


def test_bundled_folders_are_small_and_carded():
    total = 0
    for name in bundled_names():
        files = [p for p in (ROOT / name).rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
        assert any(p.name in ("card.json", "README.md") for p in files), f"{name} has no card"
        assert not any(p.suffix in (".pt", ".bin", ".ckpt") for p in files), f"{name}: safetensors only"
    assert total < 100 * 2**20


codecs_bundled = pytest.mark.skipif(not (ROOT / "tiny-codecs" / "config.yaml").is_file(),
                                    reason="no bundled tiny codecs in this checkout")


@pytest.fixture(scope="module")
def held_out_characters():
    """Two chunks (33 frames, 64x64) of each held-out SynthTalk character speaking, as clips."""
    from streamchar.data.identity import HELDOUT_IDENTITIES, IDENTITIES
    from streamchar.data.render import render_clip
    from streamchar.train.clips import Clip

    phonemes = [(p, 0.2 + 0.12 * k, 0.32 + 0.12 * k) for k, p in enumerate("hɛloʊwɜːld" * 2)]
    clips = []
    for i in HELDOUT_IDENTITIES:
        frames = render_clip(IDENTITIES[i], phonemes, [(0.2, 2.6)], 66 / 24, size=64, fps=24, seed=i)
        clips.append(Clip(key=f"held-out-{i}", text="", frames=frames, audio=None))
    return clips


@codecs_bundled
def test_bundled_video_codec_carries_unseen_characters(held_out_characters, one_thread):
    from streamchar.codecs.load import load_pipeline_codecs
    from streamchar.train.codec import video_quality

    video, _, _ = load_pipeline_codecs(ROOT / "tiny-codecs")
    q = video_quality(video, held_out_characters, 33, 2)
    assert q["psnr"] >= 28.0 and q["ssim"] >= 0.90, q


@needs_espeak
@judge_bundled
@codecs_bundled
def test_bundled_audio_codec_keeps_speech_intelligible(true_speech, one_thread):
    from streamchar.codecs.load import load_pipeline_codecs
    from streamchar.data.speech import resample
    from streamchar.eval.asr import wer
    from streamchar.eval.judge import load_judge
    from streamchar.train.codec import round_trip_audio

    _, audio, _ = load_pipeline_codecs(ROOT / "tiny-codecs")
    judge, rate = load_judge(), audio.sample_rate
    refs = [t for t, _, _ in true_speech]
    waves = [resample(a, sr, rate)[None] for _, a, sr in true_speech]  # (1, S) at the codec's rate
    original = wer(refs, [judge.transcribe(w, rate) for w in waves])
    coded = wer(refs, [judge.transcribe(round_trip_audio(audio, w), rate) for w in waves])
    assert coded - original <= 0.05, (original, coded)


teacher_bundled = pytest.mark.skipif(not (ROOT / "tiny-teacher" / "model_index.json").is_file(),
                                     reason="no bundled tiny-teacher in this checkout")


@teacher_bundled
def test_bundled_teacher_loads_by_name_as_a_teacher():
    from streamchar.pipeline import StreamChar

    teacher = StreamChar.from_pretrained("tiny-teacher")  # what distill_*_tiny.yaml's init / teacher name
    assert teacher.cfg.preset == "tiny" and teacher.cfg.stream.sampler == "teacher"
    assert teacher.cfg.dit.audio_to_video  # the card's run 5 gained the audio injection
    assert "tiny-teacher" in (ROOT / "tiny-teacher" / "README.md").read_text().splitlines()[0]


default_bundled = pytest.mark.skipif(not (ROOT / "tiny" / "model_index.json").is_file(),
                                     reason="no bundled default character (tiny) in this checkout")


@default_bundled
@judge_bundled
def test_the_demo_speaks_its_text_with_its_mouth_following_the_audio(tmp_path, one_thread):
    """`streamchar demo` streams the bundled default (no --checkpoint, no random weights) speaking its text. The
    bounds are what this model meets with margin and random weights miss by far (measured 2026-12-08: WER 0.64-0.77
    over 4 seeds, |offset| 0-2 frames, confidence 0.18-0.29, ending with the transcript after 6 chunks; random
    weights: WER 2.6, offset -11, confidence 0.06, running to the 30 s cap). Issue 13's WER target is 0.30: not met
    (the card says so)."""
    import json

    import av

    from streamchar.cli import main
    from streamchar.cli.use import DEMO_TEXT
    from streamchar.config import tiny
    from streamchar.eval.asr import normalize_text, wer
    from streamchar.eval.judge import load_judge
    from streamchar.eval.media import read_audio
    from streamchar.eval.sync import sync_proxy

    out, timings = tmp_path / "demo.mp4", tmp_path / "t.json"
    assert main(["demo", "--out", str(out), "--timings", str(timings), "--quiet"]) == 0
    report = json.loads(timings.read_text())
    assert not report["random_init"] and report["checkpoint"] == str(ROOT / "tiny")
    assert report["sampler"] == "student" and report["ended_by"] == "transcript" and report["chunks"] <= 8
    audio, sr = read_audio(out)
    assert wer(normalize_text(DEMO_TEXT), normalize_text(load_judge().transcribe(audio, sr))) < 0.85
    with av.open(str(out)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    sync = sync_proxy(frames, audio, sr, tiny().video.fps)
    assert abs(sync.offset) <= 3 and sync.sync_c > 0.12, sync


@default_bundled
def test_generate_without_a_checkpoint_streams_the_bundled_default(tmp_path, monkeypatch):
    from streamchar.cli.options import stream_model
    from streamchar.pipeline import StreamChar

    args = type("Args", (), {"checkpoint": None, "random_init": False})()
    assert stream_model(args) == ROOT / "tiny" and args.checkpoint == "tiny"
    student = StreamChar.from_pretrained("tiny")
    assert student.cfg.stream.sampler == "student"  # distilled: the 4-step sampler by default
    assert (ROOT / "tiny" / "README.md").read_text().startswith("# tiny: the bundled default character")
    random = type("Args", (), {"checkpoint": None, "random_init": True})()
    assert stream_model(random) is None
    monkeypatch.setattr("streamchar.bundled.DEFAULT", "missing-default")
    with pytest.raises(Exception, match="no trained model is bundled"):
        stream_model(type("Args", (), {"checkpoint": None, "random_init": False})())


@default_bundled
@judge_bundled
@needs_espeak
def test_the_cards_check_row_reproduces(tmp_path):
    """The default's card holds a small eval row with the command that made it; a re-run lands within noise."""
    import json
    import re

    from streamchar.cli import main
    from streamchar.data import synthtalk

    card = (ROOT / "tiny" / "README.md").read_text()
    row = re.search(r"^\| 3 items \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", card, re.M)
    assert row, "the card has no re-run check row"
    wer, offset, ssim = map(float, row.groups())
    synthtalk.generate(tmp_path / "st", 60, seed=0, workers=1, progress=False)
    assert main(["eval", "--data", str(tmp_path / "st"), "--protocol", "short", "--limit", "3", "--seconds", "25",
                 "--generate", "--checkpoint", "tiny", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    m = {k: v["value"] for k, v in json.loads((tmp_path / "r" / "report.json").read_text())["metrics"].items()
         if isinstance(v, dict) and "value" in v}
    assert abs(m["wer"] - wer) <= 0.2, (m["wer"], wer)
    assert abs(m["sync_proxy_abs_offset"] - offset) <= 1.5, (m["sync_proxy_abs_offset"], offset)
    assert abs(m["identity_proxy_ssim"] - ssim) <= 0.04, (m["identity_proxy_ssim"], ssim)
