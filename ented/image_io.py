"""Images in and out, for the datasets, the metrics and the restorer alike.

Two forms at the boundary, nothing else:

- **RGB** ``uint8`` ``(H, W, 3)``: what :func:`load_image` returns for a path, a ``numpy`` array, a
  ``PIL`` image or a ``torch`` tensor (grayscale repeated to three channels, alpha composited onto
  white) and what :func:`save_image` writes. The restorer, ``ented-restore``, the FID reader and
  the demo use it; :func:`to_network` / :func:`from_network` turn batches of it into the
  network's ``(B, 3, H, W)`` tensors in ``[-1, 1]`` and back.
- **BGR** float32 ``[0, 1]`` only at BasicSR's edges: its datasets hand BGR images to its
  transforms, and its metrics get BGR ``uint8`` from ``tensor2img``. :func:`decode_image`,
  :func:`read_image_file`, :func:`write_image_atomic` and :func:`bgr_image_to_tensor` serve them.

Both readers refuse images above one pixel limit (:func:`max_image_pixels`) from the header, before
any pixel is decoded, and know one list of extensions (:data:`IMAGE_EXTENSIONS`). Every write goes
through :mod:`ented.atomic_io`, so an interrupted run never leaves half an image.

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
not ``size x size``     centre-cropped to a square and resized (one warning per dataset root),
                        or ``ValueError`` with ``size_mismatch='error'``
======================  ==============================================================
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.functional import normalize

from ented.atomic_io import atomic_imwrite, atomic_path
from ented.image_formats import DEFAULT_MAX_IMAGE_PIXELS, IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS_ENV

logger = logging.getLogger(__name__)

ImageLike = str | os.PathLike | np.ndarray | Image.Image | torch.Tensor
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
    square and resized (area interpolation when shrinking, cubic when enlarging), with one warning
    for the first such image under a dataset root and a debug line for the others.

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
    root = os.path.dirname(os.path.dirname(name)) or "."  # the dataset root above identity folders
    if f"size:{root}:{size}" in _warned:
        logger.debug("image %s is %dx%d; resizing to %dx%d", name, h, w, size, size)
    _warn_once(
        f"size:{root}:{size}",
        f"image {name} is {h}x{w}; resizing to {size}x{size} (other images under {root} that are not "
        f"{size}x{size} are resized too, without a line each)",
    )
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


# ----------------------------------------------------------------------------- BasicSR's metrics (BGR)


def bgr_image_to_tensor(img: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """Turns one BGR image, as BasicSR hands it to metrics, into an RGB network input.

    Args:
        img: (H, W, 3) BGR (or (H, W) gray) in [0, 255], uint8 as BasicSR's ``tensor2img``
            writes it, or float.

    Returns:
        (1, 3, H, W) float32 RGB in [-1, 1] on ``device``.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {img.shape}")
    rgb = np.ascontiguousarray(img[..., ::-1], dtype=np.float32)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    return (tensor / 127.5 - 1).to(device)


# ----------------------------------------------------------------------------- RGB uint8 (restorer, FID, demo)


def is_image_file(name: str | os.PathLike) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (any case) and is not hidden."""
    base = os.path.basename(os.fspath(name))
    return base.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith(".")


class ImageReadError(ValueError):
    """An input could not be read or understood as an image; the message names it."""


def describe(source: ImageLike, name: str | None = None) -> str:
    """A short, human name for an image source, used in messages."""
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"array of shape {tuple(source.shape)}"
    if isinstance(source, torch.Tensor):
        return f"tensor of shape {tuple(source.shape)}"
    if isinstance(source, Image.Image):
        return f"PIL image ({source.mode}, {source.width}x{source.height})"
    return type(source).__name__


def load_image(source: ImageLike, name: str | None = None) -> np.ndarray:
    """Reads an image into an RGB ``uint8`` array.

    Args:
        source: A file path, a ``PIL.Image``, a ``numpy`` array ``(H, W)``, ``(H, W, 1|3|4)`` (uint8,
            uint16, or float in ``[0, 1]``), or a ``torch`` tensor ``(H, W)`` / ``(1|3|4, H, W)``
            (uint8, or float in ``[0, 1]``). Arrays and tensors are taken as RGB(A).
        name: What to call the image in error messages (defaults to the path or a description).

    Returns:
        ``(H, W, 3)`` ``uint8`` RGB. Grayscale becomes three equal channels; RGBA is composited
        onto white (logged).

    Raises:
        ImageReadError: The file is missing, unreadable or not an image, or the array has a shape
            or type that is not an image. The message names the source.
    """
    label = describe(source, name)
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_rgb(_open_file(Path(source)), label)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, label)
    if isinstance(source, torch.Tensor):
        return _array_to_rgb(_tensor_to_hwc(source, label), label)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, label)
    raise ImageReadError(f"{label}: not an image (expected a path, numpy array, PIL image or tensor)")


def _open_file(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            with Image.open(path) as img:
                _check_size(img, path)
                img.load()
                return ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{path}: too large to decode ({err})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except OSError as err:
        raise ImageReadError(f"{path}: could not be read ({err})") from None


def _check_size(img: Image.Image, path: Path) -> None:
    """The datasets' pixel limit, from the header, before any pixel is decoded."""
    try:
        check_pixel_limit(*img.size, str(path))
    except ValueError as err:
        raise ImageReadError(str(err)) from None


def _pil_to_rgb(img: Image.Image, label: str) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        logger.info("%s has an alpha channel: composited onto white", label)
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB")).copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _array_to_rgb(np.asarray(img), label)
    return np.asarray(img.convert("RGB")).copy()


def _tensor_to_hwc(tensor: torch.Tensor, label: str) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.ndim == 3:
        if tensor.shape[0] not in (1, 3, 4):
            raise ImageReadError(f"{label}: expected (C, H, W) with C in 1, 3, 4")
        tensor = tensor.permute(1, 2, 0)
    elif tensor.ndim != 2:
        raise ImageReadError(f"{label}: expected (H, W) or (C, H, W)")
    if tensor.dtype == torch.bfloat16 or tensor.dtype == torch.float16:
        tensor = tensor.float()
    return tensor.numpy()


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageReadError(f"{label}: shape {tuple(array.shape)} is not an image; expected (H, W, 3)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"{label}: empty image")
    array = _to_uint8(array, label)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:
        logger.info("%s has an alpha channel: composited onto white", label)
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        rgb = array[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise ImageReadError(f"{label}: integer values outside 0..65535")
        if high > 255:  # 16-bit content in a wider type (PIL's mode "I")
            return (array >> 8).astype(np.uint8)
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(f"{label}: contains NaN or infinite values")
        if array.min() < -1e-3 or array.max() > 1 + 1e-3:
            raise ImageReadError(
                f"{label}: float values must be in [0, 1] (got {array.min():.3g}..{array.max():.3g})"
            )
        return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    raise ImageReadError(f"{label}: unsupported dtype {array.dtype}")


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resizes an RGB ``uint8`` image to ``size`` (an int for square, or ``(width, height)``)."""
    width, height = (size, size) if isinstance(size, int) else size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def to_network(images: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Stacks equally sized RGB ``uint8`` images into ``(B, 3, H, W)`` float32 in ``[-1, 1]``."""
    batch = torch.from_numpy(np.stack(images)).to(device)
    return batch.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def from_network(batch: torch.Tensor) -> list[np.ndarray]:
    """Turns network output ``(B, 3, H, W)`` (any range; clamped to ``[-1, 1]``) into RGB ``uint8``."""
    batch = batch.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    return list(batch.permute(0, 2, 3, 1).cpu().numpy())


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Writes an RGB ``uint8`` image to ``path`` atomically; the format follows the extension.

    The image is written to a temporary file in the same folder and moved over ``path`` with
    ``os.replace``, so ``path`` either keeps its old content or gets the whole new image.

    Raises:
        OSError: The folder cannot be written; the message names the path.
    """
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}")
    options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        Image.fromarray(image).save(f, format=image_format, **options)
    return path
