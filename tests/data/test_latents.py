import numpy as np
import pytest
import torch

from streamchar.cli import main
from streamchar.codecs import build_tiny_tokenizer
from streamchar.config import tiny
from streamchar.data import synthtalk
from streamchar.data.latents import codec_fingerprint, encode_shards, pap_targets, read_latent_shard
from streamchar.data.speech import espeak_available
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar


def test_pap_targets_follow_word_ends():
    tok = build_tiny_tokenizer()
    text = "Anna found the bright lamp."
    spans, words, t = [], [], 0.2
    for w in text.split():
        start = text.index(w, spans[-1][1] if spans else 0)
        spans.append((start, start + len(w)))
        words.append({"text": w, "char_start": start, "char_end": start + len(w), "start": t, "end": t + 0.5})
        t += 0.6
    ids, targets = pap_targets(text, words, tok, chunk_seconds=1.375, n_chunks=3)
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    # by 1.375 s the words ending at 0.7 and 1.3 are spoken; by 2.75 s four; by 4.125 s all five
    spoken = lambda n_words: len(tok(text[: spans[n_words - 1][1]], add_special_tokens=False)["input_ids"])
    assert targets == [spoken(2), spoken(4), len(ids)]


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_encode_synthtalk_shards(tmp_path):
    synthtalk.generate(tmp_path / "st", 3, seed=1, workers=1, progress=False)
    model = StreamChar.from_config(tiny())
    summary = encode_shards(tmp_path / "st", tmp_path / "lat", model, progress=False)
    assert summary["clips"] == 3
    assert summary["codec_sha256"] == codec_fingerprint(model) != codec_fingerprint(StreamChar.from_config(tiny(), 1))
    items = [x for names in summary["shards"].values() for name in names
             for x in read_latent_shard(tmp_path / "lat" / name)]
    src = {k: meta for names in summary["shards"].values() for name in names
           for k, _, meta in synthtalk.read_shard(tmp_path / "st" / name.replace("latents-", "synthtalk-"))}
    for key, t, meta in items:
        n = src[key]["frames"] // 33
        assert meta["chunks"] == n >= 1
        c = model.cfg.video.latent_channels
        assert t["video_latents"].shape == (n, c, 9, 8, 8) and t["reference_latent"].shape == (c, 1, 8, 8)
        assert t["audio_latents"].shape == (n * 33, model.cfg.audio.latent_channels) and t["token_ids"].dtype == torch.int64
        ends = meta["pap_end"]
        assert len(ends) == n and ends == sorted(ends) and 0 <= ends[0] and ends[-1] <= len(t["token_ids"])
        assert torch.isfinite(t["video_latents"]).all()
    # 2 worker processes (one thread each) write the same shards, up to the float rounding of other thread counts
    again = encode_shards(tmp_path / "st", tmp_path / "lat2", model, progress=False, workers=2)
    assert again["shards"] == summary["shards"] and again["clips"] == 3
    got = [x for names in again["shards"].values() for name in names for x in read_latent_shard(tmp_path / "lat2" / name)]
    assert len(got) == len(items)
    for (k1, t1, _), (k2, t2, _) in zip(items, got):
        assert k1 == k2 and set(t1) == set(t2)
        assert all(torch.allclose(t1[k].nan_to_num(-1), t2[k].nan_to_num(-1), atol=1e-4, rtol=1e-4) for k in t1)
        assert torch.equal(t1["token_ids"], t2["token_ids"])
    assert not [p for p in (tmp_path / "lat2").iterdir() if p.name.startswith(".")]  # no partial shard left


def test_encode_errors(tmp_path, capsys):
    model = StreamChar.from_config(tiny())
    with pytest.raises(StreamCharError, match="index.json"):
        encode_shards(tmp_path, tmp_path / "out", model, progress=False)
    assert main(["data", "encode", "--shards", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--checkpoint DIR" in capsys.readouterr().err
    assert main(["data", "encode", "--shards", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                 "--random-init"]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "latents-train-00000.tar"
    bad.write_bytes(b"\0" * 100 + np.arange(600, dtype=np.uint8).tobytes())
    with pytest.raises(StreamCharError, match="corrupt latent shard"):
        list(read_latent_shard(bad))
