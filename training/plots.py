"""Training curves as a PNG, redrawn from metrics.jsonl after every epoch."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lookalike.training.scoring import RECALL_KS


def plot_metrics(metrics_file: Path, out: Path) -> None:
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    fig, (ax_loss, ax_recall) = plt.subplots(1, 2, figsize=(11, 4))
    trained = [r for r in rows if r.get("loss") is not None]
    ax_loss.plot([r["epoch"] for r in trained], [r["loss"] for r in trained], marker="o")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    for k in RECALL_KS:
        ax_recall.plot([r["epoch"] for r in rows], [r[f"recall@{k}"] for r in rows], marker="o", label=f"Recall@{k}")
    ax_recall.plot([r["epoch"] for r in rows], [r["map@r"] for r in rows], "k--", marker="s", label="MAP@R")
    ax_recall.set(title="held-out classes (epoch 0 = untrained)", xlabel="epoch", ylabel="score", ylim=(0, 1.02))
    ax_recall.legend(loc="lower right")
    for ax in (ax_loss, ax_recall):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
