"""Pronunciations: the phonemes espeak-ng speaks for each word, per accent, as SynthTalk's events give them.

The speech judge recognises phonemes and maps them to words through a pronunciation lexicon. Both sides must
use one phoneme notation: the IPA names of libespeak-ng's PHONEME events as `speech.synthesize` keeps them
(zero-length events dropped: espeak folds a post-vocalic "l" / "r" into the vowel before it, so "whole" is
"h oʊ"). So the lexicon is built by the same synthesis: words are spoken in batches as one-word sentences
("Apple. Banana. ..."; capitalised, since a lower-case word after a full stop loses its last phoneme event),
one batch per accent, and each word's phonemes are those whose midpoint falls in its span.

A clip's phonemes per word (`word_phonemes`) use the same midpoint rule, so a training target and a lexicon
entry for the same speech are the same sequence.
"""

from __future__ import annotations

import numpy as np
import tqdm

from streamchar.errors import StreamCharError

WORD_SEP = "|"  # between the words of a phoneme target


def accents() -> list[str]:
    """The espeak-ng language voices SynthTalk speaks with (the variant only changes the timbre)."""
    from streamchar.data.speech import VOICES

    return sorted({v.name for v in VOICES})


def word_phonemes(words: list[dict], phonemes: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
    """A clip's words (`{"text", "start", "end"}`) and phonemes (`{"ipa", "start", "end"}`), as SynthTalk's
    metadata stores them -> [(word, its phonemes)]: each phoneme goes to the word its midpoint falls in."""
    out = []
    mids = np.array([(p["start"] + p["end"]) / 2 for p in phonemes])
    for w in words:
        inside = np.nonzero((mids >= w["start"] - 1e-6) & (mids < w["end"] + 1e-6))[0]
        out.append((w["text"], tuple(phonemes[i]["ipa"] for i in inside)))
    return out


def pronounce(words: list[str], accent: str, batch: int = 300) -> dict[str, tuple[str, ...]]:
    """Each word's phonemes as spoken alone by espeak-ng `accent` (~400 words/s). Words it speaks as
    nothing (or splits into several) are left out."""
    import dataclasses

    from streamchar.data.speech import Voice, synthesize

    voice = Voice(accent)
    out: dict[str, tuple[str, ...]] = {}
    for i in range(0, len(words), batch):
        part = [w for w in words[i: i + batch] if w.strip()]
        text = " ".join(w[0].upper() + w[1:] + "." for w in part)
        speech = synthesize(text, voice)
        spoken = word_phonemes([dataclasses.asdict(w) for w in speech.words],
                               [dataclasses.asdict(p) for p in speech.phonemes])
        if len(spoken) != len(part):  # a word espeak splits ("o'clock" is one token, "e-mail" two): one by one
            for w in part:
                one = synthesize(w[0].upper() + w[1:] + ".", voice)
                if len(one.words) == 1 and one.phonemes:
                    out[w] = tuple(p.ipa for p in one.phonemes)
            continue
        for w, (_, phs) in zip(part, spoken):
            if phs:
                out[w] = phs
    return out


def lexicon_pronunciations(words: list[str], progress: bool = True) -> dict[str, list[tuple[str, ...]]]:
    """word -> its distinct pronunciations over SynthTalk's accents."""
    if not words:
        raise StreamCharError("no words to pronounce")
    out: dict[str, list[tuple[str, ...]]] = {}
    for accent in tqdm.tqdm(accents(), desc="pronunciations", disable=not progress):
        for w, phs in pronounce(words, accent).items():
            if phs not in out.setdefault(w, []):
                out[w].append(phs)
    return out
