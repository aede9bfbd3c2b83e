"""POST /search: who or what is in this picture?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lookalike.service.deps import LiveIndex, State
from lookalike.service.errors import ApiError
from lookalike.service.routers.common import decode_uploads
from lookalike.service.schemas import IMAGE_ERRORS, IdentityMatch, ImageUpload, Match, SearchResponse

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=IMAGE_ERRORS,
)
async def search(
    state: State,
    index: LiveIndex,
    image: ImageUpload,
    k: Annotated[int | None, Query(ge=1, description="number of nearest gallery images")] = None,
) -> SearchResponse:
    k = k or state.settings.default_k
    if k > state.settings.max_k:
        raise ApiError(422, "invalid_request", f"k must be at most {state.settings.max_k}, got {k}")
    (query,) = await decode_uploads(state, image)
    hits = await state.batcher.search(query, index, k)
    threshold = state.encoder.spec.threshold
    identities: dict[str, IdentityMatch] = {}
    for hit in hits:  # hits are sorted best first, so a label's first hit is its best
        if hit.label in identities:
            identities[hit.label].matches += 1
        else:
            identities[hit.label] = IdentityMatch(label=hit.label, score=hit.score, matches=1)
    return SearchResponse(
        results=[Match(id=h.id, label=h.label, score=h.score, source=h.path, metadata=h.metadata) for h in hits],
        identities=list(identities.values()),
        unknown=not hits or hits[0].score < threshold,
        threshold=threshold,
        index_version=index.directory.name,
    )
