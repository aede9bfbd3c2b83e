"""The fast building blocks under the miners and the pair losses, against their obvious forms:
the blocked row argmax, the sorted same-label pairs, the per-row argmax over a sparse list, the
distinct pairs of tuples, and the Gram-entry gradients (sparse and dense backward)."""

from __future__ import annotations

import pytest
import torch

from lookalike.training.metric_learning import Pool, Triplets, distinct_pairs, symmetrical_synthesis
from lookalike.training.metric_learning.miners import first_of_largest, row_argmax
from lookalike.training.metric_learning.pool import _GramEntries, same_label_pairs


@pytest.mark.parametrize(("rows", "columns"), [(37, 100), (130, 2048), (140, 2000), (600, 512)])
@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize("largest", [True, False])
def test_row_argmax_is_argmax_with_its_first_occurrence(rows, columns, column_major, largest):
    """Rounded values make ties, which must resolve to the first column as `argmax` does; all but
    the first shape are large enough for the blocked path (mutations tried: the block's start
    without `* block` fails; the ragged last block left out fails at 2000 columns; `clamp_max_`
    dropped indexes past the end and raises)."""
    gen = torch.Generator().manual_seed(columns)
    x = (torch.randn(columns, rows, generator=gen) * 4).round()
    x = x.T if column_major else x.T.contiguous()  # [rows, columns] in either memory layout
    expected = x.argmax(1) if largest else x.argmin(1)
    assert torch.equal(row_argmax(x, largest), expected)


def test_row_argmax_finds_an_extreme_in_the_ragged_last_block():
    x = torch.zeros(300, 1000)  # large enough for the blocked path
    x[0, 999], x[1, 960], x[2, 5] = 1.0, 1.0, 1.0
    assert row_argmax(x)[:3].tolist() == [999, 960, 5]
    assert row_argmax(x.T.contiguous().T)[:3].tolist() == [999, 960, 5]


@pytest.mark.parametrize("seed", range(4))
def test_same_label_pairs_are_the_equality_masks_nonzero_entries_in_order(seed):
    """Arbitrary, unsorted label values (mutation: argsort without `stable` reorders a class's
    members and fails the row-major order)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 9, (40,), generator=gen) * 1000 - 3
    i, j = same_label_pairs(labels)
    ref_i, ref_j = (labels[:, None] == labels[None, :]).nonzero(as_tuple=True)
    assert torch.equal(i, ref_i) and torch.equal(j, ref_j)


def test_pool_positive_pairs_and_same_label_cover_the_mirrors():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    labels = torch.tensor([3, 1, 3, 3, 1, 2, 2, 3, 1, 5])
    pool = symmetrical_synthesis(x, labels)
    same = labels[:, None] == pool.labels[None, :]
    anchor, member = pool.same_label
    assert sorted(zip(anchor.tolist(), member.tolist(), strict=True)) == sorted(map(tuple, same.nonzero().tolist()))
    positives = same[:, : len(labels)] & ~torch.eye(len(labels), dtype=torch.bool)
    assert torch.equal(torch.stack(pool.positive_pairs, 1), positives.nonzero())
    assert torch.equal(pool.positives, positives)


def test_first_of_largest_is_a_rowwise_argmax_over_a_sparse_list():
    row = torch.tensor([0, 0, 0, 2, 2, 3])
    column = torch.tensor([4, 1, 7, 5, 9, 2])
    values = torch.tensor([1.0, 3.0, 3.0, -1.0, -2.0, float("-inf")])
    largest, first = first_of_largest(values, row, column, 5)
    assert largest.tolist() == [3.0, float("-inf"), -1.0, float("-inf"), float("-inf")]
    assert first.tolist() == [1, 0, 5, 0, 0]  # the tie (1, 7) goes to the lower column, as argmax


def test_distinct_pairs_of_triplets_are_the_masks_nonzero_entries():
    t = Triplets(torch.tensor([2, 0, 2, 0, 1]), torch.tensor([3, 1, 3, 1, 0]), torch.tensor([9, 7, 8, 7, 7]))
    (a_pos, p), (a_neg, n) = distinct_pairs(t, 10)
    assert list(zip(a_pos.tolist(), p.tolist(), strict=True)) == [(0, 1), (1, 0), (2, 3)]
    assert list(zip(a_neg.tolist(), n.tolist(), strict=True)) == [(0, 7), (1, 7), (2, 8), (2, 9)]


@pytest.mark.parametrize("pairs", [30, 3000])  # under and over a twentieth of N^2: sparse, then dense
def test_gram_entries_gradient_equals_autograds_through_the_rows(pairs):
    """Both backward branches, with repeated and diagonal entries (mutations tried: one
    orientation of the symmetric product left out fails; the dense branch indexing
    `columns * n + rows` passes only because the product is symmetrised, so it is not a gap)."""
    gen = torch.Generator().manual_seed(pairs)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    i, j = torch.randint(0, 64, (2, pairs), generator=gen)
    i[:5] = j[:5]  # squared norms
    weights = torch.randn(pairs, generator=gen, dtype=torch.float64)
    fast = x.clone().requires_grad_(True)
    (_GramEntries.apply(fast, fast.detach() @ fast.detach().T, i, j) * weights).sum().backward()
    slow = x.clone().requires_grad_(True)
    ((slow[i] * slow[j]).sum(1) * weights).sum().backward()
    torch.testing.assert_close(fast.grad, slow.grad)


@pytest.mark.parametrize("name", ["euclidean", "squared_euclidean", "cosine"])
def test_paired_distances_equal_those_to_the_materialised_pool(name):
    """Off the unit sphere, real and synthetic pool points mixed, value and gradient."""
    from lookalike.training.metric_learning import create_distance

    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(12, 6, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 2, 12)[:, None]
    labels = torch.arange(4).repeat_interleave(3)
    fast_x, slow_x = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    fast_pool, slow_pool = symmetrical_synthesis(fast_x, labels), symmetrical_synthesis(slow_x, labels)
    anchor = torch.randint(0, 12, (50,), generator=gen)
    index = torch.randint(0, fast_pool.labels.shape[0], (50,), generator=gen)
    distance = create_distance(name)
    fast = fast_pool.paired_distances(distance, anchor, index)
    slow = distance(slow_x, slow_pool.embeddings)[anchor, index]
    torch.testing.assert_close(fast, slow)
    fast.sum().backward()
    slow.sum().backward()
    torch.testing.assert_close(fast_x.grad, slow_x.grad)
    plain = Pool.of_batch(fast_x.detach(), labels).paired_distances(distance, anchor, index % 12)
    torch.testing.assert_close(plain, distance(x0, x0)[anchor, index % 12])


@pytest.mark.parametrize("name", ["euclidean", "squared_euclidean", "cosine"])
@pytest.mark.parametrize("synthesis", [False, True])
def test_miners_rank_embeddings_off_the_unit_sphere(name, synthesis):
    """The miners' ranking drops what depends on the anchor alone (|x|^2, 1 / |x|) and keeps each
    pool point's own term: with norms from 0.5 to 2 the choices must still be the distance's
    (mutations tried: the shift |y|^2 / 2 left out, and the cosine's 1 / |y| left out, both fail)."""
    from lookalike.training.metric_learning import create_distance, create_miner

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 2, 16)[:, None]
    labels = torch.arange(4).repeat(4)
    pool = symmetrical_synthesis(x, labels) if synthesis else Pool.of_batch(x, labels)
    dist = create_distance(name)(x, pool.embeddings)
    expected_hard, expected_semihard = set(), set()
    margin = 0.5 * float(dist.mean())
    for a in range(16):
        positives = [p for p in range(16) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(len(pool.labels)) if pool.labels[n] != labels[a]]
        nearest = min(negatives, key=lambda n: dist[a, n])
        expected_hard.add((a, max(positives, key=lambda p: dist[a, p]), nearest))
        for p in positives:
            band = [n for n in negatives if dist[a, p] < dist[a, n] < dist[a, p] + margin]
            if band:
                expected_semihard.add((a, p, min(band, key=lambda n: dist[a, n])))

    def mined(miner):
        return set(zip(*(t.tolist() for t in miner(x, labels, pool)), strict=True))

    assert mined(create_miner("batch_hard", distance=name)) == expected_hard
    assert mined(create_miner("semihard", distance=name, margin=margin)) == expected_semihard
