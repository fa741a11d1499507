"""FFHQ-style alignment from five landmarks, its inverse, and soft-mask paste-back.

A face is aligned by the similarity transform (rotation, uniform scale, translation; no
reflection or shear) that best maps its five landmarks -- eye centres, nose tip, mouth corners,
in image order (the eye on the image's left first) -- onto the FFHQ template, fitted in the
least-squares sense (Umeyama, 1991). Pasting back warps the restored crop with the inverse
transform and blends it in with a mask that is 1 inside the crop and ramps smoothly to 0 over a
band along the crop's edges.
"""

from __future__ import annotations

import cv2
import numpy as np

# Five-point FFHQ template at 512x512 (x, y): left eye, right eye, nose, left and right mouth
# corners, as used by the FFHQ-aligned restoration literature (GFPGAN, CodeFormer, facexlib).
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# Grey used outside the photo when a face near the border is aligned (facexlib's choice).
DEFAULT_BORDER_VALUE = (135, 133, 132)


def ffhq_template(size: int = 512) -> np.ndarray:
    """The five-point FFHQ template ``(5, 2)`` scaled to a ``size`` x ``size`` crop."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` points.

    Args:
        src: ``(N, 2)`` points, N >= 2.
        dst: ``(N, 2)`` points.

    Returns:
        ``(2, 3)`` affine matrix ``[s R | t]`` with ``dst ~ s R src + t`` and ``det(R) = 1``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum(axis=1).mean()
    if src_var <= 1e-12:
        raise ValueError("landmarks are all at the same point")
    u, sing, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(sing) @ d) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine matrix."""
    linear_inv = np.linalg.inv(affine[:, :2])
    return np.concatenate([linear_inv, -linear_inv @ affine[:, 2:]], axis=1)


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Applies a ``(2, 3)`` affine matrix to ``(N, 2)`` points."""
    return np.asarray(points, dtype=np.float64) @ affine[:, :2].T + affine[:, 2]


def alignment_transform(landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """The ``(2, 3)`` transform from photo coordinates to the aligned ``size`` x ``size`` crop."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks (x, y), got {landmarks.shape[0]}")
    return estimate_similarity(landmarks, ffhq_template(size))


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = 512,
    border_value: tuple[int, int, int] = DEFAULT_BORDER_VALUE,
) -> tuple[np.ndarray, np.ndarray]:
    """Crops and aligns one face the FFHQ way.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        landmarks: ``(5, 2)`` landmarks in photo pixels (left eye, right eye, nose, left and right
            mouth corners, "left" meaning the image's left).
        size: Side of the aligned crop.
        border_value: RGB colour for the area of the crop that falls outside the photo.

    Returns:
        ``(crop, affine)``: the ``(size, size, 3)`` uint8 crop, and the ``(2, 3)`` matrix mapping photo
        coordinates to crop coordinates (give it to :func:`paste_faces`).
    """
    affine = alignment_transform(landmarks, size)
    # Shrinking a large face in one warp aliases: pre-shrink the photo with area averaging.
    scale = np.sqrt(abs(np.linalg.det(affine[:, :2])))
    source = image
    if scale < 0.5:
        factor = 1.0 / (2.0 * scale)  # leave the warp a 2x shrink, which bilinear handles
        new_w, new_h = max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor))
        source = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        to_source = np.diag([new_w / image.shape[1], new_h / image.shape[0]])
        warp = np.concatenate([affine[:, :2] @ np.linalg.inv(to_source), affine[:, 2:]], axis=1)
    else:
        warp = affine
    crop = cv2.warpAffine(
        source,
        warp,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(v) for v in border_value),
    )
    return crop, affine


def feather_mask(size: int, band: float = 0.1) -> np.ndarray:
    """A ``(size, size)`` float32 mask: 1 inside, easing to 0 over ``band * size`` pixels at the edges."""
    if not 0.0 < band < 0.5:
        raise ValueError(f"band must be in (0, 0.5), got {band}")
    coords = np.arange(size, dtype=np.float32)
    edge_distance = np.minimum(coords, size - 1 - coords)
    ramp = np.clip(edge_distance / (band * size), 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: no visible kink where the band starts
    return np.minimum(ramp[:, None], ramp[None, :])


def paste_faces(
    image: np.ndarray,
    faces: list[np.ndarray],
    affines: list[np.ndarray],
    crop_sizes: list[int] | None = None,
    band: float = 0.1,
) -> np.ndarray:
    """Pastes restored, aligned faces back into the photo they were cropped from.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        faces: Square ``(S, S, 3)`` uint8 restored crops.
        affines: For each face, the photo-to-crop matrix that :func:`align_face` returned.
        crop_sizes: For each face, the side of the crop its matrix maps to (default: the face's
            own side). A face restored at another size than it was aligned at is rescaled.
        band: Width of the soft edge, as a fraction of the crop side.

    Returns:
        A new ``(H, W, 3)`` uint8 photo.
    """
    if crop_sizes is None:
        crop_sizes = [face.shape[0] for face in faces]
    if not (len(faces) == len(affines) == len(crop_sizes)):
        raise ValueError("faces, affines and crop_sizes must have the same length")
    height, width = image.shape[:2]
    out = image.astype(np.float32)
    for face, affine, crop_size in zip(faces, affines, crop_sizes):
        side = face.shape[0]
        # Crop pixel (in the restored face's resolution) -> photo pixel.
        to_crop = np.concatenate([affine[:, :2] * (side / crop_size), affine[:, 2:] * (side / crop_size)], 1)
        photo_per_face_px = 1.0 / np.sqrt(abs(np.linalg.det(to_crop[:, :2])))
        face_img = face
        if photo_per_face_px < 0.5:  # the face shrinks a lot: area-average first to avoid aliasing
            new_side = max(8, round(side * photo_per_face_px * 2.0))
            face_img = cv2.resize(face, (new_side, new_side), interpolation=cv2.INTER_AREA)
            to_crop = to_crop * (new_side / side)
            side = new_side
        inverse = invert_affine(to_crop)
        warped = cv2.warpAffine(
            face_img, inverse, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        mask = cv2.warpAffine(
            feather_mask(side, band),
            inverse,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )[:, :, None]
        out = mask * warped.astype(np.float32) + (1.0 - mask) * out
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def landmarks_look_aligned(landmarks: np.ndarray, image_size: int, tolerance: float = 0.05) -> bool:
    """Whether landmarks found in a square ``image_size`` image already sit on the FFHQ template.

    ``tolerance`` is the largest allowed mean landmark distance, as a fraction of the image side.
    """
    template = ffhq_template(image_size)
    error = np.linalg.norm(np.asarray(landmarks, dtype=np.float64).reshape(5, 2) - template, axis=1).mean()
    return bool(error <= tolerance * image_size)
