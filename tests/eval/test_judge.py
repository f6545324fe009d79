import gzip
import json

import numpy as np
import pytest
import torch

from streamchar.errors import StreamCharError
from streamchar.eval.judge import (
    BLANK,
    SEP,
    UNK,
    JudgeConfig,
    JudgeNet,
    SpeechJudge,
    WordLexicon,
    ctc_greedy,
    max_edits,
    unseen_word_error,
)

ENTRIES = {"the": [["ð", "ə"]], "to": [["t", "uː"], ["t", "ə"]], "two": [["t", "uː"]], "water": [["w", "ɔː", "t", "ɚ"]],
           "window": [["w", "ɪ", "n", "d", "oʊ"]]}


def test_lexicon_reads_exact_nearest_and_unknown():
    lex = WordLexicon(ENTRIES)
    assert lex.read(["w", "ɔː", "t", "ɚ"]) == "water"
    assert lex.read(["t", "uː"]) == "to"  # homophones: the first (most frequent) word wins
    assert lex.read(["w", "ɪ", "n", "d", "ə"]) == "window"  # one edit in five phonemes is repaired
    assert lex.read(["w", "ɪ", "n", "d", "ə"], repair=False) == UNK
    assert lex.read(["k", "æ", "t", "s", "z"]) == UNK  # too far from every word: never turned into one
    assert lex.read([]) == UNK
    assert [max_edits(n) for n in (1, 3, 5, 9)] == [1, 1, 2, 3]
    with pytest.raises(StreamCharError, match="empty"):
        WordLexicon({})


def test_ctc_greedy_collapses_repeats_and_blanks():
    ids = [BLANK, 2, 2, BLANK, 2, SEP, SEP, 3, BLANK]
    logp = torch.full((len(ids), 5), -10.0)
    logp[torch.arange(len(ids)), torch.tensor(ids)] = 0.0
    assert ctc_greedy(logp, len(ids)) == [2, 2, SEP, 3]
    assert ctc_greedy(logp, 3) == [2]


def test_net_shapes_and_padding_do_not_leak():
    torch.manual_seed(0)
    net = JudgeNet(JudgeConfig(phonemes=["a", "b", "c"], channels=16, blocks=2)).eval()
    wave = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 8000])
    logp, out_len = net(wave, lengths)
    assert logp.shape == (2, 51, 5) and out_len.tolist() == [51, 26]
    with torch.no_grad():
        alone, _ = net(wave[1:, :8000], lengths[1:])
        padded, _ = net(torch.cat([wave[1:, :8000], torch.randn(1, 8000)], 1), lengths[1:])
    torch.testing.assert_close(padded[0, :26], alone[0, :26], atol=1e-4, rtol=0)
    with pytest.raises(StreamCharError, match="phonemes"):
        JudgeConfig(phonemes=[]).validate()


def test_save_load_round_trip_and_bad_folders(tmp_path):
    torch.manual_seed(0)
    judge = SpeechJudge(JudgeNet(JudgeConfig(phonemes=["ð", "ə", "t", "uː"], channels=16, blocks=1)),
                        WordLexicon(ENTRIES), {"seed": 0})
    judge.save_pretrained(tmp_path / "j")
    back = SpeechJudge.from_pretrained(tmp_path / "j")
    audio = np.random.default_rng(0).normal(0, 0.1, 24000).astype(np.float32)
    assert back.transcribe(audio, 24000) == judge.transcribe(audio, 24000)
    assert back.card == {"seed": 0} and back.lexicon.entries == ENTRIES
    with pytest.raises(StreamCharError, match="not found"):
        SpeechJudge.from_pretrained(tmp_path / "absent")
    (tmp_path / "j" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(StreamCharError, match="model.safetensors"):
        SpeechJudge.from_pretrained(tmp_path / "j")
    (tmp_path / "j" / "lexicon.json.gz").unlink()
    with pytest.raises(StreamCharError, match="lexicon.json.gz"):
        SpeechJudge.from_pretrained(tmp_path / "j")
    with pytest.raises(StreamCharError, match="NaN"):
        judge.transcribe(np.full(1000, np.nan, np.float32), 16000)


def test_unseen_word_error_counts_only_unseen_reference_words():
    err, n = unseen_word_error(["the zebra ate the apple", "a quokka"], ["the zebra ate an apple", "a walker"],
                               {"zebra", "quokka", "apple"})
    assert n == 3 and err == pytest.approx(1 / 3)  # zebra and apple read right, quokka not


def test_train_asr_judge_end_to_end(make_synthtalk, tmp_path, one_thread):
    from streamchar.cli import main
    from streamchar.data.corpus import words_of
    from streamchar.data.pronounce import lexicon_pronunciations
    from streamchar.train.clips import load_clips

    data = make_synthtalk(3, seed=0)
    clips = load_clips(data, ["train", "val", "test"], 16000, 1, keep="audio")
    words = sorted({w for c in clips for w in words_of(c.text)})
    out = tmp_path / "judge_run"
    out.mkdir()
    cache = {w: [list(p) for p in ps] for w, ps in lexicon_pronunciations(words, progress=False).items()}
    (out / "pronunciations.json.gz").write_bytes(gzip.compress(json.dumps(cache).encode()))
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("channels: 16\nblocks: 1\nbatch_size: 2\nitems_per_clip: 2\neval_clips: 1\n"
                   "train:\n  steps: 2\n  lr: 1.0e-3\n")
    assert main(["train", "asr-judge", "--config", str(cfg), "--data", str(data), "--out-dir", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 2 and report["eval"]["clips"] == 1 and "wer_by_voice" in report["eval"]
    card = json.loads((out / "judge" / "card.json").read_text())
    assert len(card["weights_sha256"]) == 64 and card["data"]["synthtalk_seed"] == 0
    judge = SpeechJudge.from_pretrained(out / "judge")
    assert isinstance(judge.transcribe(clips[0].audio, 16000), str)
    assert main(["train", "asr-judge", "--config", str(tmp_path / "absent.yaml")]) == 2


def test_lexicon_splits_a_missed_word_boundary():
    lex = WordLexicon({**ENTRIES, "cat": [["k", "æ", "t"]], "sat": [["s", "æ", "t"]]})
    assert lex.read_words(["ð", "ə", "k", "æ", "t"]) == ["the", "cat"]
    assert lex.read_words(["ð", "ə", "k", "æ", "t", "s", "æ", "t"]) == ["the", "cat", "sat"]
    assert lex.read_words(["ð", "ə", "k", "æ", "p"]) == ["the", "cat"]  # one exact word + one an edit away
    assert lex.read_words(["ð", "ə", "k", "æ", "p"], repair=False) == [UNK]
    assert lex.read(["ð", "ə", "k", "æ", "t"], repair=False) == "the cat"  # exact splits need no repair


def test_lexicon_takes_connected_speech_forms_from_training_clips(tmp_path):
    from streamchar.train.asr_judge import judge_lexicon
    from streamchar.train.clips import Clip

    cache = tmp_path / "pronunciations.json.gz"
    numbers = {str(n): [["n"]] for n in range(1, 100)}
    cache.write_bytes(gzip.compress(json.dumps({**ENTRIES, **numbers, "no": [["n", "oʊ"]],
                                                "know": [["n", "oʊ"]]}).encode()))

    def clip(words):  # words: [(text, phonemes)] spoken one after another, 0.1 s per phoneme
        ws, ps, t = [], [], 0.0
        for text, phs in words:
            ws.append({"text": text, "start": t, "end": t + 0.1 * len(phs)})
            for p in phs:
                ps.append({"ipa": p, "start": t, "end": t + 0.1})
                t += 0.1
        return Clip(key="k", text=" ".join(w for w, _ in words), frames=None, audio=None,
                    meta={"words": ws, "phonemes": ps})

    said = [("To", ["t", "ɪ"]), ("know,", ["n", "oʊ"]), ("window", ["w", "ɪ", "n", "d", "oʊ"])]
    clips = [clip(said), clip(said), clip([("to", ["t", "ɪ", "x"])])]
    plain = WordLexicon(judge_lexicon(cache, False))
    lex = judge_lexicon(cache, False, clips, min_observed=2)
    assert lex["to"][0] == ["t", "ɪ"] and ["t", "ɪ", "x"] not in lex["to"]  # seen twice / once
    assert ["t", "uː"] in lex["to"]  # espeak's own forms stay
    assert list(lex)[:3] == ["to", "know", "window"]  # most often heard first: know beats no
    reader = WordLexicon(lex)
    assert reader.read_words(["n", "oʊ"]) == ["know"] and plain.read_words(["n", "oʊ"]) == ["no"]
    assert reader.read_words(["t", "ɪ"]) == ["to"]
    assert judge_lexicon(cache, False, clips, min_observed=0) == judge_lexicon(cache, False)
