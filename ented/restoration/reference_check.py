"""Does the reference show the same person as the face being restored?

ENTED copies texture from its reference: a reference of somebody else pulls skin, eyes and hair
towards that person. :class:`ReferenceChecker` compares ArcFace identity embeddings
(:class:`ented.identity.IdentityEncoder`) of each aligned face and each of its references, and
warns -- or refuses, by option -- when the cosine similarity falls below a threshold.

The degraded input's embedding is itself degraded, so similarities are lower than between two
clean photos; the default threshold (0.2) is deliberately lenient [default, not tuned on data].
Without ArcFace weights the encoder has random weights: the similarity then says nothing about
identity, and every result and message says so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)

MISMATCH_ACTIONS = ("warn", "refuse", "off")
DEFAULT_THRESHOLD = 0.2
RANDOM_WEIGHTS_NOTE = (
    "identity encoder has random weights (no ArcFace weights given): similarity is meaningless"
)


class ReferenceMismatchError(ValueError):
    """A reference looks like a different person and the checker was told to refuse."""

    def __init__(self, checks: list[IdentityCheck]):
        self.checks = checks
        super().__init__("; ".join(check.message() for check in checks))


@dataclass
class IdentityCheck:
    """Result of comparing one face with its references.

    Attributes:
        similarities: Cosine similarity with each reference, in reference order.
        threshold: Below this, a reference is taken for a different person.
        meaningful: False when the encoder has random weights.
        face: Name of the face (file name, or ``face <i>``) for messages.
        references: Names of the references.
    """

    similarities: list[float]
    threshold: float
    meaningful: bool = True
    face: str = "face"
    references: list[str] = field(default_factory=list)

    @property
    def mismatched(self) -> list[int]:
        """Indices of the references below the threshold."""
        return [i for i, sim in enumerate(self.similarities) if sim < self.threshold]

    @property
    def same_person(self) -> bool:
        """Whether every reference reaches the threshold."""
        return not self.mismatched

    def message(self) -> str:
        """One line for people; names the face, the suspicious references and the numbers."""
        names = self.references or [f"reference {i}" for i in range(len(self.similarities))]
        if self.same_person:
            sims = ", ".join(f"{sim:.3f}" for sim in self.similarities)
            text = f"{self.face}: reference identity similarity {sims} (threshold {self.threshold})"
        else:
            parts = ", ".join(f"{names[i]} ({self.similarities[i]:.3f})" for i in self.mismatched)
            text = (
                f"{self.face}: reference may show a different person: {parts} below the identity "
                f"threshold {self.threshold}"
            )
        if not self.meaningful:
            text += f" [{RANDOM_WEIGHTS_NOTE}]"
        return text


class ReferenceChecker:
    """Compares faces with their references by ArcFace identity similarity.

    Args:
        identity_weights: ArcFace weights (path or ``hf://owner/repo/file``) for
            ``IdentityEncoder.from_path``. None: random weights, meaningless numbers (logged).
        threshold: Similarity below which a reference is taken for another person.
        on_mismatch: ``"warn"`` (log a warning), ``"refuse"`` (raise :class:`ReferenceMismatchError`)
            or ``"off"`` (do not compute anything).
        encoder: A ready ``IdentityEncoder`` (or any module mapping ``(B, 3, H, W)`` in ``[-1, 1]`` to
            unit-length embeddings); overrides ``identity_weights``.
        meaningful: Whether ``encoder``'s weights are real (default: True for a given encoder,
            False when built without ``identity_weights``).
        device: Where the encoder runs.
    """

    def __init__(
        self,
        identity_weights: str | os.PathLike | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        on_mismatch: str = "warn",
        encoder: torch.nn.Module | None = None,
        meaningful: bool | None = None,
        device: str | torch.device = "cpu",
    ):
        if on_mismatch not in MISMATCH_ACTIONS:
            raise ValueError(f"on_mismatch must be one of {MISMATCH_ACTIONS}, got {on_mismatch!r}")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        self.threshold = float(threshold)
        self.on_mismatch = on_mismatch
        self.identity_weights = identity_weights
        self.device = torch.device(device)
        self._encoder = encoder
        if meaningful is None:
            meaningful = encoder is not None or identity_weights is not None
        self.meaningful = meaningful

    @property
    def enabled(self) -> bool:
        return self.on_mismatch != "off"

    @property
    def encoder(self) -> torch.nn.Module:
        """The identity encoder, built at first use."""
        if self._encoder is None:
            from ented.identity import IdentityEncoder

            self._encoder = IdentityEncoder.from_path(
                None if self.identity_weights is None else os.fspath(self.identity_weights)
            )
        return self._encoder.to(self.device).eval()

    def to(self, device: str | torch.device) -> ReferenceChecker:
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def similarities(self, faces: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """Identity cosine similarity of each face with each of its references.

        Args:
            faces: ``(B, 3, H, W)`` aligned faces in ``[-1, 1]``.
            references: ``(B, K, 3, H', W')`` (or ``(B, 3, H', W')``) aligned references in ``[-1, 1]``.

        Returns:
            ``(B, K)`` similarities in ``[-1, 1]``.
        """
        if references.ndim == 4:
            references = references[:, None]
        batch, k = references.shape[:2]
        encoder = self.encoder
        face_emb = encoder(faces.to(self.device).float())
        ref_emb = encoder(references.flatten(0, 1).to(self.device).float()).view(batch, k, -1)
        return torch.einsum("bd,bkd->bk", face_emb, ref_emb).cpu()

    def check(
        self,
        faces: torch.Tensor,
        references: torch.Tensor,
        face_names: list[str] | None = None,
        reference_names: list[list[str]] | None = None,
    ) -> list[IdentityCheck]:
        """Checks a batch; warns or raises according to ``on_mismatch``.

        Args:
            faces, references: See :meth:`similarities`.
            face_names: For messages, one per face.
            reference_names: For messages, one list per face.

        Returns:
            One :class:`IdentityCheck` per face (empty when the checker is off).

        Raises:
            ReferenceMismatchError: ``on_mismatch="refuse"`` and some reference is below the threshold.
        """
        if not self.enabled:
            return []
        sims = self.similarities(faces, references)
        checks = [
            IdentityCheck(
                similarities=[float(s) for s in row],
                threshold=self.threshold,
                meaningful=self.meaningful,
                face=face_names[i] if face_names else f"face {i}",
                references=list(reference_names[i]) if reference_names else [],
            )
            for i, row in enumerate(sims)
        ]
        self.act(checks)
        return checks

    def act(self, checks: list[IdentityCheck]) -> None:
        """Logs each check; warns for mismatches, or raises when refusing."""
        bad = [check for check in checks if not check.same_person]
        for check in checks:
            if check.same_person:
                logger.debug(check.message())
        if not bad:
            return
        if self.on_mismatch == "refuse":
            raise ReferenceMismatchError(bad)
        for check in bad:
            logger.warning(check.message())
