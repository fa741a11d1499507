"""dlib's face descriptor (the ``identity`` extra): same person, different person, no face, and its
uses as the reference check's default backend and as an identity-metric backend.

Real faces: the astronaut of ``skimage.data`` (public domain). Different people: synthetic faces.
"""

import cv2
import numpy as np
import pytest
import skimage.data

from ented.data.synthetic_faces import generate_synthetic_faces
from ented.dlib_identity import DlibFaceDescriptor, NoFaceError, landmarks_68
from ented.image_io import to_network
from ented.metrics.identity_metric import calculate_ented_identity_similarity
from ented.restoration import ReferenceChecker
from ented.restoration.reference_check import DLIB_THRESHOLD

SIZE = 256  # conftest's ASTRONAUT_SIZE: the size of the `astronaut` fixture


@pytest.fixture(scope="module")
def stranger():
    return generate_synthetic_faces(1, 1, size=SIZE, renderer="flat")["id0000"][0]


def test_descriptor_shape_and_landmarks(descriptor, astronaut):
    desc = descriptor.descriptor(astronaut)
    assert desc.shape == (128,) and np.isfinite(desc).all()
    points = landmarks_68(astronaut)
    assert points.shape == (68, 2)
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)  # iBUG: image-left eye first
    assert left_eye[0] < right_eye[0] < SIZE and abs(left_eye[1] - right_eye[1]) < 0.05 * SIZE
    assert points[8, 1] > points[30, 1] > left_eye[1]  # chin below the nose below the eyes


@pytest.mark.parametrize("variant", ["flip", "blur", "photo"])
def test_astronaut_variants_are_the_same_person(descriptor, astronaut, variant):
    if variant == "flip":
        other = descriptor.descriptor(astronaut[:, ::-1].copy())
    elif variant == "blur":
        other = descriptor.descriptor(cv2.GaussianBlur(astronaut, (0, 0), 2))
    else:  # the whole photo, face found by dlib's detector
        other = DlibFaceDescriptor(aligned=False).descriptor(skimage.data.astronaut())
    distance = float(DlibFaceDescriptor.descriptor_distance(descriptor.descriptor(astronaut), other))
    assert 1 - distance >= DLIB_THRESHOLD


def test_astronaut_and_a_synthetic_face_are_different_people(descriptor, astronaut, stranger):
    assert descriptor.similarity(astronaut, stranger) < DLIB_THRESHOLD
    assert descriptor.similarity(astronaut, astronaut) == pytest.approx(1.0)


def test_no_face_is_a_named_error(descriptor):
    grey = np.full((SIZE, SIZE, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="grey.png: no face found"):
        descriptor.descriptor(grey, "grey.png")
    with pytest.raises(NoFaceError, match="grey.png: dlib's hog detector found no face"):
        DlibFaceDescriptor(aligned=False).descriptor(grey, "grey.png")
    with pytest.raises(ValueError, match="RGB uint8"):
        descriptor.descriptor(grey.astype(np.float32), "float.png")


def test_checker_uses_dlib_by_default_and_says_so(astronaut, stranger, caplog):
    checker = ReferenceChecker()
    assert checker.backend == "dlib" and checker.threshold == DLIB_THRESHOLD
    faces = to_network([cv2.GaussianBlur(astronaut, (0, 0), 2)] * 2)
    refs = to_network([astronaut, stranger])[:, None]  # face 0 gets herself, face 1 a stranger
    with caplog.at_level("WARNING"):
        checks = checker.check(faces, refs, ["lq.png", "lq2.png"], [["her.png"], ["stranger.png"]])
    assert [c.same_person for c in checks] == [True, False]
    assert all(c.backend == "dlib" for c in checks)
    assert "dlib face descriptor" in checks[0].message()
    assert "lq2.png: reference may show a different person: stranger.png" in caplog.text
    assert "dlib face descriptor" in caplog.text


def test_checker_names_a_reference_without_a_face(astronaut, caplog):
    grey = np.full((SIZE, SIZE, 3), 128, np.uint8)
    checker = ReferenceChecker(on_mismatch="warn")
    with caplog.at_level("WARNING"):
        (check,) = checker.check(
            to_network([astronaut]), to_network([grey])[None], ["lq.png"], [["blank.png"]]
        )
    assert not check.same_person and np.isnan(check.similarities[0])
    assert "blank.png (no face)" in caplog.text and "blank.png: no face found" in caplog.text


def test_metric_backend_scores_the_same_person_higher(astronaut, stranger):
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    blurred = cv2.GaussianBlur(bgr, (0, 0), 2)
    same = calculate_ented_identity_similarity(blurred, bgr, backend="dlib")
    other = calculate_ented_identity_similarity(
        blurred, np.ascontiguousarray(stranger[:, :, ::-1]), backend="dlib"
    )
    assert same > DLIB_THRESHOLD > other
    with pytest.raises(ValueError, match="takes no ArcFace options"):
        calculate_ented_identity_similarity(blurred, bgr, backend="dlib", weights_path="arcface.pth")
    with pytest.raises(ValueError, match="backend"):
        calculate_ented_identity_similarity(blurred, bgr, backend="facenet")
