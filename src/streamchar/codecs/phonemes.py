"""The phoneme frontend: a transcript read as espeak-ng's phonemes, for a small orchestrator (ours, not the paper's).

The paper's orchestrator reads the transcript through Qwen2.5's tokenizer: a 3B LM knows how English is
spelled and spoken. The `tiny` LM (4 layers, 128 wide, a few CPU-hours) does not, and SynthTalk speaks ~33k
words: through a 1k-token BPE it would have to learn English orthography before it could say anything. So at
`tiny` the transcript goes through a grapheme-to-phoneme step first, as small TTS models do (VITS, Piper):

    "Hello Anna, it's late."  ->  h ə l oʊ | æ n ə , | ɪ t s | l eɪ t .     (en-us, espeak-ng)

Each word's phonemes come from libespeak-ng (data/speech.py: the same synthesis that speaks SynthTalk, the
phonemes whose midpoint falls in the word), a `|` token separates words and the punctuation that makes a
pause (, . ? ! ; :) is kept as a token. The ids come from a word-level `tokenizers` vocabulary over the en-us
inventory (`PHONEMES`), saved as a plain `tokenizer.json` (it loads with AutoTokenizer) with a
`phoneme_frontend.json` beside it that marks the folder as this frontend.

`PhonemeTokenizer` is called like a transformers tokenizer (`tok(text, return_offsets_mapping=True)`), and its
offsets point into the *text*: a phoneme's offsets are its word's characters, so the pointer's targets, the
alignment aid and `StreamSession.spoken_text` read the text the same way for either frontend.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from streamchar.codecs.tokenizer import EOS
from streamchar.errors import StreamCharError

UNK = "[UNK]"
WORD_SEP = "|"
PAUSES = ",.?!;:"  # punctuation kept as tokens: espeak pauses at each
# espeak-ng's en-us phoneme names (as data/speech.py reports them), measured over SynthTalk's 32,876-word
# lexicon, most frequent first. Anything else espeak says maps to [UNK].
PHONEMES = (
    "ɪ s n t k ɹ d z ə l p m ɛ ɚ æ b ᵻ ŋ eɪ f i ʌ ɑː v ɾ aɪ oʊ ʃ əl ɡ iː uː dʒ w ɜː h ɐ j tʃ ɑːɹ aʊ ɔː "
    "θ ɔːɹ oːɹ ʊ iə ɔ ɔɪ ʊɹ ɛɹ ɪɹ oː aɪɚ ʒ ð aɪə n̩ ʔ ɑ̃ x"
).split()
MARKER = "phoneme_frontend.json"


def build_phoneme_vocabulary() -> PreTrainedTokenizerFast:
    """The word-level vocabulary: eos (id 0), [UNK], the word separator, the pauses, then `PHONEMES`."""
    symbols = [EOS, UNK, WORD_SEP, *PAUSES, *PHONEMES]
    tok = Tokenizer(models.WordLevel({s: i for i, s in enumerate(symbols)}, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token=UNK,
                                   padding_side="right", clean_up_tokenization_spaces=False)


class PhonemeTokenizer:
    """Text -> phoneme ids with offsets into the text (the subset of a transformers tokenizer's interface that
    streamchar uses: call, decode, len, eos/pad ids, save_pretrained)."""

    def __init__(self, vocabulary: PreTrainedTokenizerFast, accent: str = "en-us"):
        self.vocabulary, self.accent = vocabulary, accent
        self.eos_token_id, self.pad_token_id = vocabulary.eos_token_id, vocabulary.pad_token_id
        self.eos_token, self.pad_token = vocabulary.eos_token, vocabulary.pad_token

    def __len__(self) -> int:
        return len(self.vocabulary)

    def phonemize(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        """[(symbol, (char_start, char_end) in `text`)]: each word's phonemes, `|` between words, pauses."""
        import dataclasses

        from streamchar.data.pronounce import word_phonemes
        from streamchar.data.speech import Voice, synthesize

        if not text.strip():
            return []
        speech = synthesize(text, Voice(self.accent))
        words = word_phonemes([dataclasses.asdict(w) for w in speech.words],
                              [dataclasses.asdict(p) for p in speech.phonemes])
        out: list[tuple[str, tuple[int, int]]] = []
        prev_end = 0
        for w, (_, phs) in zip(speech.words, words):
            if not phs:  # a word espeak says nothing for
                continue
            if out:
                out += self._pauses(text, prev_end, w.char_start)
                out.append((WORD_SEP, (prev_end, prev_end)))  # zero width: it belongs to no word
            out += [(p, (w.char_start, w.char_end)) for p in phs]
            prev_end = w.char_end
        if out:
            out += self._pauses(text, prev_end, len(text))
        return out

    @staticmethod
    def _pauses(text: str, a: int, b: int) -> list[tuple[str, tuple[int, int]]]:
        return [(c, (i, i + 1)) for i, c in enumerate(text[a:b], start=a) if c in PAUSES]

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        if not isinstance(text, str):
            raise StreamCharError(f"the phoneme frontend takes one string, got {type(text).__name__}")
        symbols = self.phonemize(text)
        ids = [self.vocabulary.convert_tokens_to_ids(s) for s, _ in symbols]
        if add_special_tokens and self.eos_token_id is not None:
            ids.append(self.eos_token_id)
            symbols.append((EOS, (len(text), len(text))))
        out = {"input_ids": ids}
        if return_offsets_mapping:
            out["offset_mapping"] = [span for _, span in symbols]
        return out

    def decode(self, ids) -> str:
        """The phoneme string of `ids` (space separated); the text is not recoverable from phonemes."""
        return " ".join(self.vocabulary.convert_ids_to_tokens([int(i) for i in ids]))

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.vocabulary.save_pretrained(str(path))
        (path / MARKER).write_text(json.dumps({"frontend": "phonemes", "accent": self.accent}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PhonemeTokenizer":
        path = Path(path)
        spec = json.loads((path / MARKER).read_text())
        if spec.get("frontend") != "phonemes":
            raise StreamCharError(f"{path / MARKER}: unknown frontend {spec.get('frontend')!r}")
        return cls(AutoTokenizer.from_pretrained(str(path), local_files_only=True), accent=spec.get("accent", "en-us"))


def build_phoneme_tokenizer(accent: str = "en-us") -> PhonemeTokenizer:
    return PhonemeTokenizer(build_phoneme_vocabulary(), accent)
