"""Training curves as a PNG, redrawn from metrics.jsonl after every epoch."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lookalike.training.scoring import RECALL_KS
from lookalike.training.self_supervised.collapse import COLLAPSED_STD_RATIO


def plot_metrics(metrics_file: Path, out: Path) -> None:
    """Loss, held-out retrieval (when there are held-out classes) and the collapse metrics."""
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_recall, ax_collapse) = plt.subplots(1, 3, figsize=(16, 4))
    trained = [r for r in rows if r.get("loss") is not None]
    ax_loss.plot([r["epoch"] for r in trained], [r["loss"] for r in trained], marker="o")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    if "recall@1" in rows[0]:
        for k in RECALL_KS:
            ax_recall.plot(epochs, [r[f"recall@{k}"] for r in rows], marker="o", label=f"Recall@{k}")
        ax_recall.plot(epochs, [r["map@r"] for r in rows], "k--", marker="s", label="MAP@R")
        ax_recall.legend(loc="lower right")
    else:
        ax_recall.text(0.5, 0.5, "no held-out classes\n(pass --eval-data)", ha="center", va="center")
    ax_recall.set(title="held-out classes (epoch 0 = untrained)", xlabel="epoch", ylabel="score", ylim=(0, 1.02))
    ax_collapse.plot(epochs, [r["embedding_std_ratio"] for r in rows], marker="o", label="std × √d (healthy ≈ 1)")
    ax_collapse.axhline(COLLAPSED_STD_RATIO, color="red", linestyle=":", label="collapsed")
    ax_collapse.set(title="collapse check", xlabel="epoch", ylabel="per-dimension std × √d", ylim=(0, None))
    ax_rank = ax_collapse.twinx()
    ax_rank.plot(epochs, [r["effective_rank"] for r in rows], "g--", marker="s", label="effective rank")
    ax_rank.set(ylabel="effective rank", ylim=(0, None))
    handles = ax_collapse.get_legend_handles_labels()[0] + ax_rank.get_legend_handles_labels()[0]
    ax_collapse.legend(handles=handles, loc="lower left")
    for ax in (ax_loss, ax_recall, ax_collapse):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
