"""The live index, swapped for a new version without a restart.

A background task watches the index root's `current` pointer. When it moves, the new version
is loaded off the event loop, checked against the bundle, and swapped in with one assignment:
requests already running keep the `GalleryIndex` object they took, so none fails mid-swap. A
version that cannot be loaded (corrupted, built with another bundle) is refused once: the old one
keeps serving, and the refusal is remembered, not retried, until `current` moves again. It shows
in `/readyz` and `/metrics` so that an operator sees it without reading logs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from lookalike.index import GalleryIndex, current_version
from lookalike.service.background import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejection:
    """The version `current` points at, and why it is not being served."""

    version: str
    reason: str


class IndexReloader:
    """Holds the live `GalleryIndex` and swaps in each new version the root publishes."""

    def __init__(self, root: Path, bundle_hash: str, interval_s: float) -> None:
        self.root, self.bundle_hash, self.interval_s = root, bundle_hash, interval_s
        self.live: GalleryIndex | None = None
        self.rejected: Rejection | None = None
        self.task: asyncio.Task | None = None

    def load_now(self) -> None:
        """First load, at start-up: failures here are fatal (the service cannot be ready)."""
        self.live = GalleryIndex.open(current_version(self.root), self.bundle_hash, on_device=True)
        log.info("serving index %s (%d entries)", self.live.directory, self.live.size)

    def start(self) -> None:
        self.task = asyncio.create_task(self._watch(), name="index-reloader")

    async def stop(self) -> None:
        await cancel_and_wait(self.task)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()

    async def check(self) -> None:
        """Serve the version `current` names, unless it is live already or was refused already."""
        try:
            target = str(current_version(self.root))
        except Exception as err:  # the pointer itself is gone: keep serving
            target, reason = f"{self.root}/current", str(err)
        else:
            if self.live is not None and target == str(self.live.directory):
                self.rejected = None  # current moved back to the version being served
                return
            if self.rejected is not None and self.rejected.version == target:
                return
            try:
                fresh = await run_in_threadpool(GalleryIndex.open, Path(target), self.bundle_hash, True)
            except Exception as err:  # keep serving the old version, say once why the new one was refused
                reason = str(err)
            else:
                self.live, self.rejected = fresh, None
                log.info("switched to index %s (%d entries)", fresh.directory, fresh.size)
                return
        if self.rejected != Rejection(target, reason):
            self.rejected = Rejection(target, reason)
            log.error("not switching index to %s (kept until current changes): %s", target, reason)
