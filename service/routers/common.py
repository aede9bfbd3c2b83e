"""Helpers shared by the image endpoints."""

from __future__ import annotations

from fastapi import UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from lookalike.faces import Face
from lookalike.service.batcher import Embedded
from lookalike.service.deps import ServiceState
from lookalike.service.schemas import DetectedFace
from lookalike.service.uploads import decode_image, read_upload


async def decode_uploads(state: ServiceState, *uploads: UploadFile) -> list[Image.Image]:
    """Read, check and decode each upload, decoding off the event loop."""
    settings = state.settings
    images = []
    for upload in uploads:
        data = await read_upload(upload, settings.max_upload_bytes)
        name = upload.filename or "upload"
        images.append(await run_in_threadpool(decode_image, data, name, settings.max_pixels, settings.max_aspect_ratio))
    return images


async def embed_uploads(state: ServiceState, *uploads: UploadFile) -> list[Embedded]:
    """Decode the uploads, then embed them (their largest faces) together, batched with other
    requests' images."""
    return await state.batcher.embed(await decode_uploads(state, *uploads))


def detected_face(face: Face | None) -> DetectedFace | None:
    return None if face is None else DetectedFace(**face.to_dict())
