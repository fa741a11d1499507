"""What :meth:`ENTEDRestorer.restore` takes and gives back: any kind of image, one or a batch.

An item is a path, an ``(H, W, 3)`` array, a ``PIL.Image`` or a ``(3, H, W)`` tensor; a batch is a
list of items, a ``(B, H, W, 3)`` uint8 array or a ``(B, 3, H, W)`` tensor. The restorer works on RGB
``uint8`` arrays (:func:`ented.image_io.load_image`); these functions split what a caller gave into
items and turn the restored arrays back into the caller's kind.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from ented.image_io import describe
from ented.restoration.reference_check import ReferenceMismatchError


def restore_any(
    restorer,
    images: Any,
    references: Any = None,
    aligned: bool = True,
    references_aligned: bool | None = None,
) -> Any:
    """Restores one image or a batch with ``restorer``, giving back the same kind of object.

    Args:
        restorer: An :class:`~ented.restoration.restorer.ENTEDRestorer`.
        images: One image (path, ``(H, W, 3)`` array, PIL image, ``(3, H, W)`` tensor), a list of them,
            a ``(B, H, W, 3)`` uint8 array or a ``(B, 3, H, W)`` tensor. Tensors are float in ``[0, 1]``
            (or uint8). Aligned faces when ``aligned`` (default), whole photos otherwise.
        references: For one image: one reference or a list of several. For a batch: one reference
            shared by all, or a list with one entry per image (each a reference or a list of
            references), or a ``(B, K, 3, H, W)`` tensor. None: reference-free.
        aligned: Whether ``images`` are aligned faces (restored directly) or photos (faces are
            detected, aligned, restored and pasted back).
        references_aligned: Photos mode only: see ``ENTEDRestorer.align_reference``. In aligned mode the
            references must be aligned faces.

    Returns:
        The restored image(s), in the input's kind: array -> ``uint8`` array, PIL -> PIL, tensor ->
        float ``[0, 1]`` tensor on the CPU, path -> ``uint8`` array; lists and batches alike.

    Raises:
        ReferenceMismatchError: The check refused a reference; raised after the whole batch ran.
    """
    items, single, kind = split_inputs(images)
    per_item = split_references(references, len(items), single)
    if aligned:
        results = [restorer.restore_aligned(items, per_item)]
        outputs = results[0].faces
    else:
        results = [
            restorer.restore_photo(item, refs, references_aligned) for item, refs in zip(items, per_item)
        ]
        outputs = [result.image for result in results]
    refused = [check for result in results for check in result.refused]
    if refused:
        raise ReferenceMismatchError(refused)
    return join_outputs(outputs, single, kind)


def is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def name_of(source: Any, default: str) -> str:
    """A path's name for messages, or ``default``."""
    return describe(source, None) if is_path(source) else default


def read_aligned(
    restorer,
    faces: list,
    references: list[list | None] | None = None,
    face_names: list[str] | None = None,
    reference_names: list[list[str]] | None = None,
) -> tuple[list[np.ndarray], list[list[np.ndarray] | None], list[str], list[list[str]]]:
    """Aligned faces and their references of any kind, read and resized by ``restorer.prepare_aligned``:
    the arguments of :meth:`~ented.restoration.restorer.ENTEDRestorer.restore_prepared`."""
    references = [None] * len(faces) if references is None else references
    if len(references) != len(faces):
        raise ValueError(f"got {len(faces)} faces but {len(references)} reference entries")
    face_names = face_names or [name_of(face, f"face {i}") for i, face in enumerate(faces)]
    reference_names = reference_names or [
        [name_of(r, f"reference {j}") for j, r in enumerate(refs or [])] for refs in references
    ]
    lq = [restorer.prepare_aligned(face, face_names[i]) for i, face in enumerate(faces)]
    refs = [
        [restorer.prepare_aligned(r, reference_names[i][j], "reference") for j, r in enumerate(entry)]
        if entry
        else None
        for i, entry in enumerate(references)
    ]
    return lq, refs, face_names, reference_names


def batches(refs: list[list | None], batch_size: int) -> list[list[int]]:
    """Indices of consecutive faces in groups of at most ``batch_size`` with the same number of
    references (``refs``: one list, or None, per face), so that each group stacks into one tensor."""
    groups: list[list[int]] = []
    for i, entry in enumerate(refs):
        if groups and len(groups[-1]) < batch_size and len(refs[groups[-1][0]] or []) == len(entry or []):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _is_single_image(source: Any) -> bool:
    if isinstance(source, (str, os.PathLike, Image.Image)):
        return True
    if isinstance(source, np.ndarray):
        return source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (1, 3, 4))
    if isinstance(source, torch.Tensor):
        return source.ndim in (2, 3)
    return False


def as_list(references: Any) -> list:
    if references is None:
        return []
    if _is_single_image(references):
        return [references]
    if isinstance(references, (np.ndarray, torch.Tensor)):
        return list(references)  # (K, ...) stack
    return list(references)


def split_inputs(images: Any) -> tuple[list, bool, str | list[str]]:
    """Input items, whether a single image was given, and the output kind (one per item for a list)."""
    if _is_single_image(images):
        return [images], True, _kind(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False, "numpy-batch"
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images), False, "tensor-batch"
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given")
        return list(images), False, [_kind(image) for image in images]
    raise TypeError(f"cannot restore a {type(images).__name__}; give an image, a list or a batch")


def _kind(image: Any) -> str:
    if isinstance(image, Image.Image):
        return "pil"
    if isinstance(image, torch.Tensor):
        return "tensor"
    return "numpy"


def split_references(references: Any, count: int, single: bool) -> list[list | None]:
    """One list of references (or None) per input item."""
    if references is None:
        return [None] * count
    if single:
        return [as_list(references) or None]
    if _is_single_image(references):
        return [[references]] * count
    if isinstance(references, (np.ndarray, torch.Tensor)):
        if references.ndim == 5:  # (B, K, ...): several references per item
            per_item = [list(entry) for entry in references]
        elif references.ndim == 4:  # (B, ...): one reference per item
            per_item = [[entry] for entry in references]
        else:
            raise ValueError(f"references of shape {tuple(references.shape)} are not a batch of images")
    else:
        per_item = [as_list(entry) or None for entry in references]
    if len(per_item) != count:
        raise ValueError(
            f"{count} images but {len(per_item)} reference entries; give one reference for all, "
            "or one entry per image"
        )
    return per_item


def join_outputs(outputs: list[np.ndarray], single: bool, kind: str | list[str]) -> Any:
    if single:
        return _convert(outputs[0], kind)
    if kind == "numpy-batch":
        return np.stack(outputs)
    if kind == "tensor-batch":
        return torch.stack([_convert(out, "tensor") for out in outputs])
    return [_convert(out, item_kind) for out, item_kind in zip(outputs, kind)]


def _convert(array: np.ndarray, kind: str) -> Any:
    if kind == "pil":
        return Image.fromarray(array)
    if kind == "tensor":
        return torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)
    return array
