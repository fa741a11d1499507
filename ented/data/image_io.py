"""Reading, validating and writing face images for the ENTED datasets.

Every image a dataset returns passes through :func:`decode_image` and :func:`fit_to_size`, so bad
input fails with a message naming the file and the problem, or is converted with a logged warning:

======================  ==============================================================
input                   what happens
======================  ==============================================================
missing file            ``FileNotFoundError`` naming the path (datasets check at start)
empty / not an image    ``ValueError``: "... cannot be decoded as an image"
truncated PNG / JPEG    ``ValueError``: "... is truncated (...)", found by decoding; trailing bytes
                        after a complete image (phone "motion photos") are fine
too many pixels         ``ValueError``: "... is WxH (N pixels), above the limit of M pixels",
                        from the header, before any pixel is decoded (:func:`max_image_pixels`)
grayscale (1 channel)   replicated to 3 channels
RGBA / gray + alpha     composited over white, alpha dropped (logged once per file)
16-bit                  scaled to [0, 1] by 65535
not ``size x size``     centre-cropped to a square and resized (logged once per file),
                        or ``ValueError`` with ``size_mismatch='error'``
======================  ==============================================================
"""

import io
import logging
import os
import warnings

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.functional import normalize

from ented.atomic_io import atomic_imwrite

logger = logging.getLogger(__name__)

# PIL's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 9459 x 9459), the one ``ented-restore``
# reads its photos under; the datasets and ``ented-prepare`` refuse larger images with it.
DEFAULT_MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
MAX_IMAGE_PIXELS_ENV = "ENTED_MAX_IMAGE_PIXELS"
_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


def max_image_pixels() -> int:
    """The largest image (width x height) the datasets and ``ented-prepare`` decode.

    :data:`DEFAULT_MAX_IMAGE_PIXELS`, or the environment variable ``ENTED_MAX_IMAGE_PIXELS``
    (read at every call, so DataLoader workers see it too). ``ented-prepare --max-pixels`` passes
    its own value instead.
    """
    value = os.environ.get(MAX_IMAGE_PIXELS_ENV)
    if value is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(f"{MAX_IMAGE_PIXELS_ENV}={value!r} is not a whole number of pixels") from None
    if limit < 1:
        raise ValueError(f"{MAX_IMAGE_PIXELS_ENV}={value!r} must be at least 1 pixel")
    return limit


def read_image_header(source: bytes | str, name: str, max_pixels: int | None = None) -> tuple:
    """``(format, width, height)`` of image bytes or an image file, read from the header only (no
    pixel is decoded, and only the file's first bytes are read).

    Raises:
        ValueError: the bytes are not an image, or ``width * height`` exceeds ``max_pixels``
            (default :func:`max_image_pixels`); the message names ``name`` and the size.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            fp = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(fp) as img:  # reads the header; pixels load lazily
                image_format, (width, height) = img.format, img.size
    except UnidentifiedImageError:
        raise ValueError(f"image {name} cannot be decoded as an image") from None
    except OSError as error:  # a header cut short
        raise _decoding_error(name, error) from None
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"image {name} is too large ({error}); PIL refuses it above 2 x PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    check_pixel_limit(width, height, name, max_pixels)
    return image_format, width, height


def check_pixel_limit(width: int, height: int, name: str, max_pixels: int | None = None) -> None:
    """Raises ``ValueError`` naming ``name`` and its size when ``width * height`` exceeds
    ``max_pixels`` (default :func:`max_image_pixels`)."""
    limit = max_pixels if max_pixels is not None else max_image_pixels()
    if width * height > limit:
        raise ValueError(
            f"image {name} is {width}x{height} ({width * height} pixels), above the limit of {limit} "
            f"pixels; set {MAX_IMAGE_PIXELS_ENV} (or ented-prepare --max-pixels) to raise it"
        )


def _decoding_error(name: str, error: OSError) -> ValueError:
    if "truncated" in str(error).lower():
        return ValueError(f"image {name} is truncated ({error})")
    return ValueError(f"image {name} cannot be decoded as an image ({error})")


def _decode_with_pil(content: bytes, name: str) -> np.ndarray:
    """Decodes with PIL, which (``ImageFile.LOAD_TRUNCATED_IMAGES`` off) raises on data cut short
    where some OpenCV versions fill the missing rows with grey."""
    try:
        with Image.open(io.BytesIO(content)) as img:
            img.load()
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            array = np.asarray(img)
    except OSError as error:
        raise _decoding_error(name, error) from None
    return array if array.ndim == 2 else np.ascontiguousarray(array[..., ::-1])  # RGB -> BGR


def decode_image(content: bytes | None, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Decodes image bytes to a BGR float32 (H, W, 3) array in [0, 1].

    The header is read first, so an image above ``max_pixels`` (default :func:`max_image_pixels`)
    is refused before its pixels are decoded. Truncation is found by decoding: JPEG through PIL,
    which stops at a missing end; other formats through OpenCV, whose failures PIL then explains.
    Bytes after a complete image (a phone's "motion photo" video) are ignored.

    Args:
        content: the file's bytes (``None``, as an lmdb lookup of a missing key gives, is an error).
        name: the file path or lmdb key, for messages.
        max_pixels: the largest width x height accepted.

    Raises:
        FileNotFoundError: ``content`` is None.
        ValueError: the bytes are empty, truncated, too large or not an image.
    """
    if content is None:
        raise FileNotFoundError(f"image {name} not found (missing lmdb key or file)")
    if len(content) == 0:
        raise ValueError(f"image {name} is empty (0 bytes)")
    image_format, _, _ = read_image_header(content, name, max_pixels)
    if image_format == "JPEG":
        img = _decode_with_pil(content, name)
    else:
        img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            _decode_with_pil(content, name)  # raises "truncated" when PIL finds the data cut short
            if image_format == "PNG" and b"IEND" not in content:
                raise ValueError(f"image {name} is truncated (PNG without its IEND chunk)")
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


def read_image_file(
    path: str, size: int | None = None, size_mismatch: str = "resize", max_pixels: int | None = None
) -> np.ndarray:
    """Reads ``path`` from disk as BGR float32 [0, 1], optionally fitted to ``size``; images above
    ``max_pixels`` (default :func:`max_image_pixels`) are refused before decoding."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path} does not exist")
    with open(path, "rb") as f:
        img = decode_image(f.read(), path, max_pixels)
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
