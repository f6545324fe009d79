"""The phoneme frontend (codecs/phonemes.py): espeak-ng phonemes per word, offsets into the text, save/load."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from streamchar.codecs import load_tokenizer
from streamchar.codecs.phonemes import PAUSES, PHONEMES, UNK, WORD_SEP, PhonemeTokenizer, build_phoneme_tokenizer
from streamchar.config import tiny
from streamchar.data.latents import pap_targets
from streamchar.data.speech import Voice, synthesize
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.train.alignment import token_spans

TEXT = "Hello Anna, it's late. Are you coming?"


@pytest.fixture(scope="module")
def tok():
    return build_phoneme_tokenizer()


def test_words_become_phonemes_with_separators_and_pauses(tok):
    symbols = tok.phonemize(TEXT)
    names = [s for s, _ in symbols]
    assert names[:4] == ["h", "ə", "l", "oʊ"]  # "Hello" in en-us
    assert names.count(WORD_SEP) == len(TEXT.split()) - 1
    assert [s for s in names if s in PAUSES] == [",", ".", "?"]
    assert set(names) <= {WORD_SEP, *PAUSES, *PHONEMES}  # nothing unknown in plain English
    for s, (a, b) in symbols:  # a phoneme points at its word's characters, a pause at itself
        if s in PHONEMES:
            assert TEXT[a:b] in TEXT.replace(",", " ").replace(".", " ").replace("?", " ").split()
        elif s in PAUSES:
            assert TEXT[a:b] == s
        else:
            assert a == b  # the separator belongs to no word


def test_call_matches_the_transformers_interface(tok):
    enc = tok(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    assert len(enc["input_ids"]) == len(enc["offset_mapping"]) == len(tok.phonemize(TEXT))
    assert tok.decode(enc["input_ids"]) == " ".join(s for s, _ in tok.phonemize(TEXT))
    assert tok.vocabulary.convert_tokens_to_ids(UNK) not in enc["input_ids"]
    assert tok(TEXT, add_special_tokens=True)["input_ids"][-1] == tok.eos_token_id
    assert tok("   ")["input_ids"] == []
    with pytest.raises(StreamCharError, match="one string"):
        tok(["a", "b"])


def test_saved_folder_loads_back_and_is_a_plain_tokenizer(tok, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, PhonemeTokenizer) and back.accent == "en-us" and len(back) == len(tok)
    assert back(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    plain = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))  # the vocabulary alone, for any HF user
    assert plain("h ə l oʊ |")["input_ids"] == tok("hello")["input_ids"] + [tok.vocabulary.convert_tokens_to_ids("|")]


def test_pointer_and_alignment_targets_read_the_phonemes_by_word(tok):
    """On real espeak speech: every phoneme's span lies in its word's span, and by the end of the speech the
    pointer's target is the whole transcript."""
    speech = synthesize(TEXT, Voice("en-gb-x-rp"))
    words = [w.__dict__ for w in speech.words]
    ids, spans = token_spans(TEXT, words, tok)
    assert ids == tok(TEXT)["input_ids"]
    for (a, b), (s, (ca, cb)) in zip(spans, tok.phonemize(TEXT)):
        if s in PHONEMES:
            w = next(w for w in words if w["char_start"] == ca)
            assert w["start"] - 1e-9 <= a < b <= w["end"] + 1e-9
        else:
            assert np.isnan(a)
    _, ends = pap_targets(TEXT, words, tok, chunk_seconds=1.0, n_chunks=int(speech.duration) + 1)
    assert ends[-1] == len(ids) and ends == sorted(ends) and ends[0] < len(ids)


def test_tiny_reads_phonemes_and_the_frontend_must_match_the_tokenizer(tok):
    cfg = tiny()
    assert cfg.orchestrator.text_frontend == "phonemes"
    model = StreamChar.from_config(cfg, seed=0)
    assert isinstance(model.tokenizer, PhonemeTokenizer)
    assert not isinstance(model.text_encoder.tokenizer, PhonemeTokenizer)  # prompts are read as text
    cfg.orchestrator.text_frontend = "text"
    with pytest.raises(StreamCharError, match="text_frontend"):
        StreamChar.from_config(cfg, seed=0, tokenizer=tok)
    cfg.orchestrator.text_frontend = "braille"
    with pytest.raises(StreamCharError, match="text_frontend"):
        cfg.validate()


def test_alignment_spans_follow_the_clips_own_phoneme_times(tok):
    """Given the clip's phoneme events (as SynthTalk stores them), a word's phoneme tokens start where its
    phonemes start (en-us: the frontend's own accent, so the counts match), not at even splits."""
    speech = synthesize(TEXT, Voice("en-us"))
    words = [w.__dict__ for w in speech.words]
    phonemes = [p.__dict__ for p in speech.phonemes]
    ids, exact = token_spans(TEXT, words, tok, phonemes)
    _, even = token_spans(TEXT, words, tok)
    assert ids == tok(TEXT)["input_ids"]
    assert np.array_equal(np.isnan(exact), np.isnan(even))
    symbols = tok.phonemize(TEXT)
    moved = 0
    for w in words:
        mine = [j for j, (s, (ca, _)) in enumerate(symbols) if ca == w["char_start"] and s in PHONEMES]
        inside = [p for p in phonemes if w["start"] - 1e-6 <= (p["start"] + p["end"]) / 2 < w["end"] + 1e-6]
        assert len(mine) == len(inside)
        assert exact[mine[0], 0] == pytest.approx(w["start"]) and exact[mine[-1], 1] == pytest.approx(w["end"])
        for j, p in zip(mine[1:], inside[1:]):
            assert exact[j, 0] == pytest.approx(max(p["start"], w["start"]))
        moved += int(np.abs(exact[mine] - even[mine]).max() > 0.01)
    assert moved >= len(words) // 2  # espeak's phonemes are not of equal length
