"""What a training run optimises: labelled metric learning or self-supervision.

The loop (`loop.train`) is the same for both; an objective supplies what differs:
- the training set and its batch sampler (P x K classes, or shuffled images as two views),
- `module`: what DDP wraps and the optimiser trains (it holds the encoder),
- `parameter_groups`, `loss(net, images, labels)`, `backward(loss)`,
- `state_dict` / `load_state_dict`: what `last.pt` keeps beside the encoder for `--resume`
  (loss proxies; the projector, key encoder and queue), never part of the bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from lookalike.images import Preprocessing
from lookalike.training.config import SSL_BATCH, TrainConfig
from lookalike.training.data import ImageDataset, train_augment, train_prepare
from lookalike.training.distributed import Dist, gather_batches, sync_loss_gradients
from lookalike.training.faces import FaceTable
from lookalike.training.metric_learning import create_criterion
from lookalike.training.model import EmbeddingModel
from lookalike.training.sampler import PKSampler, ShuffledBatches
from lookalike.training.self_supervised import MoCo, TwoViews, create_ssl_method, ssl_augment

log = logging.getLogger(__name__)


class MetricObjective:
    """Labelled classes: P x K batches -> embeddings -> criterion (synthesis, miner, loss).

    With `--gather-batches` under torchrun, every rank scores the all-gathered batch; the loss is
    scaled by the world size so that DDP's average of the per-rank gradients is their sum.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: EmbeddingModel,
        spec: Preprocessing,
        classes: dict[str, list[Path]],
        dist: Dist,
        criterion: Callable[[Tensor, Tensor], Tensor] | None,
        faces: FaceTable | None = None,
    ) -> None:
        self.cfg, self.dist, self.module = cfg, dist, model
        augment = train_augment(spec, cfg.min_crop_scale)
        self.train_set = ImageDataset(classes, train_prepare(spec, faces), augment, cache=cfg.cache_images)
        self.sampler = PKSampler(
            self.train_set.labels, cfg.classes_per_batch, cfg.samples_per_class, cfg.seed, dist.rank, dist.world_size
        )
        self.criterion = criterion or create_criterion(
            cfg.loss,
            cfg.miner,
            cfg.synthesis,
            cfg.distance,
            cfg.margin,
            cfg.loss_args,
            cfg.miner_args,
            num_classes=len(classes),
            embedding_size=model.embedding_size,
        )
        self.loss_params = list(self.criterion.parameters()) if isinstance(self.criterion, nn.Module) else []
        self.unit_embeddings = getattr(self.criterion, "unit_embeddings", True)
        self.gathered = cfg.gather_batches and dist.enabled
        if cfg.gather_batches and not dist.enabled:
            log.warning("--gather-batches: a single process already sees its whole batch (launch with torchrun)")

    def to(self, device: torch.device) -> MetricObjective:
        if isinstance(self.criterion, nn.Module):
            self.criterion.to(device)
        return self

    def parameter_groups(self) -> list[dict]:
        """The network at --lr, its backbone at --backbone-lr-mult times that (a group of its own
        only when it differs, so older checkpoints resume; frozen at 0), and a loss's own
        parameters (proxies) at theirs."""
        mult = self.cfg.backbone_lr_mult
        if mult == 1:
            groups = [{"params": list(self.module.parameters()), "lr": self.cfg.lr}]
        else:
            backbone = list(self.module.backbone.parameters())
            inside = {id(p) for p in backbone}
            groups = [{"params": [p for p in self.module.parameters() if id(p) not in inside], "lr": self.cfg.lr}]
            if mult > 0:
                groups.append({"params": backbone, "lr": self.cfg.lr * mult})
            else:
                for p in backbone:
                    p.requires_grad_(False)
        if self.loss_params:
            lr = self.cfg.loss_lr or self.cfg.lr * self.criterion.loss.param_lr_scale
            groups.append({"params": self.loss_params, "lr": lr})
        return groups

    def loss(self, net: nn.Module, images: Tensor, labels: Tensor, device: torch.device, amp: bool) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            inputs = images.to(device, memory_format=torch.channels_last, non_blocking=True)
            embeddings = net(inputs, normalize=self.unit_embeddings)
        labels = labels.to(device)
        if self.gathered:
            embeddings, labels = gather_batches(self.dist, embeddings, labels)
        return self.criterion(embeddings.float(), labels)

    def backward(self, loss: Tensor) -> None:
        (loss * self.dist.world_size if self.gathered else loss).backward()
        sync_loss_gradients(self.dist, self.loss_params, self.gathered)

    def state_dict(self) -> dict:
        return self.criterion.state_dict() if isinstance(self.criterion, nn.Module) else {}

    def load_state_dict(self, state: dict) -> None:
        if isinstance(self.criterion, nn.Module):
            self.criterion.load_state_dict(state)


class SelfSupervisedObjective:
    """Unlabelled images: shuffled batches, two views each -> the `--ssl` method's loss.

    The method holds the encoder, so DDP wraps the method (encoder and projector gradients are
    synced together); the bundle is still the encoder alone.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: EmbeddingModel,
        spec: Preprocessing,
        images: list[Path],
        dist: Dist,
        faces: FaceTable | None = None,
    ) -> None:
        self.cfg = cfg
        augment = ssl_augment(
            spec, cfg.min_crop_scale, cfg.jitter_strength, cfg.greyscale_probability, cfg.blur_probability
        )
        self.train_set = ImageDataset(
            {"unlabelled": images}, train_prepare(spec, faces), TwoViews(augment), cache=cfg.cache_images
        )
        batch = cfg.batch_size or SSL_BATCH
        self.sampler = ShuffledBatches(len(self.train_set), batch, cfg.seed, dist.rank, dist.world_size)
        self.module = create_ssl_method(cfg.ssl, model, cfg.ssl_args)
        if isinstance(self.module, MoCo) and len(self.module.queue) > len(images) // 2:
            size = max(batch * dist.world_size, (len(images) // 2) // batch * batch)
            log.info(
                "MoCo queue: %d keys asked for, but the training set has %d images: using %d (at most half of "
                "them), so that an image rarely meets its own older key as a negative",
                len(self.module.queue),
                len(images),
                size,
            )
            self.module.resize_queue(size)

    def to(self, device: torch.device) -> SelfSupervisedObjective:
        self.module.to(device)
        return self

    def parameter_groups(self) -> list[dict]:
        return [{"params": [p for p in self.module.parameters() if p.requires_grad], "lr": self.cfg.lr}]

    def loss(self, net: nn.Module, images: Tensor, labels: Tensor, device: torch.device, amp: bool) -> Tensor:
        views = images.to(device, non_blocking=True)  # [B, 2, 3, S, S]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            first, second = (views[:, v].contiguous(memory_format=torch.channels_last) for v in (0, 1))
            return net(first, second).float()

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def state_dict(self) -> dict:
        return self.module.own_state()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_own_state(state)
