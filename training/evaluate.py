"""Evaluation: embed held-out images, then retrieval and verification metrics.

Used after every training epoch (on the live model) and by `lookalike evaluate` (on an exported
bundle, exactly as the service would embed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from lookalike.bundle import embed_tensor, load_bundle
from lookalike.images import open_rgb
from lookalike.training.data import DataError, ImageDataset, collate, scan_folder
from lookalike.training.scoring import retrieval_metrics, sample_pairs, verification_metrics

log = logging.getLogger(__name__)


@torch.no_grad()
def embed_dataset(
    model: torch.nn.Module,
    dataset: ImageDataset,
    device: torch.device,
    batch_size: int = 128,
    workers: int = 0,
    flip: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels) of a data set, embedded as a bundle with `test_time_flip=flip` would."""
    was_training = model.training
    model.eval()
    chunks, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    for images, batch_labels, _ in loader:
        if len(images):
            chunks.append(embed_tensor(model, images.to(device), flip).float().cpu().numpy())
            labels.append(batch_labels.numpy())
    model.train(was_training)
    return np.concatenate(chunks), np.concatenate(labels)


def evaluate_embeddings(embeddings: np.ndarray, labels: np.ndarray, nmi: bool | None = None) -> dict[str, float]:
    """Retrieval metrics plus a verification threshold calibrated on sampled held-out pairs."""
    metrics = retrieval_metrics(embeddings, labels, nmi=nmi)
    i, j = sample_pairs(labels)
    verification = verification_metrics((embeddings[i] * embeddings[j]).sum(1), labels[i] == labels[j])
    metrics.update({f"verify_{k}": v for k, v in verification.items()})
    return metrics


UNLABELLED_FALSE_MATCH_RATE = 0.01


def unlabelled_threshold(embeddings: np.ndarray, max_pairs: int = 20_000, seed: int = 0) -> float:
    """A verification threshold without labels: the cosine that only 1% of random pairs of
    distinct images reach. In a collection of many products or people, two random images are
    almost always different, so this bounds the false-match rate near 1%; the bundle notes it
    came from unlabelled data, and a labelled `--eval-data` calibrates it properly."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(embeddings), max_pairs)
    j = rng.integers(0, len(embeddings), max_pairs)
    keep = i != j
    scores = (embeddings[i[keep]] * embeddings[j[keep]]).sum(1)
    return float(np.quantile(scores, 1 - UNLABELLED_FALSE_MATCH_RATE))


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int


def find_image(root: Path, name: str, number: int) -> Path:
    """LFW naming: <root>/<name>/<name>_<number:04d>.<any image suffix>."""
    matches = sorted((root / name).glob(f"{name}_{number:04d}.*"))
    if not matches:
        raise DataError(f"pairs file names {name} #{number}, but {root / name} has no such image")
    return matches[0]


def read_pairs(path: Path, root: Path) -> list[Pair]:
    """Parse an LFW `pairs.txt` (first line: folds and pairs per fold per kind)."""
    if not path.is_file():
        raise DataError(f"pairs file {path} does not exist")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    try:
        n_folds, per_fold = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise DataError(f"{path}: first line must be '<folds> <pairs per fold>' as in LFW pairs.txt") from None
    pairs = []
    for row_number, row in enumerate(lines[1:]):
        fold = row_number // (2 * per_fold) if n_folds > 1 else 0
        if len(row) == 3:
            pairs.append(Pair(find_image(root, row[0], int(row[1])), find_image(root, row[0], int(row[2])), True, fold))
        elif len(row) == 4:
            pairs.append(
                Pair(find_image(root, row[0], int(row[1])), find_image(root, row[2], int(row[3])), False, fold)
            )
        else:
            raise DataError(f"{path} line {row_number + 2}: expected 3 or 4 fields, got {len(row)}")
    return pairs


def evaluate_bundle(bundle: Path, data: Path, pairs_file: Path | None = None, nmi: bool | None = None) -> dict:
    """Everything `lookalike evaluate` reports, as one JSON-ready dict."""
    encoder = load_bundle(bundle)
    classes = scan_folder(data)
    paths, labels, skipped = [], [], 0
    images = []
    for label, files in enumerate(tqdm(classes.values(), desc="reading images", unit="class")):
        for file in files:
            try:
                images.append(open_rgb(file))
            except (OSError, ValueError) as err:
                log.warning("skipping unreadable image %s: %s", file, err)
                skipped += 1
                continue
            paths.append(file)
            labels.append(label)
    embeddings = encoder.embed(images)
    result: dict = {
        "bundle": str(bundle),
        "data": str(data),
        "images": len(paths),
        "classes": len(classes),
        "skipped_images": skipped,
    }
    result["retrieval"] = evaluate_embeddings(embeddings, np.asarray(labels), nmi=nmi)
    if pairs_file is not None:
        pairs = read_pairs(pairs_file, data)
        row = {p: i for i, p in enumerate(paths)}
        missing = {p for pair in pairs for p in (pair.a, pair.b) if p not in row}
        extra = (
            encoder.embed([open_rgb(p) for p in sorted(missing)]) if missing else np.empty((0, encoder.embedding_size))
        )
        lookup = {**{p: embeddings[i] for p, i in row.items()}, **dict(zip(sorted(missing), extra, strict=True))}
        scores = np.array([float(lookup[p.a] @ lookup[p.b]) for p in pairs])
        result["verification"] = verification_metrics(
            scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
        )
    return result
