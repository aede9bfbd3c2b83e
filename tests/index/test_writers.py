"""Index writers never lose data: one writer at a time, ids never reused, crash-safe publishing,
and a corrupted version refused everywhere with a clear message (the service keeps the old one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.cli import main
from lookalike.index import (
    GalleryIndex,
    IndexBusyError,
    IndexCorruptError,
    add_to_index,
    build_index,
    current_version,
    publish,
    remove_from_index,
    staged_version,
    writer_lock,
)
from lookalike.service import Settings, create_app
from tests.helpers import COLOURS, ROOT, write_image


def labelled_gallery(root: Path, labels: list[str], per_label: int = 2) -> Path:
    for n, label in enumerate(labels):
        for i in range(per_label):
            write_image(root / label / f"{i}.png", COLOURS[n % len(COLOURS)], seed=hash((label, i)) % 10_000)
    return root


@pytest.mark.slow
def test_two_concurrent_adds_both_land_with_distinct_ids(tmp_path, tiny_bundle):
    """The review's reproduction: a 2-label index and two 6-label galleries added at the same time
    ended with 8 labels (one add lost, both had used the same new ids); now 14."""
    root = tmp_path / "index"
    build_index(tiny_bundle, labelled_gallery(tmp_path / "base", ["a0", "a1"]), root)
    galleries = [labelled_gallery(tmp_path / g, [f"{g}{n}" for n in range(6)]) for g in ("x", "y")]
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lookalike.cli",
                "index",
                "add",
                "--bundle",
                tiny_bundle,
                "--gallery",
                g,
                "--index",
                root,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for g in galleries
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err.decode()[-2000:]
    final = GalleryIndex.open(current_version(root))
    entries = final.metadata.get(range(100))
    assert final.manifest.labels == 14 and final.size == 28
    assert len(entries) == 28 and sorted(entries) == list(range(28))


def test_writers_on_a_slow_disk_queue_up_instead_of_overwriting_each_other(tmp_path, tiny_bundle, monkeypatch):
    """Copying the live version takes 0.3 s here (a slow disk): two adds that overlap both read the
    same live version, and without the writer lock the second to publish drops the first's images."""
    root = tmp_path / "index"
    build_index(tiny_bundle, labelled_gallery(tmp_path / "base", ["a0", "a1"]), root)
    galleries = [labelled_gallery(tmp_path / g, [f"{g}{n}" for n in range(3)]) for g in ("x", "y")]
    copy_to = GalleryIndex.copy_to

    def slow_copy(self, directory):
        time.sleep(0.3)
        return copy_to(self, directory)

    monkeypatch.setattr(GalleryIndex, "copy_to", slow_copy)
    writers = [threading.Thread(target=add_to_index, args=(tiny_bundle, g, root)) for g in galleries]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    final = GalleryIndex.open(current_version(root))
    assert final.manifest.labels == 8 and sorted(final.metadata.get(range(100))) == list(range(16))


def test_a_writer_waits_for_the_lock_then_says_who_holds_it(tmp_path, tiny_bundle, gallery, capsys):
    root = tmp_path / "index"
    build_index(tiny_bundle, gallery, root)
    with writer_lock(root):
        started = time.monotonic()
        with pytest.raises(IndexBusyError, match=f"another writer \\(pid {os.getpid()} since"):
            add_to_index(tiny_bundle, gallery, root, lock_timeout_s=0.5)
        assert time.monotonic() - started >= 0.5
        assert main(["index", "remove", "--index", str(root), "--label", "label0", "--lock-timeout", "0.2"]) == 2
    assert "error: another writer" in capsys.readouterr().err
    assert GalleryIndex.open(current_version(root)).size == 20  # nothing was written meanwhile
    remove_from_index(root, labels=["label0"], lock_timeout_s=0.5)  # released: the next writer goes ahead


def test_ids_are_never_reused_at_a_root(tmp_path, tiny_bundle, gallery):
    root = tmp_path / "index"
    build_index(tiny_bundle, gallery, root)  # ids 0-19
    remove_from_index(root, ids=[18, 19])
    added = add_to_index(tiny_bundle, labelled_gallery(tmp_path / "more", ["new"]), root)
    assert sorted(added.metadata.get(range(100))) == [*range(18), 20, 21]
    rebuilt = build_index(tiny_bundle, gallery, root)
    assert sorted(rebuilt.metadata.get(range(100))) == list(range(22, 42))


def test_publish_flushes_the_version_before_the_rename_and_the_root_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd)
    )
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("rename", str(b))) or real_replace(a, b))
    root = tmp_path / "index"
    with staged_version(root) as version:
        for name in ("index.faiss", "metadata.sqlite", "manifest.json"):
            (version / name).write_bytes(b"data")
        publish(root, version)
    rename = events.index(("rename", str(root / "current")))
    before = {path for kind, path in events[:rename] if kind == "fsync"}
    assert {str(version / n) for n in ("index.faiss", "metadata.sqlite", "manifest.json")} <= before
    assert {str(version), str(version.parent)} <= before
    assert ("fsync", str(root)) in events[rename:]


def corrupt(version: Path) -> None:
    """Overwrite bytes in the middle of the vectors, as a bad disk or a stray write would."""
    data = bytearray((version / "index.faiss").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"\x7f" * 8
    (version / "index.faiss").write_bytes(bytes(data))


def test_a_corrupted_version_is_refused_by_every_reader(tmp_path, tiny_bundle, gallery, capsys):
    root = tmp_path / "index"
    build_index(tiny_bundle, gallery, root)
    corrupt(current_version(root))
    capsys.readouterr()
    with pytest.raises(IndexCorruptError, match="does not match the content hash"):
        GalleryIndex.open(current_version(root))
    for argv in (
        ["index", "info", "--index", str(root)],
        ["index", "add", "--bundle", str(tiny_bundle), "--gallery", str(gallery), "--index", str(root)],
        ["serve", "--bundle", str(tiny_bundle), "--index", str(root)],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.splitlines()[-1]
        assert err.startswith("error: ") and "corrupted" in err, (argv, err)


def test_the_service_keeps_its_version_and_remembers_a_refused_one(tmp_path, tiny_bundle, gallery, caplog, monkeypatch):
    root = tmp_path / "index"
    build_index(tiny_bundle, gallery, root)
    served = current_version(root).name
    opened: list[Path] = []
    real_open = GalleryIndex.open.__func__

    def counted_open(cls, directory, *args, **kwargs):
        opened.append(directory)
        return real_open(cls, directory, *args, **kwargs)

    monkeypatch.setattr(GalleryIndex, "open", classmethod(counted_open))
    with TestClient(create_app(Settings(bundle=tiny_bundle, index=root, reload_interval_s=0.05))) as client:
        bad = root / "versions" / "99999999T000000-corrupt"  # a copy of the live version, damaged, then published
        shutil.copytree(current_version(root), bad)
        corrupt(bad)
        publish(root, bad)
        time.sleep(1.0)  # about 20 reload intervals
        ready = client.get("/readyz").json()
        metrics = client.get("/metrics").text
        search = client.post("/search", files={"image": ("q.png", (gallery / "label1" / "0.png").read_bytes())})
        refusals = [r for r in caplog.records if "not switching index" in r.getMessage()]
        reads = opened.count(bad)
        good = build_index(tiny_bundle, gallery, root).directory  # the remedy the error names: a rebuild
        time.sleep(0.5)
        after = client.get("/readyz").json()
    assert ready["ready"] and ready["index_version"] == served
    assert ready["rejected_version"] == bad.name and "content hash" in ready["rejected_reason"]
    assert "lookalike_index_rejected 1.0" in metrics and search.status_code == 200
    assert len(refusals) == 1 and reads == 1  # refused once, not re-read and logged every interval
    assert after["index_version"] == good.name and after["rejected_version"] is None
