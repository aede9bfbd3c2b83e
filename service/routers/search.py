"""POST /search: who or what is in this picture?"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from lookalike.service.batcher import Embedded
from lookalike.service.deps import LiveIndex, State
from lookalike.service.errors import ApiError
from lookalike.service.routers.common import decode_uploads, detected_face
from lookalike.service.schemas import IMAGE_ERRORS, FaceSearch, IdentityMatch, ImageUpload, Match, SearchResponse

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
    faces: Annotated[
        Literal["largest", "all"],
        Query(description="face bundles: search with the photo's largest face, or with every face found"),
    ] = "largest",
) -> SearchResponse:
    k = k or state.settings.default_k
    if k > state.settings.max_k:
        raise ApiError(422, "invalid_request", f"k must be at most {state.settings.max_k}, got {k}")
    (query,) = await decode_uploads(state, image)
    threshold = state.encoder.spec.threshold
    answers = [face_search(e, threshold) for e in await state.batcher.search(query, index, k, faces == "all")]
    return SearchResponse(
        **answers[0].model_dump(),
        threshold=threshold,
        index_version=index.directory.name,
        faces=answers if faces == "all" else None,
    )


def face_search(embedded: Embedded, threshold: float) -> FaceSearch:
    hits = embedded.hits or []
    identities: dict[str, IdentityMatch] = {}
    for hit in hits:  # hits are sorted best first, so a label's first hit is its best
        if hit.label in identities:
            identities[hit.label].matches += 1
        else:
            identities[hit.label] = IdentityMatch(label=hit.label, score=hit.score, matches=1)
    return FaceSearch(
        face=detected_face(embedded.face),
        results=[Match(id=h.id, label=h.label, score=h.score, source=h.path, metadata=h.metadata) for h in hits],
        identities=list(identities.values()),
        unknown=not hits or hits[0].score < threshold,
    )
