"""Retrieval and verification metrics against loops, and the LFW pairs format."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.training.evaluate import read_pairs
from lookalike.training.scoring import (
    NMI_MAX_CLASSES,
    best_threshold,
    map_at_r,
    retrieval_metrics,
    verification_metrics,
)
from tests.helpers import write_image


def test_recall_at_k_matches_a_loop():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 4)
    x = rng.normal(size=(48, 8)).astype(np.float32) + np.eye(8, dtype=np.float32)[labels % 8] * 1.5
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)
    got = retrieval_metrics(x, labels, nmi=False)
    for k in (1, 2, 4, 8):
        expected = np.mean([np.any(labels[order[i, :k]] == labels[i]) for i in range(48)])
        assert got[f"recall@{k}"] == pytest.approx(expected)
    expected_map = np.mean([map_at_r(labels[order[i, :3]] == labels[i], 3) for i in range(48)])
    assert got["map@r"] == pytest.approx(expected_map)


def test_nmi_is_left_out_by_default_only_over_many_classes():
    x = np.random.default_rng(1).normal(size=(2 * (NMI_MAX_CLASSES + 1), 4)).astype(np.float32)
    few, many = np.repeat(np.arange(5), 2), np.repeat(np.arange(NMI_MAX_CLASSES + 1), 2)
    assert "nmi" in retrieval_metrics(x[:10], few)
    assert "nmi" not in retrieval_metrics(x, many)
    assert "nmi" not in retrieval_metrics(x[:10], few, nmi=False)


def test_map_at_r_known_values():
    assert map_at_r(np.array([True, True, True]), 3) == 1.0
    assert map_at_r(np.array([True, False, True]), 3) == pytest.approx((1 + 2 / 3) / 3)
    assert map_at_r(np.array([False, False, False]), 3) == 0.0


def test_best_threshold_maximises_accuracy_by_brute_force():
    rng = np.random.default_rng(1)
    same = rng.random(200) < 0.5
    scores = rng.normal(size=200) + same * 1.2
    accuracy = {t: np.mean((scores >= t) == same) for t in scores}
    assert np.mean((scores >= best_threshold(scores, same)) == same) == max(accuracy.values())


def test_verification_metrics_on_separable_and_random_scores():
    same = np.arange(600) % 2 == 0
    perfect = verification_metrics(same.astype(float) + 0.01 * np.arange(600) / 600, same)
    assert perfect["accuracy"] == 1.0 and perfect["roc_auc"] == 1.0 and perfect["tar@far=1e-3"] == 1.0
    noise = verification_metrics(np.random.default_rng(2).random(600), same)
    assert 0.3 < noise["accuracy"] < 0.7 and noise["accuracy_std"] > 0


def test_lfw_pairs_file_is_parsed_with_folds(tmp_path):
    for name in ("Ann_B", "Carl_D"):
        for n in (1, 2):
            write_image(tmp_path / "img" / name / f"{name}_{n:04d}.jpg", (10, 20, 30), seed=n)
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn_B\t1\t2\nAnn_B\t1\tCarl_D\t2\nCarl_D\t1\t2\nCarl_D\t1\tAnn_B\t2\n")
    pairs = read_pairs(tmp_path / "pairs.txt", tmp_path / "img")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[1].b.name == "Carl_D_0002.jpg"
