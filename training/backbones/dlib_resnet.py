"""dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1`) as a PyTorch module.

Davis King's network (public domain): a ResNet-34 slimmed to 29 convolutions, trained with a
pair-wise hinge metric loss on about 3 M faces of 7,485 identities (none from LFW) to map a
150 x 150 aligned face chip to 128 numbers. It is rebuilt here layer for layer, dlib's own
conventions kept where they change the numbers:

- a strided convolution or pooling has no padding (dlib pads only stride-1 layers), so
  feature maps shrink 150 -> 72 -> 35 -> 17 -> 8 -> 3 or 4 -> 1 or 2;
- a residual sum of two maps of different size (the strided branch against the pooled
  shortcut, 3 x 3 against 4 x 4; 32 against 64 channels) is taken over the larger size with the
  smaller zero-padded at the end, as dlib's `add_prev` does;
- batch norm was folded into a per-channel scale and shift (dlib's `affine`), kept trainable;
- the input is (pixel - channel mean) / 256 in RGB.

Registered with timm as `dlib_resnet`, so `--backbone dlib_resnet` builds it like any other
backbone; its 128 outputs are the features (`num_features`), with no head of its own.
"""

from __future__ import annotations

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

NAME = "dlib_resnet"
INPUT_SIZE = 150
PIXEL_MEAN = (122.782, 117.001, 104.298)  # dlib's input_rgb_image, on 0-255 pixels
PIXEL_SCALE = 256.0
# (width, blocks, first block halves the map) from the input up: dlib's alevel4 ... alevel0
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class Affine(nn.Module):
    """Per-channel scale and shift: a batch norm folded after training."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def padded_sum(a: Tensor, b: Tensor) -> Tensor:
    """a + b over the larger of their channel, height and width sizes, each zero-padded at the end."""
    size = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:], strict=True)]

    def grown(t: Tensor) -> Tensor:
        c, h, w = (s - n for s, n in zip(size, t.shape[1:], strict=True))
        return nn.functional.pad(t, (0, w, 0, h, 0, c)) if c or h or w else t

    return grown(a) + grown(b)


class Block(nn.Module):
    """conv 3x3 (stride 1 or 2) -> affine -> relu -> conv 3x3 -> affine, plus the shortcut
    (the input, average-pooled 2x2 when the block halves the map), then relu."""

    def __init__(self, inputs: int, width: int, down: bool) -> None:
        super().__init__()
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(inputs, width, 3, stride, padding=0 if down else 1)
        self.affine1 = Affine(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, padding=1)
        self.affine2 = Affine(width)
        self.shortcut = nn.AvgPool2d(2, 2) if down else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        branch = self.affine2(self.conv2(torch.relu(self.affine1(self.conv1(x)))))
        return torch.relu(padded_sum(branch, self.shortcut(x)))


class DlibResNet(nn.Module):
    """Aligned 150 x 150 face chips [B, 3, 150, 150], normalised as timm's data config says,
    to dlib's 128-d face descriptors (not unit length: the embedding model normalises)."""

    def __init__(self, num_classes: int = 0, in_chans: int = 3, **_: object) -> None:
        super().__init__()
        if num_classes:
            raise ValueError(f"{NAME} is a feature extractor: num_classes must be 0, got {num_classes}")
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 32, 7, 2), Affine(32), nn.ReLU(), nn.MaxPool2d(3, 2))
        blocks, inputs = [], 32
        for width, count, down in STAGES:
            for n in range(count):
                blocks.append(Block(inputs, width, down and n == 0))
                inputs = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(inputs, 128, bias=False)
        self.num_features = 128
        self.num_classes = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    def reset_classifier(self, num_classes: int = 0, *_: object) -> None:
        if num_classes:
            raise ValueError(f"{NAME} has no classifier to reset")


default_cfgs = generate_default_cfgs(
    {
        NAME: {
            "num_classes": 0,
            "input_size": (3, INPUT_SIZE, INPUT_SIZE),
            "mean": tuple(m / 255 for m in PIXEL_MEAN),
            "std": (PIXEL_SCALE / 255,) * 3,
            "crop_pct": 1.0,
            "license": "public domain (dlib model files, Davis King)",
        }
    }
)


@register_model
def dlib_resnet(pretrained: bool = False, **kwargs) -> DlibResNet:
    """timm entry point; `pretrained` weights come only from a local file (`lookalike models
    convert dlib-resnet` writes one), never the hub."""
    return build_model_with_cfg(DlibResNet, NAME, pretrained, **kwargs)
