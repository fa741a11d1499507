"""A real photo for documentation and tests: the astronaut of ``skimage.data`` (public domain),
aligned the FFHQ way from hand-marked landmarks (no face detector needed)."""

import cv2
import numpy as np

# FFHQ-style 5-point template at 512 px (eye centres, nose tip, mouth corners), as used by
# facexlib / GFPGAN for alignment; we use the eyes and the mouth centre.
FFHQ_TEMPLATE_512 = np.array(
    [[192.98, 239.95], [318.90, 240.19], [256.63, 314.02], [201.26, 371.41], [313.09, 371.15]], np.float32
)

# Eye centres and mouth centre of skimage.data.astronaut(), marked by hand (x, y in pixels).
ASTRONAUT_LANDMARKS = np.array([[203.0, 101.0], [245.0, 101.0], [223.0, 145.0]], np.float32)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """Warps ``image`` so that (left eye, right eye, mouth centre) land on the FFHQ template.

    Args:
        image: (H, W, 3) uint8 image, any channel order (kept).
        landmarks: (3, 2) float: left eye, right eye, mouth centre (x, y).
        size: output side.

    Returns:
        (size, size, 3) uint8.
    """
    template = FFHQ_TEMPLATE_512 * (size / 512.0)
    target = np.stack([template[0], template[1], (template[3] + template[4]) / 2])
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), target)
    if matrix is None:
        raise ValueError(f"cannot align: degenerate landmarks {np.asarray(landmarks).tolist()}")
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def astronaut_face(size: int = 512) -> np.ndarray:
    """The astronaut's face from ``skimage.data.astronaut()``, FFHQ-aligned, (size, size, 3) uint8 RGB.

    The face is about 170 px wide in the source, so at 512 it is upsampled about 3x (soft).
    """
    from skimage import data

    return align_face(data.astronaut(), ASTRONAUT_LANDMARKS, size)
