"""Retrieval and verification metrics on unit-length embeddings (cosine similarity).

Retrieval (Recall@K, MAP@R, NMI) follows the deep-metric-learning convention: every image is a
query against all the others, itself excluded. Verification follows LFW View 2: 10 folds, the
threshold picked on nine and measured on the tenth.
"""

from __future__ import annotations

import faiss
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score, roc_auc_score, roc_curve

RECALL_KS = (1, 2, 4, 8)
# NMI clusters with k-means into as many clusters as there are classes: over LFW's ~2,900 held-out
# identities that took minutes per epoch on 2 cores, longer than the epoch itself.
NMI_MAX_CLASSES = 500


def neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k nearest other rows, by exact inner product (FAISS flat)."""
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    k = min(k + 1, embeddings.shape[0])
    _, found = index.search(np.ascontiguousarray(embeddings, dtype=np.float32), k)
    # Drop each query from its own list (it is not always first when duplicates tie).
    rows = np.arange(len(embeddings))[:, None]
    not_self = found != rows
    return np.stack([row[mask][: k - 1] for row, mask in zip(found, not_self, strict=True)])


def retrieval_metrics(
    embeddings: np.ndarray, labels: np.ndarray, nmi: bool | None = None, seed: int = 0
) -> dict[str, float]:
    """Recall@1/2/4/8, MAP@R and NMI over queries whose class has another image.

    `nmi=None` computes NMI only up to `NMI_MAX_CLASSES` classes."""
    labels = np.asarray(labels)
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    per_item = counts[np.unique(labels, return_inverse=True)[1]]
    max_r = int(per_item.max()) - 1
    found = neighbours(embeddings, max(max(RECALL_KS), max_r))
    hits = labels[found] == labels[:, None]
    queries = per_item > 1
    result = {f"recall@{k}": float(hits[queries, :k].any(1).mean()) for k in RECALL_KS}
    result["map@r"] = float(
        np.mean([map_at_r(hit, r - 1) for hit, r in zip(hits[queries], per_item[queries], strict=True)])
    )
    n_classes = len(counts)
    if nmi or (nmi is None and n_classes <= NMI_MAX_CLASSES):
        clusters = KMeans(n_clusters=n_classes, n_init=3, random_state=seed).fit_predict(embeddings)
        result["nmi"] = float(normalized_mutual_info_score(labels, clusters))
    return result


def map_at_r(hits: np.ndarray, r: int) -> float:
    """Mean average precision over the first R neighbours, R = number of same-class items."""
    hits = hits[:r]
    precision = np.cumsum(hits) / np.arange(1, r + 1)
    return float((precision * hits).sum() / r)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold (score >= t means "same") with the highest accuracy on these pairs."""
    candidates = np.unique(scores)
    order = np.argsort(scores)
    sorted_same = same[order]
    # accuracy(t = candidate c) = #same with score >= c + #different with score < c
    different_below = np.cumsum(~sorted_same)
    same_at_or_above = sorted_same[::-1].cumsum()[::-1]
    first = np.searchsorted(scores[order], candidates, side="left")
    correct = same_at_or_above[first] + np.where(first > 0, different_below[first - 1], 0)
    best = int(np.argmax(correct))
    # Midway to the next lower score: same accuracy here, and a margin for unseen pairs.
    return float(candidates[best] if best == 0 else (candidates[best] + candidates[best - 1]) / 2)


def verification_metrics(scores: np.ndarray, same: np.ndarray, folds: np.ndarray | None = None) -> dict[str, float]:
    """10-fold accuracy (± std), ROC AUC, TAR at FAR=1e-3 and the threshold fitted on all pairs."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    if folds is None:
        folds = np.random.default_rng(0).permutation(len(scores)) % 10  # pairs may arrive sorted by kind
    accuracies = []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(scores[~test], same[~test])
        accuracies.append(float(((scores[test] >= threshold) == same[test]).mean()))
    far, tar, _ = roc_curve(same, scores)
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "roc_auc": float(roc_auc_score(same, scores)),
        "tar@far=1e-3": float(np.interp(1e-3, far, tar)),
        "threshold": best_threshold(scores, same),
        "pairs": len(scores),
    }


def sample_pairs(labels: np.ndarray, max_pairs: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Balanced same/different index pairs from a labelled set, for calibrating a threshold."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), k=1)
    same = labels[i] == labels[j]
    pos, neg = np.flatnonzero(same), np.flatnonzero(~same)
    n = min(len(pos), len(neg), max_pairs // 2)
    chosen = np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)])
    return i[chosen], j[chosen]
