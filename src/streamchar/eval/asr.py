"""Speech recognition for intelligibility checks: pocketsphinx transcripts (or Whisper from a local folder),
forced alignment, long streams transcribed window by window, and corpus-level word error rate.

pocketsphinx 5's wheel ships a US English acoustic model, dictionary and language model, so `Decoder()`
with its default config works offline. It wants 16 kHz mono int16. On clean espeak-ng speech it does
poorly (WER ~0.85): digital silence and the lack of any noise floor upset its voice activity detection and
cepstral mean normalisation. `transcribe` therefore pads 0.25 s of silence on each side and adds a faint,
seeded Gaussian noise floor (sigma 100 on the int16 scale, ~-50 dBFS), which brings WER on espeak speech
to ~0.3. The noise is seeded, so a transcript is deterministic.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from streamchar.errors import StreamCharError

ASR_SAMPLE_RATE = 16000  # what pocketsphinx's default model takes
_decoder = None  # one pocketsphinx Decoder per process, made on first use (~0.4 s)


def _spell_number(match: re.Match) -> str:
    from num2words import num2words

    number, suffix = match.group(1).replace(",", ""), (match.group(2) or "").lower()
    if suffix:  # 1st, 2nd, 23rd, 4th
        return " " + num2words(int(number), to="ordinal") + " "
    return " " + num2words(float(number) if "." in number else int(number)) + " "


def normalize_text(s: str) -> str:
    """Lower case; numbers spelled out (num2words: "42" -> "forty two", "3.5" -> "three point five",
    "1,000" -> "one thousand", "2nd" -> "second"), so "42" and "forty-two" score alike whichever side writes
    digits; curly apostrophes become "'"; every other non-letter/digit character (punctuation, hyphens)
    becomes a space; whitespace collapsed. Apostrophes inside words stay ("don't"), stray ones go.
        "Hello, World!  It's well-known, 42." -> "hello world it's well known forty two"
    """
    s = s.lower().replace("\u2019", "'").replace("\u2018", "'")
    s = re.sub(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?)(st|nd|rd|th)?\b", _spell_number, s)
    s = re.sub(r"[^\w\s']|_", " ", s)  # punctuation -> space, apostrophes kept
    s = re.sub(r"(?<!\w)'|'(?!\w)", " ", s)  # an apostrophe not between two word characters is a quote
    return " ".join(s.split())


def _get_decoder():
    global _decoder
    if _decoder is None:
        from pocketsphinx import Decoder

        _decoder = Decoder(loglevel="FATAL")  # the default config (bundled en-us model), quiet
    return _decoder


def _pcm(audio, sample_rate: int, pad_seconds: float, noise_std: float, seed: int) -> bytes:
    """Float audio -> 16 kHz mono int16 bytes, padded with silence each side, with a seeded noise floor."""
    from streamchar.data.speech import resample

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)  # (S,)
    if audio.ndim != 1:
        raise StreamCharError(f"pocketsphinx takes audio of shape (samples,) or (channels, samples), got {audio.shape}")
    if sample_rate <= 0:
        raise StreamCharError(f"sample_rate must be positive, got {sample_rate}")
    audio = resample(audio, sample_rate, ASR_SAMPLE_RATE)
    pad = np.zeros(int(round(pad_seconds * ASR_SAMPLE_RATE)), np.float32)
    x = np.concatenate([pad, audio, pad]).astype(np.float64) * 32767.0
    x += np.random.default_rng(seed).normal(0.0, noise_std, len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16).tobytes()


def transcribe(audio, sample_rate: int, pad_seconds: float = 0.25, noise_std: float = 100.0,
               seed: int = 0) -> str:
    """Mono or (channels, samples) float audio in [-1, 1] -> pocketsphinx's transcript (lower case words).

    The audio is mixed to mono, resampled to 16 kHz, padded with `pad_seconds` of silence each side, and
    gets Gaussian noise of `noise_std` (int16 scale, generator seeded by `seed`) before int16 conversion.
    """
    pcm = _pcm(audio, sample_rate, pad_seconds, noise_std, seed)
    decoder = _get_decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return normalize_text(hyp.hypstr) if hyp is not None else ""


def align(audio, sample_rate: int, text: str, pad_seconds: float = 0.25, noise_std: float = 100.0,
          seed: int = 0) -> list[tuple[str, float, float]]:
    """Forced alignment of `text` to the audio: [(word, start s, end s)] in the audio's time (10 ms frames).

    pocketsphinx's `set_align_text` with its bundled dictionary; silences are left out and alternate
    pronunciations lose their "(2)" mark. A word missing from the dictionary is an error naming it.
    """
    words = normalize_text(text)
    if not words:
        raise StreamCharError("align: the text has no words")
    pcm = _pcm(audio, sample_rate, pad_seconds, noise_std, seed)
    decoder = _get_decoder()
    missing = [w for w in words.split() if decoder.lookup_word(w) is None]
    if missing:
        raise StreamCharError(f"align: words not in pocketsphinx's dictionary: {missing}")
    decoder.set_align_text(words)
    try:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        segments = [(re.sub(r"\(\d+\)$", "", seg.word), round(seg.start_frame / 100 - pad_seconds, 3),
                     round((seg.end_frame + 1) / 100 - pad_seconds, 3))
                    for seg in decoder.seg() if seg.word not in ("<s>", "</s>", "<sil>", "[NOISE]")]
    finally:
        decoder.activate_search()  # back to the language model for `transcribe`
    if [w for w, _, _ in segments] != words.split():
        raise StreamCharError(f"align: pocketsphinx could not align the text to the audio ({len(segments)} of "
                              f"{len(words.split())} words)")
    return segments


def wer(refs: list[str] | str, hyps: list[str] | str) -> float:
    """Corpus-level word error rate, (S + D + I) / reference words over all pairs, of normalised texts."""
    import jiwer

    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if len(refs) != len(hyps) or not refs:
        raise StreamCharError(f"wer needs as many hypotheses as references (>= 1), got {len(refs)} and {len(hyps)}")
    refs = [normalize_text(r) for r in refs]
    hyps = [normalize_text(h) for h in hyps]
    if any(not r for r in refs):
        raise StreamCharError("wer: a reference is empty after normalisation (WER is undefined for it)")
    return float(jiwer.process_words(refs, hyps).wer)


class WhisperTranscriber:
    """Whisper from a LOCAL model folder (`WhisperForConditionalGeneration` + its processor, as saved by
    `save_pretrained`), English, greedy decoding. `transcriber(audio, sample_rate) -> normalised text`."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        path = Path(path)
        if not (path / "config.json").is_file():
            raise StreamCharError(f"WER (whisper): no Whisper model folder at {path} (config.json missing); "
                                  "pass the folder saved by save_pretrained, e.g. --whisper DIR")
        try:
            self.processor = WhisperProcessor.from_pretrained(path)
            self.model = WhisperForConditionalGeneration.from_pretrained(path).to(device).eval()
        except (OSError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise StreamCharError(f"WER (whisper): the Whisper folder {path} does not load: {first}") from None
        self.device = device
        self.sample_rate = self.processor.feature_extractor.sampling_rate  # 16 kHz

    @torch.no_grad()
    def __call__(self, audio, sample_rate: int) -> str:
        from streamchar.data.speech import resample

        audio = np.asarray(audio, dtype=np.float32)
        audio = audio.mean(axis=0) if audio.ndim == 2 else audio
        audio = resample(audio, sample_rate, self.sample_rate)
        features = self.processor(audio, sampling_rate=self.sample_rate, return_tensors="pt").input_features
        ids = self.model.generate(features.to(self.device), language="en", task="transcribe")
        return normalize_text(self.processor.batch_decode(ids, skip_special_tokens=True)[0])


def transcribe_windows(audio, sample_rate: int, window_seconds: float = 20.0, transcriber=None) -> str:
    """A long stream's transcript: the audio cut into `window_seconds` windows, each transcribed alone
    (pocketsphinx `transcribe` by default, or a `WhisperTranscriber`), the texts joined. A word cut by a
    window boundary may be lost or split: a small, stated error that favours no system."""
    audio = np.asarray(audio, dtype=np.float32)
    audio = audio.mean(axis=0) if audio.ndim == 2 else audio
    if not window_seconds > 0:
        raise StreamCharError(f"window_seconds must be > 0, got {window_seconds}")
    step = max(1, int(round(window_seconds * sample_rate)))
    run = transcriber if transcriber is not None else transcribe
    return " ".join(t for t in (run(audio[i:i + step], sample_rate) for i in range(0, len(audio), step)) if t)

