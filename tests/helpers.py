"""What several test modules share: real data sets, generated images, running the real CLI.

Imported as `tests.helpers` (never from `conftest`, which pytest loads on its own terms).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LEGACY = Path(__file__).resolve().parent / "data" / "legacy-0.1.0"
"""A bundle, an index and their gallery written by Lookalike 0.1.0 (before the single namespace)."""

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (200, 200, 40), (200, 40, 200)]


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name / "images"
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is missing (../shared/data sits beside the project in CI)")
    return path


def write_image(path: Path, colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (40, 48)) -> Path:
    """A small real PNG/JPEG: a class colour plus per-image noise, so classes embed apart."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, dtype=np.float32) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype("uint8")).save(path)
    return path


def run_cli(*args: str, timeout: float = 300, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    """`python -m lookalike.cli ARGS` in a subprocess, as a user would type `lookalike ARGS`."""
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def tiny_train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`lookalike train` arguments for a seconds-long run: the tiny timm test model at 32 px."""
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--backbone",
        "test_resnet",
        "--image-size",
        "32",
        "--workers",
        "0",
        *extra,
    ]


def tiny_run_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`tiny_train_args` with 16-d embeddings, P 2 x K 2 batches and half the classes held out."""
    return tiny_train_args(
        data,
        out,
        "--embedding-size",
        "16",
        "--classes-per-batch",
        "2",
        "--samples-per-class",
        "2",
        "--train-fraction",
        "0.5",
        *extra,
    )


def run_torchrun(*args: str, port: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m lookalike.cli ARGS`: two Gloo processes on the CPU, one thread each."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
    return subprocess.run(
        [*torchrun, "-m", "lookalike.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def place(image: Image.Image, canvas: tuple[int, int], scale: float, angle: float, at: tuple[int, int]) -> Image.Image:
    """`image` scaled, rotated by `angle` degrees (counter-clockwise) and pasted with its top-left
    corner at `at` on a mid-grey `canvas`: a photo in which the face is somewhere, tilted."""
    size = (round(image.width * scale), round(image.height * scale))
    moved = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    mask = Image.new("L", size, 255).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    out = Image.new("RGB", canvas, (128, 128, 128))
    out.paste(moved.rotate(angle, Image.Resampling.BICUBIC, expand=True), at, mask)
    return out
