"""The training loop: read it top to bottom in `train`.

Data -> model -> objective -> AdamW with warm-up and cosine decay. The objective is labelled
metric learning (synthesis + miner + loss over P x K batches) or, with `--ssl`, a
self-supervised method over two views of unlabelled images (`objectives`). Whatever the
objective trains beside the encoder (class proxies; a projector, key encoder and queue) lives in
`last.pt` for `--resume`, never in the bundle.
After every epoch: evaluate on held-out classes (when there are any) and check for collapse,
append to metrics.jsonl, redraw the plot, checkpoint (last, and best by Recall@1). At the end:
export the best (or last) model as a bundle.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from lookalike.bundle import BundleSpec, write_bundle
from lookalike.errors import ConfigError
from lookalike.faces import FaceAlignment
from lookalike.images import Preprocessing
from lookalike.training.config import TrainConfig
from lookalike.training.data import (
    DataError,
    ImageDataset,
    collate,
    eval_prepare,
    scan_folder,
    scan_unlabelled,
    split_classes,
)
from lookalike.training.distributed import Dist, barrier, init_distributed, shutdown
from lookalike.training.evaluate import embed_dataset, evaluate_embeddings, unlabelled_threshold
from lookalike.training.faces import FaceTable, default_cache, locate_faces, with_faces
from lookalike.training.model import EmbeddingModel
from lookalike.training.objectives import MetricObjective, SelfSupervisedObjective
from lookalike.training.plots import plot_metrics
from lookalike.training.self_supervised import collapse_metrics, collapse_warning

log = logging.getLogger(__name__)
MONITOR_IMAGES = 512  # training images that stand in for a held-out set in the collapse check


def train(cfg: TrainConfig, criterion: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict:
    """Train, evaluate every epoch, export the best model. Returns the summary it logs.

    `criterion` replaces the one the config names (any `(embeddings, labels) -> loss`): the
    accuracy benchmark drops pytorch-metric-learning's miner and loss in this way.
    """
    device = resolve_device(cfg.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    seed_everything(cfg.seed + dist.rank)
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)

    # channels_last: oneDNN and cuDNN run convolutions faster in NHWC (about 10% on a 2-core CPU)
    model = EmbeddingModel(cfg.backbone, None if cfg.ssl else cfg.embedding_size or None, cfg.pretrained).to(
        device, memory_format=torch.channels_last
    )
    data_config = model.data_config()
    spec = Preprocessing(
        image_size=cfg.image_size,
        mean=data_config["mean"],
        std=data_config["std"],
        crop_fraction=cfg.crop_fraction,
        crop_mode=cfg.crop_mode,
        face=FaceAlignment(detector=cfg.align_faces, template=cfg.face_template, margin=cfg.face_margin)
        if cfg.align_faces
        else None,
    )
    if cfg.ssl:
        train_images, eval_classes = load_unlabelled_splits(cfg)
        faces, faceless = find_faces(cfg, spec, {"": train_images, **(eval_classes or {})}, dist)
        if faces is not None:
            train_images = [p for p in train_images if p in faces]
            eval_classes = with_faces(eval_classes, faces) if eval_classes else eval_classes
        objective = SelfSupervisedObjective(cfg, model, spec, train_images, dist, faces)
    else:
        train_classes, eval_classes = load_splits(cfg)
        faces, faceless = find_faces(cfg, spec, {**train_classes, **eval_classes}, dist)
        if faces is not None:
            train_classes, eval_classes = with_faces(train_classes, faces), with_faces(eval_classes, faces)
        objective = MetricObjective(cfg, model, spec, train_classes, dist, criterion, faces)
    objective.to(device)
    train_set, sampler = objective.train_set, objective.sampler
    eval_set = ImageDataset(eval_classes, eval_prepare(spec, faces), cache=cfg.cache_images) if eval_classes else None
    monitor_set = eval_set or ImageDataset(
        {"training sample": [s.path for s in train_set.samples[:: max(1, len(train_set) // MONITOR_IMAGES)]]},
        eval_prepare(spec, faces),
    )
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        persistent_workers=cfg.workers > 0,
    )
    optimizer = torch.optim.AdamW(objective.parameter_groups(), weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * len(sampler)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.warmup_epochs * len(sampler), total_steps)
    )
    module = objective.module
    net = (
        DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        if dist.enabled
        else module
    )
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    amp = cfg.amp and device.type == "cuda"

    def evaluate() -> dict:
        return evaluate_model(model, eval_set, monitor_set, device, cfg.test_time_flip)

    start_epoch, best = 0, {"recall@1": -1.0, "map@r": -1.0}
    if cfg.resume and (out / "last.pt").is_file():
        start_epoch, best = load_checkpoint(out / "last.pt", model, objective, optimizer, scheduler)
        log.info("resumed from %s at epoch %d", out / "last.pt", start_epoch)
    elif dist.is_main:
        (out / "metrics.jsonl").unlink(missing_ok=True)
        counted = {"faceless_images": faceless} if faces is not None else {}
        log_epoch(out, {"epoch": 0, "loss": None, **counted, **evaluate()})
    if dist.is_main:
        log.info(
            "training %s%s on %d images%s, %s, %d steps/epoch on %s",
            cfg.backbone,
            f" self-supervised ({cfg.ssl}, labels unused)" if cfg.ssl else "",
            len(train_set),
            "" if cfg.ssl else f" of {len(train_classes)} classes ({sampler.dropped_classes} with <2 images dropped)",
            f"evaluating on {len(eval_set)} images of {len(eval_classes)} held-out classes"
            if eval_set
            else "no held-out classes to evaluate on (collapse is checked on training images)",
            len(sampler),
            device,
        )

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        net.train()
        started, losses, skipped = time.perf_counter(), [], 0
        for images, labels, n_skipped in tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not dist.is_main):
            skipped += n_skipped
            if len(images) < 2:
                continue
            loss = objective.loss(net, images, labels, device, amp)
            optimizer.zero_grad(set_to_none=True)
            objective.backward(loss)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        if skipped:
            log.warning("epoch %d: skipped %d unreadable image(s)", epoch, skipped)
        if dist.is_main:
            row = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "lr": scheduler.get_last_lr()[0],
                "epoch_seconds": round(time.perf_counter() - started, 2),
                "skipped_images": skipped,
                **evaluate(),
            }
            log_epoch(out, row)
            if eval_set and (row["recall@1"], row["map@r"]) > (best["recall@1"], best["map@r"]):  # MAP@R breaks ties
                best = row
                torch.save(model.state_dict(), out / "best.pt")
            save_checkpoint(out / "last.pt", model, objective, optimizer, scheduler, epoch, best)
        barrier(dist)

    summary = {}
    if dist.is_main:
        if cfg.export == "best" and eval_set:
            model.load_state_dict(torch.load(out / "best.pt", map_location=device))
            chosen = best
        else:  # the model in memory is the last epoch's, also when a finished run is resumed
            chosen = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        bundle_spec = write_bundle(
            out / "bundle",
            model,
            BundleSpec(
                backbone=cfg.backbone,
                embedding_size=model.embedding_size,
                threshold=chosen["verify_threshold"],
                preprocessing=spec,
                test_time_flip=cfg.test_time_flip,
                metrics=chosen,
                data={
                    "root": str(cfg.data),
                    **({} if cfg.ssl else {"train_classes": len(train_classes)}),
                    "train_images": len(train_set),
                    "eval_classes": len(eval_classes or {}),
                    "eval_images": len(eval_set or []),
                    **({"faceless_images": faceless} if faces is not None else {}),
                    "threshold_from": "held-out classes" if eval_set else "random pairs of unlabelled images",
                    "config": json.loads(cfg.model_dump_json()),
                },
            ),
        )
        summary = {
            "bundle": str(out / "bundle"),
            "exported_epoch": chosen["epoch"],
            **{k: chosen[k] for k in ("recall@1", "map@r") if k in chosen},
            "threshold": bundle_spec.threshold,
            "test_time_flip": bundle_spec.test_time_flip,
            "content_hash": bundle_spec.content_hash,
        }
    shutdown(dist)
    return summary


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def find_faces(
    cfg: TrainConfig, spec: Preprocessing, groups: dict[str, list[Path]], dist: Dist
) -> tuple[FaceTable | None, int]:
    """(each image's largest face, how many images have none) for an --align-faces run, else (None, 0).
    The main process detects and fills the cache; the other ranks then read it."""
    if spec.face is None:
        return None, 0
    paths = [p for files in groups.values() for p in files]
    cache = cfg.face_cache or default_cache(spec.face)
    if not dist.is_main:
        barrier(dist)
    table, faceless, unreadable = locate_faces(paths, spec.face, cache)
    if dist.is_main:
        barrier(dist)
    if not table:
        raise DataError(f"{cfg.data}: the {spec.face.detector} detector found no face in any of {len(paths)} images")
    return table, faceless + unreadable


def load_splits(cfg: TrainConfig) -> tuple[dict, dict]:
    classes = scan_folder(cfg.data)
    if cfg.eval_data is not None:
        return classes, scan_folder(cfg.eval_data)
    if len(classes) < 2:
        raise DataError(f"{cfg.data} has {len(classes)} class; training needs several (one folder per class)")
    train_names, eval_names = split_classes(list(classes), cfg.train_fraction, cfg.split)
    if len(train_names) < 2 or len(eval_names) < 2:
        raise DataError(
            f"{cfg.data}: the {cfg.split} split at {cfg.train_fraction} leaves {len(train_names)} "
            f"training and {len(eval_names)} held-out classes; both need at least 2"
        )
    return {n: classes[n] for n in train_names}, {n: classes[n] for n in eval_names}


def load_unlabelled_splits(cfg: TrainConfig) -> tuple[list[Path], dict | None]:
    """(training images, held-out classes or None) for a self-supervised run.

    Labels are never used for training. Class folders are split into training and held-out
    classes as a labelled run would split them, so the held-out images are never seen; loose
    images at the top of the folder always train. A flat folder has nothing to evaluate on
    unless `--eval-data` names class folders.
    """
    loose, classes = scan_unlabelled(cfg.data)
    if cfg.eval_data is not None:
        return loose + [p for files in classes.values() for p in files], scan_folder(cfg.eval_data)
    if not classes:
        return loose, None
    train_classes, eval_classes = load_splits(cfg)
    return loose + [p for files in train_classes.values() for p in files], eval_classes


def warmup_cosine(warmup_steps: float, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def evaluate_model(
    model: torch.nn.Module,
    eval_set: ImageDataset | None,
    monitor_set: ImageDataset,
    device: torch.device,
    flip: bool = False,
) -> dict:
    """Held-out retrieval and verification metrics when there are held-out classes, and the
    collapse metrics (on the held-out images, else on a fixed sample of training images), with
    the bundle's test-time flip, so that its threshold fits what it will serve."""
    embeddings, labels = embed_dataset(model, monitor_set, device, flip=flip)
    collapse = collapse_metrics(embeddings)
    if eval_set is None:
        return {**collapse, "verify_threshold": unlabelled_threshold(embeddings)}
    return {**evaluate_embeddings(embeddings, labels), **collapse}


def log_epoch(out: Path, row: dict) -> None:
    with (out / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    plot_metrics(out / "metrics.jsonl", out / "metrics.png")
    retrieval = f", Recall@1 {row['recall@1']:.4f}, MAP@R {row['map@r']:.4f}" if "recall@1" in row else ""
    log.info(
        "epoch %d: loss %s%s, embedding std %.2f of healthy, effective rank %.1f",
        row["epoch"],
        "-" if row["loss"] is None else f"{row['loss']:.4f}",
        retrieval,
        row["embedding_std_ratio"],
        row["effective_rank"],
    )
    # An untrained network's pooled ReLU features are bunched in one orthant: only training can collapse.
    if row["loss"] is not None and (warning := collapse_warning(row)) is not None:
        log.warning("epoch %d: %s", row["epoch"], warning)


def save_checkpoint(path: Path, model, objective, optimizer, scheduler, epoch: int, best: dict) -> None:
    state = {
        "model": model.state_dict(),
        "objective": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "best": best,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # an interrupted save never leaves a half-written last.pt


def load_checkpoint(path: Path, model, objective, optimizer, scheduler) -> tuple[int, dict]:
    state = torch.load(path, map_location="cpu")
    model.load_state_dict(state["model"])
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["epoch"], state["best"]
