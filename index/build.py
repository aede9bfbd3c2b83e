"""Build, add to and remove from an index; every change is published as a new version.

Each writer embeds its images first (the slow part, no lock needed), then holds the root's
writer lock from reading the live version to publishing the new one: concurrent writers queue
up instead of overwriting each other, and each hands out ids above every id already issued.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lookalike.bundle import load_bundle
from lookalike.errors import LookalikeError
from lookalike.index.gallery import GalleryItem, embed_items, read_gallery
from lookalike.index.lock import DEFAULT_TIMEOUT_S, writer_lock
from lookalike.index.metadata import Entry
from lookalike.index.store import GalleryIndex, next_free_id, read_manifest
from lookalike.index.versions import current_version, publish, staged_version

log = logging.getLogger(__name__)


def entries_from(items: list[GalleryItem], first_id: int) -> list[Entry]:
    now = time.time()
    return [Entry(first_id + n, item.label, str(item.path), now, item.metadata) for n, item in enumerate(items)]


def build_index(
    bundle: Path,
    gallery: Path,
    root: Path,
    kind: str = "flat",
    batch_size: int = 64,
    lock_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> GalleryIndex:
    """Embed the whole gallery into a fresh version and publish it; the old one serves until then."""
    encoder = load_bundle(bundle, batch_size=batch_size)
    started = time.perf_counter()
    embedded = embed_items(encoder, read_gallery(gallery), batch_size)
    root.mkdir(parents=True, exist_ok=True)
    with writer_lock(root, lock_timeout_s), staged_version(root) as staging:
        entries = entries_from(embedded.items, next_free_id(root))  # a rebuild keeps counting: ids are never reused
        built = GalleryIndex.create(
            staging,
            kind,
            embedded.vectors,
            entries,
            encoder.spec.content_hash,
            str(gallery),
            embedded.unreadable,
            embedded.faceless,
        )
        built.verify()
        publish(root, staging)
    log.info(
        "published %s index of %d images (%d labels, %d unreadable and %d without a face skipped) at %s in %.1fs",
        kind,
        built.size,
        built.manifest.labels,
        embedded.unreadable,
        embedded.faceless,
        staging,
        time.perf_counter() - started,
    )
    return built


def add_to_index(
    bundle: Path, gallery: Path, root: Path, batch_size: int = 64, lock_timeout_s: float = DEFAULT_TIMEOUT_S
) -> GalleryIndex:
    """Embed more images and publish the current version plus them (copy-on-write)."""
    encoder = load_bundle(bundle, batch_size=batch_size)
    read_manifest(current_version(root), encoder.spec.content_hash)  # refuse another bundle before embedding
    embedded = embed_items(encoder, read_gallery(gallery), batch_size)
    with writer_lock(root, lock_timeout_s), staged_version(root) as staging:
        live = GalleryIndex.open(current_version(root), encoder.spec.content_hash)
        updated = live.copy_to(staging)
        updated.add(embedded.vectors, entries_from(embedded.items, live.next_id()))
        updated.save()
        updated.verify()
        publish(root, staging)
    log.info(
        "added %d images (%d unreadable and %d without a face skipped); index now holds %d",
        len(embedded.items),
        embedded.unreadable,
        embedded.faceless,
        updated.size,
    )
    return updated


def remove_from_index(
    root: Path, ids: list[int] | None = None, labels: list[str] | None = None, lock_timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[GalleryIndex, int]:
    """Publish the current version without the given ids and/or every image of the given labels."""
    current_version(root)  # a root with no index is refused before anything is written into it
    with writer_lock(root, lock_timeout_s):
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
