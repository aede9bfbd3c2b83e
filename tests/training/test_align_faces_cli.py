"""`lookalike train --align-faces` on real LFW photos: faces found once and cached, faceless images
skipped and counted, the alignment recorded in the bundle, and framing options it would ignore refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lookalike.bundle import read_spec
from tests.helpers import run_cli, tiny_run_args, tiny_train_args, write_image

PEOPLE = ("Zinedine_Zidane", "Yoko_Ono", "Valentino_Rossi", "Tony_Stewart")


@pytest.fixture
def faces_folder(tmp_path, lfw) -> Path:
    """Four LFW identities, four photos each, and in the first a picture with no face in it."""
    data = tmp_path / "data"
    for person in PEOPLE:
        (data / person).mkdir(parents=True)
        for photo in sorted((lfw / person).glob("*.jpg"))[:4]:
            shutil.copy(photo, data / person / photo.name)
    write_image(data / PEOPLE[0] / "wall.png", (120, 110, 100), seed=0, size=(250, 250))
    return data


def align_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return tiny_run_args(data, out, "--align-faces", "mtcnn", "--face-cache", str(cache), "--epochs", "1", *extra)


@pytest.mark.slow
def test_align_faces_skips_and_counts_faceless_images_caches_detections_and_records_the_alignment(
    tmp_path, faces_folder
):
    cache = tmp_path / "faces.jsonl"
    first = run_cli(*align_args(faces_folder, tmp_path / "run1", cache))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "16 of 17 images have one (17 detected now" in first.stderr
    assert "1 without a face and 0 unreadable skipped" in first.stderr
    rows = [json.loads(line) for line in (tmp_path / "run1" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["faceless_images"] == 1
    spec = read_spec(tmp_path / "run1" / "bundle")
    assert spec.preprocessing.face is not None and spec.preprocessing.face.detector == "mtcnn"
    assert spec.preprocessing.face.template == "arcface_112"
    assert spec.data["faceless_images"] == 1
    assert len(cache.read_text().splitlines()) == 17

    second = run_cli(*align_args(faces_folder, tmp_path / "run2", cache, "--face-margin", "0.1"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(0 detected now, 17 from" in second.stderr
    assert read_spec(tmp_path / "run2" / "bundle").preprocessing.face.margin == pytest.approx(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--align-faces", "mtcnn", "--crop-fraction", "0.5"], "--crop-fraction: not used with --align-faces"),
        (["--align-faces", "mtcnn", "--crop-mode", "squash"], "--crop-mode: not used with --align-faces"),
        (["--face-margin", "0.2"], "--face-margin: only used with --align-faces"),
        (["--face-template", "dlib_150"], "--face-template: only used with --align-faces"),
        (["--align-faces", "haar"], "unknown face detector 'haar'; choose one of: mtcnn"),
    ],
)
def test_framing_options_that_would_do_nothing_are_refused(tmp_path, faces_folder, extra, message):
    result = run_cli(*tiny_train_args(faces_folder, tmp_path / "run", "--epochs", "1", *extra))
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
