"""Writes files so that a crash or a kill never leaves a half-written one under the final name.

Each writer puts the bytes into a temporary file in the destination folder, flushes it to disk,
gives it the permissions an ordinary new file would get, then renames it over the destination
with ``os.replace`` (atomic on POSIX and Windows). Checkpoints, images, lists, configs and ONNX
graphs all go through :func:`atomic_path`.
"""

import os
import re
import tempfile
from collections.abc import Callable
from contextlib import contextmanager

import cv2
import numpy as np
import torch

# mkstemp names: ".<destination name>.<8 random characters><suffix>" (see atomic_path).
_TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yields a temporary path beside ``path``; when the block succeeds it is renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The destination; its folder is created.
        suffix: The temporary file's suffix, for writers that infer a format from the name.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Calls ``write(tmp_path)`` and renames the result to ``path``."""
    with atomic_path(path, suffix) as tmp_path:
        write(tmp_path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes a UTF-8 text file atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a truncated file at ``path``."""
    atomic_write(path, lambda tmp_path: torch.save(obj, tmp_path))


def atomic_imwrite(img: np.ndarray, path: str | os.PathLike) -> None:
    """Writes a uint8 BGR image with OpenCV; the format comes from ``path``'s extension.

    Raises:
        OSError: naming ``path`` when OpenCV cannot encode the image.
    """
    extension = os.path.splitext(os.fspath(path))[1] or ".png"
    ok, encoded = cv2.imencode(extension, img)
    if not ok:
        raise OSError(f"could not encode an image for {path} (extension {extension!r})")
    atomic_write_bytes(path, encoded.tobytes())


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Deletes the ``.tmp`` files a killed :func:`atomic_path` writer left in ``folder``.

    Only names of the form ``.<file>.<8 characters>.tmp`` are touched. Call it when no writer
    can be running (at the start of a run).

    Returns:
        The paths removed.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if _TEMPORARY_NAME.match(name) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed
