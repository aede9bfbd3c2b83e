"""The self-supervised pieces against references: NT-Xent (a loop and PML), the MoCo queue and
momentum update (hand-computed), ARB's basis (an SVD), the collapse metrics (built batches).

Mutations tried (each made the named test fail): NT-Xent without the self-similarity mask, and
with the twins' targets swapped to the anchor itself (both tests); MoCo's EMA with m and 1-m
swapped, the ring buffer without the modulo, keys left in shuffled order (MoCo tests); ARB's
basis without the 1/√N, without standardising, from the covariance instead of its inverse
square root (SVD test); collapse metrics without normalising rows (collapse tests).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lookalike.errors import ConfigError
from lookalike.training import TrainConfig
from lookalike.training.self_supervised import (
    MoCo,
    arb_alignment,
    collapse_metrics,
    collapse_warning,
    create_ssl_method,
    nearest_orthonormal_basis,
    nt_xent,
)


class LinearEncoder(nn.Module):
    """A real (tiny) encoder with the interface the methods need: flatten -> linear."""

    def __init__(self, pixels: int = 12, width: int = 6) -> None:
        super().__init__()
        self.embedding_size = width
        self.linear = nn.Linear(pixels, width)

    def forward(self, images: Tensor, normalize: bool = True) -> Tensor:
        raw = self.linear(images.flatten(1))
        return F.normalize(raw, dim=1) if normalize else raw


def nt_xent_loop(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR eq. 1 written out anchor by anchor."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    terms = []
    for i in range(2 * n):
        twin = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        denominator = torch.logsumexp(torch.stack([z[i] @ z[k] / temperature for k in others]), 0)
        terms.append(denominator - z[i] @ z[twin] / temperature)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_a_loop_and_pml(temperature):
    from pytorch_metric_learning.losses import NTXentLoss

    torch.manual_seed(0)
    z1 = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    ours = nt_xent(z1, z2, temperature)
    (grad_ours,) = torch.autograd.grad(ours, z1)
    loop = nt_xent_loop(z1, z2, temperature)
    (grad_loop,) = torch.autograd.grad(loop, z1)
    labels = torch.cat([torch.arange(6), torch.arange(6)])
    pml = NTXentLoss(temperature=temperature)(torch.cat([z1, z2]), labels)
    (grad_pml,) = torch.autograd.grad(pml, z1)
    torch.testing.assert_close(ours, loop)
    torch.testing.assert_close(ours, pml)
    torch.testing.assert_close(grad_ours, grad_loop)
    torch.testing.assert_close(grad_ours, grad_pml)


def moco(queue_size: int = 5, momentum: float = 0.9) -> MoCo:
    torch.manual_seed(0)
    return create_ssl_method(
        "moco",
        LinearEncoder(),
        {"projector_dim": 3, "hidden_dim": 4, "queue_size": queue_size, "momentum": momentum, "bn_splits": 1},
    )


def test_moco_momentum_update_is_the_ema_of_the_query_encoder():
    method = moco(momentum=0.9)
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.fill_(1.0)
        for k in method.key_encoder.parameters():
            k.fill_(3.0)
    method.momentum_update()
    for k in method.key_encoder.parameters():
        torch.testing.assert_close(k, torch.full_like(k, 0.9 * 3.0 + 0.1 * 1.0))
    assert not any(k.requires_grad for k in method.key_encoder.parameters())


def test_moco_queue_is_a_ring_buffer_of_the_newest_keys():
    method = moco(queue_size=5)
    first, second = F.normalize(torch.randn(3, 3), dim=1), F.normalize(torch.randn(3, 3), dim=1)
    method.enqueue(first)
    method.enqueue(second)
    # slots 0-2 got the first batch, then 3, 4 and (wrapping) 0 the second
    torch.testing.assert_close(method.queue[[1, 2]], first[[1, 2]])
    torch.testing.assert_close(method.queue[[3, 4, 0]], second)
    assert int(method.queue_next) == 1


def test_moco_loss_is_infonce_against_the_queue_and_the_keys_are_enqueued():
    method = moco(queue_size=5).eval()  # BatchNorm from running statistics: the hand computation is exact
    queue = method.queue.clone()
    view1, view2 = torch.randn(4, 12), torch.randn(4, 12)
    loss = method(view1, view2)
    with torch.no_grad():
        q = F.normalize(method.project(view1), dim=1)
        k = F.normalize(method.project(view2), dim=1)  # the key encoder starts as a copy: the EMA keeps it so
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / method.temperature
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))
    torch.testing.assert_close(method.queue[:4], k)
    torch.testing.assert_close(method.queue[4], queue[4])


def test_moco_keys_come_back_in_the_batch_order_after_the_bn_shuffle():
    method = moco().eval()
    method.bn_splits = 2
    images = torch.randn(6, 12)
    with torch.no_grad():
        expected = F.normalize(method.key_projector(method.key_encoder(images, normalize=False)), dim=1)
    torch.manual_seed(1)
    torch.testing.assert_close(method.keys(images), expected)


def test_arb_basis_is_u_v_transpose_of_the_standardised_batch():
    torch.manual_seed(0)
    z = torch.randn(32, 8, dtype=torch.float64) * torch.linspace(0.5, 3, 8) + 2.0
    basis = nearest_orthonormal_basis(z, eps=1e-12)
    standardised = (z - z.mean(0)) / z.std(0, unbiased=False)
    u, _, vt = torch.linalg.svd(standardised.T, full_matrices=False)  # features x batch = U S V^T
    torch.testing.assert_close(basis, (u @ vt).T)
    torch.testing.assert_close(basis.T @ basis, torch.eye(8, dtype=torch.float64))
    assert not basis.requires_grad


def test_arb_alignment_is_zero_on_its_own_basis_and_matches_a_loop():
    torch.manual_seed(0)
    z = torch.randn(16, 4, dtype=torch.float64)
    aligned = nearest_orthonormal_basis(z, eps=1e-12) * 3 + 1  # any scale and shift: standardised away
    assert float(arb_alignment(aligned, nearest_orthonormal_basis(z, eps=1e-12))) < 1e-12
    other = torch.randn(16, 4, dtype=torch.float64)
    basis = nearest_orthonormal_basis(other)
    expected = 0.0
    for i in range(4):
        column = (z[:, i] - z[:, i].mean()) / z[:, i].std(unbiased=False)
        expected += (float(column @ basis[:, i]) / math.sqrt(16) - 1) ** 2
    assert float(arb_alignment(z, basis)) == pytest.approx(expected)


def test_collapse_metrics_tell_healthy_from_collapsed_batches():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(512, 32))
    point = rng.normal(size=32) + 0.001 * rng.normal(size=(512, 32))  # every image at one point
    line = np.outer(rng.normal(size=512), rng.normal(size=32)) + 1e-4 * rng.normal(size=(512, 32))
    good = collapse_metrics(healthy)
    assert good["embedding_std_ratio"] == pytest.approx(1.0, abs=0.05)
    assert good["effective_rank"] > 28 and collapse_warning(good) is None
    collapsed = collapse_metrics(point * 7.0)  # the scale is irrelevant: rows are normalised
    assert collapsed["embedding_std_ratio"] < 0.01
    assert "collapsed" in collapse_warning(collapsed)
    flat = collapse_metrics(line)
    assert flat["effective_rank"] < 1.5
    assert "effective dimensions" in collapse_warning(flat) or "collapsed" in collapse_warning(flat)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ssl": "simclr", "loss": "lifted"}, "--loss: not used by an --ssl simclr run"),
        ({"ssl": "moco", "classes_per_batch": 4, "margin": 0.1}, "--margin, --classes-per-batch"),
        ({"ssl": "arb", "ssl_args": {"temperature": 0.1}}, "takes no temperature; it takes: eps, hidden_dim"),
        ({"jitter_strength": 0.3}, "--jitter-strength: not used by a metric-learning"),
        ({"ssl": "byol"}, "unknown self-supervised method 'byol'"),
    ],
)
def test_config_refuses_options_the_kind_of_run_does_not_use(values, message):
    with pytest.raises(ConfigError, match=message) as refused:
        _validate(values)
    assert "Value error" not in str(refused.value)  # the validator's words, not pydantic's wrapper


def _validate(values: dict) -> TrainConfig:
    from lookalike.training import load_config

    return load_config(None, {"data": "x", **values})


def test_ssl_runs_default_to_stronger_crops_unless_told():
    assert _validate({"ssl": "simclr"}).min_crop_scale == 0.2
    assert _validate({"ssl": "simclr", "min_crop_scale": 0.6}).min_crop_scale == 0.6
    assert _validate({}).min_crop_scale == 0.5


def test_view_strengths_change_the_views():
    """--greyscale-probability 1 greys every view; --blur-probability 1 smooths it; 0 leaves colour and detail."""
    from PIL import Image

    from lookalike.images import Preprocessing
    from lookalike.training.self_supervised import ssl_augment

    spec = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3)).astype("uint8"))

    def view(greyscale: float, blur: float) -> torch.Tensor:
        torch.manual_seed(0)  # the same crop, flip and blur sigma for every variant
        return ssl_augment(spec, 1.0, jitter=0.0, greyscale=greyscale, blur=blur)(image)

    grey, colour, blurred = view(1.0, 0.0), view(0.0, 0.0), view(0.0, 1.0)
    torch.testing.assert_close(grey[0], grey[1])
    assert (colour[0] - colour[1]).abs().mean() > 0.1
    assert blurred.diff(dim=2).abs().mean() < 0.8 * colour.diff(dim=2).abs().mean()
