"""What goes into an index: gallery items read from a folder or a CSV, embedded in batches."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lookalike.bundle import Encoder
from lookalike.errors import LookalikeError
from lookalike.images import is_image_file, open_rgb

log = logging.getLogger(__name__)


class GalleryError(LookalikeError, ValueError):
    """The gallery source cannot be read; the message says why."""


@dataclass(frozen=True)
class GalleryItem:
    path: Path
    label: str
    metadata: dict | None = None


def read_gallery(source: str | Path) -> list[GalleryItem]:
    """A folder with one sub-folder per identity/product, or a CSV `path,label[,extra...]`
    (paths relative to the CSV's folder; extra columns become the item's metadata)."""
    source = Path(source)
    if source.is_dir():
        items = [
            GalleryItem(p, folder.name)
            for folder in sorted(source.iterdir())
            if folder.is_dir()
            for p in sorted(folder.iterdir())
            if p.is_file() and is_image_file(p)
        ]
    elif source.is_file() and source.suffix.lower() == ".csv":
        items = read_manifest(source)
    else:
        raise GalleryError(f"gallery {source} is neither a folder nor a .csv manifest")
    if not items:
        raise GalleryError(f"gallery {source} lists no images (expected {source}/<label>/<image>.jpg or a CSV)")
    return items


def read_manifest(path: Path) -> list[GalleryItem]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise GalleryError(f"{path}: the first row must name at least the columns 'path' and 'label'")
        items = []
        for row in reader:
            extra = {k: v for k, v in row.items() if k not in ("path", "label") and v not in (None, "")}
            items.append(GalleryItem(path.parent / row["path"], row["label"], extra or None))
    return items


@dataclass(frozen=True)
class EmbeddedGallery:
    vectors: np.ndarray  # [len(items), D]
    items: list[GalleryItem]  # those embedded; a face bundle's carry their face in metadata["face"]
    unreadable: int  # images that could not be decoded
    faceless: int  # images in which a face bundle's detector found no face


def embed_items(encoder: Encoder, items: list[GalleryItem], batch_size: int = 64) -> EmbeddedGallery:
    """Embed readable items in batches (for a face bundle: each image's largest face, its box kept
    in the item's metadata); unreadable and faceless images are logged, counted and left out."""
    vectors, kept, unreadable, faceless = [], [], 0, 0
    progress = tqdm(total=len(items), desc="embedding gallery", unit="img")
    for start in range(0, len(items), batch_size):
        images, batch_items = [], []
        for item in items[start : start + batch_size]:
            try:
                images.append(open_rgb(item.path))
                batch_items.append(item)
            except (OSError, ValueError) as err:
                log.warning("skipping unreadable gallery image %s: %s", item.path, err)
                unreadable += 1
        if encoder.aligns_faces and images:
            found = encoder.find_faces(images)
            for item in (item for item, faces in zip(batch_items, found, strict=True) if not faces):
                log.warning("skipping gallery image %s: no face found", item.path)
            faceless += sum(not faces for faces in found)
            images = [image for image, faces in zip(images, found, strict=True) if faces]
            batch_items = [
                replace(item, metadata={**(item.metadata or {}), "face": faces[0].to_dict()})
                for item, faces in zip(batch_items, found, strict=True)
                if faces
            ]
            faces = [faces[0] for faces in found if faces]
        else:
            faces = [None] * len(images)
        if images:
            vectors.append(
                encoder.forward(np.stack([encoder.preprocess(im, f) for im, f in zip(images, faces, strict=True)]))
            )
            kept.extend(batch_items)
        progress.update(min(batch_size, len(items) - start))
    progress.close()
    if not kept:
        raise GalleryError(
            "no gallery image could be read" + (f" ({faceless} had no face)" if faceless else "") + ": nothing to index"
        )
    if faceless:
        log.warning("%d of %d gallery images had no face and were left out", faceless, len(items))
    return EmbeddedGallery(np.concatenate(vectors), kept, unreadable, faceless)
