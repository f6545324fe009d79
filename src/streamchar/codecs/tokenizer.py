"""Tokenizers: a tiny byte-level BPE trained offline (for tests and toy models) and a local-folder loader.

The tiny BPE is trained on a procedurally generated English corpus, so it needs no download and gives the same
vocabulary on every call. Byte-level: any text encodes (unknown characters fall back to bytes) and decodes back exactly.
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from streamchar.errors import StreamCharError

EOS = "<|endoftext|>"

_NAMES = "Anna Ben Clara David Emma Frank Grace Henry Iris Jack Kate Leo Maya Noah Olivia Paul Rosa Sam Tara Victor"
_NOUNS = (
    "time year people way day man woman child world life hand part eye place week case point number group "
    "problem fact house home room door window table chair book letter story word name voice music song sound "
    "city town street road car bus train plane ship river lake sea ocean mountain hill forest tree flower garden "
    "field farm animal dog cat bird fish horse cow sheep water fire air sun moon star sky rain snow wind cloud "
    "morning evening night afternoon today tomorrow yesterday school teacher student class lesson question answer "
    "idea friend family mother father sister brother doctor nurse police office job money market shop store bank "
    "food bread milk coffee tea apple orange dinner lunch breakfast phone computer screen camera picture video "
    "face head hair smile heart mind body paper pen box bag key light color game team party plan story news"
)
_VERBS = (
    "be have do say go get make know think take see come want look use find give tell work call try ask need "
    "feel become leave put mean keep let begin seem help talk turn start show hear play run move like live "
    "believe hold bring happen write sit stand lose pay meet include continue set learn change lead understand "
    "watch follow stop create speak read spend grow open walk win offer remember love consider appear buy wait "
    "serve die send expect build stay fall cut reach kill remain sing dance smile laugh cry listen answer"
)
_PAST = (
    "was had did said went got made knew thought took saw came wanted looked used found gave told worked called "
    "tried asked needed felt became left put meant kept let began seemed helped talked turned started showed "
    "heard played ran moved liked lived believed held brought happened wrote sat stood lost paid met learned "
    "changed watched followed stopped created spoke read spent grew opened walked won bought waited sang danced "
    "smiled laughed cried listened answered"
)
_ADJS = (
    "good new first last long great little own other old right big high different small large next early young "
    "important few public bad same able happy sad kind warm cold hot quiet loud bright dark soft hard easy "
    "simple strange beautiful clean fresh free full green red blue yellow white black brown slow fast quick "
    "short tall wide deep heavy light late real sure true whole nice funny friendly calm busy ready tired"
)
_ADVS = "very really quickly slowly quietly always never often sometimes again still already just soon here there now"
_PREPS = "in on at to from with about under over near behind after before into through across around"
_DETS = "the a this that my your his her our their every one"
_PRONS = "I you he she we they it"


def _words(s: str) -> list[str]:
    return s.split()


def tiny_corpus() -> list[str]:
    """A deterministic English corpus (no randomness): all words plus a few thousand templated sentences."""
    names, nouns, verbs, past = _words(_NAMES), _words(_NOUNS), _words(_VERBS), _words(_PAST)
    adjs, advs, preps, dets, prons = _words(_ADJS), _words(_ADVS), _words(_PREPS), _words(_DETS), _words(_PRONS)
    vocab = names + nouns + verbs + past + adjs + advs + preps + dets + prons
    lines = [" ".join(vocab), " ".join(w.capitalize() for w in vocab), " ".join(w.upper() for w in vocab[:100])]

    def pick(ws: list[str], i: int, k: int) -> str:
        # co-prime strides walk every word without a random generator
        return ws[(i * k + k // 2) % len(ws)]

    for i in range(3000):
        name, noun, noun2 = pick(names, i, 7), pick(nouns, i, 13), pick(nouns, i, 31)
        verb, pst, adj = pick(verbs, i, 11), pick(past, i, 17), pick(adjs, i, 19)
        adv, prep, det, pron = pick(advs, i, 5), pick(preps, i, 3), pick(dets, i, 23), pick(prons, i, 29)
        n = i % 8
        if n == 0:
            s = f"The {adj} {noun} {pst} {prep} {det} {noun2}."
        elif n == 1:
            s = f"{name} {pst} {adv}, and {pron} {pst} the {noun2} too."
        elif n == 2:
            s = f"Do you want to {verb} the {adj} {noun} {prep} {det} {noun2}?"
        elif n == 3:
            s = f'"{pron.capitalize()} will {verb} {adv}," said {name}.'
        elif n == 4:
            s = f"I don't think {pron}'ll {verb} {i % 100} {noun}s {prep} {det} {noun2}!"
        elif n == 5:
            s = f"Hello {name}! It's {adj} to {verb} {prep} you at {i % 12 + 1}:{i % 60:02d} today."
        elif n == 6:
            s = f"{det.capitalize()} {noun} is {adv} {adj}; {name} {pst} it {prep} the {noun2} in {1900 + i % 125}."
        else:
            s = f"We can't {verb} {det} {noun} - {pron} {pst} {adv} {adj} (and {adj} {noun2}s)."
        lines.append(s)
    return lines


def build_tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2 / Qwen style, no prefix space) with `<|endoftext|>` as eos and pad. Deterministic."""
    if vocab_size < 258:
        raise StreamCharError(f"vocab_size must be >= 258 (256 bytes + {EOS} + 1 merge), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        padding_side="right",
        clean_up_tokenization_spaces=False,  # keep decode(encode(text)) == text
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local folder (no download): a transformers tokenizer, or the phoneme frontend
    (codecs/phonemes.py) where the folder holds its marker."""
    from streamchar.codecs.phonemes import MARKER, PhonemeTokenizer

    path = Path(path)
    if not path.is_dir():
        raise StreamCharError(f"tokenizer folder not found: {str(path)!r}")
    try:
        if (path / MARKER).is_file():
            return PhonemeTokenizer.from_pretrained(path)
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise StreamCharError(f"not a tokenizer folder: {str(path)!r} ({type(e).__name__}: {first_line})") from e
