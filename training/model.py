"""The embedding network: any timm backbone, a linear head, L2 normalisation."""

from __future__ import annotations

from pathlib import Path

import timm
from torch import Tensor, nn


class EmbeddingModel(nn.Module):
    """timm backbone (pooled features) -> Linear -> optional BatchNorm -> unit-length embedding.

    Unit length makes cosine, Euclidean and squared Euclidean rank neighbours the same way and
    lets the index use inner-product search.
    """

    def __init__(
        self,
        backbone: str,
        embedding_size: int = 128,
        pretrained: str | None = None,
        head_batchnorm: bool = True,
    ) -> None:
        super().__init__()
        if not timm.is_model(backbone):
            raise ValueError(f"unknown backbone {backbone!r}: not a timm model name (see timm.list_models())")
        kwargs: dict = {"num_classes": 0}
        if pretrained is not None:
            if not Path(pretrained).is_file():
                raise ValueError(f"pretrained weights file {pretrained} does not exist")
            # timm loads a local file through the same code path as a hub download.
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained)})
        self.backbone = timm.create_model(backbone, **kwargs)
        self.head = nn.Linear(self.backbone.num_features, embedding_size)
        self.norm = nn.BatchNorm1d(embedding_size) if head_batchnorm else nn.Identity()

    def forward(self, images: Tensor) -> Tensor:
        return nn.functional.normalize(self.norm(self.head(self.backbone(images))), dim=1)

    def data_config(self) -> dict:
        """The backbone's own preprocessing (mean/std), as timm resolves it."""
        return timm.data.resolve_data_config({}, model=self.backbone)
