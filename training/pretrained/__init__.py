"""Pretrained networks converted from registry packages: registered as timm backbones, so a
bundle can be made of one as it is (`lookalike models bundle`) or it can be fine-tuned with the
loss family (`lookalike train --backbone dlib_resnet --pretrained models/dlib_resnet.pth`)."""

from lookalike.training.pretrained.convert import (
    bundle_dlib_resnet,
    convert_dlib_resnet,
    dlib_alignment,
    dlib_model_file,
)
from lookalike.training.pretrained.dlib_file import DlibFileError, dlib_state_dict

__all__ = [
    "DlibFileError",
    "bundle_dlib_resnet",
    "convert_dlib_resnet",
    "dlib_alignment",
    "dlib_model_file",
    "dlib_state_dict",
]
