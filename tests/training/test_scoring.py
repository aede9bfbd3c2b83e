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


def test_pairs_accuracy_fits_each_fold_threshold_on_the_other_nine():
    """LFW View 2: fitting the threshold on all ten folds (test fold included) would flatter it."""
    rng = np.random.default_rng(4)
    same = rng.random(600) < 0.5
    scores = rng.normal(size=600) + same * 0.5
    folds = np.arange(600) % 10
    held_out = [
        np.mean((scores[folds == f] >= best_threshold(scores[folds != f], same[folds != f])) == same[folds == f])
        for f in range(10)
    ]
    in_sample = [np.mean((scores[folds == f] >= best_threshold(scores, same)) == same[folds == f]) for f in range(10)]
    assert np.mean(in_sample) != pytest.approx(np.mean(held_out))  # the data tells the two apart
    result = verification_metrics(scores, same, folds)
    assert result["accuracy"] == pytest.approx(np.mean(held_out)) and result["accuracy_std"] == pytest.approx(
        np.std(held_out)
    )


def test_tar_is_read_at_a_false_accept_rate_of_one_in_a_thousand():
    """2,000 impostor scores -0.0005, -0.001, ... and 1,000 genuine ones -0.0002, -0.0004, ...: the
    most genuine pairs accepted while at most 2 impostors (FAR 1e-3) are is every genuine score above
    the third impostor (-0.0015), 7 of them: TAR 0.007 (at FAR 0.1 it would be 0.5)."""
    impostors = -np.arange(1, 2001) / 2000
    genuine = -np.arange(1, 1001) / 1000 * 0.2 + 1e-6
    scores = np.concatenate([impostors, genuine])
    same = np.concatenate([np.zeros(2000, bool), np.ones(1000, bool)])
    assert verification_metrics(scores, same)["tar@far=1e-3"] == pytest.approx(0.007)


def test_lfw_pairs_file_is_parsed_with_folds(tmp_path):
    for name in ("Ann_B", "Carl_D"):
        for n in (1, 2):
            write_image(tmp_path / "img" / name / f"{name}_{n:04d}.jpg", (10, 20, 30), seed=n)
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn_B\t1\t2\nAnn_B\t1\tCarl_D\t2\nCarl_D\t1\t2\nCarl_D\t1\tAnn_B\t2\n")
    pairs = read_pairs(tmp_path / "pairs.txt", tmp_path / "img")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[1].b.name == "Carl_D_0002.jpg"
