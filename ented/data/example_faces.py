"""A real photo for documentation and tests: the astronaut of ``skimage.data`` (public domain),
aligned the FFHQ way (:mod:`ented.face_alignment`, facexlib's alignment) from stored
landmarks, so no face detector is needed."""

import numpy as np

from ented.face_alignment import align_face

# The five landmarks (left eye, right eye, nose, left and right mouth corners; x, y in pixels) of
# skimage.data.astronaut(), as MTCNN (facenet-pytorch 2.6.0) finds them (checked by
# tests/restoration/test_restoration_alignment.py).
ASTRONAUT_LANDMARKS = np.array(
    [[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]],
    dtype=np.float64,
)


def astronaut_face(size: int = 512) -> np.ndarray:
    """The astronaut's face from ``skimage.data.astronaut()``, FFHQ-aligned, (size, size, 3) uint8 RGB.

    The face is about 42 px between the eyes in the source, so at 512 it is upsampled about 3x (soft).
    """
    from skimage import data

    crop, _ = align_face(data.astronaut(), ASTRONAUT_LANDMARKS, size)
    return crop
