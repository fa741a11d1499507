"""Our FFHQ alignment and paste-back give the very pixels facexlib's FaceRestoreHelper gives.

facexlib's helper loads detection and parsing weights in its constructor; both loaders are replaced
by stand-ins, and a stand-in detector hands it our landmarks, so its own ``get_face_landmarks_5``,
``align_warp_face``, ``get_inverse_affine`` and ``paste_faces_to_input_image`` run unchanged.
"""

import numpy as np
import pytest

from ented.face_alignment import (
    FACEXLIB_BORDER_BGR,
    align_face,
    ffhq_template,
    paste_faces,
    transform_points,
)

pytest.importorskip("facexlib")
from facexlib.utils import face_restoration_helper  # noqa: E402


class GivenLandmarks:
    """Stands in for RetinaFace: "detects" the faces whose landmarks it was given."""

    def __init__(self, landmarks: list[np.ndarray]):
        self.rows = [
            np.concatenate([points.min(0), points.max(0), [0.99], points.reshape(-1)]) for points in landmarks
        ]

    def detect_faces(self, image, conf_threshold):
        return np.array(self.rows, dtype=np.float32)


def facexlib_helper(monkeypatch, landmarks, size, upscale):
    monkeypatch.setattr(
        face_restoration_helper, "init_detection_model", lambda *a, **k: GivenLandmarks(landmarks)
    )
    monkeypatch.setattr(face_restoration_helper, "init_parsing_model", lambda *a, **k: None)
    return face_restoration_helper.FaceRestoreHelper(upscale, face_size=size, device="cpu")


def facexlib_crops_and_paste(monkeypatch, rgb, landmarks, size, upscale, restore):
    """facexlib's crops (RGB) and its pasted photo (RGB) for faces restored by ``restore(rgb_crop)``."""
    helper = facexlib_helper(monkeypatch, landmarks, size, upscale)
    helper.read_image(np.ascontiguousarray(rgb[:, :, ::-1]))  # facexlib works in OpenCV's BGR
    assert helper.get_face_landmarks_5() == len(landmarks)
    helper.align_warp_face()
    helper.get_inverse_affine()
    crops = [crop[:, :, ::-1] for crop in helper.cropped_faces]
    restored = [restore(crop) for crop in crops]
    for face in restored:
        helper.add_restored_face(np.ascontiguousarray(face[:, :, ::-1]))
    pasted = helper.paste_faces_to_input_image()[:, :, ::-1]
    return crops, restored, pasted, helper.affine_matrices


def ours(rgb, landmarks, size, upscale, restored):
    crops, affines = zip(*(align_face(rgb, points, size) for points in landmarks))
    return list(crops), paste_faces(rgb, restored, list(affines), upscale=upscale), affines


def random_landmarks(rng, photo_shape, size):
    """The template under a random similarity (faces of 40 to 160 px, any tilt, some off the photo),
    plus a few pixels of noise so no similarity fits exactly."""
    scale = rng.uniform(0.08, 0.3) * 512 / size
    angle = rng.uniform(-0.6, 0.6)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.uniform(-0.1, 0.9, 2) * np.array(photo_shape[1::-1])
    points = transform_points(ffhq_template(size), np.concatenate([rotation, shift[:, None]], 1))
    return points + rng.normal(0, 2.0, points.shape)


def degrade(rng):
    """A stand-in restorer: changes every pixel, so a mistaken mask or offset shows."""
    return lambda crop: np.clip(255 - crop.astype(int) + rng.integers(-20, 21, crop.shape), 0, 255).astype(
        np.uint8
    )


@pytest.mark.parametrize(("size", "upscale"), [(512, 1), (256, 2), (128, 1.5), (64, 4)])
def test_random_landmarks_on_a_random_photo(monkeypatch, size, upscale):
    rng = np.random.default_rng(size)
    photo = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    landmarks = [random_landmarks(rng, photo.shape, size) for _ in range(3)]
    theirs_crops, restored, theirs_pasted, theirs_affines = facexlib_crops_and_paste(
        monkeypatch, photo, landmarks, size, upscale, degrade(np.random.default_rng(0))
    )
    our_crops, our_pasted, our_affines = ours(photo, landmarks, size, upscale, restored)
    for mine, theirs in zip(our_affines, theirs_affines):
        np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(our_crops, theirs_crops):
        np.testing.assert_array_equal(mine, theirs)
    assert our_pasted.shape == (int(180 * upscale), int(240 * upscale), 3)
    np.testing.assert_array_equal(our_pasted, theirs_pasted)


def test_faces_off_the_photo_get_facexlibs_grey(monkeypatch):
    photo = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    landmarks = [transform_points(ffhq_template(64), np.array([[0.5, 0, -20.0], [0, 0.5, -30.0]]))]
    theirs_crops, *_ = facexlib_crops_and_paste(monkeypatch, photo, landmarks, 64, 1, lambda crop: crop)
    mine, _ = align_face(photo, landmarks[0], 64)
    np.testing.assert_array_equal(mine, theirs_crops[0])
    assert tuple(mine[0, 0]) == FACEXLIB_BORDER_BGR[::-1]  # its BGR grey, in our RGB


def test_astronaut_with_mtcnn_landmarks(monkeypatch, mtcnn):
    from skimage.data import astronaut

    photo = astronaut()
    landmarks = [face.landmarks for face in mtcnn.detect(photo)]
    assert len(landmarks) == 1
    for size, upscale in [(512, 1), (512, 2)]:
        theirs_crops, restored, theirs_pasted, _ = facexlib_crops_and_paste(
            monkeypatch, photo, landmarks, size, upscale, degrade(np.random.default_rng(2))
        )
        our_crops, our_pasted, _ = ours(photo, landmarks, size, upscale, restored)
        np.testing.assert_array_equal(our_crops[0], theirs_crops[0])
        np.testing.assert_array_equal(our_pasted, theirs_pasted)
