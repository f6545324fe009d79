import pytest
import torch
from transformers import UMT5Config, UMT5EncoderModel

from streamchar.codecs import T5PromptEncoder, TextEncoder, build_tiny_tokenizer
from streamchar.errors import StreamCharError


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def enc(tok):
    torch.manual_seed(0)
    return T5PromptEncoder.tiny(tok)


PROMPTS = ["A woman with red hair smiles and says hello.", "An old man talks slowly about the sea."]


@torch.no_grad()
def test_shape(enc):
    assert isinstance(enc, TextEncoder)
    assert (enc.dim, enc.max_length) == (64, 64)
    assert enc.encode(PROMPTS).shape == (2, 64, 64)


@torch.no_grad()
def test_padding_positions_are_exactly_zero(enc, tok):
    ctx = enc.encode(PROMPTS + ["Hi"])
    for i, p in enumerate(PROMPTS + ["Hi"]):
        n = len(tok(p)["input_ids"])
        assert 0 < n < 64
        assert (ctx[i, :n] != 0).any(-1).all()  # real tokens are not zero
        assert torch.equal(ctx[i, n:], torch.zeros_like(ctx[i, n:]))  # padding is exactly zero
        assert not torch.signbit(ctx[i, n:]).any()  # +0.0, not -0.0


@torch.no_grad()
def test_truncation(enc):
    ctx = enc.encode(["word " * 500])
    assert ctx.shape == (1, 64, 64)
    assert (ctx[0] != 0).any(-1).all()


@torch.no_grad()
def test_different_prompts_differ_and_batch_is_consistent(enc):
    a, b = enc.encode(PROMPTS)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(enc.encode(PROMPTS[:1])[0], a, atol=1e-5, rtol=1e-5)


def test_bad_prompts(enc):
    with pytest.raises(StreamCharError, match=r"\[\]"):
        enc.encode([])
    with pytest.raises(StreamCharError, match="hello"):
        enc.encode("hello")
    with pytest.raises(StreamCharError, match="3"):
        enc.encode(["ok", 3])


@torch.no_grad()
def test_from_pretrained_t5_and_umt5(enc, tok, tmp_path):
    enc.model.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    loaded = T5PromptEncoder.from_pretrained(tmp_path / "t5", max_length=64)
    assert torch.equal(loaded.encode(PROMPTS), enc.encode(PROMPTS))

    # Wan layout: text_encoder/ (UMT5) and tokenizer/ side by side
    torch.manual_seed(0)
    umt5 = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    ))
    umt5.save_pretrained(tmp_path / "text_encoder")
    tok.save_pretrained(tmp_path / "tokenizer")
    loaded = T5PromptEncoder.from_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer", max_length=16)
    assert isinstance(loaded.model, UMT5EncoderModel)
    assert loaded.encode(PROMPTS).shape == (2, 16, 32)


def test_from_pretrained_missing(tmp_path):
    with pytest.raises(StreamCharError, match="nope"):
        T5PromptEncoder.from_pretrained(tmp_path / "nope")
