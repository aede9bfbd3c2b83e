"""How much training signal each miner finds in a P x K batch, with and without Symmetrical Synthesis.

Explains the accuracy report: FaceNet semi-hard mining keeps an anchor-positive pair only when
some negative lies in the band d(a, p) < d(a, n) < d(a, p) + margin. With 28 negatives per anchor
that band is often empty, so many pairs give no triplet and no gradient; synthesis adds two
mirrored points per positive pair as candidate negatives, so more pairs find one. Batch-hard always
yields one triplet per anchor; what matters there is whether its loss is still positive.

    python -m bench.mining_yield                  # every seed-0 model of LFW's main budget + untrained
    python -m bench.mining_yield --dataset cars --runs runs/accuracy/cars/<budget>/semihard/seed0

Columns: `semihard pairs` = share of anchor-positive pairs that get a semi-hard triplet;
`batch_hard active` = share of anchors whose hardest triplet still has a positive loss;
`hard pairs` = share of pairs with a negative closer to the anchor than the positive (the pairs
semi-hard mining skips, and where ranking errors come from); ` +syn` = the same over the pool
grown by synthesis.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch
from torch import Tensor

from bench.accuracy import DATASETS, SHARED, add_model_arguments, budget_folder, budgets_of, read_results, test_split
from bench.table import print_rows
from lookalike.images import Preprocessing, open_rgb, preprocess
from lookalike.training import EmbeddingModel, PKSampler
from lookalike.training.metric_learning import Pool, Triplets, create_distance, create_miner, symmetrical_synthesis


def load_model(run: Path | None, backbone: str, embedding_size: int) -> EmbeddingModel:
    """The run's last-epoch weights (the model the accuracy bench scores), or a freshly initialised
    network when `run` is None."""
    torch.manual_seed(0)
    model = EmbeddingModel(backbone, embedding_size)
    if run is not None:
        model.load_state_dict(torch.load(run / "last.pt", map_location="cpu")["model"])
    return model.eval()


def batches(dataset: str, spec: Preprocessing, args: argparse.Namespace) -> list[tuple[Tensor, Tensor]]:
    """The first `args.batches` P x K batches of the training classes as the seed-0 loop draws
    them, as (preprocessed images, labels): every model is measured on the same pixels."""
    train_classes, _, _ = test_split(dataset)
    samples = [(path, label) for label, files in enumerate(train_classes.values()) for path in files]
    sampler = PKSampler([label for _, label in samples], args.classes_per_batch, args.samples_per_class, seed=0)
    drawn = []
    for indices in sampler:
        images = torch.stack([torch.from_numpy(preprocess(open_rgb(samples[i][0]), spec)) for i in indices])
        drawn.append((images, torch.tensor([samples[i][1] for i in indices])))
        if len(drawn) == args.batches:
            break
    return drawn


def active_share(embeddings: Tensor, pool: Pool, triplets: Triplets, margin: float) -> float:
    """Share of the batch's anchors whose mined triplet has d(a, p) - d(a, n) + margin > 0."""
    euclidean = create_distance("euclidean")
    d_ap = pool.paired_distances(euclidean, triplets.anchor, triplets.positive)
    d_an = pool.paired_distances(euclidean, triplets.anchor, triplets.negative)
    return float((d_ap - d_an + margin > 0).float().sum()) / embeddings.shape[0]


@torch.no_grad()
def measure(model: EmbeddingModel, drawn: list[tuple[Tensor, Tensor]], margin: float) -> dict[str, float]:
    semihard, batch_hard = create_miner("semihard", margin=margin), create_miner("batch_hard")
    totals: defaultdict[str, float] = defaultdict(float)
    for images, labels in drawn:
        embeddings = model(images)
        same = labels[:, None] == labels[None, :]
        n_pairs = int(same.sum()) - len(labels)  # ordered (a, p), a != p
        dist = torch.cdist(embeddings, embeddings)
        nearest_negative = dist.masked_fill(same, float("inf")).min(dim=1).values
        positive = same & ~torch.eye(len(labels), dtype=torch.bool)
        hard = positive & (dist > nearest_negative[:, None])  # a negative is closer than p
        totals["hard pairs"] += float(hard.sum()) / n_pairs
        for suffix, pool in (
            ("", Pool.of_batch(embeddings, labels)),
            (" +syn", symmetrical_synthesis(embeddings, labels)),
        ):
            values = {
                "semihard pairs": len(semihard(embeddings, labels, pool).anchor) / n_pairs,
                "batch_hard active": active_share(embeddings, pool, batch_hard(embeddings, labels, pool), margin),
            }
            for key, value in values.items():
                totals[key + suffix] += value
    return {key: round(total / len(drawn), 3) for key, total in sorted(totals.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(DATASETS), default="lfw")
    parser.add_argument("--runs", type=Path, nargs="*", help="training output folders (default: main budget, seed 0)")
    add_model_arguments(parser)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        parser.exit(2, f"error: the datasets are not here: {SHARED} is missing\n")

    runs = args.runs
    if runs is None:
        budgets = budgets_of(read_results(), args.dataset)
        runs = sorted(budget_folder(args.dataset, budgets[0]).glob("*/seed0")) if budgets else []
    models = {"untrained": load_model(None, args.backbone, args.embedding_size)}
    models.update(
        {
            f"{r.parent.name}/{r.name}": load_model(r, args.backbone, args.embedding_size)
            for r in runs
            if (r / "last.pt").is_file()
        }
    )
    config = models["untrained"].data_config()
    spec = Preprocessing(
        image_size=args.image_size,
        mean=config["mean"],
        std=config["std"],
        crop_fraction=DATASETS[args.dataset]["crop_fraction"],
        crop_mode=args.crop_mode,
    )
    drawn = batches(args.dataset, spec, args)
    rows = [{"model": name, **measure(model, drawn, args.margin)} for name, model in models.items()]
    print_rows(rows, args.json, f"mining yield on {args.dataset}, {len(drawn)} batches of P x K")


if __name__ == "__main__":
    main()
