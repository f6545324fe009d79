"""The SynthTalk speech judge: a small phoneme recogniser with a pronunciation lexicon, for WER on SynthTalk.

pocketsphinx reads SynthTalk's true speech at WER ~0.8, so it cannot tell a good model from a bad one. The
judge is trained on true SynthTalk speech only (`streamchar train asr-judge`, never on generated audio) and
reads it the way the corpus was made:

    wave (16 kHz) -> log-mel (80 x 100 fps, per-utterance mean/variance normalised)
      -> conv stem (stride 2: 50 fps) -> residual depthwise-separable conv blocks (~1.3 s receptive field)
      -> per-frame logits over [blank, word separator "|", espeak-ng's phonemes]      (CTC, greedy)
      -> phoneme groups between separators -> words through the lexicon

The lexicon maps each corpus word (every split: the held-out words too, as a closed-vocabulary recogniser's
dictionary does) to its espeak-ng pronunciations in SynthTalk's accents (`data/pronounce.py`). A group is
read as the word whose pronunciation is nearest in edit distance, if within `max_edits(len)` (about one edit
in three phonemes); ties go to the more frequent word (homophones: "to" over "two"). A farther group is read
as "<unk>", which never matches a transcript word: mumbling does not become words. There is no language
model: each word is read alone, whatever the words around it.

`transcribe(..., repair=False)` reads only groups that spell a lexicon pronunciation exactly (no nearest-word
repair): its WER is reported beside the main one.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from streamchar.errors import StreamCharError

SAMPLE_RATE = 16000
BLANK, SEP = 0, 1  # CTC blank, word separator
UNK = "<unk>"
HOP = 160  # 10 ms at 16 kHz
N_FFT = 400  # 25 ms


@dataclass
class JudgeConfig:
    phonemes: list[str] = field(default_factory=list)  # the inventory; ids 2.. in this order
    n_mels: int = 80
    channels: int = 256
    blocks: int = 8
    kernel: int = 9
    dropout: float = 0.1

    @property
    def vocab_size(self) -> int:
        return 2 + len(self.phonemes)

    def validate(self) -> "JudgeConfig":
        if not self.phonemes or len(set(self.phonemes)) != len(self.phonemes):
            raise StreamCharError("judge config: phonemes must be a non-empty list of distinct names")
        for name in ("n_mels", "channels", "blocks", "kernel"):
            if getattr(self, name) < 1:
                raise StreamCharError(f"judge config: {name} must be >= 1, got {getattr(self, name)}")
        if self.kernel % 2 == 0:
            raise StreamCharError(f"judge config: kernel must be odd, got {self.kernel}")
        return self


class LogMel(nn.Module):
    """(B, S) waveform at 16 kHz -> (B, n_mels, T) log-mel, T = S // 160 + 1 (centred frames)."""

    def __init__(self, n_mels: int):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        fb = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
                             max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney",
                             mel_scale="slaney")  # (freq, mels)
        self.register_buffer("fb", torch.tensor(fb.T, dtype=torch.float32), persistent=False)  # (mels, freq)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave.float(), N_FFT, HOP, window=self.window, pad_mode="constant",
                          return_complex=True).abs().square()
        return (self.fb @ spec).clamp_min(1e-8).log()  # (B, mels, T)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of each frame of (B, C, T): no statistics across time, so padding
    cannot change the real frames."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class Block(nn.Module):
    """Residual: depthwise conv (time) -> pointwise -> GELU -> pointwise, pre-norm over channels."""

    def __init__(self, channels: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.depthwise = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.up = nn.Conv1d(channels, 2 * channels, 1)
        self.down = nn.Conv1d(2 * channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, C, T); mask: (B, 1, T), 1 on real frames (padding is zeroed so it cannot leak through the conv)
        h = self.depthwise(self.norm(x) * mask)
        return x + self.drop(self.down(F.gelu(self.up(h)))) * mask


class JudgeNet(nn.Module):
    """forward(wave (B, S), lengths (B,)) -> log-probs (B, T', V), frame lengths (B,), at 50 frames/s."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        self.cfg = cfg.validate()
        c = cfg.channels
        self.mel = LogMel(cfg.n_mels)
        self.stem_down = nn.Conv1d(cfg.n_mels, c, 5, stride=2, padding=2)
        self.stem = nn.Conv1d(c, c, 3, padding=1)
        self.blocks = nn.ModuleList(Block(c, cfg.kernel, cfg.dropout) for _ in range(cfg.blocks))
        self.norm = ChannelNorm(c)
        self.head = nn.Conv1d(c, cfg.vocab_size, 1)

    @staticmethod
    def frame_lengths(lengths: torch.Tensor) -> torch.Tensor:
        mel = lengths // HOP + 1
        return (mel - 1) // 2 + 1  # the stride-2 stem

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor):
        s = torch.arange(wave.shape[-1], device=wave.device)
        wave = wave * (s[None] < lengths[:, None])  # padding is silence, whatever the batch held there
        feats = self.mel(wave)  # (B, M, T)
        t = torch.arange(feats.shape[-1], device=wave.device)
        valid = (t[None] < (lengths // HOP + 1)[:, None]).unsqueeze(1).float()  # (B, 1, T)
        n = valid.sum(-1, keepdim=True).clamp_min(1)
        mean = (feats * valid).sum(-1, keepdim=True) / n
        std = (((feats - mean) * valid).square().sum(-1, keepdim=True) / n).sqrt().clamp_min(1e-3)
        x = F.gelu(self.stem_down((feats - mean) / std * valid))  # (B, C, T')
        out_len = self.frame_lengths(lengths)
        tt = torch.arange(x.shape[-1], device=wave.device)
        mask = (tt[None] < out_len[:, None]).unsqueeze(1).to(x.dtype)  # (B, 1, T')
        x = self.stem(x * mask) * mask
        for block in self.blocks:
            x = block(x, mask)
        logits = self.head(self.norm(x) * mask)  # (B, V, T')
        return logits.transpose(1, 2).float().log_softmax(-1), out_len


def ctc_greedy(log_probs: torch.Tensor, length: int) -> list[int]:
    """(T, V) log-probs -> ids: best path, repeats collapsed, blanks dropped."""
    best = log_probs[:length].argmax(-1).tolist()
    out, prev = [], None
    for i in best:
        if i != prev and i != BLANK:
            out.append(i)
        prev = i
    return out


SPLIT_COST = 1.0  # a missed word boundary costs an edit (a single word wins ties)


def max_edits(n_phonemes: int) -> int:
    """How far a phoneme group may be from a pronunciation and still be read as that word."""
    return max(1, round(n_phonemes / 3))


class WordLexicon:
    """word -> pronunciations, searched by edit distance over phoneme strings (one character per phoneme)."""

    def __init__(self, entries: dict[str, list[list[str]]]):
        """`entries` in order of preference (most frequent word first): ties go to the earlier word."""
        if not entries:
            raise StreamCharError("the judge's lexicon is empty")
        self.entries = entries
        self._code: dict[str, str] = {}
        self.words: list[str] = []
        self.strings: list[str] = []
        self.exact: dict[str, str] = {}
        for word, prons in entries.items():
            for p in prons:
                s = self.encode(p)
                self.words.append(word)
                self.strings.append(s)
                self.exact.setdefault(s, word)

    def encode(self, phonemes) -> str:
        return "".join(self._code.setdefault(p, chr(0xE000 + len(self._code))) for p in phonemes)

    def read(self, phonemes: list[str], repair: bool = True) -> str:
        """The word(s) these phonemes spell, space-separated (see `read_words`)."""
        return " ".join(self.read_words(phonemes, repair))

    def read_words(self, phonemes: list[str], repair: bool = True) -> list[str]:
        """The words a phoneme group spells, by the cheapest reading (cost = edits + SPLIT_COST per extra word):
        one word at most `max_edits` away; or, when the recogniser missed a word boundary, two or three words
        whose pronunciations spell the group exactly (or two words, one of them one edit away). Nothing within
        reach: ["<unk>"]. `repair=False`: exact spellings only (one word or an exact split)."""
        if not phonemes:
            return [UNK]
        s = self.encode(phonemes)
        if s in self.exact:
            return [self.exact[s]]
        n, best = len(s), (float("inf"), [UNK])
        for i in range(1, n):  # two exact words
            if s[:i] in self.exact and s[i:] in self.exact:
                best = min(best, (SPLIT_COST, [self.exact[s[:i]], self.exact[s[i:]]]), key=lambda c: c[0])
        if best[0] > SPLIT_COST and n <= 24:  # three exact words
            for i in range(1, n - 1):
                if s[:i] not in self.exact:
                    continue
                for j in range(i + 1, n):
                    if s[i:j] in self.exact and s[j:] in self.exact:
                        best = (2 * SPLIT_COST, [self.exact[s[:i]], self.exact[s[i:j]], self.exact[s[j:]]])
                        break
                if best[0] <= 2 * SPLIT_COST:
                    break
        if not repair or best[0] < SPLIT_COST:
            return best[1]
        d, word = self.nearest(s, max_edits(n))
        if word is not None and d <= best[0]:
            best = (d, [word])
        if best[0] > 1 + SPLIT_COST:  # one exact word and one a single edit away
            for i in range(2, n - 1):
                a, b = s[:i], s[i:]
                if a in self.exact and len(b) >= 3:
                    d2, w2 = self.nearest(b, 1)
                    if w2 is not None and d2 + SPLIT_COST < best[0]:
                        best = (d2 + SPLIT_COST, [self.exact[a], w2])
                if b in self.exact and len(a) >= 3:
                    d2, w2 = self.nearest(a, 1)
                    if w2 is not None and d2 + SPLIT_COST < best[0]:
                        best = (d2 + SPLIT_COST, [w2, self.exact[b]])
        return best[1]

    def nearest(self, s: str, max_distance: int) -> tuple[int, str | None]:
        """(edit distance, word) of the nearest pronunciation within `max_distance`, or (inf, None)."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        hit = process.extractOne(s, self.strings, scorer=Levenshtein.distance, score_cutoff=max_distance)
        return (int(hit[1]), self.words[hit[2]]) if hit is not None else (10**9, None)


class SpeechJudge:
    """The judge: `transcribe(audio, sample_rate)` -> lower-case words. Load with `SpeechJudge.from_pretrained`."""

    def __init__(self, net: JudgeNet, lexicon: WordLexicon, card: dict | None = None):
        self.net = net.eval()
        self.lexicon = lexicon
        self.card = card or {}

    @property
    def phonemes(self) -> list[str]:
        return self.net.cfg.phonemes

    def _wave(self, audio, sample_rate: int) -> torch.Tensor:
        from streamchar.data.speech import resample

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:
            audio = audio.mean(axis=0)
        if audio.ndim != 1:
            raise StreamCharError(f"the judge takes audio of shape (samples,) or (channels, samples), "
                                  f"got {audio.shape}")
        if sample_rate <= 0:
            raise StreamCharError(f"sample_rate must be positive, got {sample_rate}")
        if not np.isfinite(audio).all():
            raise StreamCharError("the audio holds NaN or infinite samples")
        wave = resample(audio, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else audio
        return torch.from_numpy(np.pad(wave, (0, max(0, N_FFT - len(wave)))))

    @torch.no_grad()
    def phoneme_groups(self, audio, sample_rate: int) -> list[list[str]]:
        """Audio -> the recognised phonemes, one list per word (split at the separators)."""
        wave = self._wave(audio, sample_rate)
        device = next(self.net.parameters()).device
        logp, lens = self.net(wave[None].to(device), torch.tensor([len(wave)], device=device))
        groups, cur = [], []
        for i in ctc_greedy(logp[0], int(lens[0])):
            if i == SEP:
                if cur:
                    groups.append(cur)
                cur = []
            else:
                cur.append(self.phonemes[i - 2])
        if cur:
            groups.append(cur)
        return groups

    def transcribe(self, audio, sample_rate: int, repair: bool = True) -> str:
        return " ".join(w for g in self.phoneme_groups(audio, sample_rate) for w in self.lexicon.read_words(g, repair))

    # ---- files ----------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, card: dict | None = None) -> None:
        """config.json, model.safetensors, lexicon.json.gz and card.json in `path` (written to a temporary
        folder, then renamed into place)."""
        from safetensors.torch import save_file

        from streamchar.atomic import atomic_folder

        path = Path(path)
        with atomic_folder(path) as tmp:
            cfg = self.net.cfg
            (tmp / "config.json").write_text(json.dumps(
                {k: getattr(cfg, k) for k in ("phonemes", "n_mels", "channels", "blocks", "kernel", "dropout")},
                ensure_ascii=False, indent=1))
            save_file({k: v.detach().float().contiguous().cpu() for k, v in self.net.state_dict().items()},
                      str(tmp / "model.safetensors"))
            with gzip.GzipFile(tmp / "lexicon.json.gz", "wb", mtime=0) as f:
                f.write(json.dumps(self.lexicon.entries, ensure_ascii=False).encode())
            (tmp / "card.json").write_text(json.dumps(card if card is not None else self.card, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device="cpu") -> "SpeechJudge":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_dir():
            raise StreamCharError(f"speech judge folder not found: {path}")
        for name in ("config.json", "model.safetensors", "lexicon.json.gz"):
            if not (path / name).is_file():
                raise StreamCharError(f"not a speech judge folder: {path} has no {name}")
        try:
            cfg = JudgeConfig(**json.loads((path / "config.json").read_text()))
            entries = json.loads(gzip.decompress((path / "lexicon.json.gz").read_bytes()))
            card = json.loads((path / "card.json").read_text()) if (path / "card.json").is_file() else {}
        except (json.JSONDecodeError, TypeError, OSError, EOFError) as e:
            raise StreamCharError(f"speech judge folder {path}: a file is not valid ({e})") from None
        net = JudgeNet(cfg)
        try:
            net.load_state_dict(load_file(str(path / "model.safetensors")))
        except (SafetensorError, RuntimeError, OSError) as e:
            raise StreamCharError(f"speech judge weights {path / 'model.safetensors'} do not load: "
                                  f"{str(e).splitlines()[0]}") from None
        return cls(net.to(device), WordLexicon(entries), card)


BUNDLED = Path(__file__).resolve().parent.parent / "bundled" / "judge"


def load_judge(path: str | Path | None = None, device="cpu") -> SpeechJudge:
    """The judge at `path`, or the bundled one (`streamchar/bundled/judge`)."""
    if path is None and not (BUNDLED / "model.safetensors").is_file():
        raise StreamCharError(f"no bundled speech judge at {BUNDLED}: train one with `streamchar train asr-judge` "
                              "and pass its folder")
    return SpeechJudge.from_pretrained(path or BUNDLED, device)


def unseen_word_error(refs: list[str], hyps: list[str], unseen) -> tuple[float, int]:
    """Share of the reference words in `unseen` that the hypotheses do not read correctly (aligned as in WER),
    and how many such words there were."""
    import jiwer

    from streamchar.eval.asr import normalize_text

    total = wrong = 0
    for ref, hyp in zip(refs, hyps):
        r, h = normalize_text(ref), normalize_text(hyp)
        if not r:
            continue
        words = r.split()
        hit = np.zeros(len(words), dtype=bool)
        out = jiwer.process_words(r, h or UNK)
        for chunk in out.alignments[0]:
            if chunk.type == "equal":
                hit[chunk.ref_start_idx: chunk.ref_end_idx] = True
        for w, ok in zip(words, hit):
            if re.sub(r"'s$", "", w) in unseen or w in unseen:
                total += 1
                wrong += not ok
    return (wrong / total if total else float("nan")), total
