"""Liveness, readiness and Prometheus metrics (never behind the API key: probes and scrapers)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lookalike.service.deps import State
from lookalike.service.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: State) -> JSONResponse:
    live, rejected = state.index_reloader.live, state.index_reloader.rejected
    body = Readiness(
        ready=live is not None,
        bundle_hash=state.encoder.spec.content_hash,
        index_version=live.directory.name if live else None,
        index_size=live.size if live else 0,
        rejected_version=Path(rejected.version).name if rejected else None,
        rejected_reason=rejected.reason if rejected else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(state: State) -> Response:
    live = state.index_reloader.live
    state.telemetry.index_size.set(live.size if live else 0)
    state.telemetry.index_rejected.set(state.index_reloader.rejected is not None)
    return Response(generate_latest(state.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
