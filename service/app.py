"""`create_app(settings)`: the FastAPI application, its start-up and its middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

import lookalike
from lookalike.bundle import load_bundle
from lookalike.service.batcher import MicroBatcher
from lookalike.service.deps import ServiceState, require_api_key
from lookalike.service.errors import install_error_handlers
from lookalike.service.index_reloader import IndexReloader
from lookalike.service.middleware import GuardAndMeasure
from lookalike.service.routers import embed, health, search, verify
from lookalike.service.settings import Settings
from lookalike.service.telemetry import Telemetry

log = logging.getLogger(__name__)

# Multipart framing around the image(s): a request larger than the images' limit plus this is
# refused from its Content-Length, before any of it is read.
MULTIPART_OVERHEAD = 64 * 1024
# Behind the API key, when one is set; health, readiness and metrics stay open for probes and scrapers.
PROTECTED = (search.router, verify.router, embed.router)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    # Load eagerly: a bad bundle or a missing index fails here, as a clear error, before the server starts.
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    encoder = load_bundle(settings.bundle, batch_size=settings.max_batch)
    telemetry = Telemetry()
    reloader = IndexReloader(settings.index, encoder.spec.content_hash, settings.reload_interval_s)
    reloader.load_now()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = MicroBatcher(
            encoder,
            settings.max_batch,
            settings.max_wait_ms / 1000,
            settings.max_queue,
            on_batch=telemetry.batch_size.observe,
            on_shed=telemetry.shed.inc,
        )
        app.state.service = ServiceState(settings, encoder, batcher, reloader, telemetry)
        batcher.start()
        reloader.start()
        log.info("ready: bundle %s (%s), index %s", settings.bundle, encoder.spec.backbone, reloader.live.directory)
        yield
        await reloader.stop()
        await batcher.stop()

    app = FastAPI(
        title="Lookalike",
        version=lookalike.__version__,
        lifespan=lifespan,
        description="Face verification and visual search: nearest identities or products "
        "(`/search`) and same-or-not (`/verify`) for uploaded photos.",
    )
    install_error_handlers(app)
    for router in PROTECTED:  # the dependency documents the key in OpenAPI; the middleware enforces it first
        app.include_router(router, dependencies=[Depends(require_api_key)])
    app.include_router(health.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"], allow_headers=["*"]
        )

    app.add_middleware(
        GuardAndMeasure,
        max_body_bytes=2 * settings.max_upload_bytes + MULTIPART_OVERHEAD,
        telemetry=telemetry,
        api_key=settings.api_key,
        protected_paths={route.path for router in PROTECTED for route in router.routes},
    )

    return app
