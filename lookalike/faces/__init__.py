"""Faces in real photos: detect them, then align each onto a five-point template.

A bundle whose preprocessing names a `FaceAlignment` embeds faces, not pictures: training,
`index build` and the service all detect with the detector it names and cut the same aligned
crop (`align_face`). Detectors are registered by name (`DETECTORS`, `create_detector`).
"""

from lookalike.faces.align import (
    TEMPLATES,
    FaceAlignment,
    TemplateName,
    align_face,
    similarity_transform,
    template_points,
)
from lookalike.faces.detect import DETECTORS, Face, FaceDetector, MTCNNDetector, NoFaceError, create_detector

__all__ = [
    "DETECTORS",
    "TEMPLATES",
    "Face",
    "FaceAlignment",
    "FaceDetector",
    "MTCNNDetector",
    "NoFaceError",
    "TemplateName",
    "align_face",
    "create_detector",
    "similarity_transform",
    "template_points",
]
