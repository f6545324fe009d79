import time

import pytest
from transformers import PreTrainedTokenizerFast

from streamchar.codecs import build_tiny_tokenizer, load_tokenizer
from streamchar.errors import StreamCharError

TEXTS = [
    "Hello there, how are you today?",
    "Héllo wörld! Ça va? 日本語のテキスト 🙂🚀 Привет",
    "  leading and trailing spaces \t tabs\nnew lines\r\n ",
    "code: x = f(a, b) ** 2 // 3; print('done') <|endoftext|>",
    "",
]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_build_is_fast_and_deterministic(tok):
    t = time.perf_counter()
    other = build_tiny_tokenizer()
    assert time.perf_counter() - t < 2.0
    assert len(tok) == 1024
    assert other.get_vocab() == tok.get_vocab()
    assert other.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()  # same merges too
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"


def test_learned_merges_are_used(tok):
    ids = tok("the people")["input_ids"]
    assert len(ids) < len("the people")  # not byte by byte


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_any_text(tok, text):
    ids = tok(text)["input_ids"]
    assert all(0 <= i < len(tok) for i in ids)
    assert tok.decode(ids) == text


def test_save_and_load_identical_ids(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    fast = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    auto = load_tokenizer(tmp_path)
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert fast(text)["input_ids"] == ids
        assert auto(text)["input_ids"] == ids
    assert auto.pad_token_id == tok.pad_token_id


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(StreamCharError, match="missing_dir"):
        load_tokenizer(tmp_path / "missing_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamCharError, match="empty"):
        load_tokenizer(tmp_path / "empty")


def test_bad_vocab_size():
    with pytest.raises(StreamCharError, match="100"):
        build_tiny_tokenizer(100)


def test_a_qwen2_tokenizer_folder_loads(tok, tmp_path):
    """A Qwen2 tokenizer as users have it on disk. In transformers 5 it must be built from vocab and merges
    objects (its vocab_file / merges_file arguments are ignored and give an empty tokenizer)."""
    import json

    from transformers import Qwen2Tokenizer

    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    qwen = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    text = "Hello there, streaming character!"
    ids = qwen(text)["input_ids"]
    assert len(ids) < len(text.encode())  # merges are applied: fewer tokens than bytes
    qwen.save_pretrained(tmp_path / "qwen")
    back = load_tokenizer(tmp_path / "qwen")
    assert back(text)["input_ids"] == ids and back.decode(ids) == text
