"""SynthTalk pictures: a fast, deterministic 2D talking-character renderer.

A character is an `Identity` (face, hair, clothes, background, accessory). A clip animates it at
`fps` with a `MouthTrack` (mouth shapes from timed IPA phonemes) and a `Motion` (blinks, head sway,
breathing, arm gestures while speaking). Shapes are Pillow polygons drawn at `ss` times the target
size and box-downsampled (antialiasing). The same inputs always give the same bytes.

Coordinates: "u" units are fractions of the image side (0..1, y pointing down). Head shapes are
kept in u units around the head centre and rotated / moved per frame.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from streamchar.errors import StreamCharError

RGB = tuple[int, int, int]

HAIR_STYLES = ("short", "long", "bun", "bald", "cap", "afro")
CLOTHES_STYLES = ("shirt", "collar", "jacket")
ACCESSORIES = ("none", "glasses", "earrings")

HEAD_CENTER = (0.5, 0.445)  # rest position of the head centre, u units
FACE_RY = 0.20  # face half-height, u units
MOUTH_Y = 0.105  # mouth centre below the head centre, u units
EYE_Y = -0.015  # eye centre below the head centre, u units


# ----------------------------------------------------------------------------------------------
# Identities


@dataclass(frozen=True)
class Identity:
    """How one character looks. Lengths are in u units (fractions of the image side)."""

    name: str
    face_aspect: float  # face width / height, about 0.75..0.95
    jaw_width: float  # lower-face width factor, about 0.7..1.0 (smaller = pointier chin)
    skin: RGB
    hair_style: str  # one of HAIR_STYLES
    hair_color: RGB
    eye_color: RGB
    eye_spacing: float  # eye centre distance from the face midline, about 0.055..0.075
    brow_thickness: float  # about 0.007..0.016
    clothes_color: RGB
    clothes_style: str  # one of CLOTHES_STYLES
    accent_color: RGB  # cap, shirt collar, shirt under a jacket
    background: tuple[RGB, RGB]  # top and bottom colour of a vertical gradient (equal = flat)
    accessory: str = "none"  # one of ACCESSORIES

    def __post_init__(self):
        for field, value, allowed in (
            ("hair_style", self.hair_style, HAIR_STYLES),
            ("clothes_style", self.clothes_style, CLOTHES_STYLES),
            ("accessory", self.accessory, ACCESSORIES),
        ):
            if value not in allowed:
                raise StreamCharError(f"Identity {field}={value!r}: expected one of {', '.join(allowed)}")


_SKINS = [(255, 222, 196), (243, 198, 165), (226, 176, 136), (200, 140, 100), (168, 110, 76),
          (128, 84, 58), (98, 64, 46), (236, 192, 152)]
_HAIR_COLORS = [(24, 20, 18), (62, 42, 28), (112, 72, 40), (176, 128, 70), (226, 196, 120), (164, 64, 32),
                (196, 196, 202), (56, 72, 170), (176, 62, 128)]
_EYE_COLORS = [(66, 42, 26), (96, 64, 34), (52, 104, 168), (60, 132, 84), (112, 112, 124)]
_CLOTHES = [(200, 52, 52), (44, 92, 184), (40, 142, 82), (232, 184, 44), (122, 62, 164), (236, 236, 236),
            (44, 44, 50), (232, 124, 44), (32, 152, 160), (150, 100, 70), (222, 104, 144), (92, 102, 114)]
_ACCENTS = [(250, 250, 250), (30, 30, 36), (210, 40, 40), (250, 210, 60), (60, 160, 220), (120, 200, 120)]
_BACKGROUNDS = [(72, 92, 124), (184, 204, 224), (232, 222, 202), (92, 132, 102), (204, 174, 204), (62, 62, 72),
                (242, 204, 164), (132, 172, 204), (212, 232, 212), (124, 92, 112), (250, 240, 150),
                (160, 110, 90)]


def make_identities(n: int = 24, seed: int = 20240611) -> list[Identity]:
    """`n` distinct identities from hand-picked palettes and a seeded RNG (always the same list)."""
    rng = np.random.default_rng(seed)
    perms = {k: rng.permutation(len(p)) for k, p in
             (("skin", _SKINS), ("hair", _HAIR_COLORS), ("eye", _EYE_COLORS), ("clothes", _CLOTHES),
              ("accent", _ACCENTS), ("bg", _BACKGROUNDS))}

    def pick(key, palette, i):
        return palette[perms[key][i % len(palette)]]

    out = []
    for i in range(n):
        top = pick("bg", _BACKGROUNDS, i)
        if rng.random() < 0.5:  # two-colour gradient
            bottom = _BACKGROUNDS[perms["bg"][(i + 5) % len(_BACKGROUNDS)]]
        else:
            bottom = top
        out.append(Identity(
            name=f"synthtalk-{i:02d}",
            face_aspect=round(float(rng.uniform(0.76, 0.94)), 3),
            jaw_width=round(float(rng.uniform(0.70, 1.0)), 3),
            skin=pick("skin", _SKINS, i + i // len(_SKINS)),
            hair_style=HAIR_STYLES[i % len(HAIR_STYLES)],
            hair_color=pick("hair", _HAIR_COLORS, i),
            eye_color=pick("eye", _EYE_COLORS, i),
            eye_spacing=round(float(rng.uniform(0.056, 0.074)), 4),
            brow_thickness=round(float(rng.uniform(0.007, 0.016)), 4),
            clothes_color=pick("clothes", _CLOTHES, i + i // len(_CLOTHES)),
            clothes_style=CLOTHES_STYLES[(i // len(HAIR_STYLES) + i) % len(CLOTHES_STYLES)],
            accent_color=pick("accent", _ACCENTS, i),
            background=(top, bottom),
            accessory=str(rng.choice(ACCESSORIES, p=[0.5, 0.3, 0.2])),
        ))
    return out


IDENTITIES: list[Identity] = make_identities(24)
TRAIN_IDENTITIES: list[int] = list(range(16))
HELDOUT_IDENTITIES: list[int] = list(range(16, len(IDENTITIES)))


# ----------------------------------------------------------------------------------------------
# Visemes

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


# ----------------------------------------------------------------------------------------------
# Motion


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _causal(x, kernel):
    """Causal convolution, same length as `x` (a decaying response after each impulse)."""
    return np.convolve(x, kernel)[: len(x)] if len(x) else np.zeros(0)


def _sines(rng, t, freqs, n=3):
    """Sum of `n` sinusoids with random frequencies in `freqs` (Hz) and phases, peak about 1."""
    out = np.zeros_like(t)
    for _ in range(n):
        f = rng.uniform(*freqs)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    return out / n * 1.4


class Motion:
    """Deterministic per-clip motion from a seed and the speech intervals (`words`).

    Per-frame arrays (length T): `eyes` openness 0..1 (blinks every 2-6 s, ~120 ms), `head_dx`,
    `head_dy` (u units), `roll` (degrees), `yaw` (-1..1, shifts the inner face), `breath` (-1..1),
    `brow` raise 0..1, `gaze` (T, 2) in u units, `arm` (T, 2) left/right raise 0..1, `hand` (T, 2, 2)
    hand offsets in u units, `speaking` 0/1 and `activity` (smoothed speaking) 0..1.
    """

    def __init__(self, seed: int, words, duration_s: float, fps: float = 24):
        self.fps = fps
        T = self.n_frames = _check_clip(duration_s, fps)
        words = sorted(_check_intervals(words, "words (start_s, end_s)", 2))
        t = np.arange(T) / fps
        rngs = [np.random.default_rng([int(seed) & 0xFFFFFFFF, k]) for k in range(8)]

        # speech activity
        speaking = np.zeros(T)
        for s, e in words:
            speaking[(t >= s) & (t < e)] = 1.0
        act = np.zeros(T)
        a_up, a_down = 1 - math.exp(-1 / (fps * 0.15)), 1 - math.exp(-1 / (fps * 0.5))
        level = 0.0
        for i in range(T):
            level += (a_up if speaking[i] > level else a_down) * (speaking[i] - level)
            act[i] = level
        self.speaking, self.activity = speaking, act

        # blinks
        r = rngs[0]
        eyes = np.ones(T)
        tb = r.uniform(0.3, 2.0)
        while tb < duration_s:
            dur = r.uniform(0.10, 0.14)
            eyes[(t >= tb - 1 / fps) & (t < tb)] = 0.5
            eyes[(t >= tb + dur) & (t < tb + dur + 1 / fps)] = 0.5
            eyes[(t >= tb) & (t < tb + dur)] = 0.0
            tb += dur + r.uniform(2.0, 6.0)
        self.eyes = eyes

        # head sway: slow sinusoids in silence, bigger + faster ones while speaking, nods at word onsets
        r = rngs[1]
        amp = 0.3 + 0.7 * act
        onsets = np.zeros(T)
        for s, _ in words:
            i = int(round(s * fps))
            if 0 <= i < T:
                onsets[i] += 1.0
        kernel = np.exp(-np.arange(int(fps * 0.6)) / (fps * 0.15))
        kernel *= np.minimum(1.0, np.arange(len(kernel)) / 2.0)
        nod = _causal(onsets, kernel)
        nod = np.minimum(nod, 1.2)
        self.head_dx = 0.014 * (_sines(r, t, (0.05, 0.3)) * amp + 0.5 * act * _sines(r, t, (0.6, 1.4)))
        self.head_dy = 0.006 * _sines(r, t, (0.05, 0.3)) * amp + 0.006 * nod
        self.roll = 3.5 * (_sines(r, t, (0.05, 0.25)) * amp + 0.5 * act * _sines(r, t, (0.5, 1.2)))
        self.yaw = np.clip(0.6 * _sines(r, t, (0.04, 0.2)) * amp + 0.3 * act * _sines(r, t, (0.4, 1.0)), -1, 1)
        self.breath = np.sin(2 * np.pi * rngs[2].uniform(0.2, 0.3) * t + rngs[2].uniform(0, 2 * np.pi))

        # eyebrow raises at some word onsets
        r = rngs[3]
        brow_on = np.array([o * (r.random() < 0.35) for o in onsets], np.float64)
        self.brow = np.minimum(_causal(brow_on, np.exp(-np.arange(int(fps)) / (fps * 0.25))), 1.0)

        # gaze: piecewise constant, changes every 1-3 s
        r = rngs[4]
        gaze = np.zeros((T, 2))
        tg, cur = 0.0, np.zeros(2)
        while tg < duration_s:
            gaze[(t >= tg)] = cur
            tg += r.uniform(1.0, 3.0)
            cur = r.uniform(-1, 1, 2) * np.array([0.006, 0.003])
        self.gaze = gaze

        # arm gestures: triggered at word onsets while speaking
        r = rngs[5]
        arm = np.zeros((T, 2))
        groups = []  # merge words separated by < 0.35 s into phrases
        for s, e in words:
            if groups and s - groups[-1][1] < 0.35:
                groups[-1][1] = max(groups[-1][1], e)
            else:
                groups.append([s, e])
        busy_until = -1.0
        for s, e in words:
            go = r.random() < 0.6
            side = int(r.integers(0, 3))  # 0 left, 1 right, 2 both
            peak = r.uniform(0.6, 1.0)
            length = r.uniform(0.8, 2.2)
            if not go or s < busy_until:
                continue
            phrase_end = next(g[1] for g in groups if g[0] <= s <= g[1])
            g0, g1 = s - 0.12, max(s + 0.4, min(phrase_end, s + length))
            env = peak * _smoothstep((t - g0) / 0.3) * (1 - _smoothstep((t - g1) / 0.4))
            for k in ((0,) if side == 0 else (1,) if side == 1 else (0, 1)):
                arm[:, k] = np.maximum(arm[:, k], env)
            busy_until = g1 + 0.5
        self.arm = arm
        beat = _causal(onsets, np.exp(-np.arange(int(fps * 0.5)) / (fps * 0.12)))
        hand = np.zeros((T, 2, 2))
        for k in range(2):
            hand[:, k, 0] = 0.02 * _sines(r, t, (0.4, 1.2), 2)
            hand[:, k, 1] = 0.015 * _sines(r, t, (0.5, 1.5), 2) - 0.03 * np.minimum(beat, 1.0)
        self.hand = hand * arm[:, :, None]


# ----------------------------------------------------------------------------------------------
# Drawing


_N_CIRCLE = 32
_CIRC = np.stack([np.cos(np.linspace(0, 2 * np.pi, _N_CIRCLE, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, _N_CIRCLE, endpoint=False))], 1)


def _ell(cx, cy, rx, ry, n=None):
    c = _CIRC if n is None else np.stack([np.cos(np.linspace(0, 2 * np.pi, n, endpoint=False)),
                                          np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False))], 1)
    return c * (rx, ry) + (cx, cy)


def _arc(cx, cy, rx, ry, a0, a1, n=16):
    a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def _shade(c, f):
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)


def _mix(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


class _Group:
    """Polygons in one coordinate frame, transformed together with one matrix product."""

    def __init__(self, shapes):
        self.colors = [c for _, c in shapes]
        pts = [np.asarray(p, np.float64) for p, _ in shapes]
        self.pts = np.concatenate(pts) if pts else np.zeros((0, 2))
        ends = np.cumsum([len(p) for p in pts])
        self.bounds = [(2 * (e - len(p)), 2 * e) for p, e in zip(pts, ends)]

    def draw(self, draw, mat, off):
        if not self.colors:
            return
        flat = (self.pts @ mat + off).ravel().tolist()
        for (a, b), c in zip(self.bounds, self.colors):
            draw.polygon(flat[a:b], fill=c)


@dataclass
class _Rig:
    head_back: _Group  # behind the body (long / afro hair, bun)
    body: _Group  # torso and clothes, body frame (image u coords)
    head_base: _Group  # ears, face
    inner: _Group  # nose, cheeks (move with yaw)
    head_front: _Group  # front hair, cap, earrings
    glasses: list  # closed polylines, inner frame
    face_rx: float
    lip: RGB
    lid: RGB
    lash: RGB
    brow: RGB
    sleeve: RGB


def _face_outline(rx, ry, jaw):
    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x, y = rx * np.cos(a), ry * np.sin(a)
    low = np.clip(np.sin(a), 0, None)
    x = x * (1 - (1 - jaw) * low ** 1.5)
    return np.stack([x, y], 1)


def _hair_shapes(idn: Identity, rx, ry):
    """(behind-the-body shapes, in-front shapes) in head-local u units."""
    hc, dark = idn.hair_color, _shade(idn.hair_color, 0.8)
    back, front = [], []
    st = idn.hair_style
    if st == "short":
        cap = _arc(0, 0, rx + 0.012, ry + 0.02, np.pi + 0.12, 2 * np.pi - 0.12, 20)
        line = np.array([(rx - 0.004, -0.03), (rx * 0.75, -0.1), (rx * 0.3, -0.125), (-rx * 0.15, -0.135),
                         (-rx * 0.55, -0.115), (-rx * 0.85, -0.075), (-rx + 0.004, -0.03)])
        front.append((np.concatenate([cap, line]), hc))
    elif st == "long":
        top = _arc(0, 0, rx + 0.03, ry + 0.03, np.pi, 2 * np.pi, 18)
        back.append((np.concatenate([top, [(rx + 0.045, 0.33), (rx * 0.5, 0.36), (-rx * 0.5, 0.36),
                                          (-rx - 0.045, 0.33)]]), dark))
        outer = _arc(0, 0, rx + 0.018, ry + 0.022, np.pi - 0.45, 2 * np.pi + 0.45, 24)
        inner = np.array([(rx - 0.012, 0.09), (rx - 0.008, -0.02), (rx * 0.6, -0.12), (0.02, -0.155),
                          (-0.01, -0.15), (-rx * 0.6, -0.11), (-rx + 0.008, -0.02), (-rx + 0.012, 0.09)])
        front.append((np.concatenate([outer, inner]), hc))
    elif st == "bun":
        back.append((_ell(0, -ry - 0.045, 0.055, 0.05), dark))
        cap = _arc(0, 0, rx + 0.01, ry + 0.014, np.pi + 0.2, 2 * np.pi - 0.2, 20)
        line = _arc(0, 0.02, rx * 0.95, ry * 0.78, -0.2, -np.pi + 0.2, 12)
        front.append((np.concatenate([cap, line]), hc))
    elif st == "afro":
        back.append((_ell(0, -0.05, rx + 0.075, ry + 0.035), hc))
        for a in np.linspace(np.pi * 0.9, np.pi * 2.1, 11):
            back.append((_ell((rx + 0.07) * math.cos(a), -0.05 + (ry + 0.03) * math.sin(a), 0.04, 0.04, 12), hc))
        cap = _arc(0, 0, rx + 0.02, ry + 0.02, np.pi + 0.05, 2 * np.pi - 0.05, 20)
        line = _arc(0, 0.0, rx * 0.98, ry * 0.62, -0.05, -np.pi + 0.05, 12)
        front.append((np.concatenate([cap, line]), hc))
    elif st == "cap":
        front.append((np.array([(rx + 0.004, -0.01), (rx - 0.005, -0.09), (rx - 0.03, -0.09), (rx - 0.012, -0.01)]),
                      hc))
        front.append((np.array([(-rx - 0.004, -0.01), (-rx + 0.005, -0.09), (-rx + 0.03, -0.09),
                                (-rx + 0.012, -0.01)]), hc))
        dome = _arc(0, 0, rx + 0.016, ry + 0.025, np.pi + 0.3, 2 * np.pi - 0.3, 20)
        front.append((np.concatenate([dome, [(rx * 0.92, -0.075), (-rx * 0.92, -0.075)]]), idn.accent_color))
        front.append((_arc(0, -0.08, rx * 0.98, 0.045, 0, np.pi, 14), _shade(idn.accent_color, 0.72)))
        front.append((_ell(0, -ry - 0.022, 0.014, 0.01, 10), _shade(idn.accent_color, 0.8)))
    return back, front


def _body_shapes(idn: Identity):
    """Torso and clothes in image u coordinates (before the breathing offset)."""
    cc, ac = idn.clothes_color, idn.accent_color
    neck = _shade(idn.skin, 0.86)
    a = np.linspace(np.pi, 2 * np.pi, 24)
    c, s = np.cos(a), np.sin(a)
    torso = np.stack([0.5 + 0.39 * np.sign(c) * np.abs(c) ** 0.55, 1.0 + 0.25 * -np.abs(s) ** 0.45], 1)
    torso = np.concatenate([[(0.08, 1.1)], torso, [(0.92, 1.1)]])
    shapes = [(torso, cc)]
    if idn.clothes_style == "shirt":
        shapes.append((_arc(0.5, 0.75, 0.082, 0.06, 0, np.pi, 14), _shade(cc, 0.78)))
        shapes.append((_arc(0.5, 0.748, 0.066, 0.045, 0, np.pi, 14), neck))
    elif idn.clothes_style == "collar":
        shapes.append((np.array([(0.44, 0.75), (0.56, 0.75), (0.5, 0.85)]), neck))
        shapes.append((np.array([(0.5, 0.85), (0.505, 1.1), (0.495, 1.1)]), _shade(cc, 0.75)))
        shapes.append((np.array([(0.43, 0.745), (0.498, 0.85), (0.4, 0.82)]), ac))
        shapes.append((np.array([(0.57, 0.745), (0.502, 0.85), (0.6, 0.82)]), ac))
    else:  # jacket over a shirt
        shapes.append((np.array([(0.42, 0.755), (0.58, 0.755), (0.52, 1.1), (0.48, 1.1)]), ac))
        shapes.append((np.array([(0.455, 0.752), (0.545, 0.752), (0.5, 0.81)]), neck))
        shapes.append((np.array([(0.42, 0.755), (0.37, 0.78), (0.43, 0.83), (0.49, 0.96)]), _shade(cc, 0.72)))
        shapes.append((np.array([(0.58, 0.755), (0.63, 0.78), (0.57, 0.83), (0.51, 0.96)]), _shade(cc, 0.72)))
    return shapes


@functools.lru_cache(maxsize=64)
def _rig(idn: Identity) -> _Rig:
    rx, ry = FACE_RY * idn.face_aspect, FACE_RY
    skin = idn.skin
    back, front = _hair_shapes(idn, rx, ry)
    base = [(_ell(-rx + 0.002, 0.0, 0.024, 0.04, 14), _shade(skin, 0.9)),
            (_ell(rx - 0.002, 0.0, 0.024, 0.04, 14), _shade(skin, 0.9)),
            (_face_outline(rx, ry, idn.jaw_width), skin)]
    sp = idn.eye_spacing
    inner = [(_ell(-sp - 0.008, 0.055, 0.026, 0.017, 14), _mix(skin, (236, 110, 120), 0.22)),
             (_ell(sp + 0.008, 0.055, 0.026, 0.017, 14), _mix(skin, (236, 110, 120), 0.22)),
             (np.array([(0.0, 0.0), (0.014, 0.052), (0.0, 0.058), (-0.012, 0.052)]), _shade(skin, 0.87))]
    if idn.accessory == "earrings":
        for sx in (-1, 1):
            front.append((_ell(sx * (rx - 0.002), 0.05, 0.011, 0.011, 10), (236, 196, 64)))
            front.append((_ell(sx * (rx - 0.002), 0.072, 0.008, 0.012, 10), (236, 196, 64)))
    glasses = []
    if idn.accessory == "glasses":
        for sx in (-1, 1):
            glasses.append(np.concatenate([_ell(sx * sp, EYE_Y, 0.036, 0.03, 20), _ell(sx * sp, EYE_Y, 0.036, 0.03,
                                                                                         20)[:1]]))
            glasses.append(np.array([(sx * (sp + 0.036), EYE_Y - 0.01), (sx * (rx - 0.004), EYE_Y - 0.02)]))
        glasses.append(np.array([(-sp + 0.036, EYE_Y - 0.006), (0.0, EYE_Y - 0.012), (sp - 0.036, EYE_Y - 0.006)]))
    brow = idn.hair_color if idn.hair_style != "bald" else _shade(skin, 0.45)
    return _Rig(
        head_back=_Group(back), body=_Group(_body_shapes(idn)), head_base=_Group(base), inner=_Group(inner),
        head_front=_Group(front), glasses=glasses, face_rx=rx,
        lip=_mix(_shade(skin, 0.8), (176, 60, 70), 0.45), lid=_shade(skin, 0.78), lash=_shade(skin, 0.3),
        brow=brow, sleeve=_shade(idn.clothes_color, 0.9),
    )


def _background(idn: Identity, n: int) -> Image.Image:
    top, bottom = (np.array(c, np.float32) for c in idn.background)
    w = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    col = np.round(top * (1 - w) + bottom * w).astype(np.uint8)  # (n, 3)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (n, n, 3))))


def _supersample(size: int) -> int:
    return 4 if size <= 64 else 2


def _face_features(idn, rig, eyes_open, gaze, brow_raise, mouth):
    """Per-frame eyes, brows and mouth as (points, colour) in the inner head frame."""
    sp = idn.eye_spacing
    out = []
    for sx in (-1, 1):
        cx = sx * sp
        if eyes_open > 0.05:
            h = 0.021 * eyes_open
            out.append((_ell(cx, EYE_Y, 0.03, h + 0.004, 16), rig.lash))
            out.append((_ell(cx, EYE_Y + 0.001, 0.028, h, 16), (248, 248, 246)))
            ix, iy = cx + gaze[0], EYE_Y + gaze[1]
            r = 0.016
            out.append((_ell(ix, iy, r, min(r, h), 14), idn.eye_color))
            out.append((_ell(ix, iy, 0.0075, min(0.0075, h * 0.6), 10), (16, 14, 14)))
            if eyes_open > 0.6:
                out.append((_ell(ix + 0.006, iy - 0.006, 0.0035, 0.0035, 8), (255, 255, 255)))
        else:  # closed lid: a curved dark line
            lid = _arc(cx, EYE_Y - 0.004, 0.03, 0.012, 0.15, np.pi - 0.15, 9)
            out.append((np.concatenate([lid, lid[::-1] + (0, 0.006)]), rig.lash))
        by = EYE_Y - 0.05 - 0.014 * brow_raise
        th = idn.brow_thickness
        xs = cx + sx * np.array([-0.03, 0.0, 0.034])
        ys = by + np.array([0.004, -0.006, 0.002])
        out.append((np.stack([np.concatenate([xs, xs[::-1]]), np.concatenate([ys, ys[::-1] - th])], 1), rig.brow))
    op, wd, rd = (float(v) for v in mouth)
    hw = (0.028 + 0.034 * wd) * (1 - 0.3 * rd)
    hh = 0.002 + 0.046 * op
    lip = 0.007 + 0.005 * rd
    out.append((_ell(0, MOUTH_Y, hw + lip * 0.6, hh + lip, 20), rig.lip))
    if hh > 0.006:
        out.append((_ell(0, MOUTH_Y, hw, hh, 20), (52, 16, 24)))
        if hh > 0.014:
            out.append((_ell(0, MOUTH_Y - hh * 0.62, hw * 0.78, hh * 0.33, 14), (240, 238, 230)))
            out.append((_ell(0, MOUTH_Y + hh * 0.62, hw * 0.6, hh * 0.3, 12), (176, 70, 80)))
    else:
        out.append((np.array([(-hw, MOUTH_Y), (0, MOUTH_Y - 0.002), (hw, MOUTH_Y), (0, MOUTH_Y + 0.004)]),
                    _shade(rig.lip, 0.55)))
    return out


def _hand_shapes(side, pos, sleeve, skin):
    """Forearm (from below the frame) and hand for one arm at image u position `pos`."""
    hx, hy = pos
    ex, ey = 0.5 + side * 0.42, 1.2
    d = np.array([hx - ex, hy - ey])
    d /= np.linalg.norm(d) + 1e-9
    nrm = np.array([-d[1], d[0]]) * 0.05
    wrist = np.array([hx, hy]) - d * 0.035
    arm = np.array([(ex, ey) + nrm, wrist + nrm, wrist - nrm, (ex, ey) - nrm])
    return [(arm, sleeve), (_ell(hx, hy, 0.042, 0.048, 14), skin),
            (_ell(hx - side * 0.04, hy + 0.012, 0.014, 0.026, 10), _shade(skin, 0.93))]


def mouth_box(identity: Identity, size: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) around the mouth at rest, with a margin for head motion."""
    cx, cy = HEAD_CENTER[0], HEAD_CENTER[1] + MOUTH_Y
    return _box(cx - 0.065, cy - 0.045, cx + 0.065, cy + 0.055, size)


def eye_box(identity: Identity, size: int, side: int = -1) -> tuple[int, int, int, int]:
    """Pixel box around one eye at rest (side -1 = image left, +1 = image right)."""
    cx, cy = HEAD_CENTER[0] + side * identity.eye_spacing, HEAD_CENTER[1] + EYE_Y
    return _box(cx - 0.04, cy - 0.03, cx + 0.04, cy + 0.03, size)


def _box(x0, y0, x1, y1, size):
    return (int(math.floor(x0 * size)), int(math.floor(y0 * size)), int(math.ceil(x1 * size)),
            int(math.ceil(y1 * size)))


def render_clip(identity: Identity, phonemes, words, duration_s: float, size: int = 64, fps: float = 24,
                seed: int = 0, *, mouth: MouthTrack | None = None, motion: Motion | None = None) -> np.ndarray:
    """Render a clip as (T, size, size, 3) uint8 with T = round(duration_s * fps).

    `phonemes`: [(ipa, start_s, end_s)] drive the mouth; `words`: [(start_s, end_s)] speech intervals
    drive head motion and gestures; `seed` picks the motion. A precomputed `mouth` / `motion` may be
    passed instead (they must have the same frame count).
    """
    if not isinstance(identity, Identity):
        raise StreamCharError(f"identity must be an Identity, got {type(identity).__name__}")
    if not isinstance(size, int) or size < 16 or size > 2048:
        raise StreamCharError(f"size must be an int in 16..2048, got {size!r}")
    T = _check_clip(duration_s, fps)
    mouth = mouth if mouth is not None else MouthTrack(phonemes, duration_s, fps)
    motion = motion if motion is not None else Motion(seed, words, duration_s, fps)
    if mouth.n_frames != T or motion.n_frames != T:
        raise StreamCharError(f"mouth/motion have {mouth.n_frames}/{motion.n_frames} frames, clip has {T}")

    rig = _rig(identity)
    ss = _supersample(size)
    n = size * ss
    bg = _background(identity, n)
    out = np.empty((T, size, size, 3), np.uint8)
    to_px = np.eye(2) * n
    hx0, hy0 = HEAD_CENTER
    for i in range(T):
        img = bg.copy()
        d = ImageDraw.Draw(img)
        # body: breathing lifts the shoulders a little and follows the head sway slightly
        bdx, bdy = 0.25 * motion.head_dx[i], -0.004 * motion.breath[i]
        body_off = np.array([bdx, bdy]) * n
        # head pose
        ang = math.radians(motion.roll[i])
        ca, sa = math.cos(ang), math.sin(ang)
        rot = np.array([[ca, sa], [-sa, ca]]) * n  # row-vector convention: p @ rot
        hc = np.array([hx0 + motion.head_dx[i] + bdx, hy0 + motion.head_dy[i] + bdy]) * n
        yaw_off = hc + np.array([0.018 * motion.yaw[i], 0.0]) @ rot

        rig.head_back.draw(d, rot, hc)
        neck = np.array([(-0.06, 0.1), (0.06, 0.1)]) @ rot + hc
        d.polygon([*neck[0], *neck[1], (0.565 + bdx) * n, (0.8 + bdy) * n, (0.435 + bdx) * n, (0.8 + bdy) * n],
                  fill=_shade(identity.skin, 0.86))
        rig.body.draw(d, to_px, body_off)
        rig.head_base.draw(d, rot, hc)
        rig.inner.draw(d, rot, yaw_off)
        _Group(_face_features(identity, rig, motion.eyes[i], motion.gaze[i], motion.brow[i],
                              mouth.params[i])).draw(d, rot, yaw_off)
        rig.head_front.draw(d, rot, hc)
        if rig.glasses:
            w = max(1, int(round(0.007 * n)))
            for line in rig.glasses:
                d.line((line @ rot + yaw_off).ravel().tolist(), fill=(28, 28, 34), width=w, joint="curve")
        for k, side in enumerate((-1, 1)):
            r = motion.arm[i, k]
            if r > 0.02:
                rest, up = np.array([0.5 + side * 0.36, 1.18]), np.array([0.5 + side * 0.2, 0.8])
                pos = rest + (up - rest) * r + motion.hand[i, k] + (bdx, bdy)
                _Group(_hand_shapes(side, pos, rig.sleeve, identity.skin)).draw(d, to_px, 0.0)
        out[i] = np.asarray(img.reduce(ss) if ss > 1 else img)
    return out
