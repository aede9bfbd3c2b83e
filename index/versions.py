"""Versioned index directories and the one-rename switch that publishes a new version.

    <root>/versions/<version>/   one complete, immutable index (vectors, metadata, manifest)
    <root>/current -> versions/<version>

A build writes into a fresh version directory; only once that version has been verified is
`current` replaced, by renaming a new symlink over it (atomic on POSIX). Readers that resolve
`current` see either the old version or the new one, never a half-written one, and a build that
fails or is interrupted leaves `current` where it was (its staging directory is removed).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.errors import LookalikeError

CURRENT = "current"
VERSIONS = "versions"
KEEP_VERSIONS = 3


class NoIndexError(LookalikeError, FileNotFoundError):
    """The index root has no published version."""


def current_version(root: str | Path) -> Path:
    link = Path(root) / CURRENT
    if not link.is_symlink() and not link.exists():
        raise NoIndexError(
            f"{root} holds no published index (no {CURRENT} pointer); build one with 'lookalike index build'"
        )
    return link.resolve()


@contextmanager
def staged_version(root: str | Path) -> Iterator[Path]:
    """A fresh version directory that is deleted again unless the body finishes and publishes it."""
    root = Path(root)
    (root / VERSIONS).mkdir(parents=True, exist_ok=True)
    staging = root / VERSIONS / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(root: str | Path, version: Path) -> None:
    """Point `current` at `version` in one rename, then drop versions older than the last few.

    Crash safety: the version's files and directory entries reach the disk (fsync) before the
    rename, and the root's directory after it, so after a power cut `current` names either the
    old version or a complete new one, never a version whose files were still in the page cache."""
    root = Path(root)
    for path in version.iterdir():
        fsync_path(path)
    fsync_path(version)
    fsync_path(version.parent)
    temporary = root / f".{CURRENT}-{uuid.uuid4().hex[:8]}"
    temporary.symlink_to(version.relative_to(root))
    os.replace(temporary, root / CURRENT)
    fsync_path(root)
    prune(root, keep=KEEP_VERSIONS)


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prune(root: Path, keep: int) -> None:
    """Remove old versions; the live one and the `keep - 1` newest before it stay for rollback
    and for replicas that have not reloaded yet."""
    live = current_version(root)
    versions = sorted((p for p in (root / VERSIONS).iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in versions[:-keep]:
        if old != live:
            shutil.rmtree(old, ignore_errors=True)
