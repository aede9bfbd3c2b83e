"""`lookalike train` and `lookalike evaluate` as a user runs them: refusals, resume, seeds, DDP, real faces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lookalike.bundle import read_spec
from tests.helpers import run_cli, run_torchrun, tiny_run_args, write_image


@pytest.fixture
def two_class_folder(tmp_path) -> Path:
    for label in range(2):
        for n in range(3):
            write_image(tmp_path / "data" / f"c{label}" / f"{n}.png", (50 * label, 90, 200), seed=n)
    return tmp_path / "data"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d: ["--data", str(d / "nowhere")], "does not exist"),
        (lambda d: ["--data", str(d / "empty")], "no class sub-folders"),
        (lambda d: ["--data", str(d / "one")], "has 1 class"),
        (lambda d: ["--data", str(d / "data"), "--backbone", "resnet9000"], "unknown backbone"),
        (lambda d: ["--data", str(d / "data"), "--loss", "arcfaces"], "unknown loss 'arcfaces'; choose one of"),
        (lambda d: ["--data", str(d / "data"), "--miner", "hardest"], "unknown miner"),
        (lambda d: ["--data", str(d / "data"), "--batch-size", "10", "--classes-per-batch", "2"], "does not equal"),
        (lambda d: ["--data", str(d / "data"), "--classes-per-batch", "8", "--train-fraction", "0.5"], "at least 2"),
        (
            lambda d: ["--data", str(d / "data"), "--backbone-lr-mult", "0", "--embedding-size", "0"],
            "nothing would train",
        ),
    ],
)
def test_train_refuses_bad_input_with_a_clear_message(tmp_path, two_class_folder, make_args, message):
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "one" / "only" / "a.png", (1, 2, 3), seed=0)
    result = run_cli("train", "--out", str(tmp_path / "run"), "--epochs", "1", *make_args(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_unreadable_images_are_skipped_and_counted_and_resume_continues(tmp_path):
    data = tmp_path / "data"
    for label in range(4):
        for n in range(1 if label == 0 else 4):
            write_image(data / f"c{label}" / f"{n}.png", (60 * label, 100, 30), seed=label * 4 + n)
    # c0 is one of the two training classes (P = 2) and holds two files, so every batch draws this one
    (data / "c0" / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    out = tmp_path / "run"
    first = run_cli(*tiny_run_args(data, out, "--epochs", "2"))
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert "skipping unreadable image" in first.stderr
    assert all(r["skipped_images"] > 0 for r in rows[1:])
    resumed = run_cli(*tiny_run_args(data, out, "--epochs", "3", "--resume", "--export", "last"))
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert read_spec(out / "bundle").metrics["epoch"] == 3  # --export last: the final epoch, not the best
    assert (out / "metrics.png").stat().st_size > 0 and (out / "bundle" / "encoder.pt2").is_file()


@pytest.mark.slow
def test_same_seed_same_model(tmp_path, two_class_folder):
    data = tmp_path / "four"
    for label in range(4):
        for n in range(3):
            write_image(data / f"c{label}" / f"{n}.png", (60 * label, 90, 30), seed=n)
    hashes = []
    for run in ("a", "b"):
        result = run_cli(*tiny_run_args(data, tmp_path / run, "--epochs", "1", "--seed", "3"))
        assert result.returncode == 0, result.stderr
        state = torch.load(tmp_path / run / "best.pt")
        hashes.append(torch.cat([v.flatten().float() for v in state.values()]))
    torch.testing.assert_close(hashes[0], hashes[1])


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--loss", "proxy_anchor", "--gather-batches"]], ids=["local", "gathered"])
def test_ddp_with_torchrun_on_two_cpu_processes(tmp_path, extra):
    data = tmp_path / "data"
    for label in range(8):
        for n in range(3):
            write_image(data / f"c{label}" / f"{n}.png", (30 * label, 100, 30), seed=n)
    args = tiny_run_args(data, tmp_path / "ddp", "--epochs", "1", "--device", "cpu", *extra)
    result = run_torchrun(*args, port=29517)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_spec(tmp_path / "ddp" / "bundle").data["train_classes"] == 4


@pytest.mark.slow
def test_proxies_train_at_their_own_rate_resume_and_stay_out_of_the_bundle(tmp_path):
    data = tmp_path / "data"
    for label in range(6):
        for n in range(3):
            write_image(data / f"c{label}" / f"{n}.png", (40 * label, 100, 30), seed=n)
    out = tmp_path / "run"
    first = run_cli(*tiny_run_args(data, out, "--epochs", "1", "--loss", "proxy_anchor", "--loss-lr", "0.01"))
    assert first.returncode == 0, first.stderr
    state = torch.load(out / "last.pt")
    proxies = state["objective"]["loss.weight"]
    n_classes = read_spec(out / "bundle").data["train_classes"]
    assert proxies.shape == (n_classes, 16)  # one per training class, of the embedding size
    assert [g["initial_lr"] for g in state["optimizer"]["param_groups"]] == [pytest.approx(3e-3), 0.01]
    # Mark the saved proxies: a resume that re-initialised them (same seed, same init) would hide.
    state["objective"]["loss.weight"] = torch.full_like(proxies, 0.25)
    torch.save(state, out / "last.pt")
    resumed = run_cli(
        *tiny_run_args(data, out, "--epochs", "2", "--loss", "proxy_anchor", "--loss-lr", "0.01", "--resume")
    )
    assert resumed.returncode == 0, resumed.stderr
    after = torch.load(out / "last.pt")["objective"]["loss.weight"]
    assert 0 < (after - 0.25).abs().max() < 0.1  # resumed from the marked proxies, then trained on
    program = torch.export.load(out / "bundle" / "encoder.pt2")
    assert all(tuple(v.shape) != (n_classes, 16) for v in program.state_dict.values())


@pytest.mark.slow
def test_training_on_att_faces_beats_the_untrained_model_and_evaluates(tmp_path, att_faces):
    out = tmp_path / "att"
    result = run_cli(
        "train",
        "--data",
        str(att_faces),
        "--out",
        str(out),
        "--backbone",
        "test_resnet",
        "--epochs",
        "16",
        "--workers",
        "1",
    )  # default criterion: batch-hard triplet
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    untrained, trained = rows[0], rows[1:]
    # 100 held-out images: Recall@1 is near its ceiling untrained, MAP@R shows the learning.
    assert max(r["map@r"] for r in trained) > untrained["map@r"] + 0.05
    assert trained[-1]["map@r"] > untrained["map@r"]
    assert max(r["recall@1"] for r in trained) >= untrained["recall@1"]
    evaluated = run_cli("evaluate", "--bundle", str(out / "bundle"), "--data", str(att_faces), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["images"] == 400 and 0 <= report["retrieval"]["recall@1"] <= 1


class NormProbe:
    """A criterion that records the norms of the embeddings the loop hands it."""

    def __init__(self, unit_embeddings: bool) -> None:
        self.unit_embeddings, self.norms = unit_embeddings, []

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.norms.append(embeddings.detach().norm(dim=1))
        return embeddings.pow(2).mean()


@pytest.mark.slow
@pytest.mark.parametrize("unit", [True, False])
def test_the_loop_gives_a_loss_raw_embeddings_only_when_it_asks(tmp_path, unit):
    """N-pair's norm penalty needs the network's raw output; every other loss gets unit vectors."""
    from lookalike.training import TrainConfig, train

    for label in range(4):
        for n in range(2):
            write_image(tmp_path / "data" / f"c{label}" / f"{n}.png", (60 * label, 90, 30), seed=n)
    cfg = TrainConfig(
        data=tmp_path / "data",
        out=tmp_path / "run",
        backbone="test_resnet",
        image_size=32,
        embedding_size=16,
        classes_per_batch=2,
        samples_per_class=2,
        train_fraction=0.5,
        epochs=1,
        workers=0,
        device="cpu",
    )
    probe = NormProbe(unit)
    train(cfg, criterion=probe)
    norms = torch.cat(probe.norms)
    assert torch.allclose(norms, torch.ones_like(norms)) == unit


@pytest.mark.slow
def test_backbone_lr_mult_zero_freezes_the_backbone_and_trains_the_head(tmp_path):
    data = tmp_path / "data"
    for label in range(4):
        for n in range(4):
            write_image(data / f"c{label}" / f"{n}.png", (60 * label, 100, 30), seed=label * 4 + n)
    start = tmp_path / "start"
    assert run_cli(*tiny_run_args(data, start, "--epochs", "1")).returncode == 0

    def fine_tuned(name: str, *extra: str) -> dict[str, torch.Tensor]:
        result = run_cli(*tiny_run_args(data, tmp_path / name, "--pretrained", str(start / "last.pt"), *extra))
        assert result.returncode == 0, result.stderr[-2000:]
        return torch.load(tmp_path / name / "last.pt")["model"]

    before = torch.load(start / "last.pt")["model"]
    frozen, free = fine_tuned("frozen", "--backbone-lr-mult", "0"), fine_tuned("free", "--backbone-lr-mult", "0.5")
    backbone = [k for k in before if k.startswith("backbone.") and before[k].is_floating_point()]
    assert all(torch.equal(frozen[k], before[k]) for k in backbone if "running" not in k)
    assert any(not torch.equal(free[k], before[k]) for k in backbone if "running" not in k)
