"""Reading an image's sidecar (``<image>.json``, written by the pose-varied synthetic set) into batch tensors.

The identity-detail metrics (:mod:`ented.metrics.identity_detail_metric`) need the ground truth's
face mask and marks; datasets with ``sidecars: true`` add them to each sample:

- ``face_mask``: (1, H, W) float32, 1 on the face's skin;
- ``marks``: (MAX_MARKS, 4) float32 rows ``x, y, radius (px), visible``, padded with zero rows
  (visible 0), so that PyTorch's default collate can batch them.
"""

import json
import os

import numpy as np
import torch

from ented.data.posed_faces import decode_face_mask

MAX_MARKS = 16


def sidecar_path(image_path: str) -> str:
    """The sidecar of an image: the same path with ``.json`` for its extension."""
    return os.path.splitext(image_path)[0] + ".json"


def read_sidecar(image_path: str) -> dict:
    """The parsed sidecar of ``image_path``; errors name the sidecar file and the problem."""
    path = sidecar_path(image_path)
    try:
        with open(path, encoding="utf-8") as f:
            sidecar = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"sidecar {path} of {image_path} does not exist (sidecars: true needs one beside every gt image; "
            "`ented-prepare synthetic` writes them)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"sidecar {path} is not valid JSON: {err}") from None
    missing = [key for key in ("size", "marks", "face_mask_png") if key not in sidecar]
    if missing:
        raise ValueError(f"sidecar {path} lacks {', '.join(missing)}")
    return sidecar


def sidecar_tensors(image_path: str, size: int) -> dict:
    """``face_mask`` (1, size, size) and ``marks`` (MAX_MARKS, 4) of ``image_path``'s sidecar."""
    sidecar = read_sidecar(image_path)
    if sidecar["size"] != size:
        raise ValueError(
            f"sidecar {sidecar_path(image_path)} describes a {sidecar['size']} px image; the dataset's out_size "
            f"is {size} (sidecars cannot follow a resize: write the set at {size} px)"
        )
    marks = np.zeros((MAX_MARKS, 4), np.float32)
    rows = [[m["x"], m["y"], m["radius"], float(m["visible"])] for m in sidecar["marks"]]
    if len(rows) > MAX_MARKS:
        raise ValueError(f"sidecar {sidecar_path(image_path)} has {len(rows)} marks; at most {MAX_MARKS}")
    if rows:
        marks[: len(rows)] = rows
    mask = decode_face_mask(sidecar).astype(np.float32)
    return {"face_mask": torch.from_numpy(mask)[None], "marks": torch.from_numpy(marks)}
