"""Face detection and five-point alignment: exact geometry, and the same face found and cut the
same wherever, however large and however tilted it is in the photo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lookalike.bundle import load_bundle
from lookalike.faces import DETECTORS, FaceAlignment, align_face, create_detector, similarity_transform, template_points
from lookalike.images import open_rgb
from lookalike.registry import UnknownNameError
from tests.helpers import place

ALIGNMENT = FaceAlignment()


def similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize("scale, degrees", [(1.0, 0.0), (2.7, 20.0), (0.4, -35.0), (1.3, 170.0)])
def test_the_similarity_transform_is_recovered_exactly(scale, degrees):
    source = np.random.default_rng(0).uniform(0, 200, (5, 2))
    truth = similarity(scale, degrees, (13.0, -7.5))
    np.testing.assert_allclose(similarity_transform(source, apply(truth, source)), truth, atol=1e-9)


def test_a_mirror_image_is_never_fitted():
    """Landmarks of a mirrored face are fitted by a rotation: a reflection would swap the eyes."""
    source = template_points(ALIGNMENT, 112)
    mirrored = source * [-1, 1] + [112, 0]
    matrix = similarity_transform(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def dot(size: tuple[int, int], x: float, y: float) -> Image.Image:
    """A black picture with one white dot centred on (x, y)."""
    image = Image.new("RGB", size)
    ImageDraw.Draw(image).ellipse((x - 6, y - 6, x + 6, y + 6), fill=(255, 255, 255))
    return image


@pytest.mark.parametrize("size, margin", [(112, 0.0), (64, 0.0), (96, 0.25)])
def test_alignment_puts_the_landmarks_on_the_template(size, margin):
    alignment = FaceAlignment(margin=margin)
    template = template_points(alignment, size)
    placed = apply(similarity(3.1, 17.0, (140.0, 60.0)), template_points(FaceAlignment(), 112))  # a 350 px face
    for n, ((x, y), (px, py)) in enumerate(zip(template, placed, strict=True)):
        crop = np.asarray(align_face(dot((640, 480), px + 0.5, py + 0.5), placed, size, alignment))[..., 0]
        ys, xs = np.nonzero(crop)
        assert len(xs), f"landmark {n} did not land in the crop"
        weights = crop[ys, xs].astype(float)
        centre = np.average(xs + 0.5, weights=weights), np.average(ys + 0.5, weights=weights)  # pixel centres
        assert np.hypot(centre[0] - x, centre[1] - y) < 0.5, (n, centre, (x, y))


def test_the_margin_shows_more_around_the_same_centre():
    tight, loose = template_points(FaceAlignment(), 100), template_points(FaceAlignment(margin=0.5), 100)
    np.testing.assert_allclose(loose - 50, (tight - 50) / 1.5)


def test_detectors_are_registered_by_name():
    assert DETECTORS.names() == ["mtcnn"]
    with pytest.raises(UnknownNameError, match="choose one of: mtcnn"):
        create_detector("haar")


def test_mtcnn_finds_the_face_and_its_five_landmarks(lfw):
    photo = open_rgb(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    (face,) = create_detector("mtcnn").detect([photo])[0][:1]
    left, top, right, bottom = face.box
    assert 0 < left < right < 250 and 0 < top < bottom < 250 and face.score > 0.95
    eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks
    assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < mouth_r[0]  # image-left eye first
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert all(left <= x <= right and top <= y <= bottom for x, y in face.landmarks)


def test_a_batch_of_mixed_sizes_answers_each_picture_in_order(lfw):
    """Same-sized pictures share one MTCNN pass; the answers still come back per picture, in order."""
    photo = open_rgb(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    blank = Image.new("RGB", (250, 250), (128, 128, 128))
    big = place(photo, (900, 700), 2.0, 0.0, (300, 100))
    found = create_detector("mtcnn").detect([photo, blank, big, photo])
    assert [len(f) > 0 for f in found] == [True, False, True, True]
    np.testing.assert_allclose(found[0][0].box, found[3][0].box)
    np.testing.assert_allclose(np.array(found[2][0].box), np.array(found[0][0].box) * 2 + [300, 100] * 2, atol=8)


@pytest.mark.parametrize(
    "scale, degrees, at",
    [(1.0, 0.0, (0, 0)), (0.6, 20.0, (300, 40)), (1.5, -20.0, (40, 160)), (0.8, 12.0, (420, 260))],
)
def test_the_same_face_anywhere_in_a_photo_embeds_the_same(face_bundles, lfw, scale, degrees, at):
    """Shifted, scaled and rotated by up to 20 degrees on a larger canvas, the face embeds within a
    small distance of the original's: under a tenth of the distance to another person's face.
    The same network on a centre crop of the same photos moves further than that."""
    photo = open_rgb(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    other = open_rgb(lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg")
    moved = place(photo, (800, 640), scale, degrees, at)

    def distances(bundle) -> tuple[float, float]:
        original, shifted, someone = load_bundle(bundle).embed([photo, moved, other])
        return 1 - float(original @ shifted), 1 - float(original @ someone)

    moved_by, other_at = distances(face_bundles["aligned"])
    assert moved_by < 0.1 * other_at, (moved_by, other_at)
    moved_by, other_at = distances(face_bundles["centre"])
    assert moved_by > 0.1 * other_at, (moved_by, other_at)


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation_before_detection(face_bundle, lfw, tmp_path):
    """Phones store the sensor's pixels and an orientation tag: the face is found and cut from the
    picture as it is shown, and embeds as the upright photo does."""
    photo = open_rgb(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    photo.save(tmp_path / "upright.jpg", quality=95)
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", quality=95, exif=exif)
    encoder = load_bundle(face_bundle)
    upright, sideways = (open_rgb(tmp_path / name) for name in ("upright.jpg", "sideways.jpg"))
    assert sideways.size == upright.size
    (face_up,), (face_side,) = (faces[:1] for faces in encoder.find_faces([upright, sideways]))
    np.testing.assert_allclose(face_side.box, face_up.box, atol=3)
    first, second = encoder.embed([upright, sideways])
    assert 1 - float(first @ second) < 0.01
