"""Fixtures shared by every test package: real data sets, a generated gallery, a tiny real bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lookalike.bundle import BundleSpec, write_bundle
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
