"""The reference-detail protocol's own measure: another person's marks pasted onto a face."""

import math

import cv2
import numpy as np

from ented.data.posed_faces import project_marks
from ented.data.synthetic_faces import iter_synthetic_faces
from ented.reference_detail import mean_and_std, pasted_marks


def test_pasted_marks_sees_the_other_persons_moles_and_only_them():
    face, _, other = [f for f in iter_synthetic_faces(3, 1, size=128, seed=2)]
    gt = cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR)
    assert pasted_marks(gt, gt, face.sidecar, other.sidecar) == 0.0  # the face itself: nothing pasted
    pasted = gt.copy()
    for x, y, r in project_marks(other.sidecar["surface_marks"], face.sidecar):
        if r > 0:
            cv2.circle(pasted, (int(round(x)), int(round(y))), max(1, int(round(r))), (40, 40, 40), -1)
    assert pasted_marks(pasted, gt, face.sidecar, other.sidecar) == 1.0
    blank = np.full_like(gt, 128)
    assert pasted_marks(blank, gt, face.sidecar, other.sidecar) == 0.0


def test_mean_and_std_leave_out_nan():
    assert mean_and_std([1.0, float("nan"), 3.0]) == (2.0, math.sqrt(2.0))
    assert mean_and_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_and_std([float("nan")]))
