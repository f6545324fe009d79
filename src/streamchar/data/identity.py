"""SynthTalk characters: how one character looks (`Identity`) and the fixed set of identities.

Lengths are in "u" units: fractions of the image side (0..1, y pointing down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamchar.errors import StreamCharError

RGB = tuple[int, int, int]

HAIR_STYLES = ("short", "long", "bun", "bald", "cap", "afro")
CLOTHES_STYLES = ("shirt", "collar", "jacket")
ACCESSORIES = ("none", "glasses", "earrings")


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


def codec_identities(n: int, seed: int = 1) -> list[Identity]:
    """`n` more identities from the same palettes for training the video codec, none of them one of the 24
    SynthTalk characters (compared by look, not name): the codec learns colours and shapes, not 16 faces."""
    import dataclasses

    def look(idn):
        return dataclasses.replace(idn, name="")

    taken = {look(i) for i in IDENTITIES}
    if seed == 20240611:
        raise StreamCharError("codec_identities: the seed of the SynthTalk characters themselves")
    out = [dataclasses.replace(i, name=f"codec-{k:04d}") for k, i in enumerate(make_identities(n, seed))]
    return [i for i in out if look(i) not in taken]


# Colour names for captions: the nearest of these (in RGB) names a palette colour.
_COLOR_NAMES = {
    "black": (24, 22, 22), "dark brown": (70, 46, 30), "brown": (120, 78, 44), "tan": (200, 150, 100),
    "blond": (226, 196, 120), "auburn": (164, 64, 32), "grey": (140, 140, 148), "silver": (196, 196, 202),
    "white": (240, 240, 240), "navy": (44, 62, 140), "blue": (52, 104, 200), "light blue": (150, 190, 225),
    "teal": (32, 152, 160), "green": (50, 140, 80), "sage": (150, 190, 150), "olive": (110, 120, 60),
    "yellow": (240, 210, 60), "cream": (240, 228, 200), "orange": (232, 124, 44), "peach": (242, 204, 164),
    "red": (205, 45, 45), "pink": (222, 110, 150), "purple": (122, 62, 164), "lilac": (204, 174, 204),
    "plum": (124, 80, 112), "slate": (70, 80, 100), "charcoal": (52, 52, 60),
}
_SKIN_NAMES = ("very light", "light", "light", "medium", "tan", "brown", "dark brown", "light")


def color_name(rgb: RGB) -> str:
    """The nearest named colour (see _COLOR_NAMES)."""
    c = np.asarray(rgb, dtype=np.float64)
    return min(_COLOR_NAMES, key=lambda n: float(((np.asarray(_COLOR_NAMES[n]) - c) ** 2).sum()))


def caption(identity: Identity) -> str:
    """A procedural description of how a character looks (hair, skin, clothes, accessory, background): the
    prompt a SynthTalk clip is trained and evaluated with, so the prompt carries what the picture shows.
    Gestures are drawn per clip (its seed), not per character, so the caption does not describe them."""
    skin = _SKIN_NAMES[_SKINS.index(identity.skin)] if identity.skin in _SKINS else color_name(identity.skin)
    if identity.hair_style == "bald":
        hair = "a bald head"
    elif identity.hair_style == "cap":
        hair = f"a {color_name(identity.accent_color)} cap"
    elif identity.hair_style == "bun":
        hair = f"{color_name(identity.hair_color)} hair in a bun"
    elif identity.hair_style == "afro":
        hair = f"a {color_name(identity.hair_color)} afro"
    else:
        hair = f"{identity.hair_style} {color_name(identity.hair_color)} hair"
    clothes = {"shirt": "shirt", "collar": "collared shirt", "jacket": "jacket"}[identity.clothes_style]
    top, bottom = identity.background
    bg = color_name(top) if top == bottom else f"{color_name(top)} to {color_name(bottom)}"
    extra = {"none": "", "glasses": ", wearing glasses", "earrings": ", wearing earrings"}[identity.accessory]
    colour = color_name(identity.clothes_color)
    article = "an" if colour[0] in "aeiou" else "a"
    return (f"a cartoon person with {hair} and {skin} skin in {article} {colour} {clothes}{extra}"
            f", on a {bg} background")
