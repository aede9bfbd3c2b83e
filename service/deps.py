"""Shared state reached through FastAPI dependencies: settings, model, batcher, live index."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from lookalike.bundle import Encoder
from lookalike.index import GalleryIndex
from lookalike.service.batcher import MicroBatcher
from lookalike.service.errors import ApiError
from lookalike.service.index_reloader import IndexReloader
from lookalike.service.settings import Settings
from lookalike.service.telemetry import Telemetry


@dataclass
class ServiceState:
    settings: Settings
    encoder: Encoder
    batcher: MicroBatcher
    index_reloader: IndexReloader
    telemetry: Telemetry


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="required when the service has an API key"
)


def require_api_key(state: State, key: Annotated[str | None, Security(api_key_header)]) -> None:
    expected = state.settings.api_key
    if expected and not hmac.compare_digest((key or "").encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong X-API-Key header")


def live_index(state: State) -> GalleryIndex:
    if state.index_reloader.live is None:
        raise ApiError(503, "not_ready", "no index is loaded yet")
    return state.index_reloader.live


LiveIndex = Annotated[GalleryIndex, Depends(live_index)]
