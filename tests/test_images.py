"""The one decode and preprocessing path every stage uses: orientation, bit depth, bounded work."""

from __future__ import annotations

import io
import resource
import threading

import numpy as np
import pytest
from PIL import Image

from lookalike.images import Preprocessing, open_rgb, preprocess, to_square

SPEC = Preprocessing(image_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def encoded(image: Image.Image, fmt: str, **save) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_to_8_bits_not_clipped_white(fmt):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    decoded = np.asarray(open_rgb(encoded(Image.fromarray(ramp), fmt)))
    assert decoded.shape == (8, 256, 3)
    np.testing.assert_allclose(decoded[..., 0].astype(float), ramp / 257.0, atol=0.51)
    assert decoded[0, 0, 0] == 0 and decoded[0, 128, 0] in (127, 128) and decoded[0, -1, 0] == 255


def test_float_grey_in_the_unit_range_is_scaled_too():
    values = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (4, 1))
    decoded = np.asarray(open_rgb(encoded(Image.fromarray(values, mode="F"), "TIFF")))
    np.testing.assert_allclose(decoded[..., 1], np.rint(values * 255), atol=1)


def test_exif_orientation_is_applied():
    upright = Image.new("RGB", (30, 60), (255, 0, 0))
    upright.paste((0, 0, 255), (0, 0, 30, 20))  # blue on top
    stored = upright.rotate(90, expand=True)  # what the camera wrote: 60 x 30, blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    decoded = open_rgb(encoded(stored, "JPEG", exif=exif, quality=95))
    assert decoded.size == (30, 60)
    top, bottom = np.asarray(decoded)[2, 15], np.asarray(decoded)[-3, 15]
    assert top[2] > 200 and top[0] < 60 and bottom[0] > 200 and bottom[2] < 60


def peak_rss_growth_mib(work) -> float:
    """How far this process's peak resident memory rises while `work()` runs in a fresh thread."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def test_a_thin_strip_costs_the_work_of_its_output_not_of_its_upscaling():
    strip = Image.new("RGB", (1, 400_000), (90, 120, 200))  # upscaled whole: 64 x 25,600,000 RGB = 4.9 GB
    growth = peak_rss_growth_mib(lambda: preprocess(strip, SPEC))
    assert growth < 200, f"preprocessing a 1 x 400,000 strip raised peak memory by {growth:.0f} MiB"
    square = to_square(strip, 64, "center")
    assert square.size == (64, 64) and np.abs(np.asarray(square, dtype=int) - (90, 120, 200)).max() <= 1


def test_the_kept_square_matches_resizing_the_whole_picture_then_cropping():
    rng = np.random.default_rng(0)
    for w, h in [(40, 48), (333, 200), (97, 61), (1, 400)]:
        picture = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        scale = 64 / min(w, h)
        nw, nh = max(64, round(w * scale)), max(64, round(h * scale))
        whole = picture.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - 64) // 2, (nh - 64) // 2
        reference = np.asarray(whole.crop((left, top, left + 64, top + 64)), dtype=np.int16)
        kept = np.asarray(to_square(picture, 64, "center"), dtype=np.int16)
        assert np.abs(kept - reference).max() <= 1 and (kept != reference).mean() < 0.01
