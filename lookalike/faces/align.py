"""Five-point face alignment: a similarity transform from detected landmarks onto a template.

A face is cut out the way the encoder was trained to see it: eyes, nose tip and mouth corners
land on fixed points of the output square, whatever the face's position, size and in-plane
rotation in the photo. Only NumPy and Pillow: index/ and service/ align without torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

TEMPLATES: dict[str, tuple[int, np.ndarray]] = {
    # ArcFace / InsightFace: (eye left, eye right, nose tip, mouth left, mouth right) in a 112 x 112 crop
    "arcface_112": (
        112,
        np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]),
    ),
    # dlib's 150 x 150 face chips (padding 0.25), which its face recognition ResNet was trained on:
    # where MTCNN's five points fall in them, the mean over 600 training-half LFW photos
    # (python -m bench.face_template)
    "dlib_150": (
        150,
        np.array(
            [[47.7883, 45.9411], [102.1116, 45.7941], [74.5621, 78.0797], [50.8298, 105.8532], [98.6537, 105.8181]]
        ),
    ),
}
TemplateName = Literal["arcface_112", "dlib_150"]


class FaceAlignment(BaseModel):
    """How a bundle finds and cuts faces; stored in its preprocessing, so every stage does the same."""

    detector: str = Field("mtcnn", description="registered face detector (lookalike.faces.DETECTORS)")
    template: TemplateName = "arcface_112"
    margin: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Extra border around the template's face, as a fraction of the crop side (0: the template as "
        "published; 0.2 shows more hair and chin).",
    )
    min_score: float = Field(0.9, ge=0, le=1, description="detections scored below this are not faces")


def template_points(alignment: FaceAlignment, size: int) -> np.ndarray:
    """The template's five points [5, 2] in a `size` x `size` crop, shrunk toward the centre by the margin."""
    side, points = TEMPLATES[alignment.template]
    return ((points / side - 0.5) / (1.0 + alignment.margin) + 0.5) * size


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix M of the rotation, uniform scale and shift that maps `source` points
    [N, 2] closest onto `target` in least squares (Umeyama 1991): target ~ M @ [x, y, 1]."""
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    src, dst = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(src))
    flip = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0])  # no reflections
    rotation = u @ np.diag(flip) @ vt
    scale = float((singular * flip).sum() / (src**2).sum(1).mean())
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(
    image: Image.Image, landmarks: Sequence[Sequence[float]], size: int, alignment: FaceAlignment
) -> Image.Image:
    """The `size` x `size` crop with the face's five `landmarks` (pixels of `image`) on the template."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    matrix = similarity_transform(landmarks, template_points(alignment, size))
    scale = float(np.hypot(*matrix[:, 0]))
    if scale < 0.5:  # shrinking a lot: halve the photo first (box filter), so bilinear sampling does not alias
        factor = int(1 / scale) // 2 * 2 or 1
        image = image.reduce(factor)
        matrix = matrix @ np.diag([factor, factor, 1.0])
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]  # Pillow asks where each output pixel comes from
    return image.transform((size, size), Image.Transform.AFFINE, tuple(inverse.ravel()), Image.Resampling.BILINEAR)
