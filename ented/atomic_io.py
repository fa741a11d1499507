"""Writes files so that a crash or a kill never leaves a half-written one under the final name.

Each writer puts the bytes into a temporary file in the destination folder, flushes it to disk,
then renames it over the destination with ``os.replace`` (atomic on POSIX and Windows).
"""

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager

import cv2
import numpy as np
import torch


@contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside ``path``; on success it is renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp_path)`` and renames the result to ``path``."""
    with atomic_path(path) as tmp_path:
        write(tmp_path)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` that never leaves a truncated file at ``path``."""
    atomic_write(path, lambda tmp_path: torch.save(obj, tmp_path))


def atomic_imwrite(img: np.ndarray, path: str) -> None:
    """Writes a uint8 BGR image; the format comes from ``path``'s extension.

    Raises:
        OSError: naming ``path`` when OpenCV cannot encode the image.
    """
    extension = os.path.splitext(path)[1] or ".png"
    ok, encoded = cv2.imencode(extension, img)
    if not ok:
        raise OSError(f"could not encode an image for {path} (extension {extension!r})")
    atomic_write(path, lambda tmp_path: encoded.tofile(tmp_path))
