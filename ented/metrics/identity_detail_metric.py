"""Identity-detail metrics: does the restored face show the person's own marks and fine texture?

They score what a reference should bring back and a blind restorer cannot invent, on images whose
ground truth comes with a sidecar (the pose-varied synthetic set, :mod:`ented.data.posed_faces`):

- ``calculate_ented_mark_recall``: the fraction of the ground truth's marks (moles) that are present
  in the output at their place. A mark is present when its *contrast* in the output -- the mean
  grey of a ring around it (radii ``2r + 1`` to ``3r + 2`` px) minus the mean grey inside the mark
  (radius ``max(0.7 r, 0.75)`` px) -- is at least ``threshold`` times its contrast in the ground
  truth. With ``erased_only`` only the marks that the degraded input lost (contrast in ``lq`` below
  ``threshold`` times the ground truth's) count: those only the reference can restore.
- ``calculate_ented_face_psnr``: PSNR over the face mask (skin of the front of the head).
- ``calculate_ented_face_detail``: Pearson correlation of the high-pass residuals (grey image
  minus its Gaussian blur, ``sigma`` px) of output and ground truth over the face mask.

All take BasicSR's metric images (``img`` the output, ``img2`` the ground truth: (H, W, 3) BGR
uint8) and the sidecar data the datasets pass with ``sidecars: true``: ``face_mask`` ((H, W) bool)
and ``marks`` ((M, 4) float: x, y, radius in pixels, visible 0/1). A metric returns NaN for an
image with nothing to score (no visible or no erased mark); ``ENTEDModel`` averages over the images
that have a value and logs how many had none.
"""

import math

import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

SIDECAR_HINT = (
    "the dataset must read the ground truth's sidecars (`sidecars: true`; the pose-varied synthetic "
    "set written by `ented-prepare synthetic` has a .json sidecar beside every image)"
)


def _grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3:
        img = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_BGR2GRAY)
    return img.astype(np.float64)


def _require(value, what: str, metric: str):
    if value is None:
        raise ValueError(f"{metric} needs the ground truth's {what}: {SIDECAR_HINT}")
    return np.asarray(value)


def mark_contrasts(img: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """Contrast of each mark in ``img``: ring mean minus disc mean, in grey levels (dark marks > 0).

    Args:
        img: (H, W, 3) BGR or (H, W) grey, [0, 255].
        marks: (M, >=3) x, y, radius in pixels.

    Returns:
        (M,) float; NaN for a mark whose ring leaves the image.
    """
    grey = _grey(img)
    height, width = grey.shape
    out = np.full(len(marks), np.nan)
    for i, (x, y, r) in enumerate(np.asarray(marks, np.float64)[:, :3]):
        outer = 3 * r + 2
        if x - outer < 0 or y - outer < 0 or x + outer > width - 1 or y + outer > height - 1:
            continue
        x0, x1 = int(math.floor(x - outer)), int(math.ceil(x + outer)) + 1
        y0, y1 = int(math.floor(y - outer)), int(math.ceil(y + outer)) + 1
        yy, xx = np.mgrid[y0:y1, x0:x1]
        distance = np.hypot(xx - x, yy - y)
        patch = grey[y0:y1, x0:x1]
        ring = patch[(distance > 2 * r + 1) & (distance <= outer)]
        disc = patch[distance <= max(0.7 * r, 0.75)]
        out[i] = ring.mean() - disc.mean()
    return out


@METRIC_REGISTRY.register()
def calculate_ented_mark_recall(
    img,
    img2,
    marks=None,
    lq=None,
    erased_only: bool = False,
    threshold: float = 0.5,
    min_contrast: float = 8.0,
    **kwargs,
) -> float:
    """Fraction of the ground truth's visible marks that the output shows at their place.

    Args:
        img: (H, W, 3) BGR uint8, the output.
        img2: (H, W, 3) BGR uint8, the ground truth.
        marks: (M, 4) x, y, radius (px), visible; rows with visible 0 are ignored.
        lq: (H, W, 3) BGR uint8, the degraded input at the output's size; needed for ``erased_only``.
        erased_only: Score only the marks the input lost.
        threshold: A mark is present when its contrast reaches this fraction of the ground truth's.
        min_contrast: Marks fainter than this in the ground truth (grey levels) are not scored.

    Returns:
        Recall in [0, 1], or NaN when no mark qualifies.
    """
    marks = _require(marks, "marks", "calculate_ented_mark_recall").reshape(-1, 4)
    marks = marks[marks[:, 3] > 0.5]
    reference = mark_contrasts(img2, marks)
    scored = reference >= min_contrast
    if erased_only:
        if lq is None:
            raise ValueError("calculate_ented_mark_recall with erased_only needs the degraded input `lq`")
        scored &= ~(mark_contrasts(lq, marks) >= threshold * reference)
    if not scored.any():
        return float("nan")
    present = mark_contrasts(img, marks[scored]) >= threshold * reference[scored]
    return float(present.mean())


def _face_pixels(face_mask, metric: str) -> np.ndarray:
    mask = _require(face_mask, "face mask", metric).astype(bool)
    if not mask.any():
        raise ValueError(f"{metric}: the face mask is empty")
    return mask


@METRIC_REGISTRY.register()
def calculate_ented_face_psnr(img, img2, face_mask=None, **kwargs) -> float:
    """PSNR (dB, peak 255) over the face mask ((H, W) bool) of two (H, W, 3) BGR uint8 images."""
    mask = _face_pixels(face_mask, "calculate_ented_face_psnr")
    diff = np.asarray(img, np.float64)[mask] - np.asarray(img2, np.float64)[mask]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def high_pass(img: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Grey image minus its Gaussian blur (``sigma`` px): the fine detail."""
    grey = _grey(img)
    return grey - cv2.GaussianBlur(grey, (0, 0), sigma)


@METRIC_REGISTRY.register()
def calculate_ented_face_detail(img, img2, face_mask=None, sigma: float = 2.0, **kwargs) -> float:
    """Correlation of the high-pass residuals of output and ground truth over the face mask.

    1 means the output has the ground truth's fine detail; 0 means none of it (e.g. a smooth face).
    """
    mask = _face_pixels(face_mask, "calculate_ented_face_detail")
    a, b = high_pass(img, sigma)[mask], high_pass(img2, sigma)[mask]
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0
