"""The SynthTalk text corpus: English sentences over a lexicon of tens of thousands of words.

The lexicon comes from well-kept offline packages, nothing is downloaded:
- `lemminflect`'s lexicon (the NIH SPECIALIST lexicon): ~40,000 lemmas tagged noun / verb / adj / adv, with
  their inflections (plural, past, participle, -ing, -s);
- `wordfreq`'s English frequencies (Zipf scale: log10 of occurrences per billion words), which keep the words
  people use (Zipf >= `MIN_ZIPF`) and weight the draw toward common words;
- `faker`'s first names and country names.

Sentences fill grammatical templates (statements, questions, exclamations, quoted speech, contractions,
numbers as digits 2-99) whose slots draw words with probability ~ frequency ** `WEIGHT_POWER`: common
words dominate, so a few thousand clips cover what users type most, while the long tail still appears.

Splits. A stable hash of each content lemma marks ~`HELDOUT_FRACTION` of them (below the most common
`COMMON_ZIPF`) as held out: their forms never appear in a train sentence. Val and test sentences use at least
one held-out word each (about half their content slots), so >= 10% of their words are never seen in
training; val and test are then told apart by a stable hash of the sentence. Whatever the seed or count, a
sentence belongs to exactly one split, and a held-out word to no train sentence.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import re
from dataclasses import dataclass

import numpy as np

from streamchar.errors import StreamCharError

MIN_ZIPF = 2.0  # words rarer than ~1 in 10 million tokens are left out
COMMON_ZIPF = 4.6  # words at least this common are never held out (the, house, open, ...)
WEIGHT_POWER = 0.55  # draw probability ~ frequency ** WEIGHT_POWER
HELDOUT_FRACTION = 0.15
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Entry:
    """One lemma with the forms the templates use and its draw weight."""

    lemma: str
    forms: dict  # slot form name -> surface form ("pl": "children", "past": "went", ...)
    weight: float
    heldout: bool


@dataclass(frozen=True)
class Lexicon:
    """Word classes for the templates; `words` is every surface form a sentence can contain (lower case)."""

    classes: dict  # "noun" | "verb" | "adj" | "adv" | "name" | "country" -> tuple[Entry, ...]
    function_words: frozenset
    words: frozenset
    train_words: frozenset
    heldout_words: frozenset


def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en")


def _heldout(lemma: str) -> bool:
    u = int.from_bytes(hashlib.sha256(("heldout:" + lemma.lower()).encode()).digest()[:8], "big") / 2**64
    return u < HELDOUT_FRACTION


_WORD = re.compile(r"^[a-z]+$")

# Function words, pronouns and fixed phrases the templates use (part of the lexicon, never held out).
_TEMPLATE_TEXT = """
the a an this that these those my your his her our their its every some any no one two
I you he she we they it me him us them who what where when why how which whose
is are was were be been being am do does did have has had will would can could should may might must shall
not to and but or so because if then than though while after before until since as at by for from in into of
on onto over under with without about above below across along around behind beside between near through
toward up down out off again also always never often sometimes still just only even very really quite too
here there now today tomorrow yesterday tonight soon later already yet ever maybe perhaps please thank yes
hello hi okay oh well wow said asked told thought knew saw heard felt got went came made took gave found
morning afternoon evening night week month year day hour minute o'clock last next first
don't doesn't didn't can't won't isn't aren't wasn't I'm you're we're they're it's that's there's let's
I've I'll I'd he's she's
"""
FUNCTION_WORDS = frozenset(w.lower() for w in _TEMPLATE_TEXT.split())

# Templates: {n} noun, {ns} plural, {v} base verb, {vd} past, {vn} past participle, {vg} -ing, {vz} 3rd person, {a} adjective,
# {r} adverb (-ly manner adverbs), {N} a first name, {C} a country, {D} a number 2-99, {H} an hour 1-12.
# A trailing digit tells two slots of one kind apart ({n2}).
TEMPLATES = (
    "{N} {vd} the {a} {n}.",
    "The {n} {vd} {r}.",
    "{N} and {N2} {vd} {D} {ns} in {C} last {n2}.",
    "Did you {v} the {n} this morning?",
    "I think the {n} is {a}, but {N} says it is {a2}.",
    "Please {v} the {a} {n} before {H} o'clock.",
    "We {vd} {D} {a} {ns} near the {n}.",
    "Why is the {n} so {a} today?",
    "{N} {r} {vd} a {n}, because the old one was {a}.",
    "When the {n} arrived, {N} {vd} it and smiled.",
    "There are {D} {ns} between the {n} and the {n2}.",
    "It's {a}!",
    "{N} waited.",
    "Yes.",
    "Thank you, {N}.",
    "I don't know why the {ns} are {vg} again.",
    "She {vz} the {n} every {n2}, doesn't she?",
    "They're {vg} the {a} {n} in {C}.",
    "\"Where is my {n}?\" asked {N}.",
    "My {n} {vd} the {n2}, and then everything was {a}.",
    "How many {ns} did {N} {v} yesterday?",
    "After the {n}, {N} {vd} {D} {a} {ns2} for {N2}.",
    "Let's {v} the {n} together.",
    "The {a} {ns} were {r} {vn} by the {n}.",
    "If you {v} the {n}, the {n2} will {v2}.",
    "He said the {n} was {a} and {a2}.",
    "Wow, what a {a} {n}!",
    "Nobody {vd} the {n}, so {N} {vd2} it alone.",
    "Have you ever {vd} a {a} {n} in {C}?",
    "We can't {v} the {ns} until the {n} is {a}.",
    "{N} from {C} {vz} {ns} and {ns2}.",
    "Every {n} needs a {a} {n2}.",
    "I'm {vg} to the {n} with {N} tomorrow.",
    "The {n} of the {n2} is {r} {a}.",
    "Some {ns} {v} {r}, while others {v2} {r2}.",
    "Oh, the {n} {vd} again!",
    "Is it true that {N} {vd} the {n}?",
    "On the {a} {n}, {D} {ns} {vd} {r}.",
    "Hello {N}, how is the {n}?",
    "Maybe the {n} {vz} {ns} after all.",
)
_SLOT = re.compile(r"\{([a-zA-Z]+)(\d?)\}")
_KINDS = {"n": ("noun", "sg"), "ns": ("noun", "pl"), "v": ("verb", "base"), "vd": ("verb", "past"),
          "vn": ("verb", "pp"), "vg": ("verb", "ing"), "vz": ("verb", "z"), "a": ("adj", "base"), "r": ("adv", "base"),
          "N": ("name", "base"), "C": ("country", "base")}


def _lexicon_lines() -> list[str]:
    import lemminflect

    path = os.path.join(os.path.dirname(lemminflect.__file__), "resources", "infl_lu.csv.gz")
    with gzip.open(path, "rt") as f:
        return f.read().splitlines()


def _entries(lines: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """lemma lines -> {class: [(lemma, forms)]}: lower-case alphabetic words only, regular forms only."""
    out: dict[str, list] = {"noun": [], "verb": [], "adj": [], "adv": []}
    for line in lines:
        lemma, pos, *infl = line.split(",")
        if pos not in out or not _WORD.match(lemma):  # capitalised (proper) nouns, hyphens, digits: out
            continue
        if pos == "noun":
            pl = infl[0].split("/")[0] if infl and infl[0] else ""
            if not _WORD.match(pl) or pl == lemma:  # uncountable or irregular beyond our templates
                continue
            forms = {"sg": lemma, "pl": pl}
        elif pos == "verb":
            first = [x.split("/")[0] for x in infl[:4]]
            first[1] = first[1] or first[0]  # the participle is listed only where it differs from the past
            if len(first) < 4 or not all(_WORD.match(x) for x in first):
                continue
            forms = {"base": lemma, "past": first[0], "pp": first[1], "ing": first[2], "z": first[3]}
        elif pos == "adv" and not lemma.endswith("ly"):  # manner adverbs only: "slowly", "happily"
            continue
        else:
            forms = {"base": lemma}
        out[pos].append((lemma, forms))
    return out


@functools.lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The corpus lexicon (built once per process, ~2 s): word classes with weights and the held-out marks."""
    from faker.providers.address.en_US import Provider as Address
    from faker.providers.person.en_US import Provider as Person

    raw = _entries(_lexicon_lines())
    raw["name"] = [(n, {"base": n}) for n in sorted(set(Person.first_names)) if _WORD.match(n.lower())]
    raw["country"] = [(c, {"base": c}) for c in sorted(set(Address.countries)) if _WORD.match(c.lower())]
    classes, forms_of = {}, {}
    for cls, items in raw.items():
        kept = []
        for lemma, forms in items:
            z = min(_zipf(f) for f in forms.values())  # every form must be a word people use
            if z < MIN_ZIPF or lemma.lower() in FUNCTION_WORDS:
                continue
            zl = _zipf(lemma)
            kept.append((lemma, forms, 10 ** (WEIGHT_POWER * zl), zl < COMMON_ZIPF and _heldout(lemma)))
        classes[cls] = kept
    # a form shared by a held-out lemma and a train lemma ("saw" the noun, "saw" the past of "see") would leak
    train_forms = set(FUNCTION_WORDS)
    for kept in classes.values():
        for lemma, forms, _, held in kept:
            if not held:
                train_forms.update(f.lower() for f in forms.values())
    final, heldout_forms = {}, set()
    for cls, kept in classes.items():
        entries = []
        for lemma, forms, w, held in kept:
            lower = {f.lower() for f in forms.values()}
            if held and lower & train_forms:
                continue  # unusable either way: drop it
            entries.append(Entry(lemma, forms, w, held))
            if held:
                heldout_forms |= lower
        final[cls] = tuple(entries)
        forms_of[cls] = entries
    return Lexicon(classes=final, function_words=FUNCTION_WORDS, words=frozenset(train_forms | heldout_forms),
                   train_words=frozenset(train_forms), heldout_words=frozenset(heldout_forms))


class _Article:
    """inflect's a/an by sound ("an hour", "a union"), made on first use."""

    def a(self, word: str) -> str:
        import inflect

        self.a = inflect.engine().a
        return self.a(word)


_ARTICLE = _Article()


@functools.lru_cache(maxsize=None)
def _pool(cls: str, heldout: bool) -> tuple[tuple[Entry, ...], np.ndarray]:
    entries = tuple(e for e in lexicon().classes[cls] if e.heldout == heldout)
    w = np.array([e.weight for e in entries], dtype=np.float64)
    return entries, np.cumsum(w) / w.sum()


def _draw(rng: np.random.Generator, cls: str, heldout: bool) -> Entry:
    entries, cdf = _pool(cls, heldout)
    return entries[min(int(np.searchsorted(cdf, rng.random())), len(entries) - 1)]


def make_sentence(rng: np.random.Generator, heldout: bool = False) -> str:
    """One sentence. `heldout=False`: train words only; True: at least one held-out word (about half the
    content slots; names and countries are never held out, so a template with no other slot falls back)."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    slots = list(dict.fromkeys(m.group(0) for m in _SLOT.finditer(template)))
    content = [s for s in slots if _KINDS.get(_SLOT.match(s).group(1), ("",))[0] in ("noun", "verb", "adj", "adv")]
    if heldout and not content:
        return make_sentence(rng, heldout)
    held = set()
    if heldout:
        held = {s for s in content if rng.random() < 0.5} or {content[rng.integers(len(content))]}
    values = {}
    for slot in slots:
        kind = _SLOT.match(slot).group(1)
        if kind in ("D", "H"):
            values[slot] = str(rng.integers(2, 100) if kind == "D" else rng.integers(1, 13))
            continue
        cls, form = _KINDS[kind]
        values[slot] = _draw(rng, cls, slot in held).forms[form]
    text = _SLOT.sub(lambda m: values[m.group(0)], template)
    text = re.sub(r"\b[aA] (\w+)", lambda m: _ARTICLE.a(m.group(1)), text)  # "a apple" -> "an apple"
    return text[0].upper() + text[1:]


def split_of(sentence: str, val: float = 0.5) -> str:
    """'train', 'val' or 'test': a sentence with a held-out word is val or test (by a stable hash of its text,
    `val` of them val), any other is train. Never by position or seed."""
    words = {w.lower() for w in re.findall(r"[A-Za-z']+", sentence)}
    if not words & lexicon().heldout_words:
        return "train"
    u = int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:8], "big") / 2**64
    return "val" if u < val else "test"


def sentences(split: str, count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences of one split, deterministic by seed."""
    if split not in SPLITS:
        raise StreamCharError(f"split must be train, val or test, got {split!r}")
    if count < 1:
        raise StreamCharError(f"count must be >= 1, got {count}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    out, seen = [], set()
    for _ in range(count * 50):
        s = make_sentence(rng, heldout=split != "train")
        if s not in seen and split_of(s) == split:
            seen.add(s)
            out.append(s)
            if len(out) == count:
                return out
    raise StreamCharError(f"the corpus holds fewer than {count} distinct {split} sentences")


def transcript(split: str, min_words: int, seed: int = 0) -> str:
    """Sentences of one split joined until the text has at least `min_words` words."""
    out, n = [], 0
    for s in sentences(split, max(64, min_words // 2), seed):
        out.append(s)
        n += len(s.split())
        if n >= min_words:
            return " ".join(out)
    raise StreamCharError(f"cannot build a {min_words}-word {split} transcript")


def words_of(text: str) -> list[str]:
    """The lexicon's view of a text: lower-case words (letters and inner apostrophes), digits dropped."""
    return [w.lower().strip("'") for w in re.findall(r"[A-Za-z][A-Za-z']*", text)]


def coverage(text: str, vocabulary) -> float:
    """Share of `text`'s word tokens (digits aside) that are in `vocabulary` (lower case)."""
    toks = words_of(text)
    if not toks:
        raise StreamCharError("coverage: the text has no words")
    return sum(w in vocabulary for w in toks) / len(toks)


def frequency_coverage(vocabulary, top: int = 50000) -> float:
    """Expected share of everyday English tokens in `vocabulary`: wordfreq's frequencies of its `top` most
    common words (a blend of subtitles, news, Wikipedia, books, web and social text) summed over the covered
    words, over the sum for all `top`."""
    from wordfreq import top_n_list, word_frequency

    words = top_n_list("en", top)
    freqs = np.array([word_frequency(w, "en") for w in words])
    hit = np.array([w in vocabulary for w in words])
    return float(freqs[hit].sum() / freqs.sum())
