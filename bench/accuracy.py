"""Accuracy on real data: our training recipes against each other, against pytorch-metric-learning's
semi-hard miner + loss dropped into the same loop, and against raw pixels + PCA, at one budget.

    python -m bench.accuracy run --datasets cars lfw --seeds 0 1 2 [--epochs 15] [--backbone resnet10t]
    python -m bench.accuracy report          # docs/results.md and docs/*.png from the results file

`run` appends one JSON line per (dataset, method, seed) to docs/results.jsonl and skips those
already there, so an interrupted run resumes where it stopped. Protocols:
- cars: Cars196 subset (6 images/class), classes 1-98 train, 99-196 test; Recall@K, MAP@R.
- lfw: identities split by a stable hash of the name; official pairs.txt 10-fold accuracy on the
  pairs whose identities are all in the test part; Recall@K and MAP@R over test identities
  with 2+ images; TAR at FAR=1e-3. Faces are centre-cropped (the central ~110 of 250 px).
- att: AT&T s1-s30 train, s31-s40 test; a smoke test (raw pixels are already near-perfect).
With `--wild`, LFW's test pairs are scored a second time on "wild" copies: each image placed at a
random scale (0.3-1.0), position and rotation (+-20 degrees) on a 500 x 500 canvas, the same
copy for every method. `batch_hard+align` trains and serves on MTCNN five-point aligned faces;
an image in which its detector finds no face embeds as zeros (it matches nothing) and is counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lookalike.bundle import Encoder, load_bundle
from lookalike.images import CropMode, Preprocessing, open_rgb, preprocess
from lookalike.training import (
    TrainConfig,
    read_pairs,
    retrieval_metrics,
    scan_folder,
    split_classes,
    train,
    verification_metrics,
)
from lookalike.training.metric_learning import LOSSES
from lookalike.training.self_supervised import SSL_METHODS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "docs" / "results.jsonl"
RUNS = ROOT / "runs" / "accuracy"

DATASETS = {
    "cars": {
        "folder": "stanford_cars_train_crops_subset",
        "split": "sorted",
        "train_fraction": 0.5,
        "crop_fraction": 1.0,
    },
    "lfw": {"folder": "lfw", "split": "hash", "train_fraction": 0.5, "crop_fraction": 0.44, "pairs": "pairs.txt"},
    "att": {"folder": "att_faces", "split": "sorted", "train_fraction": 0.75, "crop_fraction": 1.0},
}
BATCH_HARD = {"loss": "triplet", "miner": "batch_hard", "synthesis": False}
PROXY_LOSSES = tuple(name for name in LOSSES.names() if LOSSES.get(name).synthesis == "none")
METHODS = {
    "semihard": {"loss": "triplet", "miner": "semihard", "synthesis": False},
    "semihard+synthesis": {"loss": "triplet", "miner": "semihard", "synthesis": True},
    "contrastive": {"loss": "contrastive", "miner": "batch_hard", "synthesis": False},
    "contrastive+synthesis": {"loss": "contrastive", "miner": "batch_hard", "synthesis": True},
    "batch_hard": BATCH_HARD,
    # The paper's pairing: hardest negative among real and synthetic points.
    "batch_hard+synthesis": {"loss": "triplet", "miner": "batch_hard", "synthesis": True},
    "multi_similarity": {"loss": "multi_similarity", "miner": "multi_similarity", "synthesis": False},
    "multi_similarity+synthesis": {"loss": "multi_similarity", "miner": "multi_similarity", "synthesis": True},
    # Issue 17's family, each loss with its own miner (`auto`); N-pair and angular use one pair per class.
    **{
        f"{loss}{'+synthesis' if synthesis else ''}": {"loss": loss, "miner": "auto", "synthesis": synthesis}
        for loss in ("lifted", "n_pair", "angular", "npair_angular")
        for synthesis in (False, True)
    },
    **{loss: {"loss": loss, "miner": "auto", "synthesis": False} for loss in PROXY_LOSSES},
    # Issue 18: self-supervised on the training images (labels unused) for the budget's ssl_epochs,
    # alone (label-free) or followed by the default metric recipe: at the budget's metric epochs
    # (equal epochs with batch_hard), or half of each stage (about equal CPU time). Runs of one
    # method, seed and SSL budget share the self-supervised stage (see `ssl_stage`).
    **{f"ssl_{name}": {"ssl": name} for name in SSL_METHODS.names()},
    **{f"ssl_{name}+batch_hard": {"ssl": name, **BATCH_HARD} for name in SSL_METHODS.names()},
    **{
        f"ssl_{name}+batch_hard_equal_time": {
            "ssl": name,
            "ssl_epochs_fraction": 0.5,
            "epochs_fraction": 0.5,
            **BATCH_HARD,
        }
        for name in SSL_METHODS.names()
    },
    # Issue 15: the default recipe on five-point aligned faces instead of the centre crop.
    "batch_hard+align": {**BATCH_HARD, "align_faces": "mtcnn"},
    "pml_semihard": {"loss": "triplet", "miner": "semihard", "synthesis": False, "pml": True},
    "pixels_pca": {"pixels": True},
    # Issue 16: dlib's face recognition ResNet, converted, as it is (no training): MTCNN + its own chip
    "dlib_resnet": {"converted": "dlib-resnet"},
}
# ... and fine-tuned from it on the training half with three of the family's recipes
METHODS.update(
    {
        f"dlib_resnet+{method}": {**METHODS[method], "finetune": "dlib-resnet"}
        for method in ("semihard+synthesis", "batch_hard", "multi_similarity")
    }
)
# dlib trained it with pairs 0.04 inside or outside a distance of 0.6; on our unit vectors its
# threshold (cosine 0.896) is a distance of 0.456, so the same relative gap is a triplet margin
# of about 2 * 0.04 / 0.6 * 0.456 = 0.06, not the 0.2 tuned for networks trained from scratch.
METHODS["dlib_resnet+batch_hard_m0.06"] = {**METHODS["dlib_resnet+batch_hard"], "margin": 0.06}
BUDGET = (
    "backbone",
    "pretrained",
    "image_size",
    "crop_mode",
    "embedding_size",
    "epochs",
    "lr",
    "classes_per_batch",
    "samples_per_class",
    "min_crop_scale",
    "wild",
    "protocol",
    "ssl_epochs",
    "ssl_lr",
    "test_time_flip",
)
# What rows written before a budget key existed ran with (not rewritten in the rows: a run's
# folder is named by the budget it was written with); ssl_lr was the one lr of both stages.
LEGACY_BUDGET = {"wild": False, "protocol": "test", "ssl_epochs": 10, "test_time_flip": False}
# The self-supervised stage depends on these alone; its runs are shared across the rest.
SSL_BUDGET = ("protocol", "backbone", "pretrained", "image_size", "crop_mode", "ssl_epochs", "ssl_lr")
# A converted network fixes its own input and output: these replace the command line's for its recipes.
FINETUNE_BUDGET = {
    "dlib-resnet": {
        "backbone": "dlib_resnet",
        "pretrained": "converted dlib-resnet",
        "image_size": 150,
        "embedding_size": 0,
    }
}
WILD_CANVAS = 500
VALIDATION_FRACTION = 0.75
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def pml_criterion(margin: float):
    from pytorch_metric_learning import losses, miners

    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")
    loss = losses.TripletMarginLoss(margin=margin)
    return lambda embeddings, labels: loss(embeddings, labels, miner(embeddings, labels))


def universe(name: str, protocol: str = "test") -> tuple[Path, str, float]:
    """(image folder, split rule, train fraction) that a protocol trains and scores on.

    "test": the data set's own split, its held-out part the test classes. "validation": its
    training classes alone (a folder of links to them) split again, sorted, 3:1, so that budgets
    and hyper-parameters are chosen on classes that are not the test classes."""
    spec = DATASETS[name]
    folder = SHARED / spec["folder"] / "images"
    if protocol == "test":
        return folder, spec["split"], spec["train_fraction"]
    links = RUNS / name / "validation-universe"
    if not links.is_dir():
        train_names, _ = split_classes(list(scan_folder(folder)), spec["train_fraction"], spec["split"])
        partial = links.with_name(f"{links.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for class_name in train_names:
            (partial / class_name).symlink_to(folder / class_name, target_is_directory=True)
        partial.rename(links)
    return links, "sorted", VALIDATION_FRACTION


def test_split(name: str, protocol: str = "test") -> tuple[dict, dict, dict]:
    """(train classes, all held-out classes, held-out classes with 2+ images) of a data set."""
    folder, rule, fraction = universe(name, protocol)
    classes = scan_folder(folder)
    train_names, test_names = split_classes(list(classes), fraction, rule)
    test = {n: classes[n] for n in test_names}
    return {n: classes[n] for n in train_names}, test, {n: v for n, v in test.items() if len(v) >= 2}


def evaluate(
    name: str,
    embed: Callable[[list[Image.Image]], np.ndarray],
    wild: bool = False,
    all_pairs: bool = False,
    protocol: str = "test",
) -> dict:
    """Final metrics with `embed(pictures) -> unit vectors [N, D]` (a zero row: no face found) on
    the protocol's held-out classes. `all_pairs`, for a model that never saw LFW: also every one of
    the 6,000 official pairs, and the threshold its ten folds fit on the training-half pairs alone."""
    _, test, retrievable = test_split(name, protocol)
    paths = [p for files in retrievable.values() for p in files]
    labels = np.array([i for i, files in enumerate(retrievable.values()) for _ in files])
    vectors = embed_paths(embed, paths)
    result = {**retrieval_metrics(vectors, labels), "faceless_images": int((~vectors.any(1)).sum())}
    pairs_file = DATASETS[name].get("pairs")
    if pairs_file:
        root = SHARED / DATASETS[name]["folder"]
        every = read_pairs(root / pairs_file, root / "images")
        pairs = [p for p in every if p.a.parent.name in test and p.b.parent.name in test]
        needed = sorted({p for pair in pairs for p in (pair.a, pair.b)})
        lookup = dict(zip(needed, embed_paths(embed, needed), strict=True))
        scores = np.array([float(lookup[p.a] @ lookup[p.b]) for p in pairs])
        same = np.array([p.same for p in pairs])
        verification = verification_metrics(scores, same, np.array([p.fold for p in pairs]))
        from sklearn.metrics import roc_curve

        far, tar, _ = roc_curve(same, scores)
        keep = np.unique(np.linspace(0, len(far) - 1, 200).astype(int))
        result.update({f"pairs_{k}": v for k, v in verification.items()})
        result["roc"] = {"far": far[keep].round(5).tolist(), "tar": tar[keep].round(5).tolist()}
        if wild:
            lookup = dict(zip(needed, embed_paths(embed, needed, wild_copy), strict=True))
            wild_scores = np.array([float(lookup[p.a] @ lookup[p.b]) for p in pairs])
            wild_verification = verification_metrics(wild_scores, same, np.array([p.fold for p in pairs]))
            result.update({f"wild_pairs_{k}": v for k, v in wild_verification.items()})
            result["wild_faceless_images"] = int(sum(not v.any() for v in lookup.values()))
        if all_pairs:
            result.update(unseen_model_pairs(embed, every, test))
    return result


def unseen_model_pairs(embed: Callable[[list[Image.Image]], np.ndarray], pairs: list, test: dict) -> dict:
    """All official pairs (`all_pairs_*`), and the training-half pairs' fitted threshold."""
    needed = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    lookup = dict(zip(needed, embed_paths(embed, needed), strict=True))
    scores = np.array([float(lookup[p.a] @ lookup[p.b]) for p in pairs])
    same, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    train = np.array([p.a.parent.name not in test and p.b.parent.name not in test for p in pairs])
    result = {f"all_pairs_{k}": v for k, v in verification_metrics(scores, same, folds).items()}
    result["train_pairs_threshold"] = verification_metrics(scores[train], same[train], folds[train])["threshold"]
    result["all_faceless_images"] = int(sum(not v.any() for v in lookup.values()))
    return result


def embed_paths(
    embed: Callable[[list[Image.Image]], np.ndarray],
    paths: list[Path],
    change: Callable[[Image.Image, Path], Image.Image] | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """`embed` over the pictures at `paths` (each passed through `change`), `chunk` decoded at a time."""
    out = []
    for start in tqdm(range(0, len(paths), chunk), desc="embedding test images", unit="chunk", leave=False):
        images = [open_rgb(p) for p in paths[start : start + chunk]]
        out.append(embed([change(im, p) for im, p in zip(images, paths[start:], strict=False)] if change else images))
    return np.concatenate(out)


def wild_copy(image: Image.Image, path: Path) -> Image.Image:
    """`image` at a random scale (0.3-1.0), rotation (+-20 degrees) and position on a noisy grey
    WILD_CANVAS square; the randomness is seeded by the file's name, so every method sees the same copy."""
    rng = np.random.default_rng(int(hashlib.sha1(path.name.encode()).hexdigest()[:8], 16))
    scale, angle = rng.uniform(0.3, 1.0), rng.uniform(-20, 20)
    side = round(WILD_CANVAS * 0.5 * scale)  # a 250 px LFW frame at most half the canvas
    face = image.resize((side, round(side * image.height / image.width)), Image.Resampling.BICUBIC)
    mask = Image.new("L", face.size, 255).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    face = face.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    noise = rng.normal(128, 20, (WILD_CANVAS, WILD_CANVAS, 1)).clip(0, 255).astype(np.uint8).repeat(3, axis=2)
    canvas = Image.fromarray(noise)
    canvas.paste(
        face,
        (int(rng.integers(0, WILD_CANVAS - face.width + 1)), int(rng.integers(0, WILD_CANVAS - face.height + 1))),
        mask,
    )
    return canvas


def bundle_embedder(encoder: Encoder) -> Callable[[list[Image.Image]], np.ndarray]:
    """The bundle's embeddings; for a face bundle, of each picture's largest face (zeros: none found)."""
    if not encoder.aligns_faces:
        return encoder.embed

    def embed(images: list[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), encoder.embedding_size), dtype=np.float32)
        found = encoder.find_faces(images)
        rows = [n for n, faces in enumerate(found) if faces]
        if rows:
            out[rows] = encoder.forward(np.stack([encoder.preprocess(images[n], found[n][0]) for n in rows]))
        return out

    return embed


FLIP_COMPARED = ("recall@1", "map@r", "pairs_accuracy", "pairs_tar@far=1e-3")


def score_bundle(name: str, bundle: Path, budget: dict, all_pairs: bool = False) -> dict:
    """`evaluate` on a bundle as the budget's test-time flip has it; with the flip, the same model's
    main figures without it too (`without_flip`), so that what the flip adds is a paired difference."""
    encoder = load_bundle(bundle)
    flip = budget["test_time_flip"]
    result = evaluate(name, bundle_embedder(encoder.with_flip(flip)), budget["wild"], all_pairs, budget["protocol"])
    if flip:
        plain = evaluate(name, bundle_embedder(encoder.with_flip(False)), protocol=budget["protocol"])
        result["without_flip"] = {k: plain[k] for k in FLIP_COMPARED if k in plain}
    return result


def read_results() -> list[dict]:
    return [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []


def same_budget(budget: dict) -> dict:
    """A budget as compared, with what older rows ran with filled in (`LEGACY_BUDGET`)."""
    return {**budget, **{k: v for k, v in {**LEGACY_BUDGET, "ssl_lr": budget["lr"]}.items() if k not in budget}}


def budgets_of(rows: list[dict], name: str) -> list[dict]:
    """A data set's budgets in the order first run: the first is its main comparison, later ones ablations."""
    budgets = []
    for row in rows:
        if row["dataset"] == name and same_budget(row["budget"]) not in map(same_budget, budgets):
            budgets.append(row["budget"])
    return budgets


def budget_folder(name: str, budget: dict) -> Path:
    """Where one budget's runs live: its own folder, so an ablation never overwrites the main runs."""
    tag = hashlib.sha1(json.dumps(budget, sort_keys=True).encode()).hexdigest()[:8]
    return RUNS / name / tag


def run_training(name: str, method: str, seed: int, budget: dict, args: argparse.Namespace, out: Path) -> dict:
    """One recipe at one budget: a self-supervised stage, a metric stage, or the first feeding the
    second; or a converted network fine-tuned on its own alignment."""
    spec, recipe = DATASETS[name], METHODS[method]
    pretrained = budget["pretrained"]
    if recipe.get("finetune") == "dlib-resnet":
        from lookalike.training.pretrained import convert_dlib_resnet

        pretrained = str(convert_dlib_resnet(out / "converted"))
        framing = {"align_faces": "mtcnn", "face_template": "dlib_150"}
    elif "align_faces" in recipe:
        framing = {"align_faces": recipe["align_faces"]}
    else:
        framing = {"crop_fraction": spec["crop_fraction"], "crop_mode": budget["crop_mode"]}
    folder, rule, fraction = universe(name, budget["protocol"])
    common = {
        "data": folder,
        "split": rule,
        "train_fraction": fraction,
        **framing,
        "backbone": budget["backbone"],
        "image_size": budget["image_size"],
        "seed": seed,
        "workers": args.workers,
        "cache_images": True,
        "test_time_flip": budget["test_time_flip"],  # how it is scored: a stage's weights do not depend on it
        "export": "last",  # the held-out classes are the test set: choosing the epoch on them would flatter it
    }
    started, result, ssl_seconds = time.perf_counter(), {}, 0.0
    if "ssl" in recipe:
        ssl_out = ssl_stage(name, recipe, seed, budget)
        epochs = max(1, round(budget["ssl_epochs"] * recipe.get("ssl_epochs_fraction", 1)))
        ssl_seconds = run_stage(
            TrainConfig(
                **common, out=ssl_out, ssl=recipe["ssl"], epochs=epochs, lr=budget["ssl_lr"], pretrained=pretrained
            )
        )
        ssl_rows = [json.loads(line) for line in (ssl_out / "metrics.jsonl").read_text().splitlines()]
        result["ssl_recall@1_per_epoch"] = [r["recall@1"] for r in ssl_rows]
        result["untrained_recall@1"] = ssl_rows[0]["recall@1"]
        pretrained = str(ssl_out / "last.pt")
        if "loss" not in recipe:
            out = ssl_out
        started = time.perf_counter()
    if "loss" in recipe:
        cfg = TrainConfig(
            **common,
            out=out,
            pretrained=pretrained,
            min_crop_scale=budget["min_crop_scale"],
            embedding_size=budget["embedding_size"],
            lr=budget["lr"],
            loss=recipe["loss"],
            margin=recipe.get("margin"),
            miner=recipe["miner"],
            synthesis=recipe["synthesis"],
            classes_per_batch=budget["classes_per_batch"],
            samples_per_class=budget["samples_per_class"],
            epochs=max(1, round(budget["epochs"] * recipe.get("epochs_fraction", 1))),
        )
        train(cfg, criterion=pml_criterion(0.2 if cfg.margin is None else cfg.margin) if recipe.get("pml") else None)
    total = ssl_seconds + time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result.update(score_bundle(name, out / "bundle", budget))
    return {
        **result,
        "recall@1_per_epoch": [r["recall@1"] for r in rows],
        "epoch_seconds": statistics.median(r["epoch_seconds"] for r in rows[1:]),  # robust to a paused epoch
        "train_seconds": total,
    }


def ssl_stage(name: str, recipe: dict, seed: int, budget: dict) -> Path:
    """The folder of a self-supervised stage, named by what it depends on: the label-free row and
    the rows fine-tuned from it train it once."""
    ssl_budget = {k: same_budget(budget)[k] for k in SSL_BUDGET}
    fraction = recipe.get("ssl_epochs_fraction", 1)
    stage = f"ssl_{recipe['ssl']}" + ("" if fraction == 1 else f"_x{fraction}")
    return budget_folder(name, ssl_budget) / stage / f"seed{seed}"


def run_stage(cfg: TrainConfig) -> float:
    """Train `cfg` unless an earlier job finished it (resumed if one was cut off); its wall-clock
    seconds, kept beside it so that a shared stage is charged to every row that uses it."""
    clock = cfg.out / "stage_seconds.json"
    started = time.perf_counter()
    train(cfg.model_copy(update={"resume": True}))  # a finished stage re-exports its bundle, trains nothing
    if not clock.is_file():
        clock.write_text(json.dumps({"seconds": time.perf_counter() - started}))
    return json.loads(clock.read_text())["seconds"]


def run_converted(name: str, budget: dict, out: Path) -> dict:
    """A converted pretrained network as it is: converted from its package here, then bundled."""
    from lookalike.training.pretrained import bundle_dlib_resnet, convert_dlib_resnet

    started = time.perf_counter()
    bundle_dlib_resnet(convert_dlib_resnet(out), out / "bundle")
    converted = time.perf_counter() - started
    result = score_bundle(name, out / "bundle", budget, all_pairs=True)
    return {**result, "epoch_seconds": 0.0, "train_seconds": 0.0, "convert_seconds": converted}


def run_pixels(name: str, args: argparse.Namespace) -> dict:
    """Raw pixels (grey, same crop and size as training) projected by PCA fitted on the train part."""
    from sklearn.decomposition import PCA

    spec = Preprocessing(
        image_size=args.image_size,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        crop_fraction=DATASETS[name]["crop_fraction"],
        crop_mode=args.crop_mode,
    )

    def pixels(images: list[Image.Image]) -> np.ndarray:
        return np.stack([preprocess(image.convert("L"), spec)[0].ravel() for image in images])

    train_classes, _, _ = test_split(name, args.protocol)
    train_paths = [p for files in train_classes.values() for p in files][:5000]
    pca = PCA(n_components=min(args.embedding_size, len(train_paths)), random_state=0)
    pca.fit(
        np.concatenate(
            [pixels([open_rgb(p) for p in train_paths[n : n + 256]]) for n in range(0, len(train_paths), 256)]
        )
    )

    def unit_pca(grey: np.ndarray) -> np.ndarray:
        vectors = pca.transform(grey).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed(images: list[Image.Image]) -> np.ndarray:
        grey = pixels(images)
        if not args.test_time_flip:
            return unit_pca(grey)
        side = spec.image_size
        mirrored = grey.reshape(len(grey), side, side)[:, :, ::-1].reshape(len(grey), -1)
        both = unit_pca(grey) + unit_pca(mirrored)
        return both / np.linalg.norm(both, axis=1, keepdims=True)

    return {**evaluate(name, embed, args.wild, False, args.protocol), "epoch_seconds": 0.0, "train_seconds": 0.0}


def budget_of(args: argparse.Namespace, method: str) -> dict:
    """The command line's budget, with what a fine-tuned converted network fixes for itself."""
    budget = {k: getattr(args, k) for k in BUDGET}
    budget["ssl_lr"] = budget["lr"] if args.ssl_lr is None else args.ssl_lr
    return {**budget, **FINETUNE_BUDGET.get(METHODS[method].get("finetune"), {})}


def command_run(args: argparse.Namespace) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    done = {run_key(r["dataset"], r["method"], r["seed"], r["budget"]) for r in read_results()}
    once = {m for m, recipe in METHODS.items() if "pixels" in recipe or "converted" in recipe}  # no seed to vary
    jobs = [(d, m, s) for d in args.datasets for m in args.methods for s in (args.seeds if m not in once else [0])]
    for number, (name, method, seed) in enumerate(jobs, 1):
        budget = budget_of(args, method)
        if run_key(name, method, seed, budget) in done:
            continue
        print(f"[{number}/{len(jobs)}] {name} {method} seed {seed}", flush=True)
        torch.manual_seed(seed)
        folder = budget_folder(name, budget) / method / f"seed{seed}"
        if method == "pixels_pca":
            result = run_pixels(name, args)
        elif "converted" in METHODS[method]:
            result = run_converted(name, budget, folder)
        else:
            result = run_training(name, method, seed, budget, args, out=folder)
        row = {"dataset": name, "method": method, "seed": seed, "budget": budget, "device": DEVICE, **result}
        with RESULTS.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
    command_report(args)


def run_key(dataset: str, method: str, seed: int, budget: dict) -> tuple:
    """A run is done when this dataset, method and seed ran at this budget (a new budget reruns it)."""
    return dataset, method, seed, json.dumps(same_budget(budget), sort_keys=True)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def command_report(_: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")

    rows = read_results()
    lines = [
        "# Accuracy on real data",
        "",
        "Generated by `python -m bench.accuracy report` from `docs/results.jsonl` "
        "(reproduce with `python -m bench.accuracy run`; see its `--help`). Mean ± std over seeds.",
        "Every run is scored with its last epoch's model: the held-out classes are the test classes,",
        "so picking the best epoch on them would flatter the result. Budgets and hyper-parameters are",
        "chosen on the *validation* tables instead: three quarters of the training classes train, the",
        "other quarter scores, and the test classes take no part.",
        "Times are wall-clock on the machine named in each budget line. Other work on the machine, and",
        "on a shared VM the host itself (CPU steal reached 50-75% during some runs), only ever add time,",
        "so each method's times are its fastest seed's: the median epoch and the whole run.",
        "",
    ]
    for name in DATASETS:
        budgets = [b for b in budgets_of(rows, name) if same_budget(b)["protocol"] == "test"]
        for number, budget in enumerate(budgets):
            subset = [r for r in rows if r["dataset"] == name and same_budget(r["budget"]) == same_budget(budget)]
            title = f"{name}, ablation: {json.dumps(budget_changes(budget, budgets[0]))}" if number else name
            lines += section(name, title, subset, suffix=f"_ablation{number}" if number else "")
        lines += validation_table(name, [r for r in rows if r["dataset"] == name])
    (ROOT / "docs" / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def budget_changes(budget: dict, reference: dict) -> dict:
    """What `budget` changes from `reference` (an ssl_lr equal to its lr is no change)."""
    full, main = same_budget(budget), same_budget(reference)
    return {k: v for k, v in full.items() if v != main.get(k) and not (k == "ssl_lr" and v == full["lr"])}


def validation_table(name: str, rows: list[dict]) -> list[str]:
    """The validation runs of a data set in one table, a line per (budget, method): the place where
    budgets are compared, so the knobs varied are columns rather than section titles."""
    runs = [r for r in rows if same_budget(r["budget"])["protocol"] == "validation"]
    if not runs:
        return []
    reference = runs[0]["budget"]
    groups: dict[tuple[int, int, str], list[dict]] = {}  # (method's place, SSL epochs, other changes)
    for r in runs:
        ssl = "ssl" in METHODS[r["method"]]
        changes = budget_changes(r["budget"], reference)
        dropped = ("protocol", "ssl_epochs") if ssl else ("protocol", "ssl_epochs", "ssl_lr")  # columns, or moot
        key = list(METHODS).index(r["method"]), same_budget(r["budget"])["ssl_epochs"] if ssl else 0
        groups.setdefault((*key, json.dumps({k: v for k, v in changes.items() if k not in dropped})), []).append(r)
    held_out = len(test_split(name, "validation")[2])
    lines = [
        f"## {name}, validation",
        "",
        f"Three quarters of the training classes train, {held_out} others score; the test classes take no part. "
        f"Budget of the first row, and what each row changes: `{json.dumps(same_budget(reference))}`.",
        "",
        "| method | budget changes | ssl epochs | seeds | R@1 | MAP@R | train min |",
        "|---|---|---|---|---|---|---|",
    ]
    for (place, ssl_epochs, changes), group in sorted(groups.items()):
        lines.append(
            f"| {list(METHODS)[place]} | {'' if changes == '{}' else f'`{changes}`'} | {ssl_epochs or '-'} | "
            f"{len(group)} | {mean_std([r['recall@1'] for r in group])} | {mean_std([r['map@r'] for r in group])} | "
            f"{min(r['train_seconds'] for r in group) / 60:.1f} |"
        )
    return [*lines, ""]


def section(name: str, title: str, subset: list[dict], suffix: str) -> list[str]:
    """One table (and its plots) for the runs of one data set at one budget."""
    import matplotlib.pyplot as plt

    lines = [f"## {title}", "", f"Budget: `{json.dumps(subset[0]['budget'])}` on {subset[0]['device']}.", ""]
    verification = name == "lfw"
    header = ["method", "seeds", "R@1", "R@2", "R@4", "R@8", "MAP@R"]
    wild = verification and all("wild_pairs_accuracy" in r for r in subset)
    header += ["pairs acc", "TAR@FAR=1e-3", "pairs"] if verification else []
    header += ["wild pairs acc", "no face (test / wild)"] if wild else []
    flipped = same_budget(subset[0]["budget"])["test_time_flip"]
    paired = ["recall@1", *(["pairs_accuracy"] if verification else [])]  # the same models, scored without the flip
    header += [f"{'R@1' if k == 'recall@1' else 'pairs acc'} without flip" for k in paired] if flipped else []
    header += ["s/epoch", "train min"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    fig, ax = plt.subplots(figsize=(7, 4))
    roc_fig, roc_ax = plt.subplots(figsize=(5, 5))
    for method in METHODS:
        runs = [r for r in subset if r["method"] == method]
        if not runs:
            continue
        cells = [method, str(len(runs))] + [
            mean_std([r[k] for r in runs]) for k in ("recall@1", "recall@2", "recall@4", "recall@8", "map@r")
        ]
        if verification:
            cells += [
                mean_std([r["pairs_accuracy"] for r in runs]),
                mean_std([r["pairs_tar@far=1e-3"] for r in runs]),
                str(runs[0]["pairs_pairs"]),
            ]
            cells += (
                [
                    mean_std([r["wild_pairs_accuracy"] for r in runs]),
                    f"{runs[0]['faceless_images']} / {runs[0]['wild_faceless_images']}",
                ]
                if wild
                else []
            )
            roc_ax.plot(runs[0]["roc"]["far"], runs[0]["roc"]["tar"], label=method)
        if flipped:
            cells += [
                mean_std([r["without_flip"][k] for r in runs]) if "without_flip" in runs[0] else "-" for k in paired
            ]
        cells += [
            f"{min(r['epoch_seconds'] for r in runs):.1f}",
            f"{min(r['train_seconds'] for r in runs) / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        curves = [r["recall@1_per_epoch"] for r in runs if "recall@1_per_epoch" in r]
        if curves:
            ax.plot(np.mean(curves, axis=0), marker="o", label=method)
    # the self-supervised runs' epoch 0: the untrained network's own features, once per seed (rows
    # fine-tuned from a shared stage repeat its epoch 0)
    untrained = list({r["seed"]: r["untrained_recall@1"] for r in subset if "untrained_recall@1" in r}.values())
    if untrained:
        blanks = ["-"] * (len(header) - 3)
        lines.append(
            "| "
            + " | ".join(["untrained network (epoch 0 of ssl runs)", str(len(untrained)), mean_std(untrained), *blanks])
            + " |"
        )
    for row in (r for r in subset if "all_pairs_accuracy" in r):  # a model that never saw LFW: every pair
        lines.append(
            f"\n{row['method']} on all {row['all_pairs_pairs']} official pairs: accuracy "
            f"{row['all_pairs_accuracy']:.4f} ± {row['all_pairs_accuracy_std']:.4f}, TAR@FAR=1e-3 "
            f"{row['all_pairs_tar@far=1e-3']:.3f}, {row['all_faceless_images']} images without a face; "
            f"threshold fitted on the training-half pairs {row['train_pairs_threshold']:.3f}\n"
        )
    ax.set(
        title=f"{name}: held-out Recall@1 per epoch (mean over seeds; 0 = untrained)",
        xlabel="epoch",
        ylabel="Recall@1",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / f"recall_{name}{suffix}.png", dpi=100)
    lines += ["", f"![Recall@1 per epoch](recall_{name}{suffix}.png)", ""]
    if verification:
        roc_ax.set(xscale="log", xlim=(1e-3, 1), title="LFW test-identity pairs: ROC", xlabel="FAR", ylabel="TAR")
        roc_ax.legend(fontsize=8)
        roc_fig.tight_layout()
        roc_fig.savefig(ROOT / "docs" / f"roc_lfw{suffix}.png", dpi=100)
        lines += [f"![ROC](roc_lfw{suffix}.png)", ""]
    plt.close("all")
    return lines + synthesis_lift(name, subset, suffix)


def synthesis_lift(name: str, subset: list[dict], suffix: str) -> list[str]:
    """Per loss with both variants run: Recall@1 without and with synthesis, the lift, whether it
    is outside the seed spread (the mean +- std intervals do not overlap), and a bar chart."""
    import matplotlib.pyplot as plt

    found = []
    for method in METHODS:
        plain = [r["recall@1"] for r in subset if r["method"] == method]
        synth = [r["recall@1"] for r in subset if r["method"] == f"{method}+synthesis"]
        if len(plain) > 1 and len(synth) > 1:
            found.append((method, plain, synth))
    if not found:
        return []
    lines = [
        f"### {name}: what synthesis does, loss by loss",
        "",
        "Outside the spread: the mean ± std intervals of the two do not overlap.",
        "",
        "| loss | R@1 | R@1 + synthesis | lift | outside the spread |",
        "|---|---|---|---|---|",
    ]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for x, (method, plain, synth) in enumerate(found):
        (m0, s0), (m1, s1) = ((statistics.mean(v), statistics.stdev(v)) for v in (plain, synth))
        outside = abs(m1 - m0) > s0 + s1
        lines.append(
            f"| {method} | {mean_std(plain)} | {mean_std(synth)} | {m1 - m0:+.3f} | {'yes' if outside else 'no'} |"
        )
        ax.bar(x - 0.2, m0, 0.4, yerr=s0, color="tab:blue", label="without" if x == 0 else None)
        ax.bar(x + 0.2, m1, 0.4, yerr=s1, color="tab:orange", label="with synthesis" if x == 0 else None)
    floor = [r["recall@1"] for r in subset if r["method"] == "pixels_pca"]
    if floor:
        ax.axhline(floor[0], color="grey", linestyle="--", linewidth=1, label="raw pixels + PCA")
    ax.set_xticks(range(len(found)), [m for m, _, _ in found], fontsize=8)
    ax.set(title=f"{name}: held-out Recall@1, mean ± std over seeds", ylabel="Recall@1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / f"synthesis_{name}{suffix}.png", dpi=100)
    plt.close(fig)
    return [*lines, "", f"![Synthesis lift](synthesis_{name}{suffix}.png)", ""]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The budget's model and batch shape, shared by every benchmark that trains or loads these runs."""
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--crop-mode",
        choices=get_args(CropMode),
        default=TrainConfig.model_fields["crop_mode"].default,
        help="center: the central square; squash: the whole picture, squared",
    )
    parser.add_argument("--embedding-size", type=int, default=128)
    parser.add_argument("--classes-per-batch", type=int, default=8)
    parser.add_argument("--samples-per-class", type=int, default=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="train and evaluate; append to docs/results.jsonl",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=["cars", "lfw"])
    run.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_model_arguments(run)
    run.add_argument(
        "--pretrained",
        help="start the backbone from this file: timm weights, or another run's last.pt (e.g. an LFW run's for Cars)",
    )
    run.add_argument("--epochs", type=int, default=15)
    run.add_argument("--lr", type=float, default=3e-3)
    run.add_argument(
        "--min-crop-scale",
        type=float,
        default=TrainConfig.model_fields["min_crop_scale"].default,
        help="smallest area a random training crop keeps",
    )
    run.add_argument(
        "--protocol",
        choices=["test", "validation"],
        default="test",
        help="test: train on the training classes, score on the test classes; validation: train on 3/4 of the "
        "training classes and score on the other quarter, to choose budgets and hyper-parameters",
    )
    run.add_argument("--ssl-epochs", type=int, default=LEGACY_BUDGET["ssl_epochs"], help="self-supervised stage")
    run.add_argument("--ssl-lr", type=float, help="self-supervised stage's learning rate; unset: --lr")
    run.add_argument("--workers", type=int, default=2)
    run.add_argument(
        "--wild",
        action="store_true",
        help="also score LFW's test pairs on wild copies (random scale, position, rotation on a larger canvas)",
    )
    run.add_argument(
        "--test-time-flip",
        action="store_true",
        help="embed every image and its mirror image, averaged (the bundle option); runs also record their "
        "figures without it (`without_flip`)",
    )
    run.set_defaults(handler=command_run)
    commands.add_parser("report", help="render docs/results.md and plots").set_defaults(handler=command_report)
    args = parser.parse_args()
    if not SHARED.is_dir():
        parser.exit(2, f"error: the datasets are not here: {SHARED} is missing\n")
    args.handler(args)


if __name__ == "__main__":
    main()
