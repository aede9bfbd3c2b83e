"""Turn an uploaded file into a checked RGB image, or an `ApiError` that says what is wrong."""

from __future__ import annotations

import io
import warnings

from fastapi import UploadFile
from PIL import Image, UnidentifiedImageError

from lookalike.images import to_rgb
from lookalike.service.errors import ApiError

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "PPM", "TIFF", "GIF"}
CHUNK = 1 << 16


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read at most `max_bytes` (+1 to detect overflow) so a huge upload is never held whole."""
    data = bytearray()
    while chunk := await upload.read(CHUNK):
        data.extend(chunk)
        if len(data) > max_bytes:
            raise ApiError(413, "too_large", f"{upload.filename or 'upload'} is larger than the {max_bytes} byte limit")
    if not data:
        raise ApiError(400, "empty_file", f"{upload.filename or 'upload'} is empty")
    return bytes(data)


def decode_image(data: bytes, name: str, max_pixels: int, max_aspect_ratio: float) -> Image.Image:
    """Decode fully (so truncation shows up here, not in the model). Format, pixel count and aspect
    ratio are checked from the header first: a refused image costs no decoding at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ApiError(
                    415,
                    "unsupported_format",
                    f"{name} is {image.format}; accepted: {', '.join(sorted(ACCEPTED_FORMATS))}",
                )
            width, height = image.size
            if width * height > max_pixels:
                raise ApiError(413, "too_many_pixels", f"{name} is {width}x{height}, over the {max_pixels} pixel limit")
            if max(width, height) > max_aspect_ratio * min(width, height):
                raise ApiError(
                    422,
                    "bad_aspect_ratio",
                    f"{name} is {width}x{height}, longer than {max_aspect_ratio:g} times its width: not a photo",
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, "too_many_pixels", f"{name} is too large in pixels (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ApiError(400, "not_an_image", f"{name} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ApiError(400, "invalid_image", f"{name} could not be decoded: {err}") from None
    return to_rgb(image)
