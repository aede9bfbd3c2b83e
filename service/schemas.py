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


class SearchResponse(BaseModel):
    results: list[Match]
    identities: list[IdentityMatch] = Field(description="results grouped per label, best first")
    unknown: bool = Field(description="true when even the best score is below the calibrated threshold")
    threshold: float
    index_version: str


class VerifyResponse(BaseModel):
    same: bool
    score: float
    threshold: float


class EmbedResponse(BaseModel):
    embedding: list[float]
    dimension: int


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    ready: bool
    bundle_hash: str
    index_version: str | None
    index_size: int
    rejected_version: str | None = Field(None, description="the version current points at but that was refused")
    rejected_reason: str | None = Field(None, description="why: corrupted, built with another bundle...")
