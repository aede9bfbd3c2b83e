"""Face detectors side by side on real photos: how many faces they find and what an image costs.

    python -m bench.faces [--images 300] [--batch 1 32] [--json]

Our registered detectors (MTCNN, with five landmarks) against dlib's HOG frontal-face detector,
the one `dlib-bin` ships built in (`pip install dlib-bin` to include it; its five-point landmarks
need the separate ~100 MB shape-predictor download, so it cannot align on its own). Each runs on
the same seeded sample of LFW (250 px news photos) and AT&T (92 x 112 grey portraits), images
decoded once beforehand: the time is the detector's alone. "found" counts images with at least
one face; every image of both sets shows one.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.table import print_rows
from lookalike.faces import DETECTORS, create_detector
from lookalike.images import open_rgb

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {"lfw": SHARED / "lfw" / "images", "att": SHARED / "att_faces" / "images"}
Counter = Callable[[list[Image.Image]], list[int]]
"""A detector as the benchmark sees it: pictures in, the number of faces in each out."""


def sample(folder: Path, n: int, seed: int = 0) -> list[Image.Image]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".png", ".pgm"})
    return [open_rgb(p) for p in random.Random(seed).sample(paths, min(n, len(paths)))]


def ours(name: str) -> Counter:
    detector = create_detector(name)
    return lambda images: [len(faces) for faces in detector.detect(images)]


def dlib_hog() -> Counter | None:
    try:
        import dlib
    except ImportError:
        return None
    detector = dlib.get_frontal_face_detector()
    # upsample once: AT&T's faces are ~60 px, below HOG's 80 px window
    return lambda images: [len(detector(np.asarray(image), 1)) for image in images]


def measure(count: Counter, images: list[Image.Image], batch: int) -> tuple[int, int, float]:
    """(images with a face, images with two or more, ms per image) over `images` in chunks of `batch`."""
    count(images[:batch])  # warm-up: first-call allocation, lazy weights
    found, start = [], time.perf_counter()
    for n in range(0, len(images), batch):
        found.extend(count(images[n : n + batch]))
    elapsed = time.perf_counter() - start
    return sum(f > 0 for f in found), sum(f > 1 for f in found), 1000 * elapsed / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300, help="images sampled from each dataset")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    missing = [str(p) for p in DATASETS.values() if not p.is_dir()]
    if missing:
        raise SystemExit(f"error: real photos needed: {', '.join(missing)} missing (../shared/data beside the project)")
    detectors: dict[str, Counter] = {name: ours(name) for name in DETECTORS.names()}
    if (hog := dlib_hog()) is not None:
        detectors["dlib_hog (peer)"] = hog
    else:
        print("dlib_hog (peer) left out: dlib is not installed (pip install dlib-bin)")
    rows = []
    for dataset, folder in DATASETS.items():
        images = sample(folder, args.images)
        for name, count in detectors.items():
            for batch in args.batch if not name.startswith("dlib") else [1]:  # dlib takes one picture at a time
                found, several, ms = measure(count, images, batch)
                rows.append(
                    {
                        "dataset": dataset,
                        "detector": name,
                        "batch": batch,
                        "found": f"{found}/{len(images)}",
                        "two_or_more": several,
                        "ms_per_image": ms,
                    }
                )
    device = "cuda" if torch.cuda.is_available() else f"{os.cpu_count()} CPU(s), {torch.get_num_threads()} threads"
    print_rows(rows, args.json, f"face detection on {args.images} photos per dataset, {device}")


if __name__ == "__main__":
    main()
