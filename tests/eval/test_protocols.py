import numpy as np
import pytest

from streamchar.errors import StreamCharError
from streamchar.eval.protocols import emtd_items, get_protocol, synthtalk_items


@pytest.fixture(scope="module")
def synthtalk(make_synthtalk):
    return make_synthtalk(8, seed=3)


def test_protocols_are_the_papers():
    short, long = get_protocol("short"), get_protocol("long")
    assert (short.num, short.seconds, long.num, long.seconds, long.min_words) == (150, 10.0, 50, 300.0, 300)
    with pytest.raises(StreamCharError, match="unknown protocol 'medium'"):
        get_protocol("medium")


def test_synthtalk_items(synthtalk):
    short = synthtalk_items(synthtalk, get_protocol("short"))
    assert short and all(it.truth is not None and it.transcript for it in short)
    assert all(it.reference.shape == (64, 64, 3) and it.reference.dtype == np.uint8 for it in short)
    long = synthtalk_items(synthtalk, get_protocol("long"), limit=3)
    assert len(long) == 3 and all(it.truth is None for it in long)
    assert all(len(it.transcript.split()) >= 300 * 2.6 for it in long)  # >= 300 words and 2.6 words/s of 5 min
    assert len({it.transcript for it in long}) == 3
    again = synthtalk_items(synthtalk, get_protocol("long"), limit=3)
    assert [it.transcript for it in again] == [it.transcript for it in long]  # seeded
    with pytest.raises(StreamCharError, match="no 'nope' clips"):
        synthtalk_items(synthtalk, get_protocol("short"), split="nope")


def test_emtd_items(synthtalk, tmp_path):
    from streamchar.data.synthtalk import read_shard

    folder = tmp_path / "emtd"
    folder.mkdir()
    clips = [clip for name in sorted(synthtalk.glob("synthtalk-*.tar")) for clip in read_shard(name)]
    for key, mp4, meta in clips[:2]:
        (folder / f"{key}.mp4").write_bytes(mp4)
        (folder / f"{key}.txt").write_text(meta["text"])
    items = emtd_items(folder, get_protocol("short"))
    assert len(items) == 2 and items[0].transcript and items[0].truth.suffix == ".mp4"
    long = emtd_items(folder, get_protocol("long"), limit=2)
    assert all(len(it.transcript.split()) >= 780 for it in long)
    (folder / f"{items[0].key}.txt").unlink()
    with pytest.raises(StreamCharError, match="without a transcript"):
        emtd_items(folder, get_protocol("short"))
    with pytest.raises(StreamCharError, match="no .mp4 clips"):
        emtd_items(tmp_path, get_protocol("short"))


def test_a_stream_may_speak_its_whole_transcript():
    """The short protocol's 10 s, or a longer true clip's length plus two chunks (the pointer ends it)."""
    import numpy as np

    from streamchar.eval.generate import stream_cap
    from streamchar.eval.protocols import EvalItem, get_protocol

    short, frame = get_protocol("short"), np.zeros((8, 8, 3), np.uint8)
    long_clip = EvalItem("a", "hi", frame, meta={"duration": 17.0})
    assert stream_cap(long_clip, short, 1.375) == 17.0 + 2.75
    assert stream_cap(EvalItem("b", "hi", frame, meta={"duration": 6.0}), short, 1.375) == 10.0
    assert stream_cap(EvalItem("c", "hi", frame, meta={}), get_protocol("long"), 1.375) == 300.0
