"""Faces for training: each image is detected once, the answer cached on disk, faceless images dropped.

Detection costs more than a training step's share of an image (MTCNN: ~35 ms for a 250 px LFW
photo on a 2-core CPU), so it runs once, in batches, before the first epoch, and its landmarks
are kept in a JSON-lines cache keyed by the image's path, size and modification time: a second
run, a resumed run, or the next seed of a benchmark reads them back instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from lookalike.faces import Face, FaceAlignment, create_detector
from lookalike.images import open_rgb

log = logging.getLogger(__name__)
DETECT_BATCH = 32
FaceTable = dict[Path, Face]
"""The face each training or held-out image is cut from (its largest)."""


def default_cache(alignment: FaceAlignment) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "lookalike" / f"faces-{alignment.detector}-{alignment.min_score:g}.jsonl"


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def read_cache(cache: Path) -> dict[str, list[Face]]:
    """Every cached answer; a line cut short by a killed run is ignored."""
    known: dict[str, list[Face]] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            try:
                row = json.loads(line)
                known[row["key"]] = [Face.from_dict(face) for face in row["faces"]]
            except (ValueError, KeyError, TypeError):
                continue
    return known


def locate_faces(paths: Iterable[Path], alignment: FaceAlignment, cache: Path) -> tuple[FaceTable, int, int]:
    """(largest face of each image that has one, images without a face, unreadable images),
    detecting only the images the cache does not know yet."""
    paths = list(dict.fromkeys(paths))
    known = read_cache(cache)
    keys, unreadable = {}, 0
    for path in paths:
        try:
            keys[path] = _key(path)
        except OSError:
            unreadable += 1
    todo = [p for p in keys if keys[p] not in known]
    if todo:
        detector = create_detector(alignment.detector, min_score=alignment.min_score)
        cache.parent.mkdir(parents=True, exist_ok=True)
        for start in tqdm(
            range(0, len(todo), DETECT_BATCH), desc=f"detecting faces ({alignment.detector})", unit="batch"
        ):
            batch, images = [], []
            for path in todo[start : start + DETECT_BATCH]:
                try:
                    images.append(open_rgb(path))
                    batch.append(path)
                except (OSError, ValueError) as err:
                    log.warning("skipping unreadable image %s: %s", path, err)
                    unreadable += 1
                    del keys[path]
            found = detector.detect(images) if images else []
            lines = []
            for path, faces in zip(batch, found, strict=True):
                known[keys[path]] = faces
                lines.append(json.dumps({"key": keys[path], "faces": [face.to_dict() for face in faces]}) + "\n")
            with cache.open("a") as handle:  # one write per batch: concurrent runs append whole lines
                handle.write("".join(lines))
    table = {path: known[key][0] for path, key in keys.items() if known[key]}
    faceless = len(keys) - len(table)
    log.info(
        "faces: %d of %d images have one (%d detected now, %d from %s); %d without a face and %d unreadable skipped",
        len(table),
        len(paths),
        len(todo),
        len(keys) - len(todo),
        cache,
        faceless,
        unreadable,
    )
    return table, faceless, unreadable


def with_faces(classes: dict[str, list[Path]], table: FaceTable) -> dict[str, list[Path]]:
    """The classes' images that have a face; a class left without any is dropped."""
    kept = {name: [p for p in files if p in table] for name, files in classes.items()}
    return {name: files for name, files in kept.items() if files}
