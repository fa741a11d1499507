"""Images in and out: reading anything people pass as an image, and writing results safely.

Everything inside the restorer is an RGB ``uint8`` array of shape ``(H, W, 3)``. This module turns
file paths, ``numpy`` arrays, ``PIL`` images and ``torch`` tensors into that form (grayscale is
repeated to three channels, an alpha channel is composited onto white) and converts batches to and
from the network's ``(B, 3, H, W)`` tensors in ``[-1, 1]``. Writing goes through a temporary file
in the destination folder and ``os.replace``, so an interrupted run never leaves half an image.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ented.atomic_io import atomic_path
from ented.data.image_io import check_pixel_limit

logger = logging.getLogger(__name__)

ImageLike = str | os.PathLike | np.ndarray | Image.Image | torch.Tensor

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


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
