"""Face detectors: a name in a bundle picks one; each finds faces and their five landmarks.

Detectors take a batch of pictures and answer, per picture, its faces largest first. The
weights ship inside a registry package (MTCNN's in the facenet-pytorch wheel): nothing is
downloaded at run time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError
from lookalike.registry import Registry


class NoFaceError(LookalikeError, ValueError):
    """A picture given to a face bundle holds no face the detector is sure of."""


@dataclass(frozen=True)
class Face:
    """One detected face in the photo's pixels (after EXIF orientation)."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    landmarks: tuple[tuple[float, float], ...]  # eye left, eye right, nose tip, mouth left, mouth right
    score: float

    @property
    def area(self) -> float:
        left, top, right, bottom = self.box
        return max(0.0, right - left) * max(0.0, bottom - top)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "landmarks": [list(p) for p in self.landmarks], "score": self.score}

    @classmethod
    def from_dict(cls, row: dict) -> Face:
        return cls(tuple(row["box"]), tuple(tuple(p) for p in row["landmarks"]), float(row["score"]))


class FaceDetector(ABC):
    """Finds the faces in a batch of pictures."""

    def __init__(self, min_score: float = 0.9) -> None:
        self.min_score = min_score

    @abstractmethod
    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Per RGB picture, its faces scored at least `min_score`, largest first."""


DETECTORS: Registry[FaceDetector] = Registry("face detector")


@DETECTORS.register("mtcnn")
class MTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016) as facenet-pytorch ships it (MIT): three small CNNs in PyTorch,
    so a batch of same-sized pictures runs as one pass, on the GPU when there is one.

    Its cost grows with the picture's area, so it looks at a copy whose longer side is at most
    `max_side` (a phone photo's face is still dozens of pixels there) and scales the answer back.
    """

    def __init__(
        self, min_score: float = 0.9, device: str | None = None, min_face_size: int = 20, max_side: int = 640
    ) -> None:
        super().__init__(min_score)
        try:
            import torch
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise LookalikeError(
                f"the mtcnn face detector needs facenet-pytorch: pip install facenet-pytorch ({err})"
            ) from None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net = MTCNN(keep_all=True, device=device, min_face_size=min_face_size, select_largest=True)
        self.max_side = max_side

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        scaled, factors = zip(*(self._shrunk(image) for image in images), strict=True) if images else ((), ())
        groups: dict[tuple[int, int], list[int]] = {}
        for n, image in enumerate(scaled):
            groups.setdefault(image.size, []).append(n)
        found: list[list[Face]] = [[] for _ in images]
        for members in groups.values():  # MTCNN batches pictures of one size
            boxes, scores, points = self.net.detect([scaled[n] for n in members], landmarks=True)
            for n, b, s, p in zip(members, boxes, scores, points, strict=True):
                found[n] = self._faces(b, s, p, factors[n])
        return found

    def _shrunk(self, image: Image.Image) -> tuple[Image.Image, float]:
        factor = max(image.size) / self.max_side
        if factor <= 1:
            return image.convert("RGB"), 1.0
        size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
        return image.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), factor

    def _faces(self, boxes, scores, points, factor: float) -> list[Face]:
        if boxes is None:
            return []
        faces = [
            Face(
                tuple(float(v) * factor for v in box),
                tuple((float(x) * factor, float(y) * factor) for x, y in np.asarray(marks)),
                float(score),
            )
            for box, score, marks in zip(boxes, scores, points, strict=True)
            if score is not None and score >= self.min_score
        ]
        return sorted(faces, key=lambda face: -face.area)


def create_detector(name: str, **kwargs) -> FaceDetector:
    """The registered detector `name` (e.g. "mtcnn"), built with `kwargs`."""
    return DETECTORS.create(name, **kwargs)
