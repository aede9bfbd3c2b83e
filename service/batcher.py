"""Dynamic micro-batching: concurrent requests share one forward pass and one index search.

Each request puts its image on a queue and awaits a future. One worker task takes the first
waiting image, gathers more until `max_batch` or `max_wait` has passed, and runs the encoder
on a single background thread, so inference never blocks the event loop. While a batch runs,
new requests queue up and form the next batch: the busier the service, the bigger the batches.
A /search request also names its index and k: the same thread searches all of a batch's
queries in one call, which saves a thread hop and a metadata query per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.bundle import Encoder
from lookalike.index import GalleryIndex, Hit
from lookalike.service.background import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass
class Job:
    image: Image.Image
    future: asyncio.Future
    index: GalleryIndex | None = None  # when given, search it with the embedding
    k: int = 0


class MicroBatcher:
    def __init__(
        self, encoder: Encoder, max_batch: int, max_wait_s: float, on_batch: Callable[[int], None] | None = None
    ) -> None:
        self.encoder = encoder
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.on_batch = on_batch
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        await cancel_and_wait(self.task)
        self.executor.shutdown(wait=True)

    async def embed(self, images: list[Image.Image]) -> np.ndarray:
        """Embeddings of `images` (they may be split across batches with other requests' images)."""
        loop = asyncio.get_running_loop()
        jobs = [Job(image, loop.create_future()) for image in images]
        for job in jobs:
            self.queue.put_nowait(job)
        return np.stack([vector for vector, _ in await asyncio.gather(*(job.future for job in jobs))])

    async def search(self, image: Image.Image, index: GalleryIndex, k: int) -> list[Hit]:
        """The `k` nearest entries of `index` to the embedding of `image`."""
        job = Job(image, asyncio.get_running_loop().create_future(), index, k)
        self.queue.put_nowait(job)
        return (await job.future)[1]

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
            try:
                results = await loop.run_in_executor(self.executor, self._process, batch)
            except Exception as err:  # a failed batch fails its requests, not the worker
                log.exception("embedding a batch of %d failed", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(result)

    def _process(self, batch: list[Job]) -> list[tuple[np.ndarray, list[Hit] | None]]:
        """On the encoder thread: one forward pass, then one search per index the batch names."""
        vectors = self.encoder.embed([job.image for job in batch])
        hits: list[list[Hit] | None] = [None] * len(batch)
        for index in {id(job.index): job.index for job in batch if job.index is not None}.values():
            rows = [n for n, job in enumerate(batch) if job.index is index]
            found = index.search(vectors[rows], max(batch[n].k for n in rows))
            for n, row_hits in zip(rows, found, strict=True):
                hits[n] = row_hits[: batch[n].k]
        return list(zip(vectors, hits, strict=True))
