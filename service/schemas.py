"""Every request's and response's shape, as the OpenAPI docs show them."""

from __future__ import annotations

from typing import Annotated

from fastapi import File, UploadFile
from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable kind, e.g. 'invalid_image'")
    detail: str = Field(description="what is wrong, for a person")


ImageUpload = Annotated[
    UploadFile,
    File(
        description="a photo: JPEG, PNG, WebP, BMP, PPM, TIFF or GIF, not empty",
        json_schema_extra={"minLength": 1},  # the schema says what the service accepts: no empty files
    ),
]
"""Every image field of every endpoint."""

IMAGE_ERRORS: dict[int | str, dict] = {status: {"model": ErrorBody} for status in (400, 401, 413, 415, 422, 503)}
"""What an image endpoint can answer besides 200, for the OpenAPI docs."""


class DetectedFace(BaseModel):
    """The face a score is about, in the uploaded photo's pixels (after EXIF orientation)."""

    box: list[float] = Field(description="left, top, right, bottom")
    landmarks: list[list[float]] = Field(description="eye left, eye right, nose tip, mouth left, mouth right (x, y)")
    score: float = Field(description="the detector's confidence that this is a face")


class Match(BaseModel):
    id: int
    label: str
    score: float = Field(description="cosine similarity, higher is closer")
    source: str
    metadata: dict | None = None


class IdentityMatch(BaseModel):
    label: str
    score: float = Field(description="best score of this label's gallery images")
    matches: int = Field(description="how many of the k results carry this label")


class FaceSearch(BaseModel):
    """The search answer for one face of the photo."""

    face: DetectedFace | None = Field(description="the face searched; null for a bundle without face alignment")
    results: list[Match]
    identities: list[IdentityMatch] = Field(description="results grouped per label, best first")
    unknown: bool = Field(description="true when even the best score is below the calibrated threshold")


class SearchResponse(FaceSearch):
    """The answer for the photo's largest face; with `faces=all`, `faces` answers for each face."""

    threshold: float
    index_version: str
    faces: list[FaceSearch] | None = Field(None, description="with faces=all: every face found, largest first")


class VerifyResponse(BaseModel):
    same: bool
    score: float
    threshold: float
    face_a: DetectedFace | None = Field(None, description="the face compared in image_a (its largest)")
    face_b: DetectedFace | None = Field(None, description="the face compared in image_b (its largest)")


class EmbedResponse(BaseModel):
    embedding: list[float]
    dimension: int
    face: DetectedFace | None = Field(None, description="the face embedded (the photo's largest)")


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    ready: bool
    bundle_hash: str
    index_version: str | None
    index_size: int
    rejected_version: str | None = Field(None, description="the version current points at but that was refused")
    rejected_reason: str | None = Field(None, description="why: corrupted, built with another bundle...")
