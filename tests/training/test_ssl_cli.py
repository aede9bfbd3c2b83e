"""`lookalike train --ssl` as a user runs it: a flat folder, resume, refusals, fine-tuning from
the result, and a real run on Cars196 that beats the untrained network."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.bundle import load_bundle, read_spec
from lookalike.images import open_rgb
from lookalike.training import EmbeddingModel
from tests.helpers import run_cli, run_torchrun, shared_dataset, tiny_train_args, write_image


def flat_folder(root: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(root / f"img{i:03d}.png", tuple(int(c) for c in rng.integers(0, 255, 3)), seed=i)
    return root


def ssl_args(data: Path, out: Path, *extra: str) -> list[str]:
    return tiny_train_args(data, out, "--batch-size", "8", *extra)


@pytest.mark.slow
def test_moco_on_a_flat_folder_exports_the_backbone_and_resumes_its_queue(tmp_path):
    data, out = flat_folder(tmp_path / "flat"), tmp_path / "moco"
    first = run_cli(*ssl_args(data, out, "--ssl", "moco", "--epochs", "1"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "MoCo queue: 4096 keys asked for, but the training set has 40 images: using 16" in first.stderr
    assert "no held-out classes" in first.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("recall@1" not in r and r["effective_rank"] > 0 and r["embedding_std_ratio"] > 0 for r in rows)
    state = torch.load(out / "last.pt")
    assert not any(k.startswith("encoder.") for k in state["objective"])  # the encoder is kept once, as "model"
    assert state["objective"]["queue"].shape == (16, 128) and int(state["objective"]["queue_next"]) == 40 % 16
    resumed = run_cli(*ssl_args(data, out, "--ssl", "moco", "--epochs", "2", "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert int(torch.load(out / "last.pt")["objective"]["queue_next"]) == 80 % 16  # not restarted at 0
    spec = read_spec(out / "bundle")
    assert spec.embedding_size == 96 and spec.data["threshold_from"] == "random pairs of unlabelled images"
    assert 0 < spec.threshold < 1 and spec.metrics["epoch"] == 2
    vectors = load_bundle(out / "bundle").embed([open_rgb(p) for p in sorted(data.iterdir())[:3]])
    assert vectors.shape == (3, 96) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert (out / "metrics.png").stat().st_size > 0


@pytest.mark.slow
def test_an_ssl_checkpoint_fine_tunes_a_metric_run_backbone_only(tmp_path, caplog):
    data, out = flat_folder(tmp_path / "flat"), tmp_path / "simclr"
    assert run_cli(*ssl_args(data, out, "--ssl", "simclr", "--epochs", "1")).returncode == 0
    classes = tmp_path / "classes"
    for label in range(4):
        for n in range(3):
            write_image(classes / f"c{label}" / f"{n}.png", (60 * label, 90, 30), seed=n)
    metric = ["--embedding-size", "16", "--classes-per-batch", "2", "--samples-per-class", "2", "--epochs", "1"]
    pretrained = ["--train-fraction", "0.5", "--pretrained", str(out / "last.pt")]
    tuned = run_cli(*tiny_train_args(classes, tmp_path / "metric", *metric, *pretrained))
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "tensors from the run checkpoint" in tuned.stderr and "projector left out" in tuned.stderr
    with caplog.at_level(logging.INFO):
        model = EmbeddingModel("test_resnet", 16, pretrained=str(out / "last.pt"))
    saved = torch.load(out / "last.pt")["model"]
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, saved[f"backbone.{name}"])
    assert model.head.out_features == 16  # a fresh head of the metric run's width


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ssl", "simclr", "--loss", "lifted"], "--loss: not used by an --ssl simclr run"),
        (["--ssl", "arb", "--ssl-args", "queue_size=10"], "takes no queue_size"),
        (["--ssl", "simclr", "--batch-size", "64"], "lower --batch-size"),
        (["--blur-probability", "0.1"], "--blur-probability: not used by a metric-learning"),
    ],
)
def test_ssl_refusals_are_clear(tmp_path, extra, message):
    result = run_cli(*ssl_args(flat_folder(tmp_path / "flat"), tmp_path / "run", "--epochs", "1", *extra))
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_simclr_on_cars_lifts_held_out_recall_over_the_untrained_network(tmp_path):
    """Labels unused; the held-out classes 99-196 are never seen (measured: R@1 0.031 -> 0.063 at
    4 epochs, the pixel floor is 0.034)."""
    cars = shared_dataset("stanford_cars_train_crops_subset")
    out = tmp_path / "cars"
    result = run_cli(
        "train",
        "--ssl",
        "simclr",
        "--data",
        str(cars),
        "--train-fraction",
        "0.5",
        "--out",
        str(out),
        "--epochs",
        "4",
        "--batch-size",
        "64",
        "--cache-images",
        "--workers",
        "1",
        "--export",
        "last",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    untrained, last = rows[0], rows[-1]
    assert last["recall@1"] > untrained["recall@1"] + 0.01 and last["map@r"] > untrained["map@r"]
    data = read_spec(out / "bundle").data
    assert data["eval_images"] == 588 and data["train_images"] == 588  # classes 99-196 held out, never trained on


@pytest.mark.slow
def test_moco_under_torchrun_gathers_every_ranks_keys_into_the_queue(tmp_path):
    data, out = flat_folder(tmp_path / "flat"), tmp_path / "ddp"
    moco = ["--ssl", "moco", "--ssl-args", "queue_size=20", "--epochs", "1", "--device", "cpu"]
    result = run_torchrun(*ssl_args(data, out, *moco), port=29519)
    assert result.returncode == 0, result.stderr[-3000:]
    # 40 images / (8 per rank x 2 ranks) = 2 steps, each enqueueing both ranks' 8 keys (one rank's alone: 16)
    assert int(torch.load(out / "last.pt")["objective"]["queue_next"]) == (2 * 16) % 20
    assert read_spec(out / "bundle").embedding_size == 96
