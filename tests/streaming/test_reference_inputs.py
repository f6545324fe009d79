"""Reference inputs as users have them: phone photos with an EXIF orientation, huge images, folders."""

import numpy as np
import pytest
from PIL import Image

from streamchar.errors import StreamCharError
from streamchar.streaming import media


def test_exif_orientation_is_applied(tmp_path):
    """A portrait stored sideways with 'rotate 90' in its EXIF (as phones write it) loads upright."""
    upright = np.zeros((80, 40, 3), np.uint8)
    upright[:40] = (255, 0, 0)  # red on top, blue below
    upright[40:] = (0, 0, 255)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # the sensor's landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    image = media.load_image(path, 80, 40)
    assert image[10, 20, 0] > 200 and image[10, 20, 2] < 60  # red on top
    assert image[70, 20, 2] > 200 and image[70, 20, 0] < 60


def test_huge_and_folder_inputs_are_named(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    monkeypatch.setattr(media, "MAX_IMAGE_PIXELS", 300 * 200 - 1)
    with pytest.raises(StreamCharError, match="300x200: larger than"):
        media.load_image(path, 64, 64)
    with pytest.raises(StreamCharError, match="is a folder"):
        media.load_image(tmp_path, 64, 64)
