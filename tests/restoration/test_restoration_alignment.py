"""FFHQ alignment geometry (synthetic landmarks, no detector) and face detection on a real photo.

Pixel-for-pixel agreement with facexlib is tested in tests/restoration/test_facexlib_parity.py.
"""

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from ented.face_alignment import (
    DEFAULT_BORDER_VALUE,
    align_face,
    alignment_transform,
    ffhq_template,
    invert_affine,
    landmarks_look_aligned,
    paste_back_matrix,
    paste_faces,
    paste_mask,
    transform_points,
)


def smooth_photo(height=300, width=420):
    yy, xx = np.mgrid[:height, :width]
    channels = [128 + 100 * np.sin(xx / 17.0 + c) * np.cos(yy / 23.0 - c) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def crop_to_photo(scale=0.3, degrees=15.0, shift=(200.0, 60.0)):
    """A known transform from 512-crop coordinates to photo coordinates."""
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.concatenate([scale * rotation, np.array(shift)[:, None]], axis=1)


def test_alignment_recovers_a_known_transform():
    truth = crop_to_photo()
    landmarks = transform_points(ffhq_template(512), truth)
    estimated = alignment_transform(landmarks, 512)
    # OpenCV fits in float32: exact up to its rounding
    np.testing.assert_allclose(estimated, invert_affine(truth), rtol=1e-4, atol=1e-2)
    # a strided view (projected 3-D points' x, y) gives the same fit
    strided = np.concatenate([landmarks, np.ones((5, 1))], axis=1)[:, :2]
    np.testing.assert_array_equal(alignment_transform(strided, 512), estimated)
    # with noise: still close, and a similarity (rotation and uniform scale), never a reflection
    noisy = landmarks + np.random.default_rng(0).normal(0, 0.5, landmarks.shape)
    estimated = alignment_transform(noisy, 512)
    (a, b), (c, d) = estimated[:, :2]
    assert np.isclose(a, d) and np.isclose(b, -c) and a * d - b * c > 0
    residual = np.linalg.norm(transform_points(noisy, estimated) - ffhq_template(512), axis=1)
    assert residual.mean() < 3.0  # photo noise of 0.5 px, magnified ~3.3x into the 512 crop


def test_mirrored_landmarks_give_a_rotation_not_a_reflection():
    mirrored = ffhq_template(512) * np.array([-1.0, 1.0])
    assert np.linalg.det(alignment_transform(mirrored, 512)[:, :2]) > 0


def test_align_then_paste_back_round_trip():
    photo = smooth_photo()
    truth = crop_to_photo()
    landmarks = transform_points(ffhq_template(512), truth)
    crop, affine = align_face(photo, landmarks, size=128)
    assert crop.shape == (128, 128, 3)
    assert np.allclose(transform_points(landmarks, affine), ffhq_template(128), atol=1e-3)

    pasted = paste_faces(photo, [crop], [affine])
    _, soft = paste_mask(128, paste_back_matrix(affine), photo.shape[1::-1])
    inside, outside = soft > 0.999, soft == 0
    error = np.abs(pasted.astype(int) - photo.astype(int))
    assert inside.sum() > 1000
    assert error[inside].mean() < 3.0  # two bilinear resamplings of a smooth image, truncated
    assert error[outside].max() == 0  # untouched away from the face

    # a face restored at another size than it was aligned at is rescaled onto the same spot
    big = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC)
    pasted_big = paste_faces(photo, [big], [affine], crop_sizes=[128])
    assert np.abs(pasted_big.astype(int) - photo.astype(int))[inside].mean() < 3.0

    # upscale: the photo is enlarged (Lanczos) and the face lands on the same spot
    pasted_up = paste_faces(photo, [big], [affine], crop_sizes=[128], upscale=2)
    assert pasted_up.shape == (600, 840, 3)
    down = cv2.resize(pasted_up, photo.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(down.astype(int) - photo.astype(int))[inside].mean() < 4.0


def test_faces_near_the_border_are_filled_with_facexlibs_grey():
    photo = smooth_photo()
    landmarks = transform_points(
        ffhq_template(512), crop_to_photo(scale=0.3, degrees=0, shift=(-60.0, -40.0))
    )
    crop, _ = align_face(photo, landmarks, size=64)
    # facexlib's (135, 133, 132) is BGR: in our RGB crops it reads (132, 133, 135)
    assert tuple(crop[0, 0]) == DEFAULT_BORDER_VALUE == (132, 133, 135)


def test_paste_mask_and_alignment_test():
    inverse = paste_back_matrix(invert_affine(crop_to_photo(scale=0.3, degrees=0, shift=(50.0, 40.0))))
    hard, soft = paste_mask(512, inverse, (300, 250))
    assert hard[40 + 77, 50 + 77] == 1.0 and soft[40 + 77, 50 + 77] == pytest.approx(1.0)  # face centre
    assert hard[0, 0] == 0.0 and soft[0, 0] == 0.0
    # the soft edge lies inside the pasted square, but for facexlib's quirk: its even erosion kernel
    # erodes one pixel less on the far side, and the blur leaks under 1 % one pixel past the square
    assert (soft <= hard + 0.01).all()
    row = soft[40 + 77, :128]
    assert (np.diff(row[50:]) >= 0).all()  # rises monotonically towards the centre
    assert landmarks_look_aligned(ffhq_template(256) + 3.0, 256)
    assert not landmarks_look_aligned(transform_points(ffhq_template(512), crop_to_photo()), 512)
    with pytest.raises(ValueError, match="5 landmarks"):
        align_face(smooth_photo(), np.zeros((4, 2)), size=64)
    with pytest.raises(ValueError, match="degenerate"):
        align_face(smooth_photo(), np.zeros((5, 2)), size=64)


def test_mtcnn_finds_the_astronaut(mtcnn):
    from skimage.data import astronaut

    from ented.data.example_faces import ASTRONAUT_LANDMARKS

    faces = mtcnn.detect(astronaut())
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200  # her face, not the flag or the helmet
    left_eye, right_eye, nose, mouth_left, mouth_right = faces[0].landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # the landmarks example_faces stores for the astronaut are these
    np.testing.assert_allclose(faces[0].landmarks, ASTRONAUT_LANDMARKS, atol=0.05)
    crop, _ = align_face(astronaut(), faces[0].landmarks, 128)
    assert crop.shape == (128, 128, 3)
    assert mtcnn.detect(np.full((120, 120, 3), 200, np.uint8)) == []


@pytest.fixture
def no_stored_weights(tmp_path, monkeypatch):
    """A working directory, home and facexlib folder without RetinaFace weights."""
    from ented.restoration import face_detection

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ENTED_FACE_WEIGHTS", raising=False)
    monkeypatch.setattr(face_detection, "facexlib_weights_dir", lambda: tmp_path / "facexlib" / "weights")
    return tmp_path


def random_retinaface_state(network):
    import torch
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    return RetinaFace(network_name=network, half=False, device=torch.device("cpu")).state_dict()


def test_retinaface_without_weights_says_where_it_looked(no_stored_weights):
    pytest.importorskip("facexlib")
    from ented.restoration.face_detection import build_detector

    with pytest.raises(FileNotFoundError, match="detection_Resnet50_Final.pth") as error:
        build_detector("retinaface")
    for place in ["home/.cache/ented/facexlib", "facexlib/weights", "gfpgan/weights"]:
        assert str(no_stored_weights / place / "detection_Resnet50_Final.pth") in str(error.value)
    given = no_stored_weights / "mine"
    with pytest.raises(FileNotFoundError, match=str(given / "detection_Resnet50_Final.pth")):
        build_detector("retinaface", weights=given)  # a given folder is the only place searched
    with pytest.raises(ValueError, match="unknown face detector"):
        build_detector("haar")


def test_facexlib_weights_dir_is_where_facexlib_keeps_them():
    pytest.importorskip("facexlib")
    from facexlib.utils.misc import ROOT_DIR

    from ented.restoration.face_detection import facexlib_weights_dir, retinaface_weight_places

    # init_detection_model without model_rootpath: save_dir = os.path.join(ROOT_DIR, "facexlib/weights")
    assert facexlib_weights_dir() == Path(os.path.join(ROOT_DIR, "facexlib/weights"))
    assert facexlib_weights_dir() in retinaface_weight_places()


def test_retinaface_uses_gfpgans_weights(no_stored_weights, caplog):
    pytest.importorskip("facexlib")
    import torch

    from ented.restoration.face_detection import build_detector

    weights = no_stored_weights / "gfpgan" / "weights" / "detection_Resnet50_Final.pth"
    weights.parent.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in random_retinaface_state("resnet50").items()}, weights)
    with caplog.at_level(logging.INFO, logger="ented.restoration.face_detection"):
        detector = build_detector("retinaface")
    assert "RetinaFace-resnet50" in caplog.text and str(weights.absolute()) in caplog.text
    faces = detector.detect(np.full((64, 64, 3), 128, np.uint8))  # random weights: plumbing only
    assert isinstance(faces, list)


def test_retinaface_reads_a_given_file_or_folder(no_stored_weights):
    pytest.importorskip("facexlib")
    import torch

    from ented.restoration.face_detection import build_detector

    folder = no_stored_weights / "w"
    folder.mkdir()
    torch.save(random_retinaface_state("mobile0.25"), folder / "detection_mobilenet0.25_Final.pth")
    assert isinstance(
        build_detector("retinaface_mobile0.25", weights=folder).detect(np.zeros((32, 32, 3), np.uint8)), list
    )
    renamed = folder / "my_retinaface.pth"
    (folder / "detection_mobilenet0.25_Final.pth").rename(renamed)
    build_detector("retinaface_mobile0.25", weights=renamed)


def test_retinaface_weights_that_are_not_a_state_dict_are_refused_by_name(no_stored_weights):
    pytest.importorskip("facexlib")
    import torch

    from ented.restoration.face_detection import build_detector

    text = no_stored_weights / "text.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=str(text)):
        build_detector("retinaface", weights=text)

    class RunsCode:
        def __reduce__(self):
            return (print, ("this must never run",))

    pickled = no_stored_weights / "code.pth"
    torch.save({"conv.weight": RunsCode()}, pickled)
    with pytest.raises(ValueError, match=f"{pickled}.*refused"):
        build_detector("retinaface", weights=pickled)

    listed = no_stored_weights / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match=f"{listed} hold a list, not a state dict"):
        build_detector("retinaface", weights=listed)

    wrong_network = no_stored_weights / "mobile.pth"
    torch.save(random_retinaface_state("mobile0.25"), wrong_network)
    with pytest.raises(ValueError, match=f"{wrong_network} do not fit RetinaFace-resnet50"):
        build_detector("retinaface", weights=wrong_network)
