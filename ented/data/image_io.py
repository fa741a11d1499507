"""Reading, validating and writing face images for the ENTED datasets.

Every image a dataset returns passes through :func:`decode_image` and :func:`fit_to_size`, so bad
input fails with a message naming the file and the problem, or is converted with a logged warning:

======================  ==============================================================
input                   what happens
======================  ==============================================================
missing file            ``FileNotFoundError`` naming the path (datasets check at start)
empty / not an image    ``ValueError``: "... cannot be decoded as an image"
truncated PNG / JPEG    ``ValueError``: "... is truncated (no IEND chunk / EOI marker)"
grayscale (1 channel)   replicated to 3 channels
RGBA / gray + alpha     composited over white, alpha dropped (logged once per file)
16-bit                  scaled to [0, 1] by 65535
not ``size x size``     centre-cropped to a square and resized (logged once per file),
                        or ``ValueError`` with ``size_mismatch='error'``
======================  ==============================================================
"""

import logging
import os

import cv2
import numpy as np
import torch
from torchvision.transforms.functional import normalize

from ented.atomic_io import atomic_imwrite

logger = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8"
_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


def check_not_truncated(content: bytes, name: str) -> None:
    """Raises ``ValueError`` naming ``name`` if a PNG or JPEG byte string is cut short.

    OpenCV decodes a truncated JPEG without error (grey bottom rows) and may return ``None`` for a
    truncated PNG, so both are checked for their end markers first.
    """
    if content.startswith(_PNG_SIGNATURE) and b"IEND" not in content[-16:]:
        raise ValueError(f"image {name} is truncated (PNG without its IEND chunk)")
    if content.startswith(_JPEG_SIGNATURE) and b"\xff\xd9" not in content[-1024:]:
        raise ValueError(f"image {name} is truncated (JPEG without its end-of-image marker)")


def decode_image(content: bytes | None, name: str) -> np.ndarray:
    """Decodes image bytes to a BGR float32 (H, W, 3) array in [0, 1].

    Args:
        content: the file's bytes (``None``, as an lmdb lookup of a missing key gives, is an error).
        name: the file path or lmdb key, for messages.

    Raises:
        FileNotFoundError: ``content`` is None.
        ValueError: the bytes are empty, truncated or not an image.
    """
    if content is None:
        raise FileNotFoundError(f"image {name} not found (missing lmdb key or file)")
    if len(content) == 0:
        raise ValueError(f"image {name} is empty (0 bytes)")
    check_not_truncated(content, name)
    img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ValueError(f"image {name} cannot be decoded as an image ({len(content)} bytes)")
    return to_bgr_float(img, name)


def to_bgr_float(img: np.ndarray, name: str) -> np.ndarray:
    """Converts a decoded image of any common depth / channel count to BGR float32 [0, 1]."""
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"image {name} has unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels in (2, 4):
        _warn_once(f"alpha:{name}", f"image {name} has an alpha channel; compositing it over white")
        alpha = img[..., -1:]
        colour = img[..., :1].repeat(3, axis=2) if channels == 2 else img[..., :3]
        return colour * alpha + (1.0 - alpha)
    if channels == 3:
        return img
    raise ValueError(f"image {name} has {channels} channels; expected 1, 3 or 4")


def fit_to_size(img: np.ndarray, size: int, name: str, size_mismatch: str = "resize") -> np.ndarray:
    """Returns ``img`` as (size, size, C): unchanged if it already is, else centre-cropped to a
    square and resized (area interpolation when shrinking, cubic when enlarging), with a warning.

    Raises:
        ValueError: with ``size_mismatch='error'`` when the size differs.
    """
    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    if size_mismatch == "error":
        raise ValueError(f"image {name} is {h}x{w}; expected {size}x{size}")
    if size_mismatch != "resize":
        raise ValueError(f"size_mismatch must be 'resize' or 'error', got {size_mismatch!r}")
    _warn_once(f"size:{name}", f"image {name} is {h}x{w}; resizing to {size}x{size}")
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(img, (size, size), interpolation=interpolation), 0.0, 1.0)


def read_image_file(path: str, size: int | None = None, size_mismatch: str = "resize") -> np.ndarray:
    """Reads ``path`` from disk as BGR float32 [0, 1], optionally fitted to ``size``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path} does not exist")
    with open(path, "rb") as f:
        img = decode_image(f.read(), path)
    return img if size is None else fit_to_size(img, size, path, size_mismatch)


def to_tensor(img: np.ndarray, mean=None, std=None) -> torch.Tensor:
    """BGR float (H, W, 3) -> RGB float32 tensor (3, H, W), normalized like BasicSR if mean/std."""
    rgb = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_BGR2RGB)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    if mean is not None or std is not None:
        normalize(
            tensor,
            mean if mean is not None else [0.0] * 3,
            std if std is not None else [1.0] * 3,
            inplace=True,
        )
    return tensor


def write_image_atomic(path: str, img: np.ndarray) -> None:
    """Writes a BGR image (uint8, or float in [0, 1]) atomically; format from the extension."""
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    atomic_imwrite(img, path)
