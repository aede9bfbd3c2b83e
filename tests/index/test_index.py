"""Index build/search/add/remove against brute-force numpy search, atomic rebuilds, mismatches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.bundle import BundleError, load_bundle
from lookalike.images import open_rgb
from lookalike.index.build import add_to_index, build_index, remove_from_index
from lookalike.index.metadata import Entry
from lookalike.index.store import GalleryIndex, IndexMismatchError
from lookalike.index.versions import NoIndexError, current_version, publish, staged_version
from tests.helpers import run_cli, write_image


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_force(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize(("kind", "n", "min_recall"), [("flat", 300, 1.0), ("hnsw", 300, 0.95), ("ivfpq", 3000, 0.5)])
def test_search_add_remove_against_brute_force(tmp_path, kind, n, min_recall):
    vectors = unit_vectors(n, 32, seed=1)
    entries = [Entry(i, f"label{i % 7}", f"img{i}.jpg") for i in range(n)]
    index = GalleryIndex.create(tmp_path, kind, vectors, entries, bundle_hash="h")
    queries = unit_vectors(20, 32, seed=2)

    def recall_vs_brute_force(stored_ids: np.ndarray, stored: np.ndarray) -> float:
        truth = stored_ids[brute_force(stored, queries, 5)]
        found = [[h.id for h in hits] for hits in index.search(queries, 5)]
        return float(np.mean([len(set(t) & set(f)) / 5 for t, f in zip(truth, found, strict=True)]))

    ids = np.arange(n)
    assert recall_vs_brute_force(ids, vectors) >= min_recall
    hit = index.search(vectors[:1], 1)[0][0]
    assert (hit.id, hit.label, hit.path) == (0, "label0", "img0.jpg")

    extra = unit_vectors(10, 32, seed=3)
    index.add(extra, [Entry(n + i, "new", f"new{i}.jpg", metadata={"sku": i}) for i in range(10)])
    assert index.size == n + 10
    found = index.search(extra[:1], 1)[0][0]
    assert kind == "ivfpq" or (found.label, found.metadata) == ("new", {"sku": 0})

    removed = list(range(0, n, 3))
    index.remove(removed)
    keep = np.setdiff1d(np.arange(n + 10), removed)
    assert index.size == len(keep) == index.metadata.count()
    assert not {h.id for hits in index.search(queries, 10) for h in hits} & set(removed)
    assert recall_vs_brute_force(keep, np.concatenate([vectors, extra])[keep]) >= min_recall

    index.save()
    reopened = GalleryIndex.open(tmp_path, bundle_hash="h")
    assert reopened.size == len(keep)
    assert [h.id for h in reopened.search(queries[:1], 5)[0]] == [h.id for h in index.search(queries[:1], 5)[0]]


def test_ivfpq_refuses_tiny_galleries_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="ivfpq needs at least"):
        GalleryIndex.create(tmp_path, "ivfpq", unit_vectors(10, 8, 0), [Entry(i, "a", "p") for i in range(10)], "h")


def test_build_add_remove_publish_versions_with_the_real_encoder(tmp_path, tiny_bundle, gallery):
    root = tmp_path / "index"
    built = build_index(tiny_bundle, gallery, root)
    assert current_version(root) == built.directory
    assert built.size == 20 and built.manifest.labels == 5
    encoder = load_bundle(tiny_bundle)
    query = encoder.embed([open_rgb(gallery / "label2" / "1.png")])
    assert built.search(query, 1)[0][0].path.endswith("label2/1.png")

    more = tmp_path / "more"
    write_image(more / "label9" / "a.jpg", (10, 10, 10), seed=99)
    added = add_to_index(tiny_bundle, more, root)
    assert added.size == 21 and current_version(root) == added.directory != built.directory
    assert GalleryIndex.open(built.directory).size == 20  # the old version is untouched

    removed, count = remove_from_index(root, labels=["label0"], ids=[20])
    assert count == 5 and removed.size == 16
    assert current_version(root) == removed.directory


def test_failed_rebuild_leaves_the_old_index_serving(tmp_path, tiny_bundle, gallery):
    root = tmp_path / "index"
    old = build_index(tiny_bundle, gallery, root)
    broken = tmp_path / "broken"
    for n in range(3):
        (broken / "x").mkdir(parents=True, exist_ok=True)
        (broken / "x" / f"{n}.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="no gallery image could be read"):
        build_index(tiny_bundle, broken, root)
    assert current_version(root) == old.directory
    assert GalleryIndex.open(current_version(root)).size == 20
    assert sorted(p.name for p in (root / "versions").iterdir()) == [old.directory.name]  # nothing half-written


def test_interrupted_build_leaves_no_version_behind(tmp_path):
    with pytest.raises(KeyboardInterrupt), staged_version(tmp_path) as staging:
        (staging / "index.faiss").write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list((tmp_path / "versions").iterdir()) == []
    with pytest.raises(NoIndexError):
        current_version(tmp_path)


def test_switch_is_a_single_rename(tmp_path):
    first, second = tmp_path / "versions" / "a", tmp_path / "versions" / "b"
    first.mkdir(parents=True)
    second.mkdir()
    publish(tmp_path, first)
    publish(tmp_path, second)
    assert (tmp_path / "current").is_symlink() and current_version(tmp_path) == second
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".current")]


def test_index_from_another_bundle_is_refused(tmp_path, tiny_bundle, gallery):
    built = build_index(tiny_bundle, gallery, tmp_path / "index")
    with pytest.raises(IndexMismatchError, match="rebuild it"):
        GalleryIndex.open(built.directory, bundle_hash="0" * 64)


def test_csv_manifest_gallery_with_metadata(tmp_path, tiny_bundle, gallery):
    csv = tmp_path / "products.csv"
    csv.write_text(f"path,label,price\n{gallery}/label1/0.png,shoe,10\n{gallery}/label2/0.png,bag,\n")
    built = build_index(tiny_bundle, csv, tmp_path / "index")
    entries = built.metadata.get([0, 1])
    assert (entries[0].label, entries[0].metadata) == ("shoe", {"price": "10"})
    assert (entries[1].label, entries[1].metadata) == ("bag", None)


def test_corrupted_bundle_is_refused(tmp_path, tiny_bundle):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with (copy / "encoder.pt2").open("ab") as handle:
        handle.write(b"garbage")
    with pytest.raises(BundleError, match="corrupted"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="missing"):
        load_bundle(Path(tmp_path / "nowhere"))


@pytest.mark.slow
def test_cli_errors_are_messages_not_tracebacks(tmp_path, tiny_bundle, gallery):
    cases = [
        (
            ["index", "build", "--bundle", str(tmp_path / "nope"), "--gallery", str(gallery), "--out", str(tmp_path)],
            "not a bundle",
        ),
        (
            ["index", "build", "--bundle", str(tiny_bundle), "--gallery", str(tmp_path / "g"), "--out", str(tmp_path)],
            "neither a folder nor a .csv",
        ),
        (["index", "remove", "--index", str(tmp_path / "i")], "say what to remove"),
        (["index", "info", "--index", str(tmp_path / "i")], "no published index"),
        (["serve", "--bundle", str(tiny_bundle), "--index", str(tmp_path / "i")], "no published index"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    built = run_cli(
        "index",
        "build",
        "--bundle",
        str(tiny_bundle),
        "--gallery",
        str(gallery),
        "--out",
        str(tmp_path / "ok"),
        "--kind",
        "hnsw",
    )
    assert built.returncode == 0, built.stderr
    info = run_cli("index", "info", "--index", str(tmp_path / "ok"))
    assert '"kind": "hnsw"' in info.stdout and '"count": 20' in info.stdout
