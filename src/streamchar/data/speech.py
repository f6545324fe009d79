"""Speech with word and phoneme timings from libespeak-ng (through ctypes), for SynthTalk.

The espeak-ng CLI gives audio and phoneme strings but no timings; the library in synchronous mode calls us
back with int16 audio plus WORD / PHONEME / END events that carry their position in the audio.

Timing rules (seconds from the start of `Speech.audio`):
- an event's time is its `sample` field / sample rate (`audio_position` is the same in whole ms).
- any WORD or PHONEME event ends the phoneme before it. espeak reports pauses (commas, sentence ends, the
  end of the text) as phoneme events with an empty name: they end the sound before them and are dropped,
  so `phonemes` holds only sounds and the silences between them belong to no phoneme.
- a WORD event comes up to ~60 ms before its first phoneme event: the gap is the (silent) closure of a
  stop ("p", "t", "k", "b"...). The word's first phoneme is moved back to start at the WORD event.
- a word spans its phonemes: start = its first phoneme's start, end = its last phoneme's end (the next
  word's start, or the start of the pause after it). So words never overlap, phonemes tile each word,
  and a word before a pause ends where the pause starts.
- `words` has one Word per token of the text (letters / digits joined by ' . -), see `_align_words`
  for how espeak's words are matched to them.
- the audio is what espeak gives: ~0 s of leading and a few ms of trailing silence.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np

from streamchar.errors import StreamCharError

INSTALL_HINT = "espeak-ng is not installed: apt-get install espeak-ng"


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: `name` a language voice ("en-us", "en", "en-gb-x-rp"), `variant` e.g. "m3" / "f2"."""

    name: str = "en-us"
    variant: str | None = None
    rate: int = 175  # words per minute (espeak accepts 80-450)
    pitch: int = 50  # 0-100
    pitch_range: int = 50  # 0-100, 0 = monotone

    def __post_init__(self):
        if not 80 <= self.rate <= 450:
            raise StreamCharError(f"voice rate {self.rate} is out of espeak-ng's range 80-450 words per minute")
        for what, value in (("pitch", self.pitch), ("pitch_range", self.pitch_range)):
            if not 0 <= value <= 100:
                raise StreamCharError(f"voice {what} {value} is out of range 0-100")

    @property
    def espeak_name(self) -> str:
        """The name espeak_SetVoiceByName takes: "en-us+f2"."""
        return self.name if not self.variant else f"{self.name}+{self.variant}"


# Fixed English voices for SynthTalk: 4 male, 4 female variants over 5 accents, rates 140-190, pitches 30-70.
VOICES: list[Voice] = [
    Voice("en-us", "m3", rate=165, pitch=40, pitch_range=50),
    Voice("en-us", "f2", rate=175, pitch=60, pitch_range=60),
    Voice("en", "m1", rate=150, pitch=35, pitch_range=40),
    Voice("en", "f4", rate=185, pitch=65, pitch_range=70),
    Voice("en-gb-x-rp", "m7", rate=160, pitch=45, pitch_range=45),
    Voice("en-gb-x-rp", "f1", rate=170, pitch=55, pitch_range=55),
    Voice("en-gb-scotland", "m2", rate=140, pitch=30, pitch_range=35),
    Voice("en-us-nyc", "f3", rate=190, pitch=70, pitch_range=65),
]


@dataclass
class Word:
    """A word of the text: `text[char_start:char_end]`, spoken from `start` to `end` (seconds)."""

    text: str
    start: float
    end: float
    char_start: int
    char_end: int


@dataclass
class Phoneme:
    """One phoneme (IPA name from espeak-ng), spoken from `start` to `end` (seconds)."""

    ipa: str
    start: float
    end: float


@dataclass
class Speech:
    """Mono float32 audio in [-1, 1] at `sample_rate`, with word and phoneme timings."""

    audio: np.ndarray
    sample_rate: int
    text: str
    words: list[Word] = field(default_factory=list)
    phonemes: list[Phoneme] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


# --- libespeak-ng through ctypes (speak_lib.h) ---

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_RATE, _PITCH, _RANGE = 1, 3, 4
_EV_LIST_TERMINATED, _EV_WORD, _EV_PHONEME = 0, 1, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index
        ("length", ctypes.c_int),  # characters, WORD events only
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


_LOCK = threading.Lock()  # espeak-ng is not thread safe: one synthesis at a time in this process
_LIB_NAMES = ("libespeak-ng.so.1", "libespeak-ng.so")  # then ctypes.util.find_library("espeak-ng")
_LIB_COPY: str | None = None  # our private copy of libespeak-ng, made on first use
_LIBC = ctypes.CDLL(None)  # the process's C library (for srand, dladdr)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]  # fmt: skip


def _library_copy() -> str:
    """Path of a private copy of libespeak-ng (made once per process in a temp dir, removed at exit).

    Loading our own file means nobody else in the process (phonemizer, another TTS) shares our instance, so
    that dlclose really unloads it (see `_open`). phonemizer's espeak wrapper does the same.
    """
    global _LIB_COPY
    if _LIB_COPY is not None and os.path.exists(_LIB_COPY):
        return _LIB_COPY
    lib = None
    for name in (*_LIB_NAMES, ctypes.util.find_library("espeak-ng")):
        try:
            lib = ctypes.CDLL(name) if name else None
        except OSError:
            continue
        if lib is not None:
            break
    if lib is None:
        raise StreamCharError(INSTALL_HINT)
    info = _DlInfo()
    if not _LIBC.dladdr(ctypes.cast(lib.espeak_Initialize, ctypes.c_void_p), ctypes.byref(info)):
        raise StreamCharError("cannot find the file libespeak-ng was loaded from")
    src = info.dli_fname.decode()
    _ctypes.dlclose(lib._handle)
    tmp = tempfile.mkdtemp(prefix="streamchar-espeak-")
    atexit.register(shutil.rmtree, tmp, True)
    _LIB_COPY = shutil.copy(src, os.path.join(tmp, os.path.basename(src)))
    return _LIB_COPY


def _open() -> tuple[ctypes.CDLL, int]:
    """Load libespeak-ng afresh and start it -> (lib, sample rate). Call with `_LOCK` held; end with `_close`.

    Why afresh for every synthesis: libespeak-ng keeps wave generator state in static variables (the pitch
    flutter phase, the gain control, a glottal cycle count) that carry over from one utterance to the next,
    so the same text spoke differently the second time (other samples, a few samples more or less).
    espeak_Terminate + dlclose + dlopen (~3 ms) resets them. (espeak_Terminate + espeak_Initialize without
    unloading does not: the next espeak_Synth hangs, so the library must really unload, hence the private
    copy.) The breath noise of some variants comes from libc's rand(): `_run_espeak` reseeds it (srand(0)).
    """
    lib = ctypes.CDLL(_library_copy())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_Callback]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
    sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
    if sample_rate <= 0:
        _ctypes.dlclose(lib._handle)
        raise StreamCharError(f"espeak-ng is installed but does not start (its data is missing?): {INSTALL_HINT}")
    return lib, sample_rate


def _close(lib: ctypes.CDLL) -> None:
    """Free espeak's data (else ~1 MB leaks per call) and unload the library."""
    lib.espeak_Terminate()
    _ctypes.dlclose(lib._handle)


def _run_espeak(text: str, voice: Voice) -> tuple[int, np.ndarray, list[tuple[int, int, int, int, str]]]:
    """-> (sample rate, int16 samples, events as (type, sample, text_position, length, phoneme name))."""
    chunks: list[np.ndarray] = []
    events: list[tuple[int, int, int, int, str]] = []

    def on_synth(wav, n, ev) -> int:
        if wav and n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while ev[i].type != _EV_LIST_TERMINATED:
            e = ev[i]
            # A phoneme name fills string[8], NUL-terminated unless it needs all 8 bytes.
            name = e.id.string.split(b"\0", 1)[0].decode("utf-8", "ignore") if e.type == _EV_PHONEME else ""
            events.append((e.type, e.sample, e.text_position, e.length, name))
            i += 1
        return 0  # 0 = go on synthesising

    callback = _Callback(on_synth)  # referenced until espeak is closed: it holds the pointer
    with _LOCK:
        lib, sample_rate = _open()
        try:
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
                raise StreamCharError(f"espeak-ng has no voice {voice.espeak_name!r} (see `espeak-ng --voices=en`)")
            for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.pitch_range)):
                lib.espeak_SetParameter(param, int(value), 0)
            _LIBC.srand(0)  # breathy variants (f2, f3, ...) add noise from libc rand(): same seed, same noise
            data = text.encode("utf-8")
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
        finally:
            _close(lib)
    if err != 0:
        raise StreamCharError(f"espeak-ng failed to synthesise the text (error {err})")
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return sample_rate, pcm, events


def espeak_available() -> bool:
    """True if libespeak-ng loads and starts."""
    try:
        with _LOCK:
            _close(_open()[0])
        return True
    except StreamCharError:
        return False


def synthesize(text: str, voice: Voice = VOICES[0]) -> Speech:
    """Speak `text` with `voice` -> Speech (audio at espeak's 22050 Hz, word and phoneme timings). Deterministic."""
    if not text or not text.strip():
        raise StreamCharError("cannot synthesise speech: the text is empty")
    sr, pcm, events = _run_espeak(text, voice)
    audio = pcm.astype(np.float32) / 32768.0
    end_of_audio = len(audio) / sr

    # One pass over the WORD and PHONEME events (in order): any such event ends the phoneme before it.
    phonemes: list[Phoneme] = []
    spoken: list[tuple[int, list[Phoneme]]] = []  # espeak's words: (char_start, its phonemes)
    word_start = None  # time of the last WORD event while its first phoneme has not come yet
    for kind, sample, text_position, _, name in events:
        if kind not in (_EV_WORD, _EV_PHONEME):
            continue
        t = min(sample / sr, end_of_audio)
        if phonemes and phonemes[-1].end < 0:
            phonemes[-1].end = t
        if kind == _EV_WORD:
            spoken.append((text_position - 1, []))
            word_start = t
        elif name:  # a sound; pauses have an empty name
            # a word's first phoneme starts at its WORD event: the silence before it is a stop closure
            phonemes.append(Phoneme(name, t if word_start is None else word_start, -1.0))
            word_start = None
            if not spoken:  # en-us-nyc speaks a first word like "Hugo" before any WORD event
                spoken.append((max(text_position - 1, 0), []))
            spoken[-1][1].append(phonemes[-1])
        else:  # a pause: a word's first sound comes after it
            word_start = None
    if phonemes and phonemes[-1].end < 0:  # nothing after the last sound: it lasts to the end of the audio
        phonemes[-1].end = end_of_audio
    phonemes = [p for p in phonemes if p.end > p.start]
    spoken = [(c, [p for p in ps if p.end > p.start]) for c, ps in spoken]
    return Speech(audio=audio, sample_rate=sr, text=text, words=_align_words(spoken, text), phonemes=phonemes)


# A word of the text: letters / digits, joined by ' . or - ("don't", "U.S.A", "3.50", "well-known").
_TOKEN = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*")


def _align_words(spoken: list[tuple[int, list[Phoneme]]], text: str) -> list[Word]:
    """One Word per token of the text, from espeak's words (char_start, phonemes) -> words in order.

    espeak's WORD events match the text only roughly: "don't" comes as "don", "U.S.A." as "U";
    "apples - really" puts "really" at the "-"; "$3.50" gives 5 WORD events ("dollar three point five
    zero") on 3 positions; and it speaks some pairs of small words as one ("there are", "of the"), with no
    WORD event for the second. So: each espeak word goes to the first token ending after its char_start;
    espeak words on the same token are merged; tokens that no espeak word starts on belong to the one
    before them, which is split among its tokens at phoneme boundaries, by their letter counts (approximate).
    """
    tokens = [m.span() for m in _TOKEN.finditer(text)]
    groups: list[tuple[int, list[Phoneme]]] = []  # (first token, phonemes), in order
    k = 0
    for char_start, phs in spoken:
        if not phs:
            continue
        while k < len(tokens) and tokens[k][1] <= char_start:
            k += 1
        if groups and (k == len(tokens) or groups[-1][0] == k):
            groups[-1][1].extend(phs)  # the same token (or none left in the text): the word goes on
        elif k < len(tokens):
            groups.append((k, list(phs)))
    words = []
    for g, (k, phs) in enumerate(groups):
        spans = tokens[k : groups[g + 1][0] if g + 1 < len(groups) else len(tokens)]
        n, m = len(spans), len(phs)
        if m >= n:  # cut the phonemes in n runs, of at least one each, sized by the tokens' letters
            letters = np.cumsum([e - s for s, e in spans])
            cuts = [0]
            for j in range(1, n):
                cuts.append(min(max(round(letters[j - 1] / letters[-1] * m), cuts[-1] + 1), m - (n - j)))
            cuts.append(m)
            times = [(phs[cuts[j]].start, phs[cuts[j + 1] - 1].end) for j in range(n)]
        else:  # fewer sounds than tokens: share the time evenly
            t0, t1 = phs[0].start, phs[-1].end
            times = [(t0 + (t1 - t0) * j / n, t0 + (t1 - t0) * (j + 1) / n) for j in range(n)]
        words += [Word(text[s:e], t0, t1, s, e) for (s, e), (t0, t1) in zip(spans, times)]
    return words


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono float32 `audio` from `from_rate` to `to_rate` Hz with PyAV (libswresample).

    The output has exactly round(len(audio) * to_rate / from_rate) samples: swresample's total after
    flushing can be off by a sample or two, so the tail is cropped or padded with zeros.
    """
    import av

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise StreamCharError(f"resample takes mono audio of shape (samples,), got shape {audio.shape}")
    if from_rate <= 0 or to_rate <= 0:
        raise StreamCharError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    n_out = round(len(audio) * to_rate / from_rate)
    if from_rate == to_rate or len(audio) == 0:
        return audio.copy() if n_out == len(audio) else np.zeros(n_out, np.float32)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, :]), format="flt", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame) + resampler.resample(None)]
    out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    out = out[:n_out]
    if len(out) < n_out:
        out = np.pad(out, (0, n_out - len(out)))
    return out.astype(np.float32)
