"""POST /embed: the raw embedding, for callers that keep their own store."""

from __future__ import annotations

from fastapi import APIRouter

from lookalike.service.deps import State
from lookalike.service.routers.common import detected_face, embed_uploads
from lookalike.service.schemas import IMAGE_ERRORS, EmbedResponse, ImageUpload

router = APIRouter(tags=["embed"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=IMAGE_ERRORS,
)
async def embed(state: State, image: ImageUpload) -> EmbedResponse:
    (embedded,) = await embed_uploads(state, image)
    return EmbedResponse(
        embedding=embedded.vector.tolist(), dimension=len(embedded.vector), face=detected_face(embedded.face)
    )
