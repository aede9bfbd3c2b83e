"""Test-time flip: a bundle that embeds each picture with its mirror image (and the service that
serves it so), and training that calibrates the bundle's threshold on exactly those embeddings.

Mutations tried (each fails a test here): `Encoder.forward` ignoring `spec.test_time_flip`;
`embed_tensor` flipping the height axis (-2) instead of the width; no re-normalisation of the
sum; the training loop's evaluation without the flip (the bundle's threshold then fits other
embeddings than it serves); the bundle spec written without the config's flag; the default
turned off.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from lookalike.bundle import SPEC_FILE, embed_tensor, load_bundle, read_spec
from lookalike.index.build import build_index
from lookalike.service.app import create_app
from lookalike.service.settings import Settings
from lookalike.training.evaluate import evaluate_bundle
from tests.helpers import run_cli, tiny_run_args


def noise(seed: int, size: tuple[int, int] = (40, 48)) -> Image.Image:
    """An asymmetric picture: left and right halves differ."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_embed_tensor_averages_an_input_and_its_left_right_mirror():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 5, 6))
    inputs = torch.randn(3, 3, 4, 5)
    unit = torch.nn.functional.normalize
    expected = unit(module(inputs) + module(inputs[..., torch.arange(4, -1, -1)]), dim=1)
    torch.testing.assert_close(embed_tensor(module, inputs, flip=True), expected)
    torch.testing.assert_close(embed_tensor(module, inputs), module(inputs))


def test_a_flipping_bundle_embeds_a_picture_and_its_mirror_image_alike(tiny_bundle: Path):
    encoder = load_bundle(tiny_bundle)
    pictures = [noise(seed) for seed in range(3)]
    mirrors = [ImageOps.mirror(picture) for picture in pictures]
    plain = encoder.embed(pictures)
    assert np.abs(plain - encoder.embed(mirrors)).max() > 1e-2  # the network alone tells them apart
    flipped = encoder.with_flip(True).embed(pictures)
    np.testing.assert_allclose(flipped, encoder.with_flip(True).embed(mirrors), atol=1e-5)
    both = plain + encoder.embed(mirrors)
    np.testing.assert_allclose(flipped, both / np.linalg.norm(both, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, atol=1e-5)


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("flip", [False, True])
def test_the_service_verifies_a_picture_against_its_mirror_image_as_its_bundle_says(
    tmp_path: Path, tiny_bundle: Path, gallery: Path, flip: bool
):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    spec = read_spec(bundle).model_copy(update={"test_time_flip": flip})
    (bundle / SPEC_FILE).write_text(spec.model_dump_json())
    build_index(bundle, gallery, tmp_path / "index")
    picture = noise(7)
    with TestClient(create_app(Settings(bundle=bundle, index=tmp_path / "index"))) as client:
        answer = client.post(
            "/verify",
            files={"image_a": ("a.png", png(picture)), "image_b": ("b.png", png(ImageOps.mirror(picture)))},
        )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["score"] > 0.9999) == flip


@pytest.fixture
def split_gallery(gallery: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The generated gallery as a training folder (three labels) and a held-out one (two)."""
    train, held_out = tmp_path / "train", tmp_path / "held_out"
    for n, folder in enumerate(sorted(gallery.iterdir())):
        shutil.copytree(folder, (train if n < 3 else held_out) / folder.name)
    return train, held_out


@pytest.mark.parametrize(("switch", "flip"), [((), True), (("--no-test-time-flip",), False)])
def test_training_exports_a_bundle_calibrated_on_the_embeddings_it_serves(
    tmp_path: Path, split_gallery: tuple[Path, Path], switch: tuple[str, ...], flip: bool
):
    """The flip is the default, and `--no-test-time-flip` turns it off in evaluation and bundle alike."""
    train, held_out = split_gallery
    out = tmp_path / "run"
    args = tiny_run_args(train, out, "--eval-data", str(held_out), "--epochs", "1", "--export", "last")
    result = run_cli(*args, *switch)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_spec(out / "bundle").test_time_flip is flip
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    served = evaluate_bundle(out / "bundle", held_out)["retrieval"]
    assert served["verify_threshold"] == pytest.approx(last["verify_threshold"], abs=1e-4)
    assert served["map@r"] == pytest.approx(last["map@r"], abs=1e-4)
    assert read_spec(out / "bundle").threshold == pytest.approx(last["verify_threshold"])
    # ... and the other way of embedding gives other embeddings: the calibration is specific to it
    encoder = load_bundle(out / "bundle")
    pictures = [Image.open(p).convert("RGB") for folder in sorted(held_out.iterdir()) for p in sorted(folder.iterdir())]
    assert np.abs(encoder.with_flip(not flip).embed(pictures) - encoder.embed(pictures)).max() > 1e-3
