"""Two-view augmentation: each training image becomes two independent random views.

The SimCLR recipe (section 3 and appendix A): random resized crop, flip, colour jitter with
probability 0.8, random greyscale, Gaussian blur. Crops need to be stronger than a metric run's
(the network must match a detail with the whole); strengths come from the config.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2

from lookalike.images import Preprocessing


def ssl_augment(spec: Preprocessing, min_scale: float, jitter: float, greyscale: float, blur: float) -> v2.Compose:
    """One random view; `jitter` is SimCLR's strength s (brightness/contrast/saturation 0.8s, hue 0.2s)."""
    kernel = max(3, int(0.1 * spec.image_size) // 2 * 2 + 1)  # about 10% of the side, odd
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(spec.image_size, scale=(min_scale, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8 * jitter, 0.8 * jitter, 0.8 * jitter, min(0.5, 0.2 * jitter))], p=0.8),
            v2.RandomGrayscale(p=greyscale),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(spec.mean, spec.std),
        ]
    )


class TwoViews:
    """`augment` applied twice to the same image: a [2, 3, S, S] tensor of the two views."""

    def __init__(self, augment: v2.Compose) -> None:
        self.augment = augment

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.stack([self.augment(image), self.augment(image)])
