"""Fixtures shared by every test package: real data sets, a generated gallery, a tiny real bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lookalike.bundle import BundleSpec, write_bundle
from lookalike.faces import FaceAlignment
from lookalike.images import Preprocessing
from lookalike.training import EmbeddingModel
from tests.helpers import COLOURS, shared_dataset, write_image


@pytest.fixture(scope="session")
def att_faces() -> Path:
    return shared_dataset("att_faces")


@pytest.fixture(scope="session")
def gallery(tmp_path_factory) -> Path:
    """Five labels x four generated images, class-per-folder."""
    root = tmp_path_factory.mktemp("gallery")
    for label, colour in enumerate(COLOURS):
        for n in range(4):
            write_image(root / f"label{label}" / f"{n}.png", colour, seed=label * 10 + n)
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """An untrained tiny timm model exported as a real bundle (export takes a few seconds)."""
    torch.manual_seed(0)
    model = EmbeddingModel("test_resnet", embedding_size=16)
    spec = BundleSpec(
        backbone="test_resnet",
        embedding_size=16,
        threshold=0.9,
        preprocessing=Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    )
    out = tmp_path_factory.mktemp("bundle")
    write_bundle(out, model, spec)
    return out


@pytest.fixture(scope="session")
def lfw() -> Path:
    return shared_dataset("lfw")


@pytest.fixture(scope="session")
def face_bundles(tmp_path_factory) -> dict[str, Path]:
    """One untrained resnet10t at 64 px exported twice: "aligned" detects (MTCNN) and aligns
    faces, "centre" takes the central crop as product bundles do."""
    torch.manual_seed(0)
    model = EmbeddingModel("resnet10t", embedding_size=32)
    out = tmp_path_factory.mktemp("face_bundles")
    for name, face in (("aligned", FaceAlignment()), ("centre", None)):
        spec = BundleSpec(
            backbone="resnet10t",
            embedding_size=32,
            threshold=0.9,
            preprocessing=Preprocessing(image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, face=face),
        )
        write_bundle(out / name, model, spec)
    return {"aligned": out / "aligned", "centre": out / "centre"}


@pytest.fixture(scope="session")
def face_bundle(face_bundles) -> Path:
    return face_bundles["aligned"]
