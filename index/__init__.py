"""Gallery index: FAISS vectors + SQLite metadata, versioned and switched atomically.

- `kinds`: named FAISS index types (flat, hnsw, ivfpq), GPU when FAISS has one.
- `metadata`: the SQLite table of labels, source paths and extra JSON beside the vectors.
- `store`: `GalleryIndex`, one immutable version on disk (vectors + metadata + manifest).
- `versions`: the `current` pointer and the atomic switch that publishes a new version.
- `lock`: one writer at a time per index root (build, add and remove queue up).
- `gallery`: reading a gallery folder or CSV and embedding it with a bundle.
- `build`: build / add / remove, each publishing a new version.
- `cli`: `lookalike index build|add|remove|info`.

The names below are the stage's public surface: the service and the other stages import
these, never the modules behind them.
"""

from lookalike.index.build import add_to_index, build_index, remove_from_index
from lookalike.index.gallery import EmbeddedGallery, GalleryError, GalleryItem, embed_items, read_gallery
from lookalike.index.kinds import INDEX_KINDS, IndexKind, create_kind
from lookalike.index.lock import IndexBusyError, writer_lock
from lookalike.index.metadata import Entry
from lookalike.index.store import (
    GalleryIndex,
    Hit,
    IndexCorruptError,
    IndexFormatError,
    IndexManifest,
    IndexMismatchError,
)
from lookalike.index.versions import NoIndexError, current_version, publish, staged_version

__all__ = [
    "INDEX_KINDS",
    "EmbeddedGallery",
    "Entry",
    "GalleryError",
    "GalleryIndex",
    "GalleryItem",
    "Hit",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexFormatError",
    "IndexKind",
    "IndexManifest",
    "IndexMismatchError",
    "NoIndexError",
    "add_to_index",
    "build_index",
    "create_kind",
    "current_version",
    "embed_items",
    "publish",
    "read_gallery",
    "remove_from_index",
    "staged_version",
    "writer_lock",
]
