"""The embedding network: any timm backbone, a linear head, L2 normalisation."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

import lookalike.training.backbones  # noqa: F401  (registers our backbones with timm)
from lookalike.errors import ConfigError

log = logging.getLogger(__name__)

HUB = "timm"  # `--pretrained timm`: the backbone's own weights from the Hugging Face hub


class EmbeddingModel(nn.Module):
    """timm backbone (pooled features) -> Linear -> BatchNorm -> unit-length embedding.

    Unit length makes cosine, Euclidean and squared Euclidean rank neighbours the same way and
    lets the index use inner-product search. Without `embedding_size` there is no head: the
    embedding is the backbone's pooled features, which is what self-supervised training learns
    (its projector is the method's, and is dropped at export).
    """

    def __init__(self, backbone: str, embedding_size: int | None = 128, pretrained: str | None = None) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained)
        width = self.backbone.num_features
        self.embedding_size = embedding_size or width
        self.head = nn.Linear(width, embedding_size) if embedding_size else nn.Identity()
        self.norm = nn.BatchNorm1d(embedding_size) if embedding_size else nn.Identity()

    def forward(self, images: Tensor, normalize: bool = True) -> Tensor:
        """Unit-length embeddings; `normalize=False` gives the raw head output to a loss that wants
        it in training (N-pair's norm penalty, a self-supervised projector). The exported bundle
        always normalises."""
        raw = self.norm(self.head(self.backbone(images)))
        return nn.functional.normalize(raw, dim=1) if normalize else raw

    def data_config(self) -> dict:
        """The backbone's own preprocessing (mean/std), as timm resolves it."""
        return timm.data.resolve_data_config({}, model=self.backbone)


def create_backbone(name: str, pretrained: str | None) -> nn.Module:
    """A timm backbone without classifier, from random weights, a local file or the hub.

    A local file is either timm/ImageNet weights (timm loads it as it would a hub download, so
    `--pretrained timm` and a file take the same path) or a Lookalike run's checkpoint, whose
    backbone part is kept and whose head, loss proxies or self-supervised projector are not.
    The log says which it was.
    """
    if not timm.is_model(name):
        raise ConfigError(f"unknown backbone {name!r}: not a timm model name (see timm.list_models())")
    if pretrained is None:
        return timm.create_model(name, num_classes=0)
    if pretrained == HUB:
        log.info("backbone %s: the hub's pretrained weights", name)
        return timm.create_model(name, num_classes=0, pretrained=True)
    path = Path(pretrained)
    if not path.is_file():
        raise ConfigError(f"pretrained weights file {pretrained} does not exist")
    run_backbone = run_backbone_weights(path)
    if run_backbone is None:
        log.info("backbone %s: timm weights from %s", name, path)
        return timm.create_model(name, num_classes=0, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    model = timm.create_model(name, num_classes=0)
    try:
        model.load_state_dict(run_backbone)
    except RuntimeError as err:
        raise ConfigError(
            f"{path} holds a {len(run_backbone)}-tensor backbone that does not fit {name}: {err}"
        ) from None
    log.info(
        "backbone %s: %d tensors from the run checkpoint %s (its head and any projector left out)",
        name,
        len(run_backbone),
        path,
    )
    return model


def run_backbone_weights(path: Path) -> dict[str, Tensor] | None:
    """The backbone part of a Lookalike checkpoint (`last.pt` or `best.pt` of a run), or None for
    any other file. Starting from a run trained on a large set (faces, a product catalogue) or
    self-supervised on the user's own unlabelled images is how a small set gets features it could
    not learn alone."""
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    state = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(state, dict) or not any(k.startswith("backbone.") for k in state):
        return None
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
