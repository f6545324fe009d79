"""The SynthTalk text corpus: procedural English sentences of varied length and vocabulary.

Sentences are built from templates over word lists (names, places, nouns, verbs, adjectives, numbers spelled
out), deterministically from a seed. Each sentence belongs to one split by a stable hash of its text, so a
sentence never appears in two splits whatever the seed or count. Transcripts are runs of sentences long
enough for a target duration (words per second of the voices' rates).
"""

from __future__ import annotations

import hashlib

import numpy as np

from streamchar.errors import StreamCharError

NAMES = ("Anna Ben Clara David Emma Felix Grace Henry Iris Jack Laura Max Nina Oscar Paula Quinn Rosa Sam Tara "
         "Victor Wendy Yusuf Zoe Maya Leo Ruth Omar Ivy Hugo Alice").split()
PLACES = ("the station, the market, the river, the library, the old bridge, the museum, the harbour, the garden, "
          "the school, the bakery, the hospital, the mountain, the beach, the village, the theatre, the office, "
          "the airport, the kitchen, the park, the forest").split(", ")
NOUNS = ("book letter camera bicycle window story song plan map ticket garden picture question answer lamp "
         "coffee river train dinner report lesson puzzle engine blanket clock violin recipe message bridge "
         "photograph umbrella candle festival journey machine painting notebook harvest mirror basket bottle "
         "button carpet castle chair cloud cookie diamond doctor drawer feather flower guitar hammer island "
         "jacket kettle ladder magnet necklace orange pencil pillow pocket rabbit rocket saddle shadow sweater "
         "teacher tiger tomato tower wallet whistle").split()
VERBS = ("found carried opened painted fixed wrote read borrowed cleaned built moved sold bought drew packed "
         "explained remembered finished visited described noticed repaired delivered collected ordered "
         "measured planted polished returned counted shared tested folded wrapped lifted followed").split()
ADJECTIVES = ("small bright quiet heavy yellow ancient gentle careful curious famous empty strange simple warm "
              "cold green silver wooden narrow patient busy golden rusty tiny enormous fragile noisy clever "
              "brave lucky shiny dusty purple orange crooked").split()
ADVERBS = ("slowly quickly carefully quietly happily suddenly finally gently early later").split()
TIMES = ("this morning, last night, on Monday, every summer, after lunch, before dawn, in the evening, "
         "yesterday, tomorrow, at noon").split(", ")
NUMBERS = tuple("two three four five six seven eight nine ten twelve fifteen twenty thirty forty fifty".split()) + (
    "a hundred",)

TEMPLATES = (
    "{name} {verb} the {adj} {noun}.",
    "{time}, {name} {verb} a {noun} near {place}.",
    "We {verb} {num} {noun}s at {place} {time}.",
    "Did {name} really walk to {place} {adv}?",
    "The {adj} {noun} was {adv} {verb2} by {name}.",
    "{name} and {name2} {verb} the {noun} {time}, and then they went to {place}.",
    "I think the {noun} is {adj}, but {name} says it is {adj2}.",
    "Please bring the {adj} {noun} to {place} before {num} o'clock.",
    "There are {num} {adj} {noun}s between {place} and {place2}.",
    "{name} {adv} {verb} a {noun}, because the old one was {adj}.",
    "When the {noun} arrived, {name} {verb} it and smiled.",
    "Why is the {noun} at {place} so {adj} {time}?",
    "After the {noun}, {name} {verb} {num} {adj} {noun2}s for {name2}.",
    "It was {adj}.",
    "{name} waited.",
)


def _pick(rng: np.random.Generator, words):
    return words[rng.integers(len(words))]


def make_sentence(rng: np.random.Generator) -> str:
    template = _pick(rng, TEMPLATES)
    n1, n2 = rng.choice(len(NAMES), 2, replace=False)
    p1, p2 = rng.choice(len(PLACES), 2, replace=False)
    a1, a2 = rng.choice(len(ADJECTIVES), 2, replace=False)
    text = template.format(
        name=NAMES[n1], name2=NAMES[n2], place=PLACES[p1], place2=PLACES[p2], adj=ADJECTIVES[a1],
        adj2=ADJECTIVES[a2], noun=_pick(rng, NOUNS), noun2=_pick(rng, NOUNS), verb=_pick(rng, VERBS),
        verb2=_pick(rng, VERBS), adv=_pick(rng, ADVERBS), time=_pick(rng, TIMES), num=_pick(rng, NUMBERS))
    return text[0].upper() + text[1:]


def split_of(sentence: str, val: float = 0.05, test: float = 0.05) -> str:
    """'train', 'val' or 'test' by a stable hash of the sentence (never by position or seed)."""
    u = int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def sentences(split: str, count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences of one split, deterministic by seed."""
    if split not in ("train", "val", "test"):
        raise StreamCharError(f"split must be train, val or test, got {split!r}")
    if count < 1:
        raise StreamCharError(f"count must be >= 1, got {count}")
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split)])
    out, seen = [], set()
    for _ in range(count * 400):
        s = make_sentence(rng)
        if s not in seen and split_of(s) == split:
            seen.add(s)
            out.append(s)
            if len(out) == count:
                return out
    raise StreamCharError(f"the corpus holds fewer than {count} distinct {split} sentences")


def transcript(split: str, min_words: int, seed: int = 0) -> str:
    """Sentences of one split joined until the text has at least `min_words` words."""
    out, n, batch = [], 0, 8
    pool = sentences(split, batch * 64, seed)
    for s in pool:
        out.append(s)
        n += len(s.split())
        if n >= min_words:
            return " ".join(out)
    raise StreamCharError(f"cannot build a {min_words}-word {split} transcript")
