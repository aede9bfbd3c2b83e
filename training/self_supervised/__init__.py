"""Self-supervised pre-training on unlabelled images, as composable as the metric pieces.

- `views`: two random views of every image (`TwoViews` around `ssl_augment`).
- `heads`: the MLP projector the methods train and the bundle drops.
- `base`: `SelfSupervisedMethod` (`method(view1, view2) -> loss`) and the `SSL_METHODS` registry.
- `simclr` (NT-Xent), `moco` (momentum encoder + queue), `arb` (alignment with the nearest
  orthonormal basis): the registered methods; `create_ssl_method(name, encoder, args)` builds one.
- `collapse`: the per-epoch collapse metrics and warning, used for every training run.
"""

from lookalike.training.self_supervised.arb import ARB, arb_alignment, nearest_orthonormal_basis
from lookalike.training.self_supervised.base import (
    SSL_METHODS,
    SelfSupervisedMethod,
    check_ssl_args,
    create_ssl_method,
)
from lookalike.training.self_supervised.collapse import collapse_metrics, collapse_warning
from lookalike.training.self_supervised.heads import projection_head
from lookalike.training.self_supervised.moco import MoCo
from lookalike.training.self_supervised.simclr import SimCLR, nt_xent
from lookalike.training.self_supervised.views import TwoViews, ssl_augment

__all__ = [
    "ARB",
    "SSL_METHODS",
    "MoCo",
    "SelfSupervisedMethod",
    "SimCLR",
    "TwoViews",
    "arb_alignment",
    "check_ssl_args",
    "collapse_metrics",
    "collapse_warning",
    "create_ssl_method",
    "nearest_orthonormal_basis",
    "nt_xent",
    "projection_head",
    "ssl_augment",
]
