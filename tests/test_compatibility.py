"""Bundles and indexes written by Lookalike 0.1.0, before the single namespace, still load and serve.

`tests/data/legacy-0.1.0` was written by that release's own code (its `torch.export` program still
names `training.model.EmbeddingModel` in its metadata): a tiny bundle, a 6-image gallery, the
index built from it, and the embeddings that release computed for the gallery.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
from fastapi.testclient import TestClient

from lookalike.bundle import load_bundle
from lookalike.images import open_rgb
from lookalike.index import GalleryIndex, add_to_index, current_version
from lookalike.service import Settings, create_app
from tests.helpers import LEGACY


def test_a_legacy_bundle_embeds_as_it_did():
    expected = json.loads((LEGACY / "expected.json").read_text())
    images = [open_rgb(LEGACY / name) for name in expected["images"]]
    # 1e-4: resampling only the square that is kept (bounded work on thin pictures) rounds an odd
    # pixel one grey level off; any real change of preprocessing or weights moves far more
    np.testing.assert_allclose(load_bundle(LEGACY / "bundle").embed(images), expected["embeddings"], atol=1e-4)


def test_a_legacy_index_opens_searches_and_takes_additions(tmp_path):
    encoder = load_bundle(LEGACY / "bundle")
    index = GalleryIndex.open(current_version(LEGACY / "index"), encoder.spec.content_hash)
    query = encoder.embed([open_rgb(LEGACY / "gallery" / "label1" / "0.png")])
    assert index.size == 6 and index.search(query, 1)[0][0].label == "label1"
    root = tmp_path / "index"
    shutil.copytree(LEGACY / "index", root, symlinks=True)
    grown = add_to_index(LEGACY / "bundle", LEGACY / "gallery", root)
    assert grown.size == 12 and sorted(e.id for e in grown.metadata.get(range(12)).values()) == list(range(12))


def test_the_service_serves_a_legacy_bundle_and_index(tmp_path):
    settings = Settings(bundle=LEGACY / "bundle", index=LEGACY / "index")
    with TestClient(create_app(settings)) as client:
        image = (LEGACY / "gallery" / "label2" / "1.png").read_bytes()
        answer = client.post("/search?k=1", files={"image": ("q.png", image, "image/png")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["label"] == "label2"
