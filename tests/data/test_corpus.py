import pytest

from streamchar.data.corpus import sentences, split_of, transcript
from streamchar.errors import StreamCharError


def test_deterministic_and_split_by_sentence():
    tr, va, te = sentences("train", 500, seed=1), sentences("val", 50, seed=1), sentences("test", 50, seed=1)
    assert tr == sentences("train", 500, seed=1) and tr != sentences("train", 500, seed=2)
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)
    assert all(split_of(s) == "val" for s in va) and len(set(tr)) == 500
    # another seed never moves a sentence into another split
    assert not set(sentences("train", 500, seed=9)) & set(te)


def test_varied_length_and_vocabulary():
    tr = sentences("train", 1000)
    lengths = [len(s.split()) for s in tr]
    assert min(lengths) <= 3 and max(lengths) >= 14
    assert len({w.strip(".,?").lower() for s in tr for w in s.split()}) > 300


def test_long_transcripts():
    t = transcript("test", 300, seed=0)
    assert len(t.split()) >= 300 and t == transcript("test", 300, seed=0)


def test_bad_arguments():
    with pytest.raises(StreamCharError, match="split"):
        sentences("dev", 3)
    with pytest.raises(StreamCharError, match="count"):
        sentences("train", 0)
