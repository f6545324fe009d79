import re

import numpy as np
import pytest

from streamchar.data.corpus import (
    coverage,
    frequency_coverage,
    lexicon,
    make_sentence,
    sentences,
    split_of,
    transcript,
    words_of,
)
from streamchar.errors import StreamCharError


def test_deterministic_and_split_by_sentence():
    tr, va, te = sentences("train", 500, seed=1), sentences("val", 50, seed=1), sentences("test", 50, seed=1)
    assert tr == sentences("train", 500, seed=1) and tr != sentences("train", 500, seed=2)
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)
    assert all(split_of(s) == "val" for s in va) and all(split_of(s) == "test" for s in te)
    assert len(set(tr)) == 500
    # another seed never moves a sentence into another split
    assert not set(sentences("train", 500, seed=9)) & set(te)


def test_lexicon_is_large_and_held_out_words_never_reach_training():
    lex = lexicon()
    assert len(lex.words) >= 20000
    assert lex.heldout_words and not lex.heldout_words & lex.train_words
    train_words = {w for s in sentences("train", 3000) for w in words_of(s)}
    assert not train_words & lex.heldout_words
    assert len(train_words) > 3000  # a few thousand sentences already span thousands of words


def test_test_split_has_unseen_words():
    seen = {w for s in sentences("train", 3000) for w in words_of(s)}
    test = [w for s in sentences("test", 300) for w in words_of(s)]
    unseen_tokens = sum(w not in seen for w in test) / len(test)
    unseen_types = len(set(test) - seen) / len(set(test))
    assert unseen_tokens >= 0.10 and unseen_types >= 0.10
    assert all(set(words_of(s)) & lexicon().heldout_words for s in sentences("test", 50))


def test_sentences_have_grammar_numbers_names_and_punctuation():
    rng = np.random.default_rng(0)
    ss = [make_sentence(rng) for _ in range(400)]
    assert all(s.lstrip('"')[0].isupper() and s.rstrip('"')[-1] in ".?!" for s in ss)
    assert any(re.search(r"\b\d+\b", s) for s in ss)
    assert any("?" in s for s in ss) and any("," in s for s in ss) and any("'" in s for s in ss)
    names = {e.lemma for e in lexicon().classes["name"]}
    assert any(set(s.replace(",", " ").replace(".", " ").split()) & names for s in ss)
    lengths = [len(s.split()) for s in ss]
    assert min(lengths) <= 3 and max(lengths) >= 10


def test_frequency_weighting_favours_common_words():
    words = [w for s in sentences("train", 2000) for w in words_of(s)]
    counts = {w: words.count(w) for w in ("house", "table", "water")}
    rare = sum(words.count(w) for w in ("abacus", "zeppelin", "quagmire"))
    assert sum(counts.values()) > rare


def test_coverage_measures():
    assert coverage("the cat and the dog", {"the", "cat"}) == pytest.approx(0.6)
    vocab = {w for s in sentences("train", 2000) for w in words_of(s)}
    share = frequency_coverage(vocab, top=5000)
    assert 0.3 < share < 1.0
    with pytest.raises(StreamCharError, match="no words"):
        coverage("42 !", vocab)


def test_long_transcripts():
    t = transcript("test", 300, seed=0)
    assert len(t.split()) >= 300 and t == transcript("test", 300, seed=0)


def test_bad_arguments():
    with pytest.raises(StreamCharError, match="split"):
        sentences("dev", 3)
    with pytest.raises(StreamCharError, match="count"):
        sentences("train", 0)
