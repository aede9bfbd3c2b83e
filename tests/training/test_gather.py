"""Cross-rank mining: two real Gloo processes on the CPU, each with half of a batch, must get the
loss and the gradients one process gets on the whole batch.

Mutations tried: `gather_batches` not putting this rank's own tensor back (its gradient is then
None); `sync_loss_gradients` not dividing in the gathered case (proxy gradient twice too large);
averaging without the all-reduce in the local case (each rank's own proxy gradient).
"""

from __future__ import annotations

import multiprocessing as mp

import pytest
import torch
import torch.distributed as dist

from lookalike.cli import free_port
from lookalike.training.distributed import Dist, gather_batches, sync_loss_gradients
from lookalike.training.metric_learning import create_criterion

WORLD = 2


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(24, 16, generator=gen), dim=1)
    labels = torch.arange(6).repeat_interleave(4)[torch.randperm(24, generator=gen)]
    return x, labels


def make_criterion(loss: str) -> torch.nn.Module:
    torch.manual_seed(1)  # the same proxies on every rank, as DDP's broadcast of the first step
    return create_criterion(loss, num_classes=6, embedding_size=16)


def worker(rank: int, port: int, loss_name: str, gathered: bool, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        d = Dist(rank, rank, WORLD)
        x, labels = make_batch()
        # Unequal halves: an unreadable image drops out of one rank's batch.
        cut = 13
        mine = (x[:cut] if rank == 0 else x[cut:]).clone().requires_grad_(True)
        my_labels = labels[:cut] if rank == 0 else labels[cut:]
        criterion = make_criterion(loss_name)
        embeddings, all_labels = gather_batches(d, mine, my_labels) if gathered else (mine, my_labels)
        loss = criterion(embeddings, all_labels)
        loss.backward()
        embedding_grad = mine.grad.clone()
        params = list(criterion.parameters())
        if gathered:  # the loop's recipe: the whole-batch loss scaled by the world size
            for p in params:
                p.grad.mul_(WORLD)
        sync_loss_gradients(d, params, gathered)
        # numpy, not tensors: torch's queue shares tensor memory, gone once this process exits
        results.put((rank, loss.item(), embedding_grad.numpy(), [p.grad.numpy() for p in params]))
    finally:
        dist.destroy_process_group()


def run_two_ranks(loss_name: str, gathered: bool) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, port, loss_name, gathered, results)) for r in range(WORLD)]
    for p in procs:
        p.start()
    out = {}
    for _ in range(WORLD):
        rank, value, grad, param_grads = results.get(timeout=120)
        out[rank] = value, torch.from_numpy(grad), [torch.from_numpy(g) for g in param_grads]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("loss_name", ["triplet", "proxy_anchor"])
def test_gathered_ranks_equal_one_process_on_the_whole_batch(loss_name):
    x, labels = make_batch()
    whole = x.clone().requires_grad_(True)
    criterion = make_criterion(loss_name)
    loss = criterion(whole, labels)
    loss.backward()
    ranks = run_two_ranks(loss_name, gathered=True)
    for rank, (value, grad, param_grads) in ranks.items():
        assert value == pytest.approx(loss.item(), rel=1e-5)
        rows = slice(0, 13) if rank == 0 else slice(13, None)
        torch.testing.assert_close(grad, whole.grad[rows])
        for got, expected in zip(param_grads, criterion.parameters(), strict=True):
            torch.testing.assert_close(got, expected.grad)


@pytest.mark.slow
def test_without_gathering_the_proxy_gradients_are_averaged_over_ranks():
    x, labels = make_batch()
    expected = []
    for rows in (slice(0, 13), slice(13, None)):
        criterion = make_criterion("proxy_anchor")
        criterion(x[rows], labels[rows]).backward()
        expected.append(criterion.loss.weight.grad)
    ranks = run_two_ranks("proxy_anchor", gathered=False)
    for _, _, param_grads in ranks.values():
        torch.testing.assert_close(param_grads[0], (expected[0] + expected[1]) / 2)
