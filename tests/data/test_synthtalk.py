import json
import tarfile

import av
import numpy as np
import pytest

from streamchar.cli import main
from streamchar.data import synthtalk
from streamchar.data.identity import HELDOUT_IDENTITIES, TRAIN_IDENTITIES
from streamchar.data.speech import espeak_available
from streamchar.errors import StreamCharError

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")


def decode(mp4: bytes):
    import io

    with av.open(io.BytesIO(mp4)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(io.BytesIO(mp4)) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    return frames, audio


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("st")
    a = synthtalk.generate(root / "a", 4, seed=3, workers=2, shard_size=2, progress=False)
    b = synthtalk.generate(root / "b", 4, seed=3, workers=1, shard_size=2, progress=False)
    return root, a, b


def test_shards_hold_clips_and_metadata(shards):
    root, summary, _ = shards
    assert summary["clips"] == {"train": 2, "val": 1, "test": 1}
    assert json.loads((root / "a" / "index.json").read_text()) == summary
    items = [x for split in summary["shards"].values() for name in split
             for x in synthtalk.read_shard(root / "a" / name)]
    assert len(items) == 4
    for key, mp4, meta in items:
        assert meta["key"] == key and 5.0 <= meta["duration"] <= 20.0 + 2 * 33 / 24  # + rounding + idle chunk
        assert meta["frames"] % synthtalk.CHUNK_FRAMES == 0  # whole streaming chunks
        frames, audio = decode(mp4)
        assert frames.shape == (meta["frames"], 64, 64, 3)
        assert abs(audio.shape[1] / meta["sample_rate"] - meta["duration"]) < 1 / 24 + 0.05  # AAC tail padding
        words = meta["words"]
        assert words and words[0]["start"] >= synthtalk.LEAD_S - 1e-6
        assert words[-1]["end"] <= meta["duration"] - synthtalk.LEAD_S + 1e-6  # an idle tail after the speech
        assert [w["text"].lower().strip(".,?!") for w in words] == \
            [w.lower().strip(".,?!") for w in meta["text"].split()]
        ids = TRAIN_IDENTITIES if meta["split"] == "train" else HELDOUT_IDENTITIES
        assert meta["identity"] in ids
        lead = audio[0, : int(0.3 * meta["sample_rate"])]
        speech = audio[0, int(words[0]["start"] * meta["sample_rate"]): int(words[-1]["end"] * meta["sample_rate"])]
        assert np.sqrt((lead**2).mean()) < 0.1 * np.sqrt((speech**2).mean())  # silence before the first word


def test_deterministic_by_seed_whatever_the_workers(shards):
    root, a, b = shards
    assert a == b
    for split, names in a["shards"].items():
        for name in names:
            for (k1, m1, j1), (k2, m2, j2) in zip(synthtalk.read_shard(root / "a" / name),
                                                  synthtalk.read_shard(root / "b" / name)):
                f1, a1 = decode(m1)
                f2, a2 = decode(m2)
                assert k1 == k2 and j1 == j2 and np.array_equal(f1, f2) and np.array_equal(a1, a2)


def test_long_clips_and_plan_errors():
    specs = synthtalk.plan(5, seed=0, long=1)
    assert sum(s.max_seconds > 100 for s in specs) == 1
    long_spec = next(s for s in specs if s.max_seconds > 100)
    assert len(" ".join(long_spec.sentences).split()) >= 60 * synthtalk.WORDS_PER_SECOND
    with pytest.raises(StreamCharError, match="--num"):
        synthtalk.plan(0)
    with pytest.raises(StreamCharError, match="--long"):
        synthtalk.plan(2, long=3)


def test_corrupt_shard_is_named(shards, tmp_path):
    root, summary, _ = shards
    good = (root / "a" / summary["shards"]["train"][0]).read_bytes()
    bad = tmp_path / "synthtalk-train-00000.tar"
    bad.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(StreamCharError, match="corrupt SynthTalk shard .*synthtalk-train-00000.tar"):
        list(synthtalk.read_shard(bad))
    lonely = tmp_path / "lonely.tar"
    with tarfile.open(lonely, "w") as tar:
        tar.addfile(tarfile.TarInfo("x.mp4"))
    with pytest.raises(StreamCharError, match="incomplete"):
        list(synthtalk.read_shard(lonely))


def test_cli_errors(tmp_path, capsys, monkeypatch):
    assert main(["data", "synthtalk", "--num", "2", "--out", str(tmp_path / "no" / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setattr("streamchar.data.speech.espeak_available", lambda: False)
    assert main(["data", "synthtalk", "--num", "2", "--out", str(tmp_path / "x")]) == 2
    assert "espeak-ng is not installed" in capsys.readouterr().err


def test_cli_never_replaces_a_data_set_silently(tmp_path, capsys, monkeypatch):
    """An existing data set is refused unless --overwrite, which replaces it only once the new one is complete;
    a failed run leaves the old one as it was and no partial folder."""
    def fake_generate(out, num, **kw):
        if num == 3:
            raise StreamCharError("stopped")
        (out / "index.json").write_text(f'{{"num": {num}}}')
        return {"num": num}

    monkeypatch.setattr("streamchar.data.synthtalk.generate", fake_generate)
    out = tmp_path / "set"
    assert main(["data", "synthtalk", "--num", "1", "--out", str(out)]) == 0
    assert main(["data", "synthtalk", "--num", "2", "--out", str(out)]) == 2
    assert "already holds data; pass --overwrite" in capsys.readouterr().err
    assert main(["data", "synthtalk", "--num", "3", "--out", str(out), "--overwrite"]) == 2  # fails midway
    assert (out / "index.json").read_text() == '{"num": 1}' and sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert main(["data", "synthtalk", "--num", "2", "--out", str(out), "--overwrite"]) == 0
    assert (out / "index.json").read_text() == '{"num": 2}'
    (tmp_path / "file").write_text("x")
    assert main(["data", "synthtalk", "--num", "1", "--out", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder name" in capsys.readouterr().err
