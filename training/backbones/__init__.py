"""Backbones of our own, registered with timm on import: `--backbone NAME` builds them exactly as
it builds timm's (`timm.create_model`, `pretrained_cfg` with their preprocessing, local weight
files through `--pretrained`)."""

from lookalike.training.backbones.dlib_resnet import DlibResNet

__all__ = ["DlibResNet"]
