"""The HTTP service: every endpoint, every bad input, auth, micro-batching and hot reload.

Most checks run twice: through the in-process client and against a real uvicorn process on
127.0.0.1, because multipart parsing, request limits and concurrency are the server's job.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.bundle import load_bundle
from lookalike.cli import start_server, stop_server
from lookalike.images import open_rgb
from lookalike.index.build import add_to_index, build_index
from lookalike.index.store import GalleryIndex
from lookalike.service.app import create_app
from lookalike.service.batcher import MicroBatcher
from lookalike.service.settings import Settings
from tests.helpers import write_image


@pytest.fixture(scope="module")
def index_root(tmp_path_factory, tiny_bundle, gallery) -> Path:
    root = tmp_path_factory.mktemp("served") / "index"
    build_index(tiny_bundle, gallery, root)
    return root


@pytest.fixture(scope="module")
def server(tiny_bundle, index_root):
    """A real `lookalike serve` process on loopback."""
    process, base = start_server(
        tiny_bundle, index_root, quiet=True, env={"LOOKALIKE_RELOAD_INTERVAL_S": "0.2", "LOOKALIKE_MAX_WAIT_MS": "10"}
    )
    yield base
    stop_server(process)


@pytest.fixture
def client(tiny_bundle, index_root):
    with TestClient(create_app(Settings(bundle=tiny_bundle, index=index_root, reload_interval_s=0.2))) as test_client:
        yield test_client


@pytest.fixture(params=["in-process", "uvicorn"])
def http(request, client, server):
    """The same calls against both: an httpx-compatible client and a base URL."""
    if request.param == "in-process":
        yield client, ""
        return
    with httpx.Client(timeout=30) as real:
        yield real, server


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_search_finds_the_gallery_image_and_groups_labels(http, gallery):
    c, base = http
    response = c.post(f"{base}/search?k=6", files={"image": ("q.png", png_bytes(gallery / "label3" / "2.png"))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 6
    best = body["results"][0]
    assert best["label"] == "label3" and best["source"].endswith("label3/2.png")
    assert best["score"] == pytest.approx(1.0, abs=1e-4)
    assert body["unknown"] is False
    assert body["face"] is None and body["faces"] is None  # a product bundle: the whole picture, no detector
    labels = [r["label"] for r in body["results"]]
    grouped = {g["label"]: g for g in body["identities"]}
    assert set(grouped) == set(labels)
    assert sum(g["matches"] for g in body["identities"]) == 6
    for label, group in grouped.items():
        assert group["score"] == max(r["score"] for r in body["results"] if r["label"] == label)


def test_verify_and_embed(http, gallery, tiny_bundle):
    c, base = http
    same = c.post(
        f"{base}/verify",
        files={
            "image_a": ("a.png", png_bytes(gallery / "label1" / "0.png")),
            "image_b": ("b.png", png_bytes(gallery / "label1" / "0.png")),
        },
    )
    assert same.status_code == 200 and same.json()["same"] is True
    assert same.json()["face_a"] is None and same.json()["face_b"] is None
    assert same.json()["score"] == pytest.approx(1.0, abs=1e-4)
    other = c.post(
        f"{base}/verify",
        files={
            "image_a": ("a.png", png_bytes(gallery / "label1" / "0.png")),
            "image_b": ("b.png", png_bytes(gallery / "label4" / "3.png")),
        },
    )
    assert other.status_code == 200 and other.json()["score"] < 0.9999
    assert other.json()["same"] == (other.json()["score"] >= other.json()["threshold"])

    embedded = c.post(f"{base}/embed", files={"image": ("e.png", png_bytes(gallery / "label0" / "1.png"))}).json()
    expected = load_bundle(tiny_bundle).embed([open_rgb(gallery / "label0" / "1.png")])[0]
    assert embedded["dimension"] == 16
    np.testing.assert_allclose(embedded["embedding"], expected, atol=1e-5)


def test_health_readiness_metrics(http):
    c, base = http
    assert c.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = c.get(f"{base}/readyz").json()
    assert ready["ready"] is True and ready["index_size"] >= 20
    c.post(f"{base}/search", files={"image": ("x.png", b"")})
    metrics = c.get(f"{base}/metrics").text
    assert "lookalike_requests_total" in metrics and "lookalike_index_size" in metrics
    assert 'endpoint="/search",status="400"' in metrics


def truncated_jpeg(gallery: Path) -> bytes:
    buffer = io.BytesIO()
    open_rgb(gallery / "label0" / "0.png").resize((200, 200)).save(buffer, "JPEG")
    return buffer.getvalue()[:600]


def ico_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "ICO")
    return buffer.getvalue()


BAD_INPUTS = [
    ("missing file", "/search", {}, 422, "invalid_request"),
    ("empty file", "/search", {"image": ("e.png", b"")}, 400, "empty_file"),
    ("not an image", "/search", {"image": ("x.png", b"hello, I am text")}, 400, "not_an_image"),
    ("unsupported format", "/search", {"image": ("x.ico", "ico")}, 415, "unsupported_format"),
    (
        "truncated image",
        "/verify",
        {"image_a": ("t.jpg", "truncated"), "image_b": ("t.jpg", "truncated")},
        400,
        "invalid_image",
    ),
    ("one of two files", "/verify", {"image_a": ("a.png", "good")}, 422, "invalid_request"),
    ("k = 0", "/search?k=0", {"image": ("a.png", "good")}, 422, "invalid_request"),
    ("k too big", "/search?k=100000", {"image": ("a.png", "good")}, 422, "invalid_request"),
    ("k not a number", "/search?k=five", {"image": ("a.png", "good")}, 422, "invalid_request"),
]


@pytest.mark.parametrize(("case", "path", "files", "status", "error"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_clear_4xx(http, gallery, case, path, files, status, error):
    c, base = http
    payloads = {
        "ico": ico_bytes(),
        "truncated": truncated_jpeg(gallery),
        "good": png_bytes(gallery / "label0" / "0.png"),
    }
    files = {k: (name, payloads.get(data, data)) for k, (name, data) in files.items()}
    response = c.post(f"{base}{path}", files=files)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["detail"]


def test_size_limits_in_bytes_and_pixels(tiny_bundle, index_root, gallery):
    settings = Settings(bundle=tiny_bundle, index=index_root, max_upload_bytes=2000, max_pixels=50 * 50)
    with TestClient(create_app(settings)) as c:
        big = c.post("/search", files={"image": ("b.png", os.urandom(5000))})
        assert big.status_code == 413 and big.json()["error"] == "too_large"
        huge_body = c.post("/search", files={"image": ("b.png", os.urandom(50_000))})
        assert huge_body.status_code == 413
        buffer = io.BytesIO()
        Image.new("RGB", (60, 60)).save(buffer, "PNG")  # tiny in bytes, over the pixel limit
        bomb = c.post("/search", files={"image": ("p.png", buffer.getvalue())})
        assert bomb.status_code == 413 and bomb.json()["error"] == "too_many_pixels"


def test_api_key(tiny_bundle, index_root, gallery):
    with TestClient(create_app(Settings(bundle=tiny_bundle, index=index_root, api_key="s3cret"))) as c:
        files = {"image": ("a.png", png_bytes(gallery / "label0" / "0.png"))}
        assert c.post("/search", files=files).status_code == 401
        assert c.post("/search", files=files, headers={"X-API-Key": "wrong"}).json()["error"] == "unauthorized"
        assert c.post("/search", files=files, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_unknown_flag_follows_the_bundle_threshold(client, gallery):
    service = client.app.state.service
    service.encoder.spec = service.encoder.spec.model_copy(update={"threshold": 1.5})  # nothing can match
    body = client.post("/search", files={"image": ("a.png", png_bytes(gallery / "label0" / "0.png"))}).json()
    assert body["unknown"] is True and body["threshold"] == 1.5


async def concurrent_searches(base: str, gallery: Path, count: int) -> list[tuple[str, httpx.Response]]:
    labels = [f"label{n % 5}" for n in range(count)]
    async with httpx.AsyncClient(timeout=60) as c:
        responses = await asyncio.gather(
            *[
                c.post(f"{base}/search?k=1", files={"image": ("q.png", png_bytes(gallery / label / f"{n % 4}.png"))})
                for n, label in enumerate(labels)
            ]
        )
    return list(zip(labels, responses, strict=True))


def batch_histogram(base: str) -> tuple[float, float]:
    text = httpx.get(f"{base}/metrics").text
    values = {
        line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("lookalike_batch")
    }
    return values["lookalike_batch_size_count"], values["lookalike_batch_size_sum"]


def test_many_concurrent_requests_are_answered_correctly_and_batched(server, gallery):
    before_count, before_sum = batch_histogram(server)
    results = asyncio.run(concurrent_searches(server, gallery, 48))
    for label, response in results:
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["label"] == label
    batches, images = (a - b for a, b in zip(batch_histogram(server), (before_count, before_sum), strict=True))
    assert images == 48
    assert batches < 48, "concurrent requests should share forward passes"


def test_rebuild_while_requests_are_in_flight(server, tiny_bundle, index_root, gallery, tmp_path):
    version_before = httpx.get(f"{server}/readyz").json()["index_version"]
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def hammer() -> None:
        nonlocal answered
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                r = c.post(f"{server}/search?k=3", files={"image": ("q.png", png_bytes(gallery / "label2" / "0.png"))})
                if r.status_code != 200 or r.json()["results"][0]["label"] != "label2":
                    failures.append(f"{r.status_code} {r.text[:200]}")
                answered += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        new = tmp_path / "new"
        write_image(new / "label7" / "x.png", (0, 0, 0), seed=7)
        added = add_to_index(tiny_bundle, new, index_root)
        deadline = time.time() + 30
        while httpx.get(f"{server}/readyz").json()["index_version"] != added.directory.name:
            assert time.time() < deadline, "the service did not pick up the new index version"
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert httpx.get(f"{server}/readyz").json()["index_version"] != version_before
    assert answered > 0 and not failures, failures[:3]


def test_one_batch_serves_embeddings_and_searches_in_two_index_versions(tiny_bundle, gallery, tmp_path):
    """Requests that straddle a hot reload share a batch: each search uses its own version and k."""
    encoder = load_bundle(tiny_bundle)
    old = build_index(tiny_bundle, gallery, tmp_path / "index")
    write_image(tmp_path / "new" / "label7" / "x.png", (0, 0, 0), seed=7)
    new = add_to_index(tiny_bundle, tmp_path / "new", tmp_path / "index")
    old = GalleryIndex.open(old.directory)
    query, other = open_rgb(tmp_path / "new" / "label7" / "x.png"), open_rgb(gallery / "label1" / "0.png")
    batches: list[int] = []

    async def together():
        batcher = MicroBatcher(encoder, max_batch=16, max_wait_s=0.5, on_batch=batches.append)
        batcher.start()
        try:
            return await asyncio.gather(
                batcher.search(query, old, 2), batcher.search(query, new, 5), batcher.embed([query, other])
            )
        finally:
            await batcher.stop()

    (old_face,), (new_face,), embedded = asyncio.run(together())
    old_hits, new_hits = old_face.hits, new_face.hits
    assert batches == [4]
    expected = encoder.embed([query, other])
    np.testing.assert_allclose(np.stack([e.vector for e in embedded]), expected, atol=1e-5)
    assert {e.face for e in [old_face, new_face, *embedded]} == {None}  # no face alignment: whole pictures
    assert [h.id for h in old_hits] == [h.id for h in old.search(expected[:1], 2)[0]]
    assert [h.id for h in new_hits] == [h.id for h in new.search(expected[:1], 5)[0]]
    assert (len(old_hits), len(new_hits)) == (2, 5)
    assert new_hits[0].label == "label7" and "label7" not in {h.label for h in old_hits}
