"""FFHQ alignment geometry (synthetic landmarks, no detector) and face detection on a real photo."""

import cv2
import numpy as np
import pytest

from ented.restoration.face_alignment import (
    align_face,
    estimate_similarity,
    feather_mask,
    ffhq_template,
    invert_affine,
    landmarks_look_aligned,
    paste_faces,
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


def test_similarity_recovers_a_known_transform():
    truth = crop_to_photo()
    landmarks = transform_points(ffhq_template(512), truth)
    estimated = estimate_similarity(landmarks, ffhq_template(512))
    assert np.allclose(estimated, invert_affine(truth), atol=1e-9)
    # least squares with noise: still close, never a reflection
    noisy = landmarks + np.random.default_rng(0).normal(0, 0.5, landmarks.shape)
    estimated = estimate_similarity(noisy, ffhq_template(512))
    assert np.linalg.det(estimated[:, :2]) > 0
    residual = np.linalg.norm(transform_points(landmarks, estimated) - ffhq_template(512), axis=1)
    assert residual.mean() < 3.0  # photo noise of 0.5 px, magnified ~3.3x into the 512 crop


def test_mirrored_landmarks_give_a_rotation_not_a_reflection():
    mirrored = ffhq_template(512) * np.array([-1.0, 1.0])
    assert np.linalg.det(estimate_similarity(mirrored, ffhq_template(512))[:, :2]) > 0


def test_align_then_paste_back_round_trip():
    photo = smooth_photo()
    truth = crop_to_photo()
    landmarks = transform_points(ffhq_template(512), truth)
    crop, affine = align_face(photo, landmarks, size=128)
    assert crop.shape == (128, 128, 3)
    assert np.allclose(transform_points(landmarks, affine), ffhq_template(128), atol=1e-6)

    pasted = paste_faces(photo, [crop], [affine])
    inverse = invert_affine(affine)
    inside = cv2.warpAffine(feather_mask(128), inverse, photo.shape[1::-1]) > 0.999
    outside = cv2.warpAffine(np.ones((128, 128), np.float32), inverse, photo.shape[1::-1]) == 0
    error = np.abs(pasted.astype(int) - photo.astype(int))
    assert inside.sum() > 1000
    assert error[inside].mean() < 3.0  # two bilinear resamplings of a smooth image
    assert error[outside].max() == 0  # untouched away from the face

    # a face restored at another size than it was aligned at is rescaled onto the same spot
    big = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC)
    pasted_big = paste_faces(photo, [big], [affine], crop_sizes=[128])
    assert np.abs(pasted_big.astype(int) - photo.astype(int))[inside].mean() < 3.0


def test_faces_near_the_border_are_filled_with_grey():
    photo = smooth_photo()
    landmarks = transform_points(
        ffhq_template(512), crop_to_photo(scale=0.3, degrees=0, shift=(-60.0, -40.0))
    )
    crop, _ = align_face(photo, landmarks, size=64)
    assert tuple(crop[0, 0]) == (135, 133, 132)


def test_feather_mask_and_alignment_test():
    mask = feather_mask(64, band=0.1)
    assert mask[32, 32] == 1.0 and mask[0, 32] == 0.0 and mask[32, 0] == 0.0
    assert (np.diff(mask[32, :32]) >= 0).all()  # rises monotonically towards the centre
    assert landmarks_look_aligned(ffhq_template(256) + 3.0, 256)
    assert not landmarks_look_aligned(transform_points(ffhq_template(512), crop_to_photo()), 512)
    with pytest.raises(ValueError, match="5 landmarks"):
        align_face(smooth_photo(), np.zeros((4, 2)), size=64)


def test_mtcnn_finds_the_astronaut():
    pytest.importorskip("facenet_pytorch")
    from restoration_fixtures import mtcnn
    from skimage.data import astronaut

    faces = mtcnn().detect(astronaut())
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200  # her face, not the flag or the helmet
    left_eye, right_eye, nose, mouth_left, mouth_right = faces[0].landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    crop, _ = align_face(astronaut(), faces[0].landmarks, 128)
    assert crop.shape == (128, 128, 3)
    assert mtcnn().detect(np.full((120, 120, 3), 200, np.uint8)) == []


def test_retinaface_without_weights_says_where_to_put_them(tmp_path):
    pytest.importorskip("facexlib")
    from ented.restoration.face_detection import build_detector

    with pytest.raises(FileNotFoundError, match="detection_Resnet50_Final.pth"):
        build_detector("retinaface", weights_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown face detector"):
        build_detector("haar")


def test_retinaface_reads_weights_from_its_folder(tmp_path):
    pytest.importorskip("facexlib")
    import torch
    from facexlib.detection.retinaface import RetinaFace

    from ented.restoration.face_detection import build_detector

    torch.manual_seed(0)
    weights = RetinaFace(network_name="mobile0.25", half=False, device=torch.device("cpu")).state_dict()
    torch.save({f"module.{k}": v for k, v in weights.items()}, tmp_path / "detection_mobilenet0.25_Final.pth")
    detector = build_detector("retinaface_mobile0.25", weights_dir=tmp_path)
    faces = detector.detect(np.full((64, 64, 3), 128, np.uint8))  # random weights: plumbing only
    assert isinstance(faces, list)
