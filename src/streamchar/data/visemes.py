"""SynthTalk mouth shapes: IPA phoneme -> viseme mapping and per-frame `MouthTrack`s."""

from __future__ import annotations

import math
import unicodedata

import numpy as np

from streamchar.errors import StreamCharError

# name -> (mouth opening 0..1, mouth width 0..1, roundness 0..1)
VISEME_SHAPES: dict[str, tuple[float, float, float]] = {
    "rest": (0.03, 0.45, 0.15),  # relaxed, lips together or barely apart (silence)
    "closed": (0.0, 0.42, 0.1),  # p b m: lips pressed
    "lip_teeth": (0.12, 0.52, 0.0),  # f v: lower lip under the upper teeth
    "teeth": (0.2, 0.55, 0.0),  # θ ð: tongue between the teeth
    "small": (0.28, 0.55, 0.1),  # t d n l s z k g ŋ h j: slightly open
    "sh": (0.22, 0.38, 0.7),  # ʃ ʒ tʃ dʒ r ɹ: protruded, rounded
    "wide": (0.32, 0.88, 0.0),  # i ɪ e ɛ eɪ: spread lips
    "open": (0.9, 0.62, 0.1),  # a æ ɑ aɪ aʊ: jaw down
    "round_o": (0.58, 0.34, 0.8),  # ɔ ɒ oʊ ɔɪ: open round
    "round_u": (0.24, 0.24, 1.0),  # u ʊ w: tight round
    "neutral": (0.45, 0.55, 0.2),  # ə ʌ ɜ and unknown symbols: neutral open
}

_VISEME_GROUPS = {
    "closed": "p b m",
    "lip_teeth": "f v",
    "teeth": "θ ð",
    "small": "t d n l s z k g ɡ ŋ h j ɾ ʔ ɫ x ç",
    "sh": "ʃ ʒ tʃ dʒ r ɹ ɻ",
    "wide": "i iː ɪ e eː ɛ ɛː eɪ ɪə iə ᵻ",
    "open": "a aː æ ɑ ɑː aɪ aʊ ɐ",
    "round_o": "ɒ ɔ ɔː o oː oʊ əʊ ɔɪ",
    "round_u": "u uː ʊ w ʊə ʍ",
    "neutral": "ʌ ə ɚ ɜ ɜː ɝ eə",
}
VISEMES: dict[str, str] = {ph: name for name, phs in _VISEME_GROUPS.items() for ph in phs.split()}
_SILENCE = {"", "_", "sil", "sp", "spn", "pau", "#"}
_STRIP = {"ˈ", "ˌ", "'", ",", ".", "‿", "|", "-"}


def _normalise(ipa: str) -> str:
    """Drop stress marks, syllable marks and combining diacritics (tie bars, syllabic marks)."""
    return "".join(ch for ch in ipa.strip() if ch not in _STRIP and unicodedata.category(ch) != "Mn")


def viseme_of(ipa: str) -> str:
    """Viseme name for one IPA phoneme as espeak-ng prints it ('ˈaɪ', 'tʃ', 'n̩', ...).

    Stress marks are ignored; an unknown symbol maps to its longest known prefix ('ɑːɹ' -> 'ɑː'),
    else to 'neutral'. Silence markers ('', '_', 'sil', 'sp') map to 'rest'.
    """
    if not isinstance(ipa, str):
        raise StreamCharError(f"phoneme must be a string, got {type(ipa).__name__}")
    ph = _normalise(ipa)
    if ph.lower() in _SILENCE:
        return "rest"
    for cand in (ph, ph.replace("ˑ", "")):
        if cand in VISEMES:
            return VISEMES[cand]
    for n in range(len(ph) - 1, 0, -1):
        if ph[:n] in VISEMES:
            return VISEMES[ph[:n]]
    return "neutral"


def viseme_shape(ipa: str) -> tuple[float, float, float]:
    """(opening, width, roundness) of the viseme for one IPA phoneme."""
    return VISEME_SHAPES[viseme_of(ipa)]


def _check_intervals(items, what: str, n: int):
    out = []
    for item in items:
        try:
            vals = tuple(item)
        except TypeError:
            raise StreamCharError(f"{what}: expected {n}-tuples, got {item!r}") from None
        if len(vals) != n:
            raise StreamCharError(f"{what}: expected {n}-tuples, got {item!r}")
        try:
            s, e = float(vals[-2]), float(vals[-1])
        except (TypeError, ValueError):
            raise StreamCharError(f"{what}: start/end must be numbers, got {item!r}") from None
        if not (math.isfinite(s) and math.isfinite(e)) or e < s:
            raise StreamCharError(f"{what}: need finite start <= end, got {item!r}")
        out.append((*vals[:-2], s, e))
    return out


def _check_clip(duration_s: float, fps: float) -> int:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise StreamCharError(f"fps must be a positive number, got {fps!r}")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s >= 0):
        raise StreamCharError(f"duration_s must be a non-negative number, got {duration_s!r}")
    return int(round(duration_s * fps))


class MouthTrack:
    """Per-frame mouth parameters (opening, width, roundness) from timed phonemes.

    The target shape is sampled at 10 sub-steps per frame (so short phonemes are not missed), then
    smoothed forward and backward with a ~20 ms time constant each way (co-articulation, ~40 ms blend,
    no lag) and read at the frame times. Silence gives the 'rest' shape.
    """

    SUBSTEPS = 10
    TAU_S = 0.02

    def __init__(self, phonemes, duration_s: float, fps: float = 24):
        self.fps = fps
        self.n_frames = _check_clip(duration_s, fps)
        phs = _check_intervals(phonemes, "phonemes (ipa, start_s, end_s)", 3)
        n_sub = self.n_frames * self.SUBSTEPS
        dt = 1.0 / (fps * self.SUBSTEPS)
        t = np.arange(n_sub) * dt
        target = np.tile(np.array(VISEME_SHAPES["rest"], np.float64), (n_sub, 1))
        names = np.full(n_sub, "rest", dtype=object)
        for ipa, s, e in phs:
            name = viseme_of(ipa)
            sel = (t >= s) & (t < e)
            target[sel] = VISEME_SHAPES[name]
            names[sel] = name
        a = 1.0 - math.exp(-dt / self.TAU_S)
        y = target.copy()
        for i in range(1, n_sub):  # forward pass
            y[i] = y[i - 1] + a * (target[i] - y[i - 1])
        for i in range(n_sub - 2, -1, -1):  # backward pass (removes the lag)
            y[i] = y[i + 1] + a * (y[i] - y[i + 1])
        frame_idx = np.arange(self.n_frames) * self.SUBSTEPS
        self.params = y[frame_idx].astype(np.float32)  # (T, 3)
        self.visemes: list[str] = [str(v) for v in names[frame_idx]]  # target viseme at each frame time

    @property
    def opening(self) -> np.ndarray:
        """(T,) mouth opening 0..1 per frame."""
        return self.params[:, 0]

    def mouth_opening(self, frame: int) -> float:
        """Mouth opening 0..1 at one frame."""
        return float(self.params[frame, 0])

