"""bench.ab_losses loads a past revision's losses beside this checkout's and times both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ab_against_a_revision_runs_both_versions_side_by_side():
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: there is no revision to compare against")
    command = ["-m", "bench.ab_losses", "--base", "HEAD", "--sizes", "16", "--repeats", "1", "--json"]
    out = subprocess.run(
        [sys.executable, *command, "--losses", "triplet/semihard", "n_pair"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout)["rows"]
    assert [(r["loss"], r["batch"]) for r in rows] == [("triplet/semihard", 16), ("n_pair", 16)]
    assert all(r[k] > 0 for r in rows for k in ("base_ms", "base_synth_ms", "new_ms", "new_synth_ms"))


def test_the_revision_is_its_own_package_not_this_checkout(tmp_path):
    """Mutation tried: without the import renaming, the revision's modules import this checkout's
    pieces, and the two registries are one object."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: there is no revision to compare against")
    from bench.ab_losses import load_revision
    from lookalike.training import metric_learning

    base = load_revision("HEAD", tmp_path)
    assert Path(base.__file__).is_relative_to(tmp_path)
    assert base.LOSSES is not metric_learning.LOSSES
    assert base.losses.TripletMarginLoss is not metric_learning.TripletMarginLoss
