"""Dynamic micro-batching: concurrent requests share one forward pass and one index search.

Each request puts its image on a queue and awaits a future. One worker task takes the first
waiting image, gathers more until `max_batch` or `max_wait` has passed, and runs the encoder
on a single background thread, so inference never blocks the event loop. While a batch runs,
new requests queue up and form the next batch: the busier the service, the bigger the batches.
A /search request also names its index and k: the same thread searches all of a batch's
queries in one call, which saves a thread hop and a metadata query per request. For a face
bundle the same thread first detects the faces of the whole batch in one pass, then embeds the
largest face of each picture (or, when a request asks for all, every face).

The queue is bounded (`max_queue` images): under overload a request is answered 503 with
`Retry-After` at once instead of waiting without limit behind everyone else.
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
from lookalike.faces import Face, NoFaceError
from lookalike.index import GalleryIndex, Hit
from lookalike.service.background import cancel_and_wait
from lookalike.service.errors import ApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    """One embedded face (or, for a bundle without face alignment, the whole picture: face None)."""

    face: Face | None
    vector: np.ndarray
    hits: list[Hit] | None = None  # for a search: the nearest gallery entries


Outcome = list[Embedded] | Exception
"""A job's result, largest face first; or the error that failed it alone."""


Key = tuple[int, int]
"""(job, face) of one network input in a batch."""


@dataclass
class Job:
    image: Image.Image
    future: asyncio.Future
    index: GalleryIndex | None = None  # when given, search it with the embedding
    k: int = 0
    all_faces: bool = False  # embed every face of the picture, not only the largest


class MicroBatcher:
    def __init__(
        self,
        encoder: Encoder,
        max_batch: int,
        max_wait_s: float,
        max_queue: int = 0,
        on_batch: Callable[[int], None] | None = None,
        on_shed: Callable[[], None] | None = None,
        max_faces: int = 32,
    ) -> None:
        self.encoder = encoder
        self.max_faces = max_faces  # faces=all on a crowd photo: the largest this many, so a request's cost is bounded
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.on_batch, self.on_shed = on_batch, on_shed
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        await cancel_and_wait(self.task)
        self.executor.shutdown(wait=True)

    def _enqueue(self, jobs: list[Job]) -> None:
        """Queue all of a request's jobs or none: a full queue sheds the request with a 503."""
        if self.queue.maxsize and self.queue.qsize() + len(jobs) > self.queue.maxsize:
            if self.on_shed is not None:
                self.on_shed()
            raise ApiError(
                503,
                "overloaded",
                f"{self.queue.qsize()} images are already waiting for the encoder; try again shortly",
                headers={"Retry-After": "1"},
            )
        for job in jobs:
            self.queue.put_nowait(job)

    async def embed(self, images: list[Image.Image]) -> list[Embedded]:
        """The embedding of each picture's largest face, or of the picture itself for a bundle
        without face alignment (pictures may be split across batches with other requests')."""
        loop = asyncio.get_running_loop()
        jobs = [Job(image, loop.create_future()) for image in images]
        self._enqueue(jobs)
        return [faces[0] for faces in await asyncio.gather(*(job.future for job in jobs))]

    async def search(self, image: Image.Image, index: GalleryIndex, k: int, all_faces: bool = False) -> list[Embedded]:
        """The `k` nearest entries of `index` to the largest face of `image` (to each face, with
        `all_faces`), largest face first."""
        job = Job(image, asyncio.get_running_loop().create_future(), index, k, all_faces)
        self._enqueue([job])
        return await job.future

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
                outcomes = await loop.run_in_executor(self.executor, self._process, batch)
            except Exception as err:  # a bug in _process itself: fail this batch, keep the worker
                log.exception("processing a batch of %d failed", len(batch))
                outcomes = [err] * len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():  # the client has gone away
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _process(self, batch: list[Job]) -> list[Outcome]:
        """On the encoder thread: one detection pass (face bundles), one forward pass, then one
        search per index the batch names.

        Each job succeeds or fails on its own: a picture without a face, or that cannot be
        preprocessed, or whose forward pass fails, fails its own request, never the other
        requests of its batch."""
        outcomes: list[Outcome | None] = [None] * len(batch)
        faces = self._faces(batch, outcomes)
        inputs: dict[Key, np.ndarray] = {}
        for n, job in enumerate(batch):
            try:
                inputs.update({(n, f): self.encoder.preprocess(job.image, face) for f, face in enumerate(faces[n])})
            except Exception as err:
                log.exception("preprocessing a %s image failed", "x".join(map(str, job.image.size)))
                outcomes[n] = err
        vectors = self._forward({key: x for key, x in inputs.items() if outcomes[key[0]] is None}, outcomes)
        vectors = {key: v for key, v in vectors.items() if outcomes[key[0]] is None}  # a job fails whole
        hits: dict[Key, list[Hit]] = {}
        for index in {id(job.index): job.index for job in batch if job.index is not None}.values():
            keys = [key for key in vectors if batch[key[0]].index is index]
            if not keys:
                continue
            found = index.search(np.stack([vectors[key] for key in keys]), max(batch[n].k for n, _ in keys))
            hits.update({key: row[: batch[key[0]].k] for key, row in zip(keys, found, strict=True)})
        for n in range(len(batch)):
            if outcomes[n] is None:
                outcomes[n] = [Embedded(face, vectors[n, f], hits.get((n, f))) for f, face in enumerate(faces[n])]
        return outcomes

    def _faces(self, batch: list[Job], outcomes: list[Outcome | None]) -> list[list[Face | None]]:
        """What each job embeds: its largest face (every face, for `all_faces`) in one batched
        detection, or the whole picture (None) for a bundle without face alignment."""
        if not self.encoder.aligns_faces:
            return [[None] for _ in batch]
        try:
            found = self.encoder.find_faces([job.image for job in batch])
        except Exception:
            log.exception("detecting faces in a batch of %d failed; retrying its images one by one", len(batch))
            found = []
            for n, job in enumerate(batch):
                try:
                    found.extend(self.encoder.find_faces([job.image]))
                except Exception as err:
                    found.append([])
                    outcomes[n] = err
        for n, faces in enumerate(found):
            if not faces and outcomes[n] is None:
                outcomes[n] = NoFaceError("no face found in the picture")
        return [faces[: self.max_faces if job.all_faces else 1] for job, faces in zip(batch, found, strict=True)]

    def _forward(self, inputs: dict[Key, np.ndarray], outcomes: list[Outcome | None]) -> dict[Key, np.ndarray]:
        """Embed all inputs in one pass; should that fail, embed them one by one so that only the
        inputs that fail alone are failed."""
        if not inputs:
            return {}
        try:
            return dict(zip(inputs, self.encoder.forward(np.stack(list(inputs.values()))), strict=True))
        except Exception:
            log.exception("a batched forward pass of %d failed; retrying its images one by one", len(inputs))
        vectors = {}
        for key, array in inputs.items():
            try:
                vectors[key] = self.encoder.forward(array[None])[0]
            except Exception as err:
                outcomes[key[0]] = err
        return vectors
