import os

import numpy as np
import pytest

from streamchar.data.speech import VOICES, synthesize
from streamchar.errors import StreamCharError
from streamchar.eval.asr import WhisperTranscriber, align, normalize_text, transcribe, transcribe_windows, wer

SENTENCE = "Please open the window because it is very warm in here."  # pocketsphinx: WER ~0.1


def test_normalize_text():
    assert normalize_text("Hello, World!  It's well-known.") == "hello world it's well known"
    assert normalize_text("\u2018Quoted\u2019 don\u2019t\n") == "quoted don't"
    assert normalize_text("Room 101?") == "room one hundred and one"  # numbers spelled out (num2words)
    assert normalize_text(" ... ") == ""


def test_wer_counts():
    assert wer("a b c d", "a b c d") == 0.0
    assert wer(["A b, c", "d"], ["a x c", "d e"]) == pytest.approx(2 / 4)  # 1 sub + 1 ins over 4 words
    with pytest.raises(StreamCharError, match="as many"):
        wer(["a"], ["a", "b"])
    with pytest.raises(StreamCharError, match="empty"):
        wer(["!"], ["a"])


def test_pocketsphinx_on_espeak():
    speech = synthesize(SENTENCE, VOICES[0])
    hyp = transcribe(speech.audio, speech.sample_rate)
    assert hyp == transcribe(speech.audio[None], speech.sample_rate)  # seeded noise: deterministic, (1, S) ok
    score = wer(SENTENCE, hyp)
    assert score < 0.6, hyp
    words = normalize_text(SENTENCE).split()
    shuffled = " ".join(np.random.default_rng(0).permutation(words))
    assert wer(shuffled, hyp) > score


def test_align():
    speech = synthesize(SENTENCE, VOICES[0])
    before = transcribe(speech.audio, speech.sample_rate)
    segments = align(speech.audio, speech.sample_rate, SENTENCE)
    assert [w for w, _, _ in segments] == normalize_text(SENTENCE).split()
    starts = [a for _, a, _ in segments]
    assert starts == sorted(starts) and all(a < b for _, a, b in segments)
    assert abs(segments[-1][2] - len(speech.audio) / speech.sample_rate) < 0.3
    assert transcribe(speech.audio, speech.sample_rate) == before  # the decoder is back on its language model
    with pytest.raises(StreamCharError, match="not in pocketsphinx's dictionary: \\['zzqxw'\\]"):
        align(speech.audio, speech.sample_rate, "please zzqxw")
    with pytest.raises(StreamCharError, match="no words"):
        align(speech.audio, speech.sample_rate, " ,. ")


def test_numbers_are_spelled_out():
    assert normalize_text("It's 42, not forty-two!") == "it's forty two not forty two"
    assert normalize_text("1,000 cats, 3.5 dogs, the 2nd day.") == "one thousand cats three point five dogs the second day"
    assert wer("I saw 3 birds", "i saw three birds") == 0.0


def test_long_streams_are_transcribed_in_windows():
    a, b = synthesize(SENTENCE, VOICES[0]), synthesize("The green boat is on the lake.", VOICES[0])
    gap = np.zeros(a.sample_rate, np.float32)
    audio = np.concatenate([a.audio, gap, b.audio])
    cut = (len(a.audio) + len(gap) // 2) / a.sample_rate  # a window boundary inside the pause
    joined = transcribe_windows(audio, a.sample_rate, window_seconds=cut)
    assert joined == " ".join([transcribe(audio[:round(cut * a.sample_rate)], a.sample_rate),
                               transcribe(audio[round(cut * a.sample_rate):], a.sample_rate)])
    assert wer(SENTENCE + " The green boat is on the lake.", joined) < 0.6
    with pytest.raises(StreamCharError, match="window_seconds"):
        transcribe_windows(audio, a.sample_rate, window_seconds=0)


def test_whisper_needs_a_local_folder(tmp_path):
    with pytest.raises(StreamCharError, match="no Whisper model folder at .*--whisper"):
        WhisperTranscriber(tmp_path)


@pytest.mark.skipif(not os.environ.get("STREAMCHAR_WHISPER"),
                    reason="needs Whisper weights: set STREAMCHAR_WHISPER to a local Whisper folder")
def test_whisper_on_espeak():
    speech = synthesize(SENTENCE, VOICES[0])
    assert wer(SENTENCE, WhisperTranscriber(os.environ["STREAMCHAR_WHISPER"])(speech.audio, speech.sample_rate)) < 0.3

