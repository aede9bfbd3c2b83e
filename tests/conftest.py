"""Shared fixtures: the real datasets in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name / "images"
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is missing (../shared/data sits beside the project in CI)")
    return path


@pytest.fixture(scope="session")
def att_faces() -> Path:
    return shared_dataset("att_faces")


def write_image(path: Path, colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (40, 48)) -> Path:
    """A small real PNG/JPEG: a class colour plus per-image noise, so classes embed apart."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, dtype=np.float32) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype("uint8")).save(path)
    return path


COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (200, 200, 40), (200, 40, 200)]


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
    import torch

    from lookalike.bundle import BundleSpec, write_bundle
    from lookalike.images import Preprocessing
    from training.model import EmbeddingModel

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
