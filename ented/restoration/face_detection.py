"""Face detectors that return boxes and the five landmarks FFHQ alignment needs.

Two back-ends, both optional dependencies:

- ``"mtcnn"``: MTCNN from ``facenet-pytorch`` (MIT). Its weights ship inside the wheel, so it works
  offline. Install with ``pip install --no-deps facenet-pytorch==2.6.0`` (its pins are stale).
- ``"retinaface"``: RetinaFace (ResNet-50 or MobileNet-0.25) from ``facexlib`` (MIT). Its weights
  (``detection_Resnet50_Final.pth`` / ``detection_mobilenet0.25_Final.pth``) are read from
  ``weights_dir``; nothing is downloaded unless the Python API is called with
  ``RetinaFaceDetector(download=True)`` (``ented-restore`` never downloads).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

DETECTORS = ("mtcnn", "retinaface")

_RETINAFACE_FILES = {
    "resnet50": (
        "detection_Resnet50_Final.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
    ),
    "mobile0.25": (
        "detection_mobilenet0.25_Final.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
    ),
}


@dataclass
class FaceDetection:
    """One detected face.

    Attributes:
        box: ``(4,)`` float ``x1, y1, x2, y2`` in photo pixels.
        landmarks: ``(5, 2)`` float: left eye, right eye, nose, left and right mouth corners (image
            left/right), in photo pixels.
        score: Detector confidence in ``[0, 1]``.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceDetector:
    """Base class: ``detect(image)`` returns the faces in an RGB uint8 photo, largest first."""

    name = "base"

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        faces = [face for face in self._detect(image) if np.isfinite(face.landmarks).all()]
        return sorted(faces, key=lambda face: face.area, reverse=True)

    def _detect(self, image: np.ndarray) -> list[FaceDetection]:
        raise NotImplementedError


class MTCNNDetector(FaceDetector):
    """MTCNN (facenet-pytorch), with weights shipped in the wheel: works offline.

    Args:
        device: Torch device to run on.
        min_face_size: Smallest face, in pixels, searched for.
        thresholds: The three stages' score thresholds.
        min_score: Faces scoring below this are dropped.
    """

    name = "mtcnn"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        min_score: float = 0.9,
    ):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise ImportError(
                "the 'mtcnn' face detector needs facenet-pytorch: "
                "pip install --no-deps facenet-pytorch==2.6.0 (or use detector='retinaface')"
            ) from err
        # MTCNN's stages run on the device; MPS lacks some of its ops, so keep it off MPS.
        device = torch.device(device)
        if device.type == "mps":
            device = torch.device("cpu")
        self._mtcnn = MTCNN(
            keep_all=True, device=device, min_face_size=min_face_size, thresholds=list(thresholds)
        )
        self.min_score = min_score

    def _detect(self, image: np.ndarray) -> list[FaceDetection]:
        # MTCNN's image pyramid starts at min_face_size: a smaller photo has no level to search (and
        # facenet-pytorch then fails in torch.cat instead of finding nothing). Its own test, kept exact.
        if min(image.shape[:2]) * (12.0 / self._mtcnn.min_face_size) < 12:
            return []
        with torch.no_grad():
            boxes, scores, landmarks = self._mtcnn.detect(np.ascontiguousarray(image), landmarks=True)
        if boxes is None:
            return []
        return [
            FaceDetection(
                box=np.asarray(box, dtype=np.float64),
                landmarks=np.asarray(points, dtype=np.float64).reshape(5, 2),
                score=float(score),
            )
            for box, score, points in zip(boxes, scores, landmarks)
            if score is not None and float(score) >= self.min_score
        ]


class RetinaFaceDetector(FaceDetector):
    """RetinaFace (facexlib) with weights read from a folder.

    Args:
        weights_dir: Folder holding (or receiving) the detector's weights file. Defaults to
            ``$ENTED_FACE_WEIGHTS`` or ``~/.cache/ented/facexlib``.
        network: ``"resnet50"`` or ``"mobile0.25"``.
        device: Torch device.
        min_score: Confidence threshold.
        download: Allow downloading the weights when the folder lacks them (default: no, so an
            offline machine gets a clear error instead of a long wait).
    """

    name = "retinaface"

    def __init__(
        self,
        weights_dir: str | os.PathLike | None = None,
        network: str = "resnet50",
        device: str | torch.device = "cpu",
        min_score: float = 0.9,
        download: bool = False,
    ):
        try:
            from facexlib.detection.retinaface import RetinaFace
        except ImportError as err:
            raise ImportError("the 'retinaface' face detector needs facexlib: pip install facexlib") from err
        if network not in _RETINAFACE_FILES:
            raise ValueError(f"network must be one of {sorted(_RETINAFACE_FILES)}, got {network!r}")
        weights_dir = Path(
            weights_dir
            or os.environ.get("ENTED_FACE_WEIGHTS")
            or Path.home() / ".cache" / "ented" / "facexlib"
        )
        file_name, url = _RETINAFACE_FILES[network]
        weights_path = weights_dir / file_name
        if not weights_path.is_file():
            if not download:
                raise FileNotFoundError(
                    f"RetinaFace weights not found: {weights_path}. Download {url} into {weights_dir}, "
                    "or pass download=True to RetinaFaceDetector (Python API; ented-restore has no "
                    "download flag), or use detector='mtcnn' (works offline)"
                )
            from basicsr.utils.download_util import load_file_from_url

            weights_dir.mkdir(parents=True, exist_ok=True)
            load_file_from_url(url, model_dir=str(weights_dir), progress=True, file_name=file_name)
        device = torch.device(device)
        model = RetinaFace(network_name=network, half=False, device=device)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        state = {key.removeprefix("module."): value for key, value in state.items()}
        model.load_state_dict(state, strict=True)
        self._model = model.eval().to(device)
        self.min_score = min_score

    def _detect(self, image: np.ndarray) -> list[FaceDetection]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # facexlib's RetinaFace takes OpenCV BGR
        with torch.no_grad():
            rows = self._model.detect_faces(bgr, conf_threshold=self.min_score)
        return [
            FaceDetection(
                box=np.asarray(row[:4], dtype=np.float64),
                landmarks=np.asarray(row[5:15], dtype=np.float64).reshape(5, 2),
                score=float(row[4]),
            )
            for row in rows
        ]


def build_detector(
    name: str = "mtcnn",
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike | None = None,
    **kwargs,
) -> FaceDetector:
    """Builds a detector by name (``"mtcnn"``, ``"retinaface"``, ``"retinaface_mobile0.25"``)."""
    if name == "mtcnn":
        return MTCNNDetector(device=device, **kwargs)
    if name in ("retinaface", "retinaface_resnet50"):
        return RetinaFaceDetector(weights_dir=weights_dir, network="resnet50", device=device, **kwargs)
    if name == "retinaface_mobile0.25":
        return RetinaFaceDetector(weights_dir=weights_dir, network="mobile0.25", device=device, **kwargs)
    raise ValueError(f"unknown face detector {name!r}; choose one of {DETECTORS}")
