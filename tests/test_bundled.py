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
