"""Face detectors that return boxes and the five landmarks FFHQ alignment needs.

Two back-ends, both optional dependencies; the one used is logged when it is built, and a
detector that cannot be built is an error (never a silent switch to the other):

- ``"mtcnn"`` (default): MTCNN from ``facenet-pytorch`` (MIT). Its weights ship inside the wheel, so
  it works offline. Install with ``pip install --no-deps facenet-pytorch==2.6.0`` (its pins are stale).
- ``"retinaface"``: RetinaFace (ResNet-50 or MobileNet-0.25) from ``facexlib`` (MIT), the detector
  GFPGAN and CodeFormer use. Its weights file (``detection_Resnet50_Final.pth`` /
  ``detection_mobilenet0.25_Final.pth``) is taken from a path given by the caller, or else from
  the first of these that holds it (see :func:`retinaface_weight_places`): ``$ENTED_FACE_WEIGHTS``,
  ``~/.cache/ented/facexlib``, facexlib's own ``<facexlib package>/weights`` and GFPGAN's
  ``gfpgan/weights`` under the working directory, so weights a GFPGAN or facexlib user already has
  are found. The file is read as data only (``weights_only=True``); nothing is downloaded unless
  the Python API is called with ``RetinaFaceDetector(download=True)`` (``ented-restore`` never
  downloads).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

DETECTORS = ("mtcnn", "retinaface")

# facexlib's file names (the basenames of its release URLs, which init_detection_model keeps).
RETINAFACE_FILES = {
    "resnet50": "detection_Resnet50_Final.pth",
    "mobile0.25": "detection_mobilenet0.25_Final.pth",
}
_RETINAFACE_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/{}"


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


def select_faces(detections: list[FaceDetection], selection: str, shape: tuple) -> list[FaceDetection]:
    """``"all"`` detections (largest first, as detectors return them), the ``"largest"``, or the
    ``"center"`` one: the box centre nearest the centre of an ``shape`` ``(H, W, ...)`` photo, as
    facexlib's ``get_center_face`` (GFPGAN's ``--only_center_face``; the first of equals)."""
    if selection == "all" or not detections:
        return list(detections)
    if selection == "largest":
        return detections[:1]
    if selection != "center":
        raise ValueError(f"face selection must be 'all', 'largest' or 'center', got {selection!r}")
    centre = np.array([shape[1] / 2, shape[0] / 2])
    return [min(detections, key=lambda det: np.linalg.norm((det.box[:2] + det.box[2:4]) / 2 - centre))]


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
        logger.info("face detector: MTCNN (facenet-pytorch, weights from its wheel) on %s", device)

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


def facexlib_weights_dir() -> Path | None:
    """facexlib's default weights folder, ``<facexlib package>/weights`` (None without facexlib).

    ``init_detection_model`` without ``model_rootpath`` downloads to and reads from there.
    """
    spec = importlib.util.find_spec("facexlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "weights"


def retinaface_weight_places(weights: str | os.PathLike | None = None) -> list[Path]:
    """Where RetinaFace weights are looked for, in order: files, or folders holding facexlib's file name.

    Args:
        weights: A file or folder given by the caller: then only it is searched.
    """
    if weights is not None:
        return [Path(weights).expanduser()]
    places = (
        [Path(os.environ["ENTED_FACE_WEIGHTS"]).expanduser()] if os.environ.get("ENTED_FACE_WEIGHTS") else []
    )
    places.append(Path.home() / ".cache" / "ented" / "facexlib")
    facexlib_dir = facexlib_weights_dir()
    if facexlib_dir is not None:
        places.append(facexlib_dir)
    places.append(Path("gfpgan") / "weights")  # GFPGAN's inference_gfpgan.py: model_rootpath="gfpgan/weights"
    return places


def find_retinaface_weights(
    network: str = "resnet50", weights: str | os.PathLike | None = None
) -> tuple[Path | None, list[Path]]:
    """The first existing RetinaFace weights file, and every path looked at.

    Returns:
        ``(found, searched)``: ``found`` is None when no searched path is a file.
    """
    if network not in RETINAFACE_FILES:
        raise ValueError(f"network must be one of {sorted(RETINAFACE_FILES)}, got {network!r}")
    searched = []
    for place in retinaface_weight_places(weights):
        candidate = place if place.is_file() or place.suffix == ".pth" else place / RETINAFACE_FILES[network]
        searched.append(candidate.absolute())
        if candidate.is_file():
            return searched[-1], searched
    return None, searched


def load_retinaface(path: str | os.PathLike, network: str, device: torch.device) -> torch.nn.Module:
    """facexlib's RetinaFace with the state dict of ``path``, read as data only.

    The steps of facexlib's ``init_detection_model`` (strip ``module.``, strict load, eval), except
    that the file is read with ``weights_only=True`` whatever torch's default, and never downloaded.

    Raises:
        ValueError: naming ``path``: not a readable state dict, or one that does not fit the network.
    """
    from facexlib.detection.retinaface import RetinaFace

    from ented.hub_weights import read_state_dict

    state, _ = read_state_dict(path, (), what="RetinaFace weights")
    model = RetinaFace(network_name=network, half=False, device=device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"RetinaFace weights {path} do not fit RetinaFace-{network}: {first}") from error
    return model.eval().to(device)


class RetinaFaceDetector(FaceDetector):
    """RetinaFace (facexlib), with weights found where ENTED, facexlib or GFPGAN keep them.

    Args:
        weights: The weights file, or a folder holding facexlib's file name for ``network``. Default:
            the first of :func:`retinaface_weight_places` that holds it.
        network: ``"resnet50"`` or ``"mobile0.25"``.
        device: Torch device.
        min_score: Confidence threshold.
        download: Download the weights (into ``weights``, else the first place searched) when no
            place has them (default: no, so an offline machine gets a clear error instead of
            a long wait).
    """

    name = "retinaface"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        network: str = "resnet50",
        device: str | torch.device = "cpu",
        min_score: float = 0.9,
        download: bool = False,
    ):
        if importlib.util.find_spec("facexlib") is None:
            raise ImportError("the 'retinaface' face detector needs facexlib: pip install facexlib")
        path, searched = find_retinaface_weights(network, weights)
        file_name = RETINAFACE_FILES[network]
        url = _RETINAFACE_URL.format(file_name)
        if path is None:
            if not download:
                raise FileNotFoundError(
                    f"RetinaFace weights {file_name} not found; searched: {', '.join(map(str, searched))}. "
                    f"Download {url} into one of these, or pass download=True to RetinaFaceDetector "
                    "(Python API; ented-restore has no download flag), or use detector='mtcnn' (works offline)"
                )
            path = searched[0]
            from basicsr.utils.download_util import load_file_from_url

            path.parent.mkdir(parents=True, exist_ok=True)
            load_file_from_url(url, model_dir=str(path.parent), progress=True, file_name=path.name)
        device = torch.device(device)
        self._model = load_retinaface(path, network, device)
        self.min_score = min_score
        logger.info("face detector: RetinaFace-%s (facexlib), weights %s, on %s", network, path, device)

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
    weights: str | os.PathLike | None = None,
    **kwargs,
) -> FaceDetector:
    """Builds a detector by name (``"mtcnn"``, ``"retinaface"``, ``"retinaface_mobile0.25"``).

    ``weights`` (RetinaFace only): its file, or a folder holding it; see :class:`RetinaFaceDetector`.
    """
    if name == "mtcnn":
        return MTCNNDetector(device=device, **kwargs)
    if name in ("retinaface", "retinaface_resnet50"):
        return RetinaFaceDetector(weights=weights, network="resnet50", device=device, **kwargs)
    if name == "retinaface_mobile0.25":
        return RetinaFaceDetector(weights=weights, network="mobile0.25", device=device, **kwargs)
    raise ValueError(f"unknown face detector {name!r}; choose one of {DETECTORS}")
