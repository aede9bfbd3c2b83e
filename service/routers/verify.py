"""POST /verify: are these two pictures of the same identity/product?"""

from __future__ import annotations

from fastapi import APIRouter

from lookalike.service.deps import State
from lookalike.service.routers.common import detected_face, embed_uploads
from lookalike.service.schemas import IMAGE_ERRORS, ImageUpload, VerifyResponse

router = APIRouter(tags=["verify"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    responses=IMAGE_ERRORS,
)
async def verify(state: State, image_a: ImageUpload, image_b: ImageUpload) -> VerifyResponse:
    a, b = await embed_uploads(state, image_a, image_b)
    score = float(a.vector @ b.vector)
    threshold = state.encoder.spec.threshold
    return VerifyResponse(
        same=score >= threshold,
        score=score,
        threshold=threshold,
        face_a=detected_face(a.face),
        face_b=detected_face(b.face),
    )
