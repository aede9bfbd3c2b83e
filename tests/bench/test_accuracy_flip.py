"""The accuracy benchmark's test-time flip: a flipped run is scored as its bundle would serve it,
and the same model without the flip beside it, so that what the flip adds is a paired difference.

Mutations tried: `score_bundle` scoring the bundle as loaded, ignoring the budget's flip (the two
scores then coincide); the without-flip pass scoring with the flip; the pixel floor ignoring
`--test-time-flip` (a flag that would do nothing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from bench import accuracy
from tests.helpers import shared_dataset

BUDGET = {"wild": False, "protocol": "test"}


def test_a_flipped_run_is_scored_with_the_flip_and_without_it(tiny_bundle: Path):
    shared_dataset(accuracy.DATASETS["att"]["folder"])
    flipped = accuracy.score_bundle("att", tiny_bundle, {**BUDGET, "test_time_flip": True})
    plain = accuracy.score_bundle("att", tiny_bundle, {**BUDGET, "test_time_flip": False})
    assert "without_flip" not in plain
    assert flipped["without_flip"] == {k: plain[k] for k in ("recall@1", "map@r")}
    assert flipped["map@r"] != pytest.approx(plain["map@r"], abs=1e-6)


def test_the_pixel_floor_takes_the_flip_too(monkeypatch: pytest.MonkeyPatch):
    shared_dataset(accuracy.DATASETS["att"]["folder"])
    captured = {}

    def evaluate(name, embed, *_, **__):
        captured["embed"] = embed
        return {}

    monkeypatch.setattr(accuracy, "evaluate", evaluate)  # only the embedding function is under test here
    vectors = {}
    for flip in (False, True):
        args = argparse.Namespace(
            image_size=32, crop_mode="center", protocol="test", embedding_size=16, wild=False, test_time_flip=flip
        )
        accuracy.run_pixels("att", args)
        picture = accuracy.open_rgb(next((accuracy.SHARED / "att_faces" / "images" / "s1").iterdir()))
        mirrored = picture.transpose(accuracy.Image.Transpose.FLIP_LEFT_RIGHT)
        vectors[flip] = captured["embed"]([picture, mirrored])
    assert np.abs(vectors[False][0] - vectors[False][1]).max() > 1e-3
    np.testing.assert_allclose(vectors[True][0], vectors[True][1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors[True], axis=1), 1.0, atol=1e-5)
