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
