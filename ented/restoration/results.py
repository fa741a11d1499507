"""What the restorer gives back: restored faces and photos with their reference identity checks.

A face whose reference the check refused (``reference_check="refuse"``) is not restored: its entry
is None and its check says ``refused``; the rest of the batch is restored as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ented.restoration.face_detection import FaceDetection
from ented.restoration.reference_check import IdentityCheck


class NoFaceError(ValueError):
    """No face was found in a photo (or in a reference that needed aligning)."""


@dataclass
class AlignedResult:
    """What :meth:`ENTEDRestorer.restore_aligned` returns.

    Attributes:
        faces: Restored ``(S, S, 3)`` uint8 faces in input order; None where the check refused.
        checks: The reference identity check of each face that has references (empty when the
            check is off).
    """

    faces: list[np.ndarray | None]
    checks: list[IdentityCheck] = field(default_factory=list)

    @property
    def refused(self) -> list[IdentityCheck]:
        """The checks of the faces left unrestored because their reference was refused."""
        return [check for check in self.checks if check.refused]


@dataclass
class RestoredFace:
    """One face of a photo.

    Attributes:
        detection: Box, landmarks and score from the detector.
        affine: ``(2, 3)`` photo-to-crop transform.
        crop: The aligned input face ``(S, S, 3)``.
        restored: The restored face ``(S, S, 3)``; None when the check refused its reference.
        check: Its reference identity check, if any.
    """

    detection: FaceDetection
    affine: np.ndarray
    crop: np.ndarray
    restored: np.ndarray | None
    check: IdentityCheck | None = None


@dataclass
class PhotoResult:
    """What :meth:`ENTEDRestorer.restore_photo` returns.

    Attributes:
        image: The photo with its restored faces pasted back, ``(H * upscale, W * upscale, 3)`` uint8
            (refused faces are left as they were).
        faces: The faces, largest first.
        references: The aligned references that were used (``(S, S, 3)`` uint8).
    """

    image: np.ndarray
    faces: list[RestoredFace]
    references: list[np.ndarray] = field(default_factory=list)

    @property
    def checks(self) -> list[IdentityCheck]:
        return [face.check for face in self.faces if face.check is not None]

    @property
    def refused(self) -> list[IdentityCheck]:
        return [check for check in self.checks if check.refused]
