"""Forward+backward time of the semi-hard triplet loss: ours (with/without synthesis) vs
pytorch-metric-learning's TripletMarginMiner("semihard") + TripletMarginLoss, and vs a dense
batch-hard loss; and of the multi-similarity miner + loss, ours vs pytorch-metric-learning's.
All on the same P x K batches (K = 4), measured in one run.

    python -m bench.losses [--sizes 128 256 512 1024] [--dim 512] [--device cpu|cuda] [--json]
"""

from __future__ import annotations

import argparse

import torch

from bench.table import median_seconds, print_rows
from lookalike.training.metric_learning import create_criterion


def dense_batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """The cheapest useful triplet loss: one distance matrix, a masked max and min per row."""
    dist = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    hardest_pos = dist.masked_fill(~same, 0).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    return torch.relu(hardest_pos - hardest_neg + margin).mean()


def make_pml(miner_name: str, loss_name: str, **miner_kwargs: object):
    from pytorch_metric_learning import losses, miners

    miner = getattr(miners, miner_name)(**miner_kwargs)
    loss = getattr(losses, loss_name)()
    return lambda e, y: loss(e, y, miner(e, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    methods = {
        "ours_semihard": create_criterion("triplet", "semihard", synthesis=False),
        "ours_semihard_synth": create_criterion("triplet", "semihard", synthesis=True),
        "pml_semihard": make_pml("TripletMarginMiner", "TripletMarginLoss", margin=0.2, type_of_triplets="semihard"),
        "dense_batch_hard": dense_batch_hard,
        "ours_multi_similarity": create_criterion("multi_similarity", "multi_similarity", synthesis=False),
        "pml_multi_similarity": make_pml("MultiSimilarityMiner", "MultiSimilarityLoss", epsilon=0.1),
    }
    rows = []
    for n in args.sizes:
        torch.manual_seed(n)
        raw = torch.randn(n, args.dim, device=device)
        labels = torch.arange(n // 4, device=device).repeat_interleave(4)

        def step(fn, raw=raw, labels=labels):
            def run():
                x = raw.clone().requires_grad_(True)
                fn(torch.nn.functional.normalize(x, dim=1), labels).backward()
                if device.type == "cuda":
                    torch.cuda.synchronize()

            return run

        ms = {
            name: 1000 * median_seconds(step(fn), repeats=args.repeats if n <= 512 else 2)
            for name, fn in methods.items()
        }
        rows.append(
            {
                "batch": n,
                **{f"{k}_ms": v for k, v in ms.items()},
                "pml/ours": ms["pml_semihard"] / ms["ours_semihard"],
                "pml/ours_synth": ms["pml_semihard"] / ms["ours_semihard_synth"],
                "ours/batch_hard": ms["ours_semihard"] / ms["dense_batch_hard"],
                "ours_synth/batch_hard": ms["ours_semihard_synth"] / ms["dense_batch_hard"],
                "pml/ours_ms": ms["pml_multi_similarity"] / ms["ours_multi_similarity"],
            }
        )
    print_rows(
        rows,
        args.json,
        f"semi-hard triplet and multi-similarity losses, forward+backward, dim {args.dim}, K=4, on {device} "
        f"({torch.get_num_threads()} threads)",
    )


if __name__ == "__main__":
    main()
