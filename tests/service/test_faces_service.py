"""A face bundle end to end: `index build` detects and records each gallery face, and a real
uvicorn server answers with the face it used, 422 `no_face`, the largest of several faces, or
every face with `faces=all`."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lookalike.bundle import load_bundle
from lookalike.cli import start_server, stop_server
from lookalike.faces import NoFaceError
from lookalike.images import open_rgb
from lookalike.index import GalleryIndex
from lookalike.index.build import build_index
from lookalike.service.batcher import MicroBatcher
from tests.helpers import place

PEOPLE = ("Aaron_Eckhart", "Aaron_Peirsol", "Abdullah_Gul")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def face_gallery(tmp_path_factory, lfw) -> Path:
    """Three people's first LFW photo each, and one picture of noise that holds no face."""
    root = tmp_path_factory.mktemp("face_gallery")
    for person in PEOPLE:
        (root / person).mkdir()
        (root / person / "0.jpg").write_bytes((lfw / person / f"{person}_0001.jpg").read_bytes())
    (root / "nobody").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "nobody" / "noise.png")
    return root


@pytest.fixture(scope="module")
def face_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("face_index") / "index"


@pytest.fixture(scope="module")
def face_index(face_root, face_bundle, face_gallery):
    return build_index(face_bundle, face_gallery, face_root)


@pytest.fixture(scope="module")
def face_server(face_bundle, face_root, face_index):
    process, base = start_server(face_bundle, face_root, quiet=True)
    yield base
    stop_server(process)


def photo(lfw: Path, person: str) -> Image.Image:
    return open_rgb(lfw / person / f"{person}_0001.jpg")


def test_index_build_records_each_face_and_counts_the_faceless(face_index):
    assert face_index.size == 3 and face_index.manifest.faceless_images == 1
    entries = face_index.metadata.get(range(face_index.next_id()))
    assert sorted(e.label for e in entries.values()) == sorted(PEOPLE)
    for entry in entries.values():
        left, top, right, bottom = entry.metadata["face"]["box"]
        assert 0 <= left < right <= 250 and 0 <= top < bottom <= 250 and entry.metadata["face"]["score"] > 0.9


def test_search_answers_with_the_face_it_used(face_server, lfw):
    query = place(photo(lfw, "Abdullah_Gul"), (900, 700), 1.4, 15.0, (420, 200))
    response = httpx.post(f"{face_server}/search?k=3", files={"image": ("q.jpg", jpeg(query))}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"][0]["label"] == "Abdullah_Gul"
    assert body["results"][0]["metadata"]["face"]["score"] > 0.9
    left, top, right, bottom = body["face"]["box"]
    assert 420 < left < right < 900 and 200 < top < bottom < 700  # inside the placed photo
    assert len(body["face"]["landmarks"]) == 5 and body["faces"] is None


def test_a_photo_without_a_face_is_a_422_no_face(face_server):
    blank = Image.new("RGB", (300, 200), (90, 120, 150))
    for endpoint, files in (
        ("search", {"image": ("blank.jpg", jpeg(blank))}),
        ("embed", {"image": ("blank.jpg", jpeg(blank))}),
        ("verify", {"image_a": ("blank.jpg", jpeg(blank)), "image_b": ("blank.jpg", jpeg(blank))}),
    ):
        response = httpx.post(f"{face_server}/{endpoint}", files=files, timeout=60)
        assert response.status_code == 422, (endpoint, response.text)
        assert response.json()["error"] == "no_face" and "no face" in response.json()["detail"]


def two_people(lfw: Path) -> Image.Image:
    """Aaron Eckhart large on the left, Aaron Peirsol half as large on the right."""
    canvas = place(photo(lfw, "Aaron_Eckhart"), (1000, 600), 1.6, 0.0, (0, 100))
    small = photo(lfw, "Aaron_Peirsol").resize((200, 200))
    canvas.paste(small, (700, 300))
    return canvas


def test_of_two_faces_the_largest_is_used_and_faces_all_answers_for_each(face_server, lfw):
    files = {"image": ("two.jpg", jpeg(two_people(lfw)))}
    largest = httpx.post(f"{face_server}/search?k=1", files=files, timeout=60).json()
    assert largest["results"][0]["label"] == "Aaron_Eckhart" and largest["face"]["box"][2] < 450
    every = httpx.post(f"{face_server}/search?k=1&faces=all", files=files, timeout=60).json()
    assert [f["results"][0]["label"] for f in every["faces"]] == ["Aaron_Eckhart", "Aaron_Peirsol"]
    assert every["faces"][0]["face"] == largest["face"] and every["faces"][1]["face"]["box"][0] > 650
    assert every["results"] == every["faces"][0]["results"]  # the top level answers for the largest face


def test_verify_and_embed_say_which_face_they_compared(face_server, lfw):
    moved = place(photo(lfw, "Aaron_Eckhart"), (700, 700), 0.7, -18.0, (300, 320))
    files = {"image_a": ("a.jpg", jpeg(photo(lfw, "Aaron_Eckhart"))), "image_b": ("b.jpg", jpeg(moved))}
    body = httpx.post(f"{face_server}/verify", files=files, timeout=60).json()
    assert body["same"] is True and body["score"] > 0.99
    assert body["face_a"]["box"][2] <= 250 and body["face_b"]["box"][0] > 300
    embedded = httpx.post(f"{face_server}/embed", files={"image": ("b.jpg", jpeg(moved))}, timeout=60).json()
    assert embedded["face"] == body["face_b"] and embedded["dimension"] == 32


def test_faces_must_be_largest_or_all(face_server, lfw):
    files = {"image": ("q.jpg", jpeg(photo(lfw, "Aaron_Eckhart")))}
    response = httpx.post(f"{face_server}/search?faces=some", files=files, timeout=60)
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_requests_waiting_together_share_one_detection_on_the_encoder_thread(face_bundle, face_index, lfw):
    """Detection is part of the micro-batch: one batched detector call for every request waiting
    together, run on the encoder thread (the event loop never detects), each answer its own."""
    encoder = load_bundle(face_bundle)
    calls: list[tuple[int, str]] = []
    detect = encoder.find_faces

    def watched(images):
        calls.append((len(images), threading.current_thread().name))
        return detect(images)

    encoder.find_faces = watched  # the real detector, watched: how often and where it runs
    blank = Image.new("RGB", (200, 200), (128, 128, 128))
    index = GalleryIndex.open(face_index.directory)

    async def together():
        batcher = MicroBatcher(encoder, max_batch=16, max_wait_s=0.5)
        batcher.start()
        try:
            return await asyncio.gather(
                batcher.search(photo(lfw, "Abdullah_Gul"), index, 1),
                batcher.search(two_people(lfw), index, 1, True),
                batcher.embed([blank]),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()

    one, both, faceless = asyncio.run(together())
    assert len(calls) == 1 and calls[0][0] == 3 and calls[0][1].startswith("encoder"), calls
    assert [e.hits[0].label for e in one] == ["Abdullah_Gul"]
    assert [e.hits[0].label for e in both] == ["Aaron_Eckhart", "Aaron_Peirsol"]
    assert isinstance(faceless, NoFaceError)


def test_faces_all_answers_for_at_most_max_faces_largest_first(face_bundle, face_index, lfw):
    """A crowd photo cannot make one request embed without limit: faces=all stops at max_faces."""
    index = GalleryIndex.open(face_index.directory)

    async def search(max_faces: int):
        batcher = MicroBatcher(load_bundle(face_bundle), max_batch=4, max_wait_s=0.01, max_faces=max_faces)
        batcher.start()
        try:
            return await batcher.search(two_people(lfw), index, 1, True)
        finally:
            await batcher.stop()

    assert [e.hits[0].label for e in asyncio.run(search(1))] == ["Aaron_Eckhart"]
    assert len(asyncio.run(search(32))) == 2
