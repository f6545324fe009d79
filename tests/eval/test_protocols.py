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


def test_a_reference_voice_is_another_clip_of_the_same_voice(synthtalk, monkeypatch):
    from streamchar.data import synthtalk as st

    real = st.read_shard

    def two_voices(path):  # the fixture's clips, relabelled: voices 0, 1, 0, 1, ... so each has a partner
        for i, (key, mp4, meta) in enumerate(real(path)):
            yield key, mp4, {**meta, "voice": {**meta["voice"], "index": i % 2}}

    monkeypatch.setattr(st, "read_shard", two_voices)
    for protocol in ("short", "long"):
        items = synthtalk_items(synthtalk, get_protocol(protocol), split="train", limit=4, ref_voice=True)
        assert len(items) >= 2
        clips = {key: (mp4, meta) for name in sorted(synthtalk.glob("synthtalk-train-*.tar"))
                 for key, mp4, meta in two_voices(name)}
        for item in items:
            own = item.key.split("-", 2)[-1] if protocol == "long" else item.key
            ref = item.meta["ref_key"]
            assert ref != own and clips[ref][1]["voice"]["index"] == clips[own][1]["voice"]["index"]
            assert item.ref_voice == clips[ref][0] and item.ref_text == clips[ref][1]["text"]
    assert all(it.ref_voice is None and it.meta["ref_key"] is None
               for it in synthtalk_items(synthtalk, get_protocol("short"), split="train", limit=2))

    def one_each(path):  # every clip its own voice: nothing to take a reference from
        for i, (key, mp4, meta) in enumerate(real(path)):
            yield key, mp4, {**meta, "voice": {**meta["voice"], "index": 100 + i}}

    monkeypatch.setattr(st, "read_shard", one_each)
    with pytest.raises(StreamCharError, match="only 'train' clip of its voice"):
        synthtalk_items(synthtalk, get_protocol("short"), split="train", ref_voice=True)
