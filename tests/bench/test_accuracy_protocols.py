"""The accuracy benchmark's protocols: what each one trains on and scores on, and which runs share
a self-supervised stage. The validation protocol is how budgets are chosen without the test
classes, so the first property is the one the published numbers' honesty rests on."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import accuracy
from tests.helpers import shared_dataset


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(accuracy, "RUNS", tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", ["cars", "lfw"])  # a sorted split and a hashed one
def test_validation_trains_and_scores_on_training_classes_only(name: str, runs: Path):
    """Mutations tried: validation returning the data set's own folder (test classes leak into
    both parts); linking every class instead of the training ones (the test classes leak)."""
    shared_dataset(accuracy.DATASETS[name]["folder"])
    train, test, _ = accuracy.test_split(name, "test")
    fit, held_out, retrievable = accuracy.test_split(name, "validation")
    assert set(fit) | set(held_out) == set(train)
    assert not set(fit) & set(held_out)
    assert not (set(fit) | set(held_out)) & set(test)
    assert len(fit) == round(len(train) * accuracy.VALIDATION_FRACTION)
    assert retrievable and all(len(files) >= 2 for files in retrievable.values())
    assert accuracy.universe(name, "validation")[0].parent.parent == runs  # made once, under the runs folder


def budget(**changes) -> dict:
    base = {
        "backbone": "resnet10t",
        "pretrained": None,
        "image_size": 64,
        "crop_mode": "center",
        "embedding_size": 128,
        "epochs": 20,
        "lr": 3e-3,
        "classes_per_batch": 8,
        "samples_per_class": 4,
        "min_crop_scale": 0.5,
        "wild": False,
        "protocol": "test",
        "ssl_epochs": 10,
        "ssl_lr": 3e-3,
        "test_time_flip": False,
    }
    return {**base, **changes}


def test_runs_share_a_self_supervised_stage_exactly_when_it_would_train_the_same(runs: Path):
    """Mutations tried: keying the stage by the whole budget (the label-free row and the fine-tuned
    one no longer share); dropping ssl_epochs or protocol from `SSL_BUDGET`; ignoring the fraction."""
    stage = accuracy.ssl_stage
    methods = accuracy.METHODS
    free = stage("cars", methods["ssl_simclr"], 0, budget())
    assert free == stage("cars", methods["ssl_simclr+batch_hard"], 0, budget(lr=1e-3, epochs=40, min_crop_scale=0.8))
    assert free == stage("cars", methods["ssl_simclr"], 0, budget(test_time_flip=True))  # scoring, not training
    assert free.is_relative_to(runs)
    for different in (
        stage("cars", methods["ssl_simclr"], 1, budget()),
        stage("cars", methods["ssl_arb"], 0, budget()),
        stage("lfw", methods["ssl_simclr"], 0, budget()),
        stage("cars", methods["ssl_simclr"], 0, budget(ssl_epochs=40)),
        stage("cars", methods["ssl_simclr"], 0, budget(ssl_lr=1e-3)),
        stage("cars", methods["ssl_simclr"], 0, budget(protocol="validation")),
        stage("cars", methods["ssl_simclr+batch_hard_equal_time"], 0, budget()),
    ):
        assert different != free


def test_rows_written_before_a_budget_key_existed_compare_equal_to_its_default():
    """Mutation tried: filling ssl_lr with the default 3e-3 instead of the row's own lr (an old
    lr=1e-3 ablation then claims an SSL stage at 3e-3)."""
    new = budget()
    old = {k: v for k, v in new.items() if k not in ("wild", "protocol", "ssl_epochs", "ssl_lr", "test_time_flip")}
    assert accuracy.same_budget(old) == accuracy.same_budget(new)
    assert accuracy.same_budget({**old, "lr": 1e-3})["ssl_lr"] == 1e-3
    assert accuracy.same_budget(budget(protocol="validation")) != accuracy.same_budget(new)
    assert accuracy.same_budget(budget(test_time_flip=True)) != accuracy.same_budget(new)
