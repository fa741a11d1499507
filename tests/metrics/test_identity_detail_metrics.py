"""Identity-detail metrics on hand-made images whose answers are known."""

import math

import cv2
import numpy as np
import pytest
from basicsr.metrics import calculate_metric

import ented  # noqa: F401  (registers the metrics)
from ented.metrics.identity_detail_metric import (
    calculate_ented_face_detail,
    calculate_ented_face_psnr,
    calculate_ented_mark_recall,
    mark_contrasts,
)

SIZE = 64
MARKS = np.array([[20.0, 20.0, 2.0, 1.0], [44.0, 40.0, 2.0, 1.0]])


def skin(*marks, darkness: float = 80.0) -> np.ndarray:
    """A flat grey face (BGR uint8) with dark discs at the given (x, y, r)."""
    img = np.full((SIZE, SIZE, 3), 150.0)
    for x, y, r in marks:
        cv2.circle(img, (int(x), int(y)), int(r), (150 - darkness,) * 3, -1)
    return img.astype(np.uint8)


GT = skin((20, 20, 2), (44, 40, 2))


def test_mark_present_absent_displaced_faint():
    assert calculate_ented_mark_recall(GT, GT, marks=MARKS) == 1.0
    assert calculate_ented_mark_recall(skin(), GT, marks=MARKS) == 0.0
    assert calculate_ented_mark_recall(skin((20, 20, 2)), GT, marks=MARKS) == 0.5
    assert calculate_ented_mark_recall(skin((26, 20, 2), (44, 46, 2)), GT, marks=MARKS) == 0.0  # displaced
    assert calculate_ented_mark_recall(skin((20, 20, 2), (44, 40, 2), darkness=20), GT, marks=MARKS) == 0.0
    assert calculate_ented_mark_recall(skin((20, 20, 2), (44, 40, 2), darkness=60), GT, marks=MARKS) == 1.0


def test_invisible_and_faint_marks_are_not_scored():
    hidden = MARKS.copy()
    hidden[1, 3] = 0
    assert calculate_ented_mark_recall(skin((20, 20, 2)), GT, marks=hidden) == 1.0
    assert math.isnan(calculate_ented_mark_recall(GT, skin(), marks=MARKS))  # gt shows no mark


def test_erased_only_scores_the_marks_the_input_lost():
    lq = skin((20, 20, 2))  # kept the first mark, lost the second
    output = skin((44, 40, 2))
    assert calculate_ented_mark_recall(output, GT, marks=MARKS) == 0.5
    assert calculate_ented_mark_recall(output, GT, marks=MARKS, lq=lq, erased_only=True) == 1.0
    assert calculate_ented_mark_recall(skin((20, 20, 2)), GT, marks=MARKS, lq=lq, erased_only=True) == 0.0
    assert math.isnan(calculate_ented_mark_recall(GT, GT, marks=MARKS, lq=GT, erased_only=True))
    with pytest.raises(ValueError, match="lq"):
        calculate_ented_mark_recall(GT, GT, marks=MARKS, erased_only=True)


def test_contrast_is_nan_at_the_border():
    assert math.isnan(mark_contrasts(GT, np.array([[1.0, 30.0, 2.0]]))[0])
    assert mark_contrasts(GT, MARKS)[0] == pytest.approx(80, abs=25)


def test_face_psnr_only_counts_the_face():
    mask = np.zeros((SIZE, SIZE), bool)
    mask[16:48, 16:48] = True
    other = GT.astype(np.int16)
    other[~mask] = 0
    assert calculate_ented_face_psnr(other.astype(np.uint8), GT, face_mask=mask) == float("inf")
    other[mask] += 10
    expected = 10 * math.log10(255**2 / 100)
    assert calculate_ented_face_psnr(other.astype(np.uint8), GT, face_mask=mask) == pytest.approx(expected)


def test_face_detail_correlation():
    rng = np.random.default_rng(0)
    textured = np.clip(150 + rng.normal(0, 20, (SIZE, SIZE, 1)).repeat(3, 2), 0, 255).astype(np.uint8)
    mask = np.ones((SIZE, SIZE), bool)
    assert calculate_ented_face_detail(textured, textured, face_mask=mask) == pytest.approx(1.0)
    smooth = cv2.GaussianBlur(textured, (0, 0), 4)
    assert calculate_ented_face_detail(smooth, textured, face_mask=mask) < 0.3
    inverted = (300 - textured.astype(np.int16)).clip(0, 255).astype(np.uint8)
    assert calculate_ented_face_detail(inverted, textured, face_mask=mask) < -0.9


def test_missing_sidecar_data_is_a_clear_error():
    with pytest.raises(ValueError, match="sidecars: true"):
        calculate_ented_mark_recall(GT, GT)
    with pytest.raises(ValueError, match="face mask"):
        calculate_ented_face_psnr(GT, GT)
    with pytest.raises(ValueError, match="empty"):
        calculate_ented_face_detail(GT, GT, face_mask=np.zeros((SIZE, SIZE), bool))


def test_registered_and_usable_from_options():
    data = {"img": skin((20, 20, 2)), "img2": GT, "marks": MARKS, "face_mask": np.ones((SIZE, SIZE), bool)}
    assert calculate_metric(data, {"type": "calculate_ented_mark_recall"}) == 0.5
    assert calculate_metric(data, {"type": "calculate_ented_face_psnr"}) < 40
