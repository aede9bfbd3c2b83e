"""Forward+backward time of every loss, ours with and without Symmetrical Synthesis, against
pytorch-metric-learning's equivalent (miner + loss, same hyper-parameters), on the same P x K
batches (K = 4) of random D-dimensional embeddings, measured in one run: the contenders of a row
(ours, ours + synthesis, PML) are called in turn, `--repeats` times each (a third as many, at
least 3, above batch 512), and each one's fastest call is reported.

    python -m bench.losses [--sizes 128 256 512 1024] [--dim 512] [--device cpu|cuda] [--amp] [--json]

Columns: `synth/plain` is the cost of synthesis (goal <= 1.5), `pml/ours` how many times faster
than PML we are (goal >= 1). PML has no synthesis, and no N-pair + angular mix; its AngularLoss
takes every positive pair (ours: one pair per class, the paper's N-pair form), so that row
compares different amounts of work, and says so. PML's LiftedStructureLoss builds a
[positive pairs x negative pairs] matrix (about 12 GB at batch 1024, K = 4), so it runs only up
to `PML_MAX_BATCH`: the dash above that is PML running out of memory, not a missing peer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial

import torch

from bench.table import interleaved_best_seconds, print_rows
from lookalike.training.metric_learning import LOSSES, create_criterion

#: The losses over class vectors: nothing to mirror, so no synthesis column.
PROXY_LOSSES = tuple(name for name in LOSSES.names() if LOSSES.get(name).synthesis == "none")
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: loss name -> (our miner, PML miner and its arguments or None, PML loss and its arguments)
CASES: dict[str, tuple[str | None, tuple[str, dict] | None, tuple[str, dict] | None]] = {
    "triplet/semihard": (
        "semihard",
        ("TripletMarginMiner", {"margin": 0.2, "type_of_triplets": "semihard"}),
        ("TripletMarginLoss", {"margin": 0.2}),
    ),
    "triplet/batch_hard": ("batch_hard", ("BatchHardMiner", {}), ("TripletMarginLoss", {"margin": 0.2})),
    "contrastive": ("batch_hard", ("BatchHardMiner", {}), ("ContrastiveLoss", {"pos_margin": 0.0, "neg_margin": 1.0})),
    "multi_similarity": (
        "multi_similarity",
        ("MultiSimilarityMiner", {"epsilon": 0.1}),
        ("MultiSimilarityLoss", {"alpha": 2, "beta": 50, "base": 0.5}),
    ),
    "lifted": (None, None, ("LiftedStructureLoss", {"neg_margin": 1.0, "pos_margin": 0.0})),
    "n_pair": (None, None, ("NPairsLoss", {})),
    "angular": (None, None, ("AngularLoss", {"alpha": 45})),
    "npair_angular": (None, None, None),
    "proxy_anchor": (None, None, ("ProxyAnchorLoss", {"margin": 0.1, "alpha": 32})),
    "proxy_nca": (None, None, ("ProxyNCALoss", {"softmax_scale": 9.0})),
    "arcface": (None, None, ("ArcFaceLoss", {"margin": 28.65, "scale": 64})),
    "cosface": (None, None, ("CosFaceLoss", {"margin": 0.35, "scale": 64})),
}


PML_MAX_BATCH = {"lifted": 256}


def ours(case: str, synthesis: bool, n_classes: int, dim: int, device: torch.device) -> Criterion:
    criterion = create_criterion(
        case.split("/")[0], CASES[case][0], synthesis, num_classes=n_classes, embedding_size=dim
    )
    return criterion.to(device)


def pml(case: str, n_classes: int, dim: int, device: torch.device) -> Criterion | None:
    _, miner_spec, loss_spec = CASES[case]
    if loss_spec is None:
        return None
    from pytorch_metric_learning import losses, miners

    name, kwargs = loss_spec
    if case in PROXY_LOSSES:
        kwargs = {"num_classes": n_classes, "embedding_size": dim, **kwargs}
    loss = getattr(losses, name)(**kwargs).to(device)
    if miner_spec is None:
        return loss
    miner = getattr(miners, miner_spec[0])(**miner_spec[1])
    return lambda e, y: loss(e, y, miner(e, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--losses", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="embeddings in bfloat16 autocast (CUDA)")
    parser.add_argument("--repeats", type=int, default=9, help="calls of each contender, in turn; the best counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for n in args.sizes:
        torch.manual_seed(n)
        raw = torch.randn(n, args.dim, device=device)
        labels = torch.arange(n // 4, device=device).repeat_interleave(4)

        def run(fn: Criterion, raw=raw, labels=labels) -> None:
            x = raw.clone().requires_grad_(True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                embeddings = torch.nn.functional.normalize(x, dim=1)
            fn(embeddings.float(), labels).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()

        for case in args.losses:
            contenders = {"plain": ours(case, False, n // 4, args.dim, device)}
            if case not in PROXY_LOSSES:
                contenders["synth"] = ours(case, True, n // 4, args.dim, device)
            theirs = None if n > PML_MAX_BATCH.get(case, n) else pml(case, n // 4, args.dim, device)
            if theirs is not None:
                contenders["pml"] = theirs
            best = interleaved_best_seconds(
                {name: partial(run, fn) for name, fn in contenders.items()},
                repeats=args.repeats if n <= 512 else max(3, args.repeats // 3),
            )
            plain, synth, theirs = (1000 * best[k] if k in best else None for k in ("plain", "synth", "pml"))
            print(f"batch {n} {case}: ours {plain:.1f} ms", file=sys.stderr, flush=True)
            rows.append(
                {
                    "loss": case,
                    "batch": n,
                    "ours_ms": plain,
                    "ours_synth_ms": synth,
                    "pml_ms": theirs,
                    "synth/plain": synth / plain if synth else None,
                    "pml/ours": theirs / plain if theirs else None,
                }
            )
    print_rows(
        rows,
        args.json,
        f"losses, forward+backward, dim {args.dim}, K=4, on {device} ({torch.get_num_threads()} threads)"
        + (", bf16 autocast" if args.amp else ""),
    )


if __name__ == "__main__":
    main()
