"""SynthTalk identities: the fixed set, the train / held-out split, style variety, validation."""

import pytest

from streamchar.data.identity import HELDOUT_IDENTITIES, IDENTITIES, TRAIN_IDENTITIES, Identity
from streamchar.errors import StreamCharError


def test_identity_set_and_split():
    assert len(IDENTITIES) >= 24
    assert sorted(TRAIN_IDENTITIES + HELDOUT_IDENTITIES) == list(range(len(IDENTITIES)))
    assert TRAIN_IDENTITIES == list(range(16))
    assert len({idn.hair_style for idn in IDENTITIES}) >= 4
    assert len({idn.clothes_style for idn in IDENTITIES}) >= 3
    assert len({idn.accessory for idn in IDENTITIES}) == 3


def test_bad_style_raises():
    with pytest.raises(StreamCharError):
        Identity(**{**IDENTITIES[0].__dict__, "hair_style": "mullet"})


def test_captions_describe_each_character():
    from streamchar.data.identity import IDENTITIES, caption, color_name

    captions = [caption(i) for i in IDENTITIES]
    assert len(set(captions)) == len(IDENTITIES)  # the prompt tells the characters apart
    for identity, text in zip(IDENTITIES, captions):
        assert color_name(identity.clothes_color) in text and color_name(identity.background[0]) in text
        if identity.accessory != "none":
            assert identity.accessory in text
    assert color_name((200, 52, 52)) == "red" and color_name((44, 92, 184)) == "blue"
