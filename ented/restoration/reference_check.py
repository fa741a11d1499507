"""Does the reference show the same person as the face being restored?

ENTED copies texture from its reference: a reference of somebody else pulls skin, eyes and hair
towards that person. :class:`ReferenceChecker` compares an identity embedding of each aligned face
with those of its references, and warns -- or refuses, by option -- when their similarity falls
below a threshold. Two backends (docs/identity.md):

- ``"dlib"`` (default when no ArcFace weights are given): dlib's 128-D face descriptor
  (:class:`ented.dlib_identity.DlibFaceDescriptor`, the ``identity`` extra), similarity
  ``1 - Euclidean distance``; threshold ``DLIB_THRESHOLD``, calibrated by
  ``benchmarks/identity_threshold.py``.
- ``"arcface"``: ArcFace cosine similarity (:class:`ented.identity.IdentityEncoder`) with weights
  given by path; threshold ``ARCFACE_THRESHOLD``.

A face or reference in which no face is found (a blank image) counts as a mismatch, and the
message says so. There is no random-weights path: without dlib and without ArcFace weights the
checker refuses to be built (or pass ``on_mismatch="off"``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)

MISMATCH_ACTIONS = ("warn", "refuse", "off")
BACKENDS = ("dlib", "arcface")
# default, not tuned on data: the degraded input's ArcFace embedding is degraded too, so cosine
# similarities run lower than between two clean photos; 0.2 is deliberately lenient.
ARCFACE_THRESHOLD = 0.2
# 1 - dlib descriptor distance; calibrated by benchmarks/identity_threshold.py on 2026-11-30 (the
# astronaut under flips, blurs, crops, JPEG and ENTED degradations against synthetic faces; a small
# set, see docs/identity.md). dlib's own LFW threshold, distance 0.6, is similarity 0.4.
DLIB_THRESHOLD = 0.46
DEFAULT_THRESHOLDS = {"dlib": DLIB_THRESHOLD, "arcface": ARCFACE_THRESHOLD}
BACKEND_LABELS = {
    "dlib": "dlib face descriptor, 1 - distance",
    "arcface": "ArcFace cosine",
}


class ReferenceMismatchError(ValueError):
    """A reference looks like a different person and the checker was told to refuse
    (raised by ``ENTEDRestorer.restore``, which gives back images, after its whole batch)."""

    def __init__(self, checks: list[IdentityCheck]):
        self.checks = checks
        super().__init__("; ".join(check.message() for check in checks))


@dataclass
class IdentityCheck:
    """Result of comparing one face with its references.

    Attributes:
        similarities: Identity similarity with each reference, in reference order (higher = more
            alike; NaN where no face was found).
        threshold: Below this, a reference is taken for a different person.
        backend: ``"dlib"`` or ``"arcface"``: which identity model made the numbers.
        face: Name of the face (file name, or ``face <i>``) for messages.
        references: Names of the references.
        errors: Why a face could not be compared (no face found in the input or a reference).
        refused: The checker refuses mismatches (``on_mismatch="refuse"``) and this is one: the face
            is not restored.
    """

    similarities: list[float]
    threshold: float
    backend: str = "dlib"
    face: str = "face"
    references: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refused: bool = False

    @property
    def mismatched(self) -> list[int]:
        """Indices of the references below the threshold, or in which no face was found."""
        return [i for i, sim in enumerate(self.similarities) if not sim >= self.threshold]

    @property
    def same_person(self) -> bool:
        """Whether every reference reaches the threshold."""
        return not self.mismatched

    def message(self) -> str:
        """One line for people; names the face, the backend, the suspicious references and the numbers."""
        names = self.references or [f"reference {i}" for i in range(len(self.similarities))]
        measure = f"{BACKEND_LABELS[self.backend]}, threshold {self.threshold}"
        if self.same_person:
            sims = ", ".join(f"{sim:.3f}" for sim in self.similarities)
            return f"{self.face}: reference identity similarity {sims} ({measure})"
        parts = ", ".join(
            f"{names[i]} ({'no face' if math.isnan(self.similarities[i]) else f'{self.similarities[i]:.3f}'})"
            for i in self.mismatched
        )
        text = f"{self.face}: reference may show a different person: {parts} below the identity threshold ({measure})"
        if self.errors:
            text += "; " + "; ".join(self.errors)
        return text


class ReferenceChecker:
    """Compares faces with their references by identity similarity (dlib or ArcFace).

    Args:
        identity_weights: ArcFace weights (path or ``hf://owner/repo/file``) for
            ``IdentityEncoder.from_path``; selects the ArcFace backend.
        threshold: Similarity below which a reference is taken for another person; default
            ``DEFAULT_THRESHOLDS[backend]``.
        on_mismatch: ``"warn"`` (log a warning), ``"refuse"`` (raise :class:`ReferenceMismatchError`)
            or ``"off"`` (do not compute anything).
        encoder: A ready ArcFace ``IdentityEncoder`` (or any module mapping ``(B, 3, H, W)`` in
            ``[-1, 1]`` to unit-length embeddings); overrides ``identity_weights``.
        backend: ``"dlib"`` or ``"arcface"``; default ``"arcface"`` when ``identity_weights`` or
            ``encoder`` is given, else ``"dlib"``.
        device: Where the ArcFace encoder runs (dlib runs on the CPU).

    Raises:
        ImportError: The dlib backend is used (and the check is on) but dlib is not installed.
        ValueError: ``"arcface"`` without weights or encoder, or ``"dlib"`` with ArcFace weights.
    """

    def __init__(
        self,
        identity_weights: str | os.PathLike | None = None,
        threshold: float | None = None,
        on_mismatch: str = "warn",
        encoder: torch.nn.Module | None = None,
        backend: str | None = None,
        device: str | torch.device = "cpu",
    ):
        if on_mismatch not in MISMATCH_ACTIONS:
            raise ValueError(f"on_mismatch must be one of {MISMATCH_ACTIONS}, got {on_mismatch!r}")
        has_arcface = identity_weights is not None or encoder is not None
        backend = backend or ("arcface" if has_arcface else "dlib")
        if backend not in BACKENDS:
            raise ValueError(f"identity backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "arcface" and not has_arcface:
            raise ValueError(
                "the arcface identity backend needs ArcFace weights (identity_weights / --identity-weights, "
                "see docs/metrics.md); without them use the dlib backend"
            )
        if backend == "dlib" and has_arcface:
            raise ValueError("ArcFace weights or encoder given with the dlib identity backend: pick one")
        threshold = DEFAULT_THRESHOLDS[backend] if threshold is None else float(threshold)
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a similarity in [-1, 1], got {threshold}")
        self.threshold = threshold
        self.on_mismatch = on_mismatch
        self.backend = backend
        self.identity_weights = identity_weights
        self.device = torch.device(device)
        self._encoder = encoder
        self._descriptor = None
        if backend == "dlib" and self.enabled:
            self._descriptor = self._build_descriptor()  # a missing extra stops here, not at every face

    @staticmethod
    def _build_descriptor():
        from ented.dlib_identity import EXTRA_HINT, DlibFaceDescriptor

        try:
            return DlibFaceDescriptor(aligned=True)
        except ImportError as err:
            raise ImportError(
                f"the reference check's default identity backend is dlib: {EXTRA_HINT}; or give ArcFace "
                "weights (identity_weights / --identity-weights), or turn the check off"
            ) from err

    @property
    def enabled(self) -> bool:
        return self.on_mismatch != "off"

    @property
    def encoder(self) -> torch.nn.Module:
        """The ArcFace identity encoder (``"arcface"`` backend), built at first use."""
        if self.backend != "arcface":
            raise AttributeError(f"the {self.backend} identity backend has no ArcFace encoder")
        if self._encoder is None:
            from ented.identity import IdentityEncoder

            self._encoder = IdentityEncoder.from_path(os.fspath(self.identity_weights))
        return self._encoder.to(self.device).eval()

    @property
    def descriptor(self):
        """The :class:`ented.dlib_identity.DlibFaceDescriptor` (``"dlib"`` backend), built at first use."""
        if self.backend != "dlib":
            raise AttributeError(f"the {self.backend} identity backend has no dlib descriptor")
        if self._descriptor is None:
            self._descriptor = self._build_descriptor()
        return self._descriptor

    def to(self, device: str | torch.device) -> ReferenceChecker:
        self.device = torch.device(device)
        return self

    def similarities(self, faces: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """Identity similarity of each face with each of its references.

        Args:
            faces: ``(B, 3, H, W)`` aligned faces in ``[-1, 1]``.
            references: ``(B, K, 3, H', W')`` (or ``(B, 3, H', W')``) aligned references in ``[-1, 1]``.

        Returns:
            ``(B, K)`` similarities (ArcFace: cosine in ``[-1, 1]``; dlib: ``1 - distance``), NaN
            where no face was found.
        """
        return self._compare(faces, references)[0]

    def _compare(self, faces, references, face_names=None, reference_names=None):
        """``(B, K)`` similarities and, per face, the reasons some could not be computed."""
        if references.ndim == 4:
            references = references[:, None]
        if self.backend == "arcface":
            return self._arcface_similarities(faces, references), [[] for _ in range(len(faces))]
        return self._dlib_similarities(faces, references, face_names, reference_names)

    @torch.no_grad()
    def _arcface_similarities(self, faces: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        batch, k = references.shape[:2]
        encoder = self.encoder
        face_emb = encoder(faces.to(self.device).float())
        ref_emb = encoder(references.flatten(0, 1).to(self.device).float()).view(batch, k, -1)
        return torch.einsum("bd,bkd->bk", face_emb, ref_emb).cpu()

    def _dlib_similarities(self, faces, references, face_names, reference_names):
        from ented.dlib_identity import NoFaceError
        from ented.image_io import from_network

        batch, k = references.shape[:2]
        face_names = face_names or [f"face {i}" for i in range(batch)]
        sims = torch.full((batch, k), float("nan"))
        errors: list[list[str]] = [[] for _ in range(batch)]
        for i, (face, refs) in enumerate(zip(from_network(faces), references)):
            ref_names = reference_names[i] if reference_names else [f"reference {j}" for j in range(k)]
            try:
                face_desc = self.descriptor.descriptor(face, face_names[i])
            except NoFaceError as err:
                errors[i].append(str(err))
                continue
            for j, ref in enumerate(from_network(refs)):
                try:
                    ref_desc = self.descriptor.descriptor(ref, ref_names[j])
                except NoFaceError as err:
                    errors[i].append(str(err))
                    continue
                sims[i, j] = 1.0 - float(np.linalg.norm(face_desc - ref_desc))
        return sims, errors

    def check(
        self,
        faces: torch.Tensor,
        references: torch.Tensor,
        face_names: list[str] | None = None,
        reference_names: list[list[str]] | None = None,
    ) -> list[IdentityCheck]:
        """Checks a batch; logs each mismatch, marking it ``refused`` when ``on_mismatch="refuse"``.

        Args:
            faces, references: See :meth:`similarities`.
            face_names: For messages, one per face.
            reference_names: For messages, one list per face.

        Returns:
            One :class:`IdentityCheck` per face (empty when the checker is off). Nothing is raised:
            the caller leaves refused faces out and reports them.
        """
        if not self.enabled:
            return []
        sims, errors = self._compare(faces, references, face_names, reference_names)
        checks = [
            IdentityCheck(
                similarities=[float(s) for s in row],
                threshold=self.threshold,
                backend=self.backend,
                face=face_names[i] if face_names else f"face {i}",
                references=list(reference_names[i]) if reference_names else [],
                errors=errors[i],
                refused=self.on_mismatch == "refuse" and not all(s >= self.threshold for s in row.tolist()),
            )
            for i, row in enumerate(sims)
        ]
        self.act(checks)
        return checks

    def act(self, checks: list[IdentityCheck]) -> None:
        """Logs each check: a debug line when it passes, a warning for a mismatch (refused or not)."""
        for check in checks:
            if check.same_person:
                logger.debug(check.message())
            else:
                logger.warning(("refused: " if check.refused else "") + check.message())
