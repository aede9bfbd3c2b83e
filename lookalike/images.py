"""Image decoding and the preprocessing every stage applies identically.

Training's evaluation, the exported encoder, the index builder and the service all call
`preprocess`, so a photo embeds to the same vector wherever it is embedded. It uses only
Pillow and NumPy: index/ and service/ need no torchvision and no training code for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, Field

from lookalike.faces.align import FaceAlignment, align_face
from lookalike.faces.detect import Face

CropMode = Literal["center", "squash"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".webp", ".tif", ".tiff")


class Preprocessing(BaseModel):
    """How a picture becomes the encoder's input tensor; stored in every bundle."""

    image_size: int = Field(ge=16, le=1024)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_fraction: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Keep this central fraction of each side before resizing (LFW faces: ~0.5).",
    )
    crop_mode: CropMode = Field(
        default="center",
        description="center: cut the central square (no distortion); squash: resize the whole picture to a square "
        "(wide product photos keep both ends, e.g. a car's front and rear).",
    )
    face: FaceAlignment | None = Field(
        None,
        description="Detect faces and align each onto a template (then crop_fraction and crop_mode do not apply); "
        "None: the picture itself is the input (products, pre-cropped faces).",
    )


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def open_rgb(source: str | Path | Image.Image) -> Image.Image:
    """Decode fully and return `to_rgb` of it (grey PGMs, palette PNGs and 16-bit scans included)."""
    image = source if isinstance(source, Image.Image) else Image.open(source)
    image.load()
    return to_rgb(image)


HIGH_BIT_DEPTH_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """The decoded picture as a person sees it, in 8-bit RGB: EXIF orientation applied (a phone's
    portrait photo is stored sideways), and 16-bit or float greyscale scaled to 8 bits rather than
    clipped at 255 (which Pillow's own `convert` does, turning a 16-bit scan pure white)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in HIGH_BIT_DEPTH_GREY or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        full_scale = 1.0 if image.mode == "F" and values.max(initial=0.0) <= 1.0 else 65535.0
        grey = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
        image = Image.fromarray(grey, mode="L")
    return image.convert("RGB")


def central_crop(image: Image.Image, fraction: float) -> Image.Image:
    if fraction >= 1.0:
        return image
    w, h = image.size
    cw, ch = round(w * fraction), round(h * fraction)
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def to_square(image: Image.Image, size: int, mode: CropMode) -> Image.Image:
    """The `size` x `size` picture the encoder sees: the central square of the picture resized so its
    shorter side is `size` ("center"), or the whole picture resized to the square ("squash").

    "center" resamples only the source region that lands in the square (Pillow's `box`), at the
    scale and sample positions of resizing the whole picture and then cropping it: the same
    pixels (an odd one rounds a grey level off), but the work and memory of a `size` x `size`
    output however thin the picture is (a 1 x 40,000 strip was scaled to 64 x 2,560,000 first)."""
    if mode == "squash":
        return image.resize((size, size), Image.Resampling.BICUBIC)
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))  # the whole picture, resized
    left, top = (nw - size) // 2, (nh - size) // 2  # the square cut from it
    box = (left * w / nw, top * h / nh, (left + size) * w / nw, (top + size) * h / nh)
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)


def frame(image: Image.Image, spec: Preprocessing, face: Face | None = None, size: int | None = None) -> Image.Image:
    """The square RGB picture the encoder sees (`size`, else the spec's): the aligned crop of `face`
    when the spec aligns faces, else the central crop squared."""
    size = size or spec.image_size
    if spec.face is not None:
        if face is None:
            raise ValueError("this preprocessing aligns faces: a detected face is needed")
        return align_face(image.convert("RGB"), face.landmarks, size, spec.face)
    return to_square(central_crop(image.convert("RGB"), spec.crop_fraction), size, spec.crop_mode)


def preprocess(image: Image.Image, spec: Preprocessing, face: Face | None = None) -> np.ndarray:
    """RGB PIL image (and, for a face spec, the face to cut) -> normalised float32 array [3, size, size]."""
    image = frame(image, spec, face)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
