"""The exported encoder bundle: the contract between training and everything else.

A bundle is a directory:

    encoder.pt2    the network as a `torch.export` program (no training code, no timm needed)
    bundle.json    `BundleSpec`: backbone, preprocessing, embedding size, distance,
                   calibrated verification threshold, data summary, final metrics, content hash

index/ and service/ only ever call `load_bundle(path).embed(images)`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, Field

from lookalike.errors import LookalikeError
from lookalike.faces import Face, FaceDetector, NoFaceError, create_detector
from lookalike.images import Preprocessing, preprocess

ENCODER_FILE = "encoder.pt2"
SPEC_FILE = "bundle.json"
FORMAT_VERSION = 1
# torch.export.load keeps its deserializer in a module global: two threads loading at once fail.
_EXPORT_LOAD_LOCK = threading.Lock()


class BundleError(LookalikeError, RuntimeError):
    """A bundle is missing, incomplete, corrupted or of an unknown format."""


class BundleSpec(BaseModel):
    format_version: int = FORMAT_VERSION
    backbone: str
    embedding_size: int = Field(gt=0)
    distance: str = Field(
        default="cosine",
        description="Embeddings are L2-normalised; scores are cosine similarities (higher = closer).",
    )
    threshold: float = Field(description="Cosine similarity at or above which two images match.")
    preprocessing: Preprocessing
    test_time_flip: bool = Field(
        default=False,
        description="Each input is embedded with its mirror image and the two embeddings averaged (then "
        "re-normalised): what the threshold was calibrated on, so index and service must do the same.",
    )
    data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    content_hash: str = ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(directory: str | Path, model: torch.nn.Module, spec: BundleSpec, max_batch: int = 1024) -> BundleSpec:
    """Export `model` (images [B, 3, S, S] -> embeddings [B, D]) with a dynamic batch size."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    size = spec.preprocessing.image_size
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    was_training = model.training
    model = model.eval().cpu()
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    model.train(was_training)
    torch.export.save(program, directory / ENCODER_FILE)
    spec = spec.model_copy(update={"content_hash": file_sha256(directory / ENCODER_FILE)})
    (directory / SPEC_FILE).write_text(spec.model_dump_json(indent=2))
    return spec


def embed_tensor(module: torch.nn.Module, inputs: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Unit embeddings [B, D] of network inputs [B, 3, S, S]; with `flip`, the mean direction of
    each input's and its left-right mirror's. Faces and most products are mirror-symmetric
    classes, so the two views are equally valid and their average has less pose noise. Training's
    evaluation and every bundle embed through here, so a threshold is calibrated on exactly what
    is served."""
    out = module(inputs)
    if flip:
        out = torch.nn.functional.normalize(out + module(inputs.flip(-1)), dim=1)
    return out


class Encoder:
    """A loaded bundle: turns PIL images into L2-normalised float32 embeddings.

    A face bundle (`spec.preprocessing.face`) embeds the face of a picture: `find_faces` detects
    them (batched), `preprocess(image, face)` cuts one aligned, and `embed` takes each picture's
    largest face.
    """

    def __init__(self, module: torch.nn.Module, spec: BundleSpec, batch_size: int = 64) -> None:
        self.module = module
        self.spec = spec
        self.batch_size = batch_size
        self._detector: FaceDetector | None = None
        self._detector_lock = threading.Lock()

    @property
    def embedding_size(self) -> int:
        return self.spec.embedding_size

    def with_flip(self, flip: bool) -> Encoder:
        """The same network, embedding with or without the test-time flip (its spec says which):
        one trained model scored both ways shows what the flip adds."""
        return Encoder(self.module, self.spec.model_copy(update={"test_time_flip": flip}), self.batch_size)

    @property
    def aligns_faces(self) -> bool:
        return self.spec.preprocessing.face is not None

    def find_faces(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Per picture, its faces largest first, found by the bundle's detector in one batch."""
        alignment = self.spec.preprocessing.face
        if alignment is None:
            raise BundleError("this bundle embeds whole pictures: it has no face detector")
        with self._detector_lock:  # built on first use: a product bundle never loads one
            if self._detector is None:
                self._detector = create_detector(alignment.detector, min_score=alignment.min_score)
        return self._detector.detect(images)

    def preprocess(self, image: Image.Image, face: Face | None = None) -> np.ndarray:
        """One picture (for a face bundle: one of its faces) as the network's input [3, S, S],
        exactly as the bundle prescribes."""
        return preprocess(image, self.spec.preprocessing, face)

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Embeddings [B, D] of preprocessed inputs [B, 3, S, S], in chunks of `batch_size`."""
        out = np.empty((len(inputs), self.embedding_size), dtype=np.float32)
        for start in range(0, len(inputs), self.batch_size):
            with torch.inference_mode():
                out[start : start + self.batch_size] = embed_tensor(
                    self.module, torch.from_numpy(inputs[start : start + self.batch_size]), self.spec.test_time_flip
                ).numpy()
        return out

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embeddings [B, D] of pictures (of their largest faces, for a face bundle: `NoFaceError`
        when one has none); at most `batch_size` preprocessed inputs are held at once."""
        out = np.empty((len(images), self.embedding_size), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            faces = self.largest_faces(chunk) if self.aligns_faces else [None] * len(chunk)
            out[start : start + len(chunk)] = self.forward(
                np.stack([self.preprocess(image, face) for image, face in zip(chunk, faces, strict=True)])
            )
        return out

    def largest_faces(self, images: Sequence[Image.Image]) -> list[Face]:
        faces = self.find_faces(images)
        if missing := [n for n, found in enumerate(faces) if not found]:
            raise NoFaceError(f"no face found in {len(missing)} of {len(images)} pictures (the first: #{missing[0]})")
        return [found[0] for found in faces]


def read_spec(path: str | Path) -> BundleSpec:
    spec_path = Path(path) / SPEC_FILE
    if not spec_path.is_file():
        raise BundleError(f"{path} is not a bundle: {SPEC_FILE} is missing")
    try:
        spec = BundleSpec.model_validate(json.loads(spec_path.read_text()))
    except ValueError as err:
        raise BundleError(f"{spec_path} is not a valid bundle description: {err}") from None
    if spec.format_version != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {spec.format_version} is not supported (expected {FORMAT_VERSION})")
    return spec


def load_bundle(path: str | Path, batch_size: int = 64) -> Encoder:
    """Load and verify a bundle; raises `BundleError` with a readable reason if anything is off."""
    spec = read_spec(path)
    encoder_path = Path(path) / ENCODER_FILE
    if not encoder_path.is_file():
        raise BundleError(f"{path} is not a bundle: {ENCODER_FILE} is missing")
    if spec.content_hash and file_sha256(encoder_path) != spec.content_hash:
        raise BundleError(f"{encoder_path} does not match the content hash in {SPEC_FILE}: the bundle is corrupted")
    with _EXPORT_LOAD_LOCK:
        module = torch.export.load(encoder_path).module()
    return Encoder(module, spec, batch_size=batch_size)
