"""Data handling, sampling, the CLI's refusals, and short real training runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.bundle import load_bundle, read_spec
from lookalike.images import Preprocessing, open_rgb, preprocess
from tests.conftest import write_image
from training.data import ImageDataset, eval_prepare, natural_key, split_classes, train_augment, train_prepare
from training.model import EmbeddingModel
from training.sampler import PKSampler

ROOT = Path(__file__).resolve().parents[1]


def lookalike(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_natural_sort_and_class_disjoint_splits():
    names = sorted([f"s{i}" for i in range(1, 41)], key=natural_key)
    train, held = split_classes(names, 0.75, "sorted")
    assert train == [f"s{i}" for i in range(1, 31)] and held == [f"s{i}" for i in range(31, 41)]
    train, held = split_classes(names, 0.5, "hash")
    assert not set(train) & set(held) and sorted(train + held, key=natural_key) == names
    assert split_classes(names, 0.5, "hash") == (train, held)  # deterministic


def test_pk_sampler_batches_and_ddp_shards():
    labels = [c for c in range(10) for _ in range(5)] + [10]  # class 10 has one image: dropped
    sampler = PKSampler(labels, classes_per_batch=3, samples_per_class=4, seed=1)
    assert sampler.dropped_classes == 1
    for batch in sampler:
        classes = [labels[i] for i in batch]
        assert len(batch) == 12 and all(classes.count(c) == 4 for c in set(classes)) and len(set(classes)) == 3
    ranks = [PKSampler(labels, 2, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    for b0, b1 in zip(*ranks, strict=True):
        assert not {labels[i] for i in b0} & {labels[i] for i in b1}  # ranks never share a class in a step
    with pytest.raises(ValueError, match="needs at least 12 classes"):
        PKSampler(labels, classes_per_batch=12, samples_per_class=2)


def test_grey_and_colour_images_become_rgb(tmp_path):
    from PIL import Image

    grey = tmp_path / "g.pgm"
    Image.new("L", (92, 112), 128).save(grey)
    image = open_rgb(grey)
    assert image.mode == "RGB"
    from lookalike.images import Preprocessing

    spec = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_fraction=0.5)
    assert preprocess(image, spec).shape == (3, 32, 32)


def test_image_cache_serves_what_decoding_would_and_shrinks_big_photos(tmp_path):
    classes = {
        "big": [write_image(tmp_path / "big" / "a.jpg", (200, 40, 40), seed=1, size=(1200, 800))],
        "small": [write_image(tmp_path / "small" / "b.png", (40, 40, 200), seed=2), tmp_path / "small" / "bad.jpg"],
    }
    classes["small"][1].write_bytes(b"not an image")
    spec = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_fraction=0.8)
    cached, fresh = (ImageDataset(classes, eval_prepare(spec), cache=c) for c in (True, False))
    for n, path in enumerate([classes["big"][0], classes["small"][0]]):
        torch.testing.assert_close(cached[n][0], fresh[n][0])
        torch.testing.assert_close(cached[n][0], torch.from_numpy(preprocess(open_rgb(path), spec)))
        assert cached[n][1] == fresh[n][1] == n
    assert cached[2] is None and fresh[2] is None
    shrunk = train_prepare(spec)(classes["big"][0])
    assert min(shrunk.size) == 2 * spec.image_size and shrunk.size[0] > shrunk.size[1]
    augmented, _ = ImageDataset(classes, train_prepare(spec), train_augment(spec), cache=True)[0]
    assert augmented.shape == (3, 32, 32)


def test_min_crop_scale_keeps_the_whole_aligned_face_or_lets_crops_cut_it():
    """Aligned faces need every random crop to keep the frame (and so the alignment)."""
    from PIL import Image

    image = Image.new("RGB", (64, 64), (128, 128, 128))
    image.paste((255, 255, 255), (0, 0, 8, 8))  # a marker in the top-left corner
    spec = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    torch.manual_seed(0)

    def marker_kept(min_scale: float) -> list[bool]:
        augment = train_augment(spec, min_scale)
        crops = [augment(image) for _ in range(30)]
        return [bool(max(c[:, :2, :2].mean(), c[:, :2, -2:].mean()) > c[:, 14:18, 14:18].mean() + 0.3) for c in crops]

    assert all(marker_kept(1.0))  # flipped or not, the corner is always in the crop
    assert not all(marker_kept(0.1))


def test_squash_keeps_both_ends_of_a_wide_product_photo_where_center_cuts_them(tmp_path):
    """A car's front and rear are what tell two models apart; the central square drops them."""
    from PIL import Image

    image = Image.new("RGB", (200, 80), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, 20, 80))  # red front
    image.paste((0, 0, 255), (180, 0, 200, 80))  # blue rear
    image.save(tmp_path / "car.png")

    def ends(array: np.ndarray) -> tuple[float, float]:
        return float(array[0, :, :2].mean()), float(array[2, :, -2:].mean())  # red at left, blue at right

    center, squash = (
        Preprocessing(image_size=32, mean=(0.0,) * 3, std=(1.0,) * 3, crop_mode=mode) for mode in ("center", "squash")
    )
    assert all(v < 0.6 for v in ends(preprocess(image, center)))
    assert all(v > 0.9 for v in ends(preprocess(image, squash)))
    assert train_prepare(squash)(tmp_path / "car.png").size == (64, 64)  # training squares the whole picture too
    assert train_prepare(center)(tmp_path / "car.png").size == (160, 64)  # and keeps the aspect for off-centre crops


def test_export_then_load_gives_the_training_models_embeddings(tmp_path, att_faces):
    from lookalike.bundle import BundleSpec, write_bundle
    from lookalike.images import Preprocessing

    model = EmbeddingModel("resnet10t", embedding_size=32)
    model.eval()
    spec = Preprocessing(image_size=48, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    write_bundle(
        tmp_path, model, BundleSpec(backbone="resnet10t", embedding_size=32, threshold=0.5, preprocessing=spec)
    )
    images = [open_rgb(p) for p in sorted((att_faces / "s5").iterdir())[:7]]
    batch = torch.from_numpy(np.stack([preprocess(im, spec) for im in images]))
    with torch.no_grad():
        expected = model(batch).numpy()
    np.testing.assert_allclose(load_bundle(tmp_path).embed(images), expected, atol=1e-5)


def test_pretrained_accepts_a_local_weights_file(tmp_path):
    source = EmbeddingModel("test_resnet", 8)
    weights = tmp_path / "weights.pth"
    torch.save(source.backbone.state_dict(), weights)
    loaded = EmbeddingModel("test_resnet", 8, pretrained=str(weights))
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(loaded.backbone.state_dict()[key], value)
    checkpoint = tmp_path / "last.pt"  # a run's checkpoint: its backbone, not its head, seeds the new model
    torch.save({"model": source.state_dict(), "epoch": 3}, checkpoint)
    tuned = EmbeddingModel("test_resnet", 4, pretrained=str(checkpoint))
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(tuned.backbone.state_dict()[key], value)


@pytest.fixture
def two_class_folder(tmp_path) -> Path:
    for label in range(2):
        for n in range(3):
            write_image(tmp_path / "data" / f"c{label}" / f"{n}.png", (50 * label, 90, 200), seed=n)
    return tmp_path / "data"


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
    ],
)
def test_train_refuses_bad_input_with_a_clear_message(tmp_path, two_class_folder, make_args, message):
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "one" / "only" / "a.png", (1, 2, 3), seed=0)
    result = lookalike("train", "--out", str(tmp_path / "run"), "--epochs", "1", *make_args(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def tiny_run_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--backbone",
        "test_resnet",
        "--image-size",
        "32",
        "--embedding-size",
        "16",
        "--classes-per-batch",
        "2",
        "--samples-per-class",
        "2",
        "--workers",
        "0",
        "--train-fraction",
        "0.5",
        *extra,
    ]


def test_unreadable_images_are_skipped_and_counted_and_resume_continues(tmp_path):
    data = tmp_path / "data"
    for label in range(4):
        for n in range(4):
            write_image(data / f"c{label}" / f"{n}.png", (60 * label, 100, 30), seed=label * 4 + n)
    (data / "c0" / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    out = tmp_path / "run"
    first = lookalike(*tiny_run_args(data, out, "--epochs", "2"))
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert "skipping unreadable image" in first.stderr
    resumed = lookalike(*tiny_run_args(data, out, "--epochs", "3", "--resume", "--export", "last"))
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert read_spec(out / "bundle").metrics["epoch"] == 3  # --export last: the final epoch, not the best
    assert (out / "metrics.png").stat().st_size > 0 and (out / "bundle" / "encoder.pt2").is_file()


def test_same_seed_same_model(tmp_path, two_class_folder):
    data = tmp_path / "four"
    for label in range(4):
        for n in range(3):
            write_image(data / f"c{label}" / f"{n}.png", (60 * label, 90, 30), seed=n)
    hashes = []
    for run in ("a", "b"):
        result = lookalike(*tiny_run_args(data, tmp_path / run, "--epochs", "1", "--seed", "3"))
        assert result.returncode == 0, result.stderr
        state = torch.load(tmp_path / run / "best.pt")
        hashes.append(torch.cat([v.flatten().float() for v in state.values()]))
    torch.testing.assert_close(hashes[0], hashes[1])


def test_ddp_with_torchrun_on_two_cpu_processes(tmp_path):
    data = tmp_path / "data"
    for label in range(8):
        for n in range(3):
            write_image(data / f"c{label}" / f"{n}.png", (30 * label, 100, 30), seed=n)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29517",
            "-m",
            "lookalike.cli",
            *tiny_run_args(data, tmp_path / "ddp", "--epochs", "1", "--device", "cpu"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_spec(tmp_path / "ddp" / "bundle").data["train_classes"] == 4


def test_training_on_att_faces_beats_the_untrained_model_and_evaluates(tmp_path, att_faces):
    out = tmp_path / "att"
    result = lookalike(
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
    )  # default criterion: semi-hard triplet + synthesis
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    untrained, trained = rows[0], rows[1:]
    # 100 held-out images: Recall@1 is near its ceiling untrained, MAP@R shows the learning.
    assert max(r["map@r"] for r in trained) > untrained["map@r"] + 0.05
    assert trained[-1]["map@r"] > untrained["map@r"]
    assert max(r["recall@1"] for r in trained) >= untrained["recall@1"]
    evaluated = lookalike("evaluate", "--bundle", str(out / "bundle"), "--data", str(att_faces), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["images"] == 400 and 0 <= report["retrieval"]["recall@1"] <= 1
