"""Folders, class-disjoint splits, P x K sampling, decoding, caching and augmentation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.images import Preprocessing, open_rgb, preprocess
from lookalike.training.data import ImageDataset, eval_prepare, natural_key, split_classes, train_augment, train_prepare
from lookalike.training.sampler import PKSampler
from tests.helpers import write_image


def test_natural_sort_and_class_disjoint_splits():
    names = sorted([f"s{i}" for i in range(1, 41)], key=natural_key)
    train, held = split_classes(names, 0.75, "sorted")
    assert train == [f"s{i}" for i in range(1, 31)] and held == [f"s{i}" for i in range(31, 41)]
    train, held = split_classes(names, 0.5, "hash")
    assert not set(train) & set(held) and sorted(train + held, key=natural_key) == names
    assert split_classes(names, 0.5, "hash") == (train, held)  # deterministic


def test_pk_sampler_batches_and_ddp_shards():
    labels = [c for c in range(10) for _ in range(5)] + [10]  # class 10 has one image: dropped
    sampler = PKSampler(labels, classes_per_batch=3, samples_per_class=4, seed=1)
    assert sampler.dropped_classes == 1
    for batch in sampler:
        classes = [labels[i] for i in batch]
        assert len(batch) == 12 and all(classes.count(c) == 4 for c in set(classes)) and len(set(classes)) == 3
    ranks = [PKSampler(labels, 2, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    for b0, b1 in zip(*ranks, strict=True):
        assert not {labels[i] for i in b0} & {labels[i] for i in b1}  # ranks never share a class in a step
    with pytest.raises(ValueError, match="needs at least 12 classes"):
        PKSampler(labels, classes_per_batch=12, samples_per_class=2)


def test_ranks_never_share_a_class_when_class_sizes_differ():
    """The review's case: classes of 2-12 images, P=2, K=4, 2 ranks (once a shared class by batch 5)."""
    labels = [c for c in range(30) for _ in range(2 + c % 11)]
    for epoch in range(5):
        ranks = [PKSampler(labels, 2, 4, seed=3, rank=r, world_size=2) for r in range(2)]
        for sampler in ranks:
            sampler.set_epoch(epoch)
        for b0, b1 in zip(*ranks, strict=True):
            assert not {labels[i] for i in b0} & {labels[i] for i in b1}


def test_small_classes_repeat_their_images_evenly():
    """A class with fewer than K images gives each image K/n times, never one image K times."""
    labels = [0, 0, 1, 1, 1, *([2] * 8), *([3] * 8)]
    sampler = PKSampler(labels, classes_per_batch=4, samples_per_class=4, seed=0)
    for epoch in range(20):
        sampler.set_epoch(epoch)
        for batch in sampler:
            for label, size in ((0, 2), (1, 3), (2, 8)):
                counts = Counter(i for i in batch if labels[i] == label)
                assert sum(counts.values()) == 4 and len(counts) == min(size, 4)
                assert max(counts.values()) - min(counts.values()) <= 1


def test_grey_and_colour_images_become_rgb(tmp_path):

    grey = tmp_path / "g.pgm"
    Image.new("L", (92, 112), 128).save(grey)
    image = open_rgb(grey)
    assert image.mode == "RGB"
    from lookalike.images import Preprocessing

    spec = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_fraction=0.5)
    assert preprocess(image, spec).shape == (3, 32, 32)


def test_image_cache_serves_what_decoding_would_and_shrinks_big_photos(tmp_path):
    classes = {
        "big": [write_image(tmp_path / "big" / "a.jpg", (200, 40, 40), seed=1, size=(1200, 800))],
        "small": [write_image(tmp_path / "small" / "b.png", (40, 40, 200), seed=2), tmp_path / "small" / "bad.jpg"],
    }
    classes["small"][1].write_bytes(b"not an image")
    spec = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_fraction=0.8)
    cached, fresh = (ImageDataset(classes, eval_prepare(spec), cache=c) for c in (True, False))
    for n, path in enumerate([classes["big"][0], classes["small"][0]]):
        torch.testing.assert_close(cached[n][0], fresh[n][0])
        torch.testing.assert_close(cached[n][0], torch.from_numpy(preprocess(open_rgb(path), spec)))
        assert cached[n][1] == fresh[n][1] == n
    assert cached[2] is None and fresh[2] is None
    shrunk = train_prepare(spec)(classes["big"][0])
    assert min(shrunk.size) == 2 * spec.image_size and shrunk.size[0] > shrunk.size[1]
    augmented, _ = ImageDataset(classes, train_prepare(spec), train_augment(spec), cache=True)[0]
    assert augmented.shape == (3, 32, 32)


def test_min_crop_scale_keeps_the_whole_aligned_face_or_lets_crops_cut_it():
    """Aligned faces need every random crop to keep the frame (and so the alignment)."""

    image = Image.new("RGB", (64, 64), (128, 128, 128))
    image.paste((255, 255, 255), (0, 0, 8, 8))  # a marker in the top-left corner
    spec = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    torch.manual_seed(0)

    def marker_kept(min_scale: float) -> list[bool]:
        augment = train_augment(spec, min_scale)
        crops = [augment(image) for _ in range(30)]
        return [bool(max(c[:, :2, :2].mean(), c[:, :2, -2:].mean()) > c[:, 14:18, 14:18].mean() + 0.3) for c in crops]

    assert all(marker_kept(1.0))  # flipped or not, the corner is always in the crop
    assert not all(marker_kept(0.1))


def test_squash_keeps_both_ends_of_a_wide_product_photo_where_center_cuts_them(tmp_path):
    """A car's front and rear are what tell two models apart; the central square drops them."""

    image = Image.new("RGB", (200, 80), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, 20, 80))  # red front
    image.paste((0, 0, 255), (180, 0, 200, 80))  # blue rear
    image.save(tmp_path / "car.png")

    def ends(array: np.ndarray) -> tuple[float, float]:
        return float(array[0, :, :2].mean()), float(array[2, :, -2:].mean())  # red at left, blue at right

    center, squash = (
        Preprocessing(image_size=32, mean=(0.0,) * 3, std=(1.0,) * 3, crop_mode=mode) for mode in ("center", "squash")
    )
    assert all(v < 0.6 for v in ends(preprocess(image, center)))
    assert all(v > 0.9 for v in ends(preprocess(image, squash)))
    assert train_prepare(squash)(tmp_path / "car.png").size == (64, 64)  # training squares the whole picture too
    assert train_prepare(center)(tmp_path / "car.png").size == (160, 64)  # and keeps the aspect for off-centre crops
