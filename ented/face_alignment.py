"""FFHQ alignment from five landmarks and paste-back, step for step as facexlib does it.

GFPGAN and CodeFormer crop faces with facexlib's ``FaceRestoreHelper`` (facexlib 0.3.0,
``facexlib/utils/face_restoration_helper.py``); ENTED crops and pastes the same way, so all three
see the same crops::

    photo ──landmarks (5, 2)──> estimateAffinePartial2D(LMEDS) onto the FFHQ template ──> affine
    photo ──warpAffine(affine, bilinear, grey border)──> (S, S) crop ──restore──> (S, S) face
    face ──warpAffine(inverse * upscale)──> photo, blended with an eroded, blurred square mask

- Landmarks: eye centres, nose tip, mouth corners, the image's left one first.
- Template: facexlib's five FFHQ points at 512 px, times ``size / 512`` (its ``crop_ratio=(1, 1)``).
- Transform: the similarity (rotation, uniform scale, shift) of
  ``cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS)``.
- Crop: ``cv2.warpAffine`` with its default bilinear interpolation; the part outside the photo is
  facexlib's grey, ``(135, 133, 132)`` in its BGR images, so ``(132, 133, 135)`` in our RGB ones.
- Paste-back: facexlib's ``get_inverse_affine`` and ``paste_faces_to_input_image`` without face
  parsing (``use_parse=False``, GFPGAN's default): Lanczos-upscaled background, inverse matrix
  times ``upscale`` plus its half-pixel shift when ``upscale > 1``, a square mask eroded by
  ``2 * upscale`` px, then by a tenth of the face's width and Gaussian-blurred over the same width,
  and the blend truncated (not rounded) to uint8.

facexlib is an optional dependency (the ``face`` extra) and its helper cannot be built without
downloading detection and parsing weights, so these steps are written out here;
``tests/restoration/test_facexlib_parity.py`` runs facexlib's own methods on the same inputs and requires
identical pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

# facexlib: "standard 5 landmarks for FFHQ faces with 512 x 512" (x, y): left eye, right eye, nose,
# left and right mouth corners.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# facexlib fills the crop outside the photo with this grey, in its BGR channel order.
FACEXLIB_BORDER_BGR = (135, 133, 132)
# The same grey for our RGB images.
DEFAULT_BORDER_VALUE = FACEXLIB_BORDER_BGR[::-1]


def ffhq_template(size: int = 512) -> np.ndarray:
    """The five-point FFHQ template ``(5, 2)`` float64 for a ``size`` x ``size`` crop (facexlib's scaling)."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine matrix (``cv2.invertAffineTransform``, as facexlib)."""
    return cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Applies a ``(2, 3)`` affine matrix to ``(N, 2)`` points."""
    return np.asarray(points, dtype=np.float64) @ affine[:, :2].T + affine[:, 2]


def alignment_transform(landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """The ``(2, 3)`` float64 similarity from photo coordinates to the aligned ``size`` x ``size`` crop.

    Args:
        landmarks: ``(5, 2)`` photo pixels: left eye, right eye, nose, left and right mouth corners.
        size: Side of the aligned crop.

    Raises:
        ValueError: Not five points, or points no similarity can be fitted to (all at one spot).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.size != 10:
        raise ValueError(f"expected 5 landmarks (x, y), got an array of shape {landmarks.shape}")
    landmarks = np.ascontiguousarray(landmarks.reshape(5, 2))
    if not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be finite, got {landmarks.tolist()}")
    # facexlib: "use cv2.LMEDS method for the equivalence to skimage transform"
    affine, _ = cv2.estimateAffinePartial2D(landmarks, ffhq_template(size), method=cv2.LMEDS)
    if affine is None or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:, :2])) < 1e-12:
        raise ValueError(f"cannot align: degenerate landmarks {landmarks.round(2).tolist()}")
    return affine


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = 512,
    border_value: tuple[int, int, int] = DEFAULT_BORDER_VALUE,
) -> tuple[np.ndarray, np.ndarray]:
    """Crops and aligns one face as facexlib's ``FaceRestoreHelper.align_warp_face`` does.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        landmarks: ``(5, 2)`` landmarks in photo pixels (left eye, right eye, nose, left and right
            mouth corners, "left" meaning the image's left).
        size: Side of the aligned crop.
        border_value: Colour, in ``image``'s channel order, of the crop outside the photo (default:
            facexlib's grey, in RGB; pass :data:`FACEXLIB_BORDER_BGR` for a BGR image).

    Returns:
        ``(crop, affine)``: the ``(size, size, 3)`` uint8 crop, and the ``(2, 3)`` matrix mapping photo
        coordinates to crop coordinates (give it to :func:`paste_faces`).
    """
    affine = alignment_transform(landmarks, size)
    crop = cv2.warpAffine(
        image,
        affine,
        (size, size),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(v) for v in border_value),
    )
    return crop, affine


def paste_back_matrix(affine: np.ndarray, upscale: float = 1.0) -> np.ndarray:
    """facexlib's matrix from crop pixels to pixels of the photo enlarged ``upscale`` times.

    The inverse of ``affine`` times ``upscale``; above 1, shifted by ``upscale / 2`` px as facexlib
    does "for more precise back alignment" (the exact pixel-centre shift would be
    ``(upscale - 1) / 2``; we keep facexlib's so the pasted pixels are the same).
    """
    inverse = invert_affine(affine) * upscale
    if upscale > 1:
        inverse[:, 2] += 0.5 * upscale
    return inverse


def paste_mask(face_side: int, inverse: np.ndarray, out_size: tuple[int, int], upscale: float = 1.0):
    """facexlib's masks for one face pasted with ``inverse`` into an ``out_size`` ``(width, height)`` photo.

    Returns:
        ``(hard, soft)``: ``(H, W)`` float32 masks. ``hard`` is the warped crop square eroded by
        ``int(2 * upscale)`` px (it removes the dark rim bilinear warping leaves); ``soft`` is ``hard``
        eroded by ``2 * w`` px and Gaussian-blurred with a ``2 * w + 1`` kernel, where ``w`` is a
        twentieth of the square root of the face's area in the photo.
    """
    square = np.ones((face_side, face_side), dtype=np.float32)
    warped = cv2.warpAffine(square, inverse, out_size)
    rim = int(2 * upscale)
    hard = cv2.erode(warped, np.ones((rim, rim), np.uint8))
    edge = int(np.sum(hard) ** 0.5) // 20
    centre = cv2.erode(hard, np.ones((2 * edge, 2 * edge), np.uint8))
    soft = cv2.GaussianBlur(centre, (2 * edge + 1, 2 * edge + 1), 0)
    return hard, soft


def paste_faces(
    image: np.ndarray,
    faces: list[np.ndarray],
    affines: list[np.ndarray],
    crop_sizes: list[int] | None = None,
    upscale: float = 1.0,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Pastes restored, aligned faces back into their photo, as facexlib's ``paste_faces_to_input_image``.

    Args:
        image: ``(H, W, 3)`` uint8 photo (any channel order, the faces' own).
        faces: Square ``(S, S, 3)`` uint8 restored crops.
        affines: For each face, the photo-to-crop matrix that :func:`align_face` returned.
        crop_sizes: For each face, the side of the crop its matrix maps to (default: the face's own
            side, as facexlib assumes). A face restored at another size is mapped onto the same spot.
        upscale: The output is the photo enlarged this many times (Lanczos), faces pasted at full
            resolution (facexlib's ``upscale_factor``).
        background: The photo already enlarged by a background upsampler (e.g. Real-ESRGAN), brought to
            the output size with Lanczos (facexlib's ``upsample_img``); default: ``image`` enlarged.

    Returns:
        A new ``(int(H * upscale), int(W * upscale), 3)`` uint8 photo.
    """
    if crop_sizes is None:
        crop_sizes = [face.shape[0] for face in faces]
    if not (len(faces) == len(affines) == len(crop_sizes)):
        raise ValueError("faces, affines and crop_sizes must have the same length")
    if not (np.isfinite(upscale) and upscale > 0):
        raise ValueError(f"upscale must be a positive number, got {upscale}")
    height, width = image.shape[:2]
    out_size = (int(width * upscale), int(height * upscale))
    out = cv2.resize(image if background is None else background, out_size, interpolation=cv2.INTER_LANCZOS4)
    for face, affine, crop_size in zip(faces, affines, crop_sizes):
        side = face.shape[0]
        if face.shape[1] != side:
            raise ValueError(f"restored faces must be square, got {face.shape[1]}x{side}")
        to_face = np.asarray(affine, dtype=np.float64) * (side / crop_size)
        inverse = paste_back_matrix(to_face, upscale)
        warped = cv2.warpAffine(face, inverse, out_size)
        hard, soft = paste_mask(side, inverse, out_size, upscale)
        soft = soft[:, :, None]
        out = soft * (hard[:, :, None] * warped) + (1 - soft) * out
    return out.astype(np.uint8)  # facexlib truncates


def landmarks_look_aligned(landmarks: np.ndarray, image_size: int, tolerance: float = 0.05) -> bool:
    """Whether landmarks found in a square ``image_size`` image already sit on the FFHQ template.

    ``tolerance`` is the largest allowed mean landmark distance, as a fraction of the image side.
    """
    template = ffhq_template(image_size)
    error = np.linalg.norm(np.asarray(landmarks, dtype=np.float64).reshape(5, 2) - template, axis=1).mean()
    return bool(error <= tolerance * image_size)
