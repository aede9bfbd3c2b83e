"""POST /embed: the raw embedding, for callers that keep their own store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from service.deps import State
from service.routers.common import embed_uploads
from service.schemas import EmbedResponse, ErrorBody

router = APIRouter(tags=["embed"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses={
        400: {"model": ErrorBody},
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
)
async def embed(state: State, image: Annotated[UploadFile, File()]) -> EmbedResponse:
    vector = (await embed_uploads(state, image))[0]
    return EmbedResponse(embedding=vector.tolist(), dimension=len(vector))
