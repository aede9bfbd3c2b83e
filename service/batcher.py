"""Dynamic micro-batching: concurrent requests share one forward pass.

Each request puts its image on a queue and awaits a future. One worker task takes the first
waiting image, gathers more until `max_batch` or `max_wait` has passed, and runs the encoder
on a single background thread, so inference never blocks the event loop. While a batch runs,
new requests queue up and form the next batch: the busier the service, the bigger the batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from lookalike.bundle import Encoder

log = logging.getLogger(__name__)


class MicroBatcher:
    def __init__(
        self, encoder: Encoder, max_batch: int, max_wait_s: float, on_batch: Callable[[int], None] | None = None
    ) -> None:
        self.encoder = encoder
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.on_batch = on_batch
        self.queue: asyncio.Queue[tuple[Image.Image, asyncio.Future]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    async def embed(self, images: list[Image.Image]) -> np.ndarray:
        """Embeddings of `images` (they may be split across batches with other requests' images)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in images]
        for image, future in zip(images, futures, strict=True):
            self.queue.put_nowait((image, future))
        return np.stack(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            images = [image for image, _ in batch]
            try:
                vectors = await loop.run_in_executor(self.executor, self.encoder.embed, images)
            except Exception as err:  # a failed batch fails its requests, not the worker
                log.exception("embedding a batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for (_, future), vector in zip(batch, vectors, strict=True):
                if not future.done():  # the client may have gone away
                    future.set_result(vector)
