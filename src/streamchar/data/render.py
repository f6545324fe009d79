"""SynthTalk pictures: a fast, deterministic 2D talking-character renderer.

A character is an `Identity` (face, hair, clothes, background, accessory; `identity.py`). A clip
animates it at `fps` with a `MouthTrack` (mouth shapes from timed IPA phonemes; `visemes.py`) and a
`Motion` (blinks, head sway, breathing, arm gestures while speaking; `motion.py`). Shapes are Pillow polygons drawn at `ss` times the target
size and box-downsampled (antialiasing). The same inputs always give the same bytes.

Coordinates: "u" units are fractions of the image side (0..1, y pointing down). Head shapes are
kept in u units around the head centre and rotated / moved per frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from streamchar.data.identity import RGB, Identity
from streamchar.data.motion import Motion
from streamchar.data.visemes import MouthTrack, _check_clip
from streamchar.errors import StreamCharError

HEAD_CENTER = (0.5, 0.445)  # rest position of the head centre, u units
FACE_RY = 0.20  # face half-height, u units
MOUTH_Y = 0.105  # mouth centre below the head centre, u units
EYE_Y = -0.015  # eye centre below the head centre, u units


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
