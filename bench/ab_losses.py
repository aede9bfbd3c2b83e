"""A/B of the metric-learning losses: this checkout against a git revision, in one process.

    python -m bench.ab_losses --base REV [--sizes 512 1024] [--losses ...] [--repeats 15]

The revision's `training/metric_learning/` is read with `git show` into a temporary package (its
imports of itself renamed), so both versions run side by side on the same batches, their calls
taking turns (`interleaved_best_seconds`): on a VM whose speed drifts between minutes, separate
runs of `bench.losses` cannot tell a 10% change from the drift. Prints each row's forward +
backward milliseconds, plain and with synthesis, for both versions, and the ratios.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from types import ModuleType

import torch

from bench.losses import CASES, PROXY_LOSSES
from bench.table import interleaved_best_seconds, print_rows
from lookalike.training.metric_learning import create_criterion

PACKAGE = "training/metric_learning"
MODULE = "lookalike.training.metric_learning"


def load_revision(rev: str, into: Path) -> ModuleType:
    """The metric-learning package as it was at `rev`, imported as `metric_learning_<rev>`."""
    root = Path(__file__).resolve().parent.parent
    name = "metric_learning_" + "".join(c if c.isalnum() else "_" for c in rev)
    listing = subprocess.run(
        ["git", "-C", str(root), "ls-tree", "--name-only", f"{rev}:{PACKAGE}"],
        check=True,
        capture_output=True,
        text=True,
    )
    (into / name).mkdir()
    for file in listing.stdout.split():
        if file.endswith(".py"):
            source = subprocess.run(
                ["git", "-C", str(root), "show", f"{rev}:{PACKAGE}/{file}"], check=True, capture_output=True, text=True
            ).stdout
            (into / name / file).write_text(source.replace(MODULE, name))
    sys.path.insert(0, str(into))
    return importlib.import_module(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare against (e.g. HEAD~3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--dim", type=int, default=512)
    pair_losses = [case for case in CASES if case not in PROXY_LOSSES]
    parser.add_argument("--losses", nargs="+", choices=pair_losses, default=pair_losses)
    parser.add_argument("--repeats", type=int, default=15, help="calls of each contender, in turn; the best counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"base": load_revision(args.base, Path(tmp)).create_criterion, "new": create_criterion}
        for n in args.sizes:
            torch.manual_seed(n)
            raw = torch.randn(n, args.dim)
            labels = torch.arange(n // 4).repeat_interleave(4)

            def run(criterion, raw=raw, labels=labels) -> None:
                x = raw.clone().requires_grad_(True)
                criterion(torch.nn.functional.normalize(x, dim=1), labels).backward()

            for case in args.losses:
                loss, miner = case.split("/")[0], CASES[case][0] or "auto"
                contenders = {
                    f"{tag}{'_synth' if synthesis else ''}": partial(
                        run, create(loss, miner, synthesis, num_classes=n // 4, embedding_size=args.dim)
                    )
                    for tag, create in versions.items()
                    for synthesis in (False, True)
                }
                ms = {k: 1000 * v for k, v in interleaved_best_seconds(contenders, args.repeats).items()}
                print(f"batch {n} {case}: done", file=sys.stderr, flush=True)
                rows.append(
                    {
                        "loss": case,
                        "batch": n,
                        "base_ms": ms["base"],
                        "base_synth_ms": ms["base_synth"],
                        "base_synth/plain": ms["base_synth"] / ms["base"],
                        "new_ms": ms["new"],
                        "new_synth_ms": ms["new_synth"],
                        "new_synth/plain": ms["new_synth"] / ms["new"],
                        "plain new/base": ms["new"] / ms["base"],
                        "synth new/base": ms["new_synth"] / ms["base_synth"],
                    }
                )
    print_rows(rows, args.json, f"A/B against {args.base}: forward+backward, dim {args.dim}, K=4, milliseconds")


if __name__ == "__main__":
    main()
