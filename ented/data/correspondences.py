"""Known correspondences between two photos of one synthetic person, for training the reference flow.

The pose-varied synthetic set (:mod:`ented.data.posed_faces`) paints everything on the face's
frontal chart, and each image's sidecar holds the pose and alignment that place any chart point in
that photo (:func:`~ented.data.posed_faces.project_marks`). So the same chart points, placed in the
ground truth and in a reference, say where every point of the ground truth sits in the reference:
the target of :class:`~ented.losses.reference_flow_loss.ENTEDReferenceFlowLoss`.

The points are a fixed ``GRID x GRID`` lattice over the chart's front (x in [-1, 1], y over the
head's height); a pair is kept when the point faces both cameras (the rule the sidecars use for
visible marks) and lies inside both images. Training datasets with ``correspondences: true`` add,
per sample, ``correspondences``: (K, GRID * GRID, 5) float32 rows ``x_gt, y_gt, x_ref, y_ref, valid``
in pixels (pixel centres at integers), one block per reference, invalid rows zero.
"""

import numpy as np

from ented.data.posed_faces import project_marks

GRID = 16


def chart_points(head_height: float) -> np.ndarray:
    """(GRID * GRID, 3) frontal-chart x, y and a unit radius: the lattice over a head's front."""
    xs = np.linspace(-0.95, 0.95, GRID)
    ys = np.linspace(-0.95, 0.95, GRID) * head_height
    x, y = np.meshgrid(xs, ys)
    return np.column_stack([x.ravel(), y.ravel(), np.ones(x.size)])


def correspondence_rows(gt_sidecar: dict, ref_sidecar: dict, size: int) -> np.ndarray:
    """(GRID * GRID, 5) rows ``x_gt, y_gt, x_ref, y_ref, valid`` for one gt / reference pair.

    Both sidecars must describe the same identity (the same head) at ``size`` px.
    """
    points = chart_points(gt_sidecar["head"]["height"])
    in_gt = project_marks(points, gt_sidecar)
    in_ref = project_marks(points, ref_sidecar)
    xy = np.concatenate([in_gt[:, :2], in_ref[:, :2]], axis=1)
    inside = ((xy >= 0) & (xy <= size - 1)).all(axis=1)
    valid = (in_gt[:, 2] > 0) & (in_ref[:, 2] > 0) & inside
    rows = np.zeros((len(points), 5), np.float32)
    rows[valid, :4] = xy[valid]
    rows[valid, 4] = 1.0
    return rows


def flip_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """The rows after flipping the gt and the reference together horizontally (valid rows only)."""
    rows = rows.copy()
    valid = rows[:, 4] > 0
    rows[np.ix_(valid, [0, 2])] = size - 1 - rows[np.ix_(valid, [0, 2])]
    return rows
