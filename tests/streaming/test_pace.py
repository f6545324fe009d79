"""A reference voice's pace: the stream's plan takes the voice's speed from its audio and the text it says."""

import dataclasses

import numpy as np
import pytest
import torch

from streamchar.config import tiny
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.streaming.session import StreamSession

IMG = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
TEXT = "the quick brown fox jumps over the lazy dog"
REF_TEXT = "a reference voice says these words"


@pytest.fixture(scope="module")
def model():
    cfg = tiny()
    cfg.stream = dataclasses.replace(cfg.stream, history_seconds=2.75)
    m = StreamChar.from_config(cfg.validate(), seed=0)
    # durations as pretraining measures them: they differ per token type
    m.orchestrator.token_durations.copy_(torch.rand(m.orchestrator.token_durations.shape[0],
                                                    generator=torch.Generator().manual_seed(1)) * 3 + 0.5)
    return m


def voice(model, pace: float, lead_s: float = 0.4, tail_s: float = 0.6) -> np.ndarray:
    """A reference 'voice': silence, a noise burst as long as REF_TEXT planned at `pace`, silence."""
    cfg = model.cfg
    ids = model.tokenizer(REF_TEXT, add_special_tokens=False)["input_ids"]
    seconds = pace * float(model.orchestrator.token_durations[ids].sum()) / cfg.audio_latent_rate
    sr = cfg.audio.sample_rate
    burst = 0.3 * np.random.default_rng(2).standard_normal(round(seconds * sr))
    wave = np.concatenate([np.zeros(round(lead_s * sr)), burst, np.zeros(round(tail_s * sr))])
    return wave[None].astype(np.float32), seconds


def test_the_reference_sets_the_pace_of_the_whole_plan(model):
    audio, seconds = voice(model, 1.3)
    paced = StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=audio, ref_text=REF_TEXT)
    assert abs(paced.pace - 1.3) <= 1.3 * 0.04 / seconds  # the voiced span, to a 20 ms frame at each end
    plain = StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=audio)  # a voice without its text: no pace
    assert plain.pace == 1.0
    p, q = paced.inputs.plan, plain.inputs.plan
    assert p[0] == q[0]  # the lead-in stays
    torch.testing.assert_close(p[1:] - p[0], paced.pace * (q[1:] - q[0]), rtol=1e-4, atol=1e-4)
    # new text is planned at the same pace
    paced.append_text("and then some more words")
    plain.append_text("and then some more words")
    n = len(TEXT.split())
    a, b = paced.inputs.plan, plain.inputs.plan
    assert len(a) == len(b) > n
    torch.testing.assert_close(a[-1] - a[-2], paced.pace * (b[-1] - b[-2]), rtol=1e-4, atol=1e-4)
    # an explicit pace wins over the reference's
    assert StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=audio, ref_text=REF_TEXT, pace=0.8).pace == 0.8


def test_e_ref_reads_the_first_history_seconds(model):
    cfg = model.cfg
    sr = cfg.audio.sample_rate
    long = np.random.default_rng(3).uniform(-0.3, 0.3, (1, round(3 * cfg.stream.history_seconds * sr)))
    s = StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=long.astype(np.float32))
    first = long[:, :round(cfg.stream.history_seconds * sr)].astype(np.float32)
    with torch.no_grad():
        expected = model.audio_codec.encode(torch.from_numpy(first)[None])[0]
    torch.testing.assert_close(s.inputs.ref_audio, expected)


def test_bad_references_and_paces_are_named(model):
    audio, _ = voice(model, 1.0)
    with pytest.raises(StreamCharError, match="reference text is what the reference audio says"):
        StreamSession(model, text=TEXT, ref_image=IMG, ref_text=REF_TEXT)
    with pytest.raises(StreamCharError, match="reference text is what the reference audio says"):
        StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=audio, ref_text="  ")
    for pace in (0.1, 3.0, float("nan")):
        with pytest.raises(StreamCharError, match="pace must be in"):
            StreamSession(model, text=TEXT, ref_image=IMG, pace=pace)
    with pytest.raises(StreamCharError, match="reference audio is silent"):
        StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=np.zeros_like(audio), ref_text=REF_TEXT)
    slow, _ = voice(model, 4.0)  # four times slower than the durations plan: not this text
    with pytest.raises(StreamCharError, match="is ref_text what it says"):
        StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=slow, ref_text=REF_TEXT)
