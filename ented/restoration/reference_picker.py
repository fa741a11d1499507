"""Choosing references automatically: from a folder of the person's photos, the K that suit a face best.

``folder ──read (and align)──> candidates ──identity, pose, sharpness──> scores ──rule──> chosen K``

Every candidate gets three measurements (docs/identity.md, "Choosing references automatically"):

- **identity**: ``1 - dlib descriptor distance`` to the (degraded) input face, as the reference check
  measures it (:mod:`ented.restoration.reference_check`), and **peer identity**: the median of the
  same similarity to the other candidates that pass against the input. The input is degraded, so
  its descriptor is noisy; the candidates are clean, so they vouch for each other.
- **pose**: yaw from five landmarks: the nose tip's offset from the eye midpoint, along the eye
  line, over the eye distance, is ``YAW_RATIO_PER_TAN * tan(yaw)`` for a head turned by ``yaw``
  (``benchmarks/reference_pose.py`` measures the constant on the posed synthetic renderer). The
  ratio does not change under a similarity transform, so the landmarks may be the photo's (those
  the crop was aligned with) or the crop's. One landmark source for all, since detectors place the
  nose differently (dlib's 68 points put the astronaut 6 degrees from where MTCNN's five put her):
  the caller's five points when the face and every candidate come with them, else dlib's 68
  landmarks of every aligned crop, reduced to five. Roll (the eye line's angle; alignment removes
  it) and a pitch ratio (unreliable from landmarks, docs/identity.md) are reported, not scored.
- **sharpness**: variance of the Laplacian of the grey face region (``ALIGNED_FACE_BOX``) after
  resizing the crop to ``QUALITY_SIZE``: blur and faces upsampled from few pixels score low.

The rule: a candidate is *excluded* when its identity to the input is below the reference check's
threshold, or when its peer identity is (with at least two other passing candidates to form a
majority). The others are ordered by ``(max(|yaw difference|, pose_tolerance), -sharpness)``: every
candidate within ``pose_tolerance`` degrees of the input's yaw counts as equally close and the
sharpest comes first; farther ones come after, the closest first. The first ``num_refs`` are used.

Example::

    pick = pick_references_from_folder(face, "photos/", num_refs=3)
    for line in pick.report():
        print(line)
    references = pick.references  # aligned (H, W, 3) uint8, best first
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ented.dlib_identity import ALIGNED_FACE_BOX, DlibFaceDescriptor
from ented.dlib_identity import NoFaceError as DlibNoFaceError
from ented.image_formats import IMAGE_EXTENSIONS
from ented.image_io import ImageReadError, is_image_file, load_image
from ented.restoration.reference_check import DLIB_THRESHOLD
from ented.restoration.results import NoFaceError

logger = logging.getLogger(__name__)

# Nose-offset ratio per tan(yaw): least-squares fit on the posed synthetic renderer's true
# landmarks and yaws (benchmarks/reference_pose.py, 2026-12-01: 0.268, Spearman 0.97 over 200 views).
YAW_RATIO_PER_TAN = 0.298
# default, not tuned on data: yaw differences below this many degrees count as equal, so that
# sharpness decides among references about as turned as the input. Above the estimate's noise: with
# exact landmarks one estimate is off by up to 5.4 degrees (p90, benchmarks/reference_pose.py), a
# difference of two by more.
POSE_TOLERANCE = 15.0
# Side the crop is resized to before measuring sharpness, so crops of any size compare.
QUALITY_SIZE = 256
# iBUG 68-point indices: eye contours, nose tip, mouth corners.
_IBUG_LEFT_EYE, _IBUG_RIGHT_EYE, _IBUG_NOSE_TIP, _IBUG_MOUTH = slice(36, 42), slice(42, 48), 30, (48, 54)
# These failures make a candidate unusable, never the whole pick: unreadable file, no face.
_CANDIDATE_ERRORS = (ImageReadError, NoFaceError, DlibNoFaceError)


@dataclass(frozen=True)
class FacePose:
    """A head pose estimated from five landmarks.

    Attributes:
        yaw: Degrees; positive: the nose points to the image's right (the posed renderer's sign).
        roll: Degrees, the eye line's angle; positive: the image-right eye is lower.
        pitch_ratio: Nose-to-mouth over eye-to-nose distance, across the eye line (unitless; larger
            when the face tilts up in the image). Reported, not scored.
        source: ``"given"`` (the caller's landmarks) or ``"dlib68"`` (found in the aligned crop).
    """

    yaw: float
    roll: float
    pitch_ratio: float
    source: str = "given"


def landmarks_5_from_68(points: np.ndarray) -> np.ndarray:
    """FFHQ's five points ``(5, 2)`` (eye centres, nose tip, mouth corners) from iBUG's 68 ``(68, 2)``."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks (x, y), got an array of shape {points.shape}")
    return np.stack(
        [
            points[_IBUG_LEFT_EYE].mean(0),
            points[_IBUG_RIGHT_EYE].mean(0),
            points[_IBUG_NOSE_TIP],
            points[_IBUG_MOUTH[0]],
            points[_IBUG_MOUTH[1]],
        ]
    )


def yaw_ratio(landmarks: np.ndarray) -> float:
    """The nose tip's offset from the eye midpoint along the eye line, over the eye distance.

    Args:
        landmarks: ``(5, 2)``: left eye, right eye, nose, left and right mouth corners (image left
            first), in any frame related to the photo by a similarity.
    """
    left_eye, right_eye, nose = _five(landmarks)[:3]
    eye_line = right_eye - left_eye
    return float((nose - (left_eye + right_eye) / 2) @ eye_line / (eye_line @ eye_line))


def pose_from_landmarks(landmarks: np.ndarray, source: str = "given") -> FacePose:
    """Yaw, roll and pitch ratio of five landmarks ``(5, 2)`` (see :class:`FacePose`)."""
    left_eye, right_eye, nose, mouth_left, mouth_right = _five(landmarks)
    eye_line = right_eye - left_eye
    down = np.array([-eye_line[1], eye_line[0]])  # the eye line turned a quarter towards the chin
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    upper = float((nose - eyes) @ down)
    return FacePose(
        yaw=math.degrees(math.atan(yaw_ratio(landmarks) / YAW_RATIO_PER_TAN)),
        roll=math.degrees(math.atan2(eye_line[1], eye_line[0])),
        pitch_ratio=float((mouth - nose) @ down) / upper if abs(upper) > 1e-9 else math.nan,
        source=source,
    )


def _five(landmarks: np.ndarray) -> np.ndarray:
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.size != 10 or not np.isfinite(landmarks).all():
        raise ValueError(f"expected 5 finite landmarks (x, y), got {landmarks.tolist()}")
    landmarks = landmarks.reshape(5, 2)
    if np.linalg.norm(landmarks[1] - landmarks[0]) < 1e-9:
        raise ValueError(f"the two eye landmarks coincide: {landmarks.tolist()}")
    return landmarks


def estimate_pose(
    image: np.ndarray,
    landmarks: np.ndarray | None = None,
    descriptor: DlibFaceDescriptor | None = None,
    name: str = "image",
) -> FacePose:
    """The pose of an FFHQ-aligned face ``(H, W, 3)`` RGB uint8: from ``landmarks`` ``(5, 2)`` when
    given (photo or crop frame), else from dlib's 68 landmarks of the crop."""
    if landmarks is not None:
        return pose_from_landmarks(landmarks, "given")
    descriptor = descriptor or DlibFaceDescriptor(aligned=True)
    return pose_from_landmarks(landmarks_5_from_68(descriptor.landmarks(image, name, points=68)), "dlib68")


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey face region of an aligned ``(H, W, 3)`` RGB uint8 crop,
    resized to ``QUALITY_SIZE`` (0-255 grey levels; higher = sharper)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB uint8 image, got {image.dtype} {image.shape}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    shrink = min(grey.shape[:2]) >= QUALITY_SIZE
    grey = cv2.resize(
        grey, (QUALITY_SIZE, QUALITY_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )
    left, top, right, bottom = (round(f * QUALITY_SIZE) for f in ALIGNED_FACE_BOX)
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F)[top:bottom, left:right].var())


@dataclass
class Candidate:
    """One possible reference.

    Attributes:
        name: For the report (the file name).
        image: The aligned ``(H, W, 3)`` RGB uint8 face, or None when it could not be had.
        landmarks: ``(5, 2)`` landmarks it was aligned with (photo or crop frame), if known.
        error: Why there is no image (unreadable file, no face), naming the file.
    """

    name: str
    image: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    error: str | None = None


@dataclass
class ReferenceScore:
    """The measurements of one candidate and what was decided.

    Attributes:
        name: The candidate's name.
        identity: ``1 - dlib descriptor distance`` to the input face (NaN: no face).
        peer_identity: Median of the same to the other candidates that pass against the input (NaN:
            fewer than two such others).
        pose: The candidate's :class:`FacePose` (None: no face).
        yaw_diff: ``|yaw - input yaw|`` in degrees.
        sharpness: See :func:`sharpness`.
        status: ``"used"``, ``"unused"`` (passed, but ``num_refs`` better ones exist) or ``"excluded"``.
        reason: Why excluded, or the rank when used.
        rank: 1 for the best-suited passing candidate, and so on (None: excluded).
    """

    name: str
    identity: float = math.nan
    peer_identity: float = math.nan
    pose: FacePose | None = None
    yaw_diff: float = math.nan
    sharpness: float = math.nan
    status: str = "excluded"
    reason: str = ""
    rank: int | None = None

    def line(self) -> str:
        """``ref3.jpg: identity 0.71, yaw diff 4 deg, sharpness 210 -> used (rank 1)``."""
        if self.pose is None:
            return f"{self.name}: -> excluded: {self.reason}"
        measured = f"identity {self.identity:.2f}"
        if not math.isnan(self.peer_identity):
            measured += f" (peers {self.peer_identity:.2f})"
        measured += f", yaw diff {self.yaw_diff:.0f} deg, sharpness {self.sharpness:.0f}"
        outcome = (
            f"{self.status} ({self.reason})" if self.status == "used" else f"{self.status}: {self.reason}"
        )
        return f"{self.name}: {measured} -> {outcome}"


@dataclass
class ReferencePick:
    """What :func:`pick_references` returns.

    Attributes:
        face: The input face's name.
        face_pose: Its :class:`FacePose`.
        num_refs: How many references were asked for.
        threshold: The identity threshold used.
        scores: One :class:`ReferenceScore` per candidate, in candidate order.
        chosen: Indices into ``scores`` of the references used, best first.
        references: Their aligned images, in the same order.
        notes: Remarks on the pick as a whole (fewer passing candidates than asked for).
    """

    face: str
    face_pose: FacePose
    num_refs: int
    threshold: float
    scores: list[ReferenceScore]
    chosen: list[int]
    references: list[np.ndarray] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def chosen_names(self) -> list[str]:
        return [self.scores[i].name for i in self.chosen]

    def report(self) -> list[str]:
        """One line per candidate (in candidate order), then the notes."""
        return [score.line() for score in self.scores] + self.notes


def reference_files(folder: str | os.PathLike) -> list[Path]:
    """The image files (``IMAGE_EXTENSIONS``) directly in ``folder``, sorted by name.

    Raises:
        ValueError: ``folder`` is not a directory or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"reference folder {folder} does not exist or is not a directory")
    files = sorted(path for path in folder.iterdir() if path.is_file() and is_image_file(path))
    if not files:
        raise ValueError(f"reference folder {folder} holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def load_candidates(
    folder: str | os.PathLike,
    align: Callable[[np.ndarray, str], np.ndarray | tuple[np.ndarray, np.ndarray | None]] | None = None,
) -> list[Candidate]:
    """Reads the images of a folder as candidates.

    Args:
        folder: A folder of the person's photos.
        align: None: the files are FFHQ-aligned crops. Else called as ``align(photo, name)`` on each
            ``(H, W, 3)`` RGB uint8 photo; returns its aligned crop, or ``(crop, landmarks (5, 2))``,
            and raises :class:`~ented.restoration.results.NoFaceError` when it finds no face
            (``ENTEDRestorer.align_reference`` does both).

    Returns:
        One :class:`Candidate` per image file; a file that cannot be read or shows no face has its
        ``error`` set rather than stopping the others.
    """
    candidates = []
    for path in reference_files(folder):
        try:
            image = load_image(path, path.name)
            found = align(image, path.name) if align is not None else image
        except _CANDIDATE_ERRORS as err:
            candidates.append(Candidate(path.name, error=str(err)))
            continue
        crop, landmarks = found if isinstance(found, tuple) else (found, None)
        candidates.append(Candidate(path.name, crop, landmarks))
    return candidates


def pick_references(
    face: np.ndarray,
    candidates: Sequence[Candidate | np.ndarray],
    num_refs: int,
    face_name: str = "face",
    face_landmarks: np.ndarray | None = None,
    threshold: float = DLIB_THRESHOLD,
    pose_tolerance: float = POSE_TOLERANCE,
    descriptor: DlibFaceDescriptor | None = None,
) -> ReferencePick:
    """Scores every candidate reference of one face and chooses the ``num_refs`` best (module docstring).

    Args:
        face: The aligned degraded face ``(H, W, 3)`` RGB uint8, any size.
        candidates: :class:`Candidate` s, or aligned ``(H, W, 3)`` RGB uint8 arrays (named
            ``candidate <i>``).
        num_refs: How many references to choose (>= 1).
        face_name: The face's name in messages.
        face_landmarks: ``(5, 2)`` landmarks the face was aligned with, if known; used (with the
            candidates' own) only when every candidate has them too, else dlib's are found for all.
        threshold: Identity similarity below which a candidate is another person (the reference
            check's ``DLIB_THRESHOLD`` by default).
        pose_tolerance: Yaw differences (degrees) below this count as equal.
        descriptor: A :class:`DlibFaceDescriptor` for aligned crops to reuse.

    Raises:
        ValueError: ``num_refs < 1``; no candidate; no candidate could be read or shows a face (the
            message names each file and why).
        ented.dlib_identity.NoFaceError: The input face shows no face.
    """
    if num_refs < 1:
        raise ValueError(f"the number of references must be at least 1, got {num_refs}")
    candidates = [
        c if isinstance(c, Candidate) else Candidate(f"candidate {i}", c) for i, c in enumerate(candidates)
    ]
    if not candidates:
        raise ValueError(f"{face_name}: no candidate references given")
    descriptor = descriptor or DlibFaceDescriptor(aligned=True)
    face_descriptor = descriptor.descriptor(face, face_name)
    given = face_landmarks is not None and all(
        c.landmarks is not None for c in candidates if c.image is not None
    )
    face_pose = estimate_pose(face, face_landmarks if given else None, descriptor, face_name)

    scores = [ReferenceScore(c.name, reason=c.error or "") for c in candidates]
    described = {}  # candidate index -> descriptor
    for i, candidate in enumerate(candidates):
        if candidate.image is None:
            continue
        try:
            described[i] = descriptor.descriptor(candidate.image, candidate.name)
        except DlibNoFaceError as err:
            scores[i].reason = str(err)
            continue
        score = scores[i]
        score.identity = 1.0 - float(np.linalg.norm(described[i] - face_descriptor))
        landmarks = candidate.landmarks if given else None
        score.pose = estimate_pose(candidate.image, landmarks, descriptor, candidate.name)
        score.yaw_diff = abs(score.pose.yaw - face_pose.yaw)
        score.sharpness = sharpness(candidate.image)
    if not described:
        raise ValueError(
            f"{face_name}: no candidate reference could be read or shows a face: "
            + "; ".join(score.reason for score in scores)
        )

    passing = [i for i in described if scores[i].identity >= threshold]
    for i in described:
        others = [j for j in passing if j != i]
        if len(others) >= 2:
            peers = [1.0 - float(np.linalg.norm(described[i] - described[j])) for j in others]
            scores[i].peer_identity = float(np.median(peers))
    eligible = []
    for i in described:
        score = scores[i]
        if score.identity < threshold:
            score.reason = f"another person? identity {score.identity:.2f} < {threshold:.2f}"
        elif score.peer_identity < threshold:  # False for NaN: too few peers to outvote
            score.reason = (
                f"another person? unlike the other references: peer identity "
                f"{score.peer_identity:.2f} < {threshold:.2f}"
            )
        else:
            eligible.append(i)

    eligible.sort(key=lambda i: (max(scores[i].yaw_diff, pose_tolerance), -scores[i].sharpness))
    chosen = eligible[:num_refs]
    for rank, i in enumerate(eligible, start=1):
        scores[i].rank = rank
        if rank <= num_refs:
            scores[i].status, scores[i].reason = "used", f"rank {rank}"
        else:
            scores[i].status, scores[i].reason = "unused", f"rank {rank}, {num_refs} better-suited references"
    notes = []
    if not eligible:
        notes.append(
            f"{face_name}: no candidate passes the identity check (threshold {threshold:.2f}); none used"
        )
    elif len(eligible) < num_refs:
        notes.append(
            f"{face_name}: asked for {num_refs} references, only {len(eligible)} pass the identity check: "
            f"using all {len(eligible)}"
        )
    return ReferencePick(
        face=face_name,
        face_pose=face_pose,
        num_refs=num_refs,
        threshold=threshold,
        scores=scores,
        chosen=chosen,
        references=[candidates[i].image for i in chosen],
        notes=notes,
    )


def pick_references_from_folder(
    face: np.ndarray,
    folder: str | os.PathLike,
    num_refs: int,
    align: Callable[[np.ndarray, str], np.ndarray | tuple[np.ndarray, np.ndarray | None]] | None = None,
    **kwargs,
) -> ReferencePick:
    """:func:`pick_references` on the images of ``folder`` (:func:`load_candidates`, ``align`` as there).

    Raises:
        ValueError: Besides :func:`pick_references`' reasons, ``folder`` is not a directory, holds no
            image file, or none of its images can be read or shows a face (named, with why).
    """
    if num_refs < 1:  # before reading and aligning a whole folder
        raise ValueError(f"the number of references must be at least 1, got {num_refs}")
    candidates = load_candidates(folder, align)
    if all(c.image is None for c in candidates):
        raise ValueError(
            f"reference folder {folder}: no readable image with a face: "
            + "; ".join(c.error for c in candidates)
        )
    return pick_references(face, candidates, num_refs, **kwargs)
