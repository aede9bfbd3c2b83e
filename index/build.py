"""Build, add to and remove from an index; every change is published as a new version."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lookalike.bundle import load_bundle
from lookalike.errors import LookalikeError
from lookalike.index.gallery import embed_items, read_gallery
from lookalike.index.metadata import Entry
from lookalike.index.store import GalleryIndex
from lookalike.index.versions import current_version, publish, staged_version

log = logging.getLogger(__name__)


def build_index(bundle: Path, gallery: Path, root: Path, kind: str = "flat", batch_size: int = 64) -> GalleryIndex:
    """Embed the whole gallery into a fresh version and publish it; the old one serves until then."""
    encoder = load_bundle(bundle, batch_size=batch_size)
    items = read_gallery(gallery)
    started = time.perf_counter()
    vectors, kept, skipped = embed_items(encoder, items, batch_size)
    now = time.time()
    entries = [Entry(i, item.label, str(item.path), now, item.metadata) for i, item in enumerate(kept)]
    with staged_version(root) as staging:
        built = GalleryIndex.create(staging, kind, vectors, entries, encoder.spec.content_hash, str(gallery), skipped)
        built.verify()
        publish(root, staging)
    log.info(
        "published %s index of %d images (%d labels, %d skipped) at %s in %.1fs",
        kind,
        built.size,
        built.manifest.labels,
        skipped,
        staging,
        time.perf_counter() - started,
    )
    return built


def add_to_index(bundle: Path, gallery: Path, root: Path, batch_size: int = 64) -> GalleryIndex:
    """Embed more images and publish the current version plus them (copy-on-write)."""
    encoder = load_bundle(bundle, batch_size=batch_size)
    live = GalleryIndex.open(current_version(root), encoder.spec.content_hash)
    vectors, kept, skipped = embed_items(encoder, read_gallery(gallery), batch_size)
    first, now = live.next_id(), time.time()
    entries = [Entry(first + n, item.label, str(item.path), now, item.metadata) for n, item in enumerate(kept)]
    with staged_version(root) as staging:
        updated = live.copy_to(staging)
        updated.add(vectors, entries)
        updated.save()
        updated.verify()
        publish(root, staging)
    log.info("added %d images (%d skipped); index now holds %d", len(entries), skipped, updated.size)
    return updated


def remove_from_index(
    root: Path, ids: list[int] | None = None, labels: list[str] | None = None
) -> tuple[GalleryIndex, int]:
    """Publish the current version without the given ids and/or every image of the given labels."""
    live = GalleryIndex.open(current_version(root))
    doomed = set(live.metadata.existing(ids or [])) | set(live.metadata.ids_with_labels(labels or []))
    if not doomed:
        raise LookalikeError("nothing to remove: no entry has the given ids or labels")
    with staged_version(root) as staging:
        updated = live.copy_to(staging)
        updated.remove(sorted(doomed))
        updated.save()
        updated.verify()
        publish(root, staging)
    log.info("removed %d entries; index now holds %d", len(doomed), updated.size)
    return updated, len(doomed)
