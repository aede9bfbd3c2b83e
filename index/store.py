"""`GalleryIndex`: one version of a gallery index, loaded for searching or being written."""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel, Field, ValidationError

from lookalike.bundle import file_sha256
from lookalike.errors import LookalikeError
from lookalike.index.kinds import IndexKind, create_kind, to_search_device
from lookalike.index.metadata import Entry, MetadataStore
from lookalike.index.versions import VERSIONS

INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.sqlite"
MANIFEST_FILE = "manifest.json"


class IndexMismatchError(LookalikeError, ValueError):
    """The index was built with another encoder than the one it is being used with."""


class IndexFormatError(LookalikeError, FileNotFoundError):
    """A directory that should hold an index version does not."""


class IndexCorruptError(LookalikeError, ValueError):
    """A version's files are not what was written (bytes changed, truncated, unreadable)."""


class IndexManifest(BaseModel):
    format_version: int = 1
    kind: str
    embedding_size: int
    bundle_hash: str
    count: int
    labels: int
    created: float
    source: str = ""
    skipped_images: int = 0
    faceless_images: int = Field(0, description="gallery images left out because a face bundle found no face in them")
    next_id: int = Field(0, description="the next id this index root hands out: ids are never reused")
    files: dict[str, str] = Field(
        default_factory=dict, description="sha256 of each data file, checked on load (empty before 0.2)"
    )


def read_manifest(directory: Path, bundle_hash: str | None = None) -> IndexManifest:
    """A version's manifest alone (cheap: no vectors are read), refused if it was built with another
    bundle than `bundle_hash`."""
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise IndexFormatError(f"{directory} is not an index version: {MANIFEST_FILE} is missing")
    try:
        manifest = IndexManifest.model_validate_json(manifest_path.read_text())
    except ValidationError as err:
        raise IndexCorruptError(f"{manifest_path} is not a valid index manifest: {err}") from None
    if bundle_hash is not None and manifest.bundle_hash != bundle_hash:
        raise IndexMismatchError(
            f"index {directory} was built with bundle {manifest.bundle_hash[:12]}, not with the bundle in use "
            f"({bundle_hash[:12]}): its vectors are not comparable; rebuild it with 'lookalike index build'"
        )
    return manifest


def next_free_id(root: Path) -> int:
    """An id above every id handed out at `root`, read from the manifests of the versions on disk
    (so that a rebuild works even when the current version is the corrupted one)."""
    free = 0
    for manifest_path in (root / VERSIONS).glob(f"*/{MANIFEST_FILE}"):
        try:
            manifest = read_manifest(manifest_path.parent)
            issued = manifest.next_id or MetadataStore(manifest_path.parent / METADATA_FILE).max_id() + 1  # 0.1.0
        except (LookalikeError, OSError, sqlite3.Error):
            continue
        free = max(free, issued)
    return free


@dataclass(frozen=True)
class Hit:
    id: int
    label: str
    score: float
    path: str
    metadata: dict | None


class GalleryIndex:
    def __init__(
        self, directory: Path, index: faiss.Index, metadata: MetadataStore, manifest: IndexManifest, kind: IndexKind
    ) -> None:
        self.directory = directory
        self.index = index
        self.metadata = metadata
        self.manifest = manifest
        self.kind = kind

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def create(
        cls,
        directory: Path,
        kind: str,
        vectors: np.ndarray,
        entries: list[Entry],
        bundle_hash: str,
        source: str = "",
        skipped_images: int = 0,
        faceless_images: int = 0,
    ) -> GalleryIndex:
        """Write a new index version into the (empty) `directory`."""
        if len(vectors) == 0:
            raise LookalikeError("the gallery has no readable images: nothing to index")
        index_kind = create_kind(kind)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = index_kind.create(vectors.shape[1], vectors)
        index.add_with_ids(vectors, np.array([e.id for e in entries], dtype=np.int64))
        metadata = MetadataStore(directory / METADATA_FILE)
        metadata.add(entries)
        manifest = IndexManifest(
            kind=kind,
            embedding_size=vectors.shape[1],
            bundle_hash=bundle_hash,
            count=len(entries),
            labels=len({e.label for e in entries}),
            created=time.time(),
            source=source,
            skipped_images=skipped_images,
            faceless_images=faceless_images,
        )
        gallery = cls(directory, index, metadata, manifest, index_kind)
        gallery.save()
        return gallery

    @classmethod
    def open(cls, directory: Path, bundle_hash: str | None = None, on_device: bool = False) -> GalleryIndex:
        """Load a version; refuse it if it was built with another bundle than `bundle_hash`, or if its
        files are not the ones its manifest describes."""
        manifest = read_manifest(directory, bundle_hash)
        for name, digest in manifest.files.items():
            if not (directory / name).is_file() or file_sha256(directory / name) != digest:
                raise IndexCorruptError(
                    f"{directory / name} does not match the content hash in its manifest: the version is corrupted; "
                    "rebuild it with 'lookalike index build' (or point current at an older version)"
                )
        kind = create_kind(manifest.kind)
        try:
            index = faiss.read_index(str(directory / INDEX_FILE))
        except RuntimeError as err:  # FAISS's own word for a file it cannot parse
            raise IndexCorruptError(f"{directory / INDEX_FILE} cannot be read: {err}") from None
        kind.configure(index)
        if on_device:
            index = to_search_device(index, kind)
        return cls(directory, index, MetadataStore(directory / METADATA_FILE), manifest, kind)

    def copy_to(self, directory: Path) -> GalleryIndex:
        """The same version, copied into `directory`, for copy-on-write add/remove."""
        for name in (INDEX_FILE, METADATA_FILE, MANIFEST_FILE):
            shutil.copy2(self.directory / name, directory / name)
        return GalleryIndex.open(directory)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, max(self.size, 1)))
        entries = self.metadata.get(i for i in ids.ravel() if i >= 0)
        return [
            [
                Hit(int(i), entries[i].label, float(s), entries[i].path, entries[i].metadata)
                for s, i in zip(row_scores, row_ids, strict=True)
                if i in entries
            ]
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def add(self, vectors: np.ndarray, entries: list[Entry]) -> None:
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.array([e.id for e in entries], dtype=np.int64)
        )
        self.metadata.add(entries)

    def remove(self, ids: list[int]) -> None:
        id_array = np.array(ids, dtype=np.int64)
        try:
            self.index.remove_ids(id_array)
        except RuntimeError:  # HNSW graphs cannot drop nodes: rebuild from the vectors that stay
            keep = np.setdiff1d(faiss.vector_to_array(self.index.id_map), id_array)
            vectors = np.stack([self.index.reconstruct(int(i)) for i in keep])
            self.index = self.kind.create(self.manifest.embedding_size, vectors)
            self.index.add_with_ids(vectors, keep)
        self.metadata.remove(ids)

    def next_id(self) -> int:
        """The first id of the next entries: above every id this root has handed out, removed ones too."""
        return max(self.manifest.next_id, self.metadata.max_id() + 1)

    def save(self) -> None:
        faiss.write_index(self.index, str(self.directory / INDEX_FILE))
        self.manifest = self.manifest.model_copy(
            update={
                "count": self.size,
                "labels": self.metadata.label_count(),
                "next_id": self.next_id(),
                "files": {name: file_sha256(self.directory / name) for name in (INDEX_FILE, METADATA_FILE)},
            }
        )
        (self.directory / MANIFEST_FILE).write_text(self.manifest.model_dump_json(indent=2))

    def verify(self) -> None:
        """Consistency check run before a version is published."""
        if self.size != self.metadata.count():
            raise RuntimeError(f"index holds {self.size} vectors but metadata {self.metadata.count()} entries")
        probe = np.full((1, self.manifest.embedding_size), self.manifest.embedding_size**-0.5, dtype=np.float32)
        if self.size and not self.search(probe, 1)[0]:
            raise RuntimeError("index search returned no result from a non-empty index")
