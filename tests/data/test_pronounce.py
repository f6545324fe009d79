import dataclasses

import pytest

from streamchar.data.pronounce import accents, lexicon_pronunciations, pronounce, word_phonemes
from streamchar.data.speech import VOICES, espeak_available, synthesize
from streamchar.errors import StreamCharError

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng is not installed")


def test_accents_are_the_voices_languages():
    assert set(accents()) == {v.name for v in VOICES} and len(accents()) == 5


def test_pronounce_batches_words_alone():
    p = pronounce(["hello", "steve", "o'clock", "whole"], "en-us")
    assert p["hello"] == ("h", "ə", "l", "oʊ")
    assert p["steve"] == ("s", "t", "iː", "v")  # capitalised: the last phoneme of a word is kept
    assert p["whole"] == ("h", "oʊ")  # espeak folds the "l" into the vowel (a zero-length event)
    assert "o'clock" in p


def test_clip_phonemes_match_the_lexicon():
    """A word's phonemes in a sentence (midpoint rule) are its lexicon pronunciation, for content words."""
    speech = synthesize("Yesterday Steve painted the window.", VOICES[0])
    pairs = word_phonemes([dataclasses.asdict(w) for w in speech.words],
                          [dataclasses.asdict(p) for p in speech.phonemes])
    assert [w for w, _ in pairs] == ["Yesterday", "Steve", "painted", "the", "window"]
    alone = pronounce(["steve", "painted", "window"], "en-us")
    got = dict(pairs)
    assert got["Steve"] == alone["steve"] and got["window"] == alone["window"]
    assert sum(len(p) for _, p in pairs) == len(speech.phonemes)  # every phoneme goes to one word


def test_lexicon_pronunciations_collect_accents():
    out = lexicon_pronunciations(["water"], progress=False)
    assert 2 <= len(out["water"]) <= 5  # American and British "water" differ
    with pytest.raises(StreamCharError, match="no words"):
        lexicon_pronunciations([])
