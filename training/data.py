"""Image-folder datasets, class-disjoint splits and the training/evaluation transforms.

Deep metric learning evaluates on classes never seen in training, so splits are by class:
`sorted` keeps the first fraction of the naturally sorted class names for training (AT&T s1-s30,
Cars196 classes 1-98), `hash` assigns each class by a stable hash of its name (LFW, whose
identities have no meaningful order).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from lookalike.errors import LookalikeError
from lookalike.faces import Face
from lookalike.images import Preprocessing, central_crop, frame, is_image_file, open_rgb, preprocess, to_square

log = logging.getLogger(__name__)


class DataError(LookalikeError, ValueError):
    """The data folder cannot be used for training or evaluation; the message says why."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


def natural_key(name: str) -> list:
    """Sort "s2" before "s10" (and "001_x" before "099_y"), as a person would."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def scan_folder(root: str | Path) -> dict[str, list[Path]]:
    """Class name -> image paths, for a folder with one sub-folder per class."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    classes = {}
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        images = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
        if images:
            classes[folder.name] = images
    if not classes:
        raise DataError(f"{root} holds no class sub-folders with images (expected {root}/<class>/<image>.jpg)")
    return classes


def split_classes(names: list[str], train_fraction: float, rule: str) -> tuple[list[str], list[str]]:
    """Class-disjoint (train, held-out) split of class names by a deterministic rule."""
    if rule == "sorted":
        cut = round(len(names) * train_fraction)
        return names[:cut], names[cut:]
    if rule == "hash":

        def bucket(name: str) -> float:
            return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

        return [n for n in names if bucket(n) < train_fraction], [n for n in names if bucket(n) >= train_fraction]
    raise DataError(f"unknown split rule {rule!r}; choose 'sorted' or 'hash'")


class ImageDataset(Dataset):
    """(image tensor, label) pairs; an unreadable image yields None and is dropped by `collate`.

    `prepare(path)` is the deterministic part (decode, crop, shrink); `augment` the random part
    applied on every access. With `cache`, every image is prepared once up front and kept in
    memory: small data sets then train at the model's speed instead of the JPEG decoder's.
    """

    def __init__(
        self,
        classes: dict[str, list[Path]],
        prepare: Callable[[Path], Any],
        augment: Callable[[Any], torch.Tensor] | None = None,
        cache: bool = False,
    ) -> None:
        self.samples = [Sample(path, label) for label, files in enumerate(classes.values()) for path in files]
        self.prepare, self.augment = prepare, augment
        self.cached: list | None = None
        if cache:
            with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:  # decoders release the GIL
                loads = pool.map(self._prepared, range(len(self.samples)))
                self.cached = list(tqdm(loads, total=len(self.samples), desc="caching images", leave=False))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def _prepared(self, index: int):
        sample = self.samples[index]
        try:
            return self.prepare(sample.path)
        except (OSError, ValueError) as err:
            log.warning("skipping unreadable image %s: %s", sample.path, err)
            return None

    def __getitem__(self, index: int):
        item = self.cached[index] if self.cached is not None else self._prepared(index)
        if item is None:
            return None
        return (self.augment(item) if self.augment else item), self.samples[index].label


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack the readable items; also return how many were skipped, so the loop can count them."""
    good = [item for item in batch if item is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), len(batch)
    images, labels = zip(*good, strict=True)
    return torch.stack(images), torch.tensor(labels), len(batch) - len(good)


def train_prepare(spec: Preprocessing, faces: Mapping[Path, Face] | None = None) -> Callable[[Path], Image.Image]:
    """Decode, frame and shrink to twice the training size: augmentation never needs more pixels
    than that, and a 4000 px product photo then costs what a small one does. A face spec cuts
    the aligned face (from `faces`, the detections of every image); otherwise the central crop,
    where "center" keeps the aspect (random crops may wander off-centre) and "squash" squares
    the whole picture, as evaluation does."""

    def prepare(path: Path) -> Image.Image:
        keep = 2 * spec.image_size
        if spec.face is not None:
            return frame(open_rgb(path), spec, faces[path], keep)
        with Image.open(path) as image:
            image.draft("RGB", _fit(image, math.ceil(keep / spec.crop_fraction)))  # JPEG: decode at 1/2..1/8 scale
            image = central_crop(open_rgb(image), spec.crop_fraction)
        if spec.crop_mode == "squash":
            return to_square(image, keep, "squash")
        image.thumbnail(_fit(image, keep))
        return image

    return prepare


def _fit(image: Image.Image, short_side: int) -> tuple[int, int]:
    """The size with the shorter side at `short_side` and the same aspect (a bound for `thumbnail`)."""
    scale = short_side / min(image.size)
    return round(image.width * scale), round(image.height * scale)


def train_augment(spec: Preprocessing, min_scale: float = 0.5) -> v2.Compose:
    """Random resized crop, flip and colour jitter on top of the evaluation geometry.

    `min_scale` bounds how much of the image a crop may drop: aligned faces lose their alignment
    (the very thing evaluation relies on) under strong crops, product photos gain from them.
    """
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(spec.image_size, scale=(min_scale, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.3, 0.3, 0.3, 0.05),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(spec.mean, spec.std),
        ]
    )


def eval_prepare(spec: Preprocessing, faces: Mapping[Path, Face] | None = None) -> Callable[[Path], torch.Tensor]:
    """Exactly the bundle's preprocessing, so evaluation measures what the service will serve."""
    return lambda path: torch.from_numpy(preprocess(open_rgb(path), spec, faces[path] if faces else None))


def scan_unlabelled(root: str | Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """(loose images at the top of `root`, class name -> image paths of its sub-folders).

    Self-supervised training takes a flat folder, class folders (labels unused) or both.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    loose = sorted(p for p in root.iterdir() if p.is_file() and is_image_file(p))
    try:
        return loose, scan_folder(root)
    except DataError:  # no class folder holds images
        if not loose:
            raise DataError(
                f"{root} holds no images (expected {root}/<image>.jpg or {root}/<class>/<image>.jpg)"
            ) from None
        return loose, {}
