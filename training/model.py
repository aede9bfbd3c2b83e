"""The embedding network: any timm backbone, a linear head, L2 normalisation."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from lookalike.errors import ConfigError


class EmbeddingModel(nn.Module):
    """timm backbone (pooled features) -> Linear -> BatchNorm -> unit-length embedding.

    Unit length makes cosine, Euclidean and squared Euclidean rank neighbours the same way and
    lets the index use inner-product search.
    """

    def __init__(
        self,
        backbone: str,
        embedding_size: int = 128,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if not timm.is_model(backbone):
            raise ConfigError(f"unknown backbone {backbone!r}: not a timm model name (see timm.list_models())")
        kwargs: dict = {"num_classes": 0}
        run_backbone = None
        if pretrained is not None:
            if not Path(pretrained).is_file():
                raise ConfigError(f"pretrained weights file {pretrained} does not exist")
            run_backbone = run_backbone_weights(Path(pretrained))
            if run_backbone is None:  # a timm/ImageNet weights file: timm loads it as it would a hub download
                kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained)})
        self.backbone = timm.create_model(backbone, **kwargs)
        if run_backbone is not None:
            self.backbone.load_state_dict(run_backbone)
        self.head = nn.Linear(self.backbone.num_features, embedding_size)
        self.norm = nn.BatchNorm1d(embedding_size)

    def forward(self, images: Tensor, normalize: bool = True) -> Tensor:
        """Unit-length embeddings; `normalize=False` gives the raw head output to a loss that wants
        it in training (N-pair's norm penalty). The exported bundle always normalises."""
        raw = self.norm(self.head(self.backbone(images)))
        return nn.functional.normalize(raw, dim=1) if normalize else raw

    def data_config(self) -> dict:
        """The backbone's own preprocessing (mean/std), as timm resolves it."""
        return timm.data.resolve_data_config({}, model=self.backbone)


def run_backbone_weights(path: Path) -> dict[str, Tensor] | None:
    """The backbone part of a Lookalike checkpoint (`last.pt` or `best.pt` of a run), or None for
    any other file. Starting from a run trained on a large set (faces, a product catalogue) is how
    a small set gets features it could not learn alone."""
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    state = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(state, dict) or not any(k.startswith("backbone.") for k in state):
        return None
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
