"""What every self-supervised method shares: the encoder, its projector, one calling convention.

A method is called as `method(view1, view2) -> loss` on two augmented views of the same images
([B, 3, S, S] each). It holds the encoder it trains, so that DDP wrapping the method syncs the
encoder's and the projector's gradients together; the loop still exports only the encoder.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lookalike.errors import ConfigError
from lookalike.registry import Registry
from lookalike.training.self_supervised.heads import projection_head

SSL_METHODS: Registry[SelfSupervisedMethod] = Registry("self-supervised method")


class SelfSupervisedMethod(nn.Module):
    """Encoder -> projector; subclasses define the loss over the two views' projections.

    `encoder(images, normalize=False)` must return the features the bundle will export (before
    normalisation) and expose `embedding_size`; `EmbeddingModel` without a head does both.
    """

    def __init__(self, encoder: nn.Module, projector_dim: int = 128, hidden_dim: int = 512) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projection_head(encoder.embedding_size, int(hidden_dim), int(projector_dim))

    def project(self, images: Tensor) -> Tensor:
        return self.projector(self.encoder(images, normalize=False))

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        raise NotImplementedError

    def own_state(self) -> dict[str, Tensor]:
        """Everything but the encoder (projector, key encoder, queue): `last.pt` keeps the encoder
        once, under "model", where `--pretrained` looks for it."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def load_own_state(self, state: dict[str, Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        stray = [k for k in missing if not k.startswith("encoder.")] + list(unexpected)
        if stray:
            raise ConfigError(f"the checkpoint's self-supervised state does not fit this method: {stray[:5]}")


def check_ssl_args(name: str, args: dict[str, Any]) -> None:
    """Refuse an argument the method does not take, naming the ones it does (never a silent no-op)."""
    SSL_METHODS.check_arguments(name, args, decided=("encoder",))


def create_ssl_method(name: str, encoder: nn.Module, args: dict[str, Any] | None = None) -> SelfSupervisedMethod:
    """The registered method `name` around `encoder`, with its own hyper-parameters `args`."""
    args = args or {}
    check_ssl_args(name, args)
    return SSL_METHODS.create(name, encoder=encoder, **args)
