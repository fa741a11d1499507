"""``ENTEDRestorer``: inference only -- align, check the reference, restore, paste back.

    restorer = ENTEDRestorer.from_pretrained("owner/ented-512")       # or a folder, or .pth/.safetensors
    face = restorer.restore("blurry_aligned.png", "reference.png")    # aligned faces
    photo = restorer.restore("old_photo.jpg", "reference.jpg", aligned=False)  # detect, align, paste back

Images are RGB ``uint8`` (:mod:`ented.image_io`); ``restore`` gives back the kind it was given
(:mod:`ented.restoration.any_input`); :meth:`~ENTEDRestorer.restore_aligned` and
:meth:`~ENTEDRestorer.restore_photo` return the details (:mod:`ented.restoration.results`). With
``reference_check="refuse"`` a face whose reference looks like another person is left unrestored
and marked in the result; nothing raises in the middle of a batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ented.face_alignment import align_face, landmarks_look_aligned, paste_faces
from ented.hub_weights import resolve_device
from ented.image_io import ImageLike, describe, from_network, load_image, resize, to_network
from ented.restoration import any_input, pretrained
from ented.restoration.face_detection import FaceDetector, build_detector, select_faces
from ented.restoration.reference_check import IdentityCheck, ReferenceChecker
from ented.restoration.results import AlignedResult, NoFaceError, PhotoResult, RestoredFace

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FACE_SELECTIONS = ("all", "largest", "center")  # see face_detection.select_faces


class ENTEDRestorer(pretrained.RestorerWeights):
    """Restores faces with ENTED and one or several references of the same person.

    Loading and saving (``from_pretrained``, ``load``, ...) come from :class:`pretrained.RestorerWeights`.

    Args:
        net: An ENTED network (any module ``net(lq, ref)`` with ``out_size`` and ``config``).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast; the weights stay float32).
        batch_size: Faces per forward pass.
        reference_check: ``"warn"`` (default), ``"refuse"`` (leave the face unrestored, marked), ``"off"``,
            or a ready :class:`ReferenceChecker`.
        identity_weights, identity_threshold, identity_backend: The check's ArcFace weights (path or
            ``hf://``; without them dlib's descriptor, docs/identity.md), threshold and backend
            (defaults: see :class:`ReferenceChecker`).
        detector, detector_weights: ``"mtcnn"`` (facenet-pytorch, offline), ``"retinaface"`` (facexlib,
            weights folder) or a :class:`FaceDetector`; built at first use, for whole photos only.
        face_selection: In whole photos, restore ``"all"`` faces, only the ``"largest"``, or only the
            ``"center"`` one (box centre nearest the photo's, facexlib's ``only_center_face``).
        background: ``(photo, upscale) -> enlarged photo`` for whole photos (e.g.
            :class:`~ented.restoration.background.RealESRGANUpsampler`); default: Lanczos, as facexlib.
        reference_strength: ``s`` in [0, 1], passed to ENTED's ``forward``: E_ref's features become
            ``(1 - s) E_ref(lq) + s E_ref(ref)``; 0 is exactly no reference, 1 (default) the full one.
    """

    def __init__(
        self,
        net: nn.Module,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        batch_size: int = 4,
        reference_check: str | ReferenceChecker = "warn",
        identity_weights: str | os.PathLike | None = None,
        identity_threshold: float | None = None,
        identity_backend: str | None = None,
        detector: str | FaceDetector = "mtcnn",
        detector_weights: str | os.PathLike | None = None,
        face_selection: str = "all",
        background: Callable[[np.ndarray, float], np.ndarray] | None = None,
        reference_strength: float = 1.0,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if face_selection not in FACE_SELECTIONS:
            raise ValueError(f"face_selection must be one of {FACE_SELECTIONS}, got {face_selection!r}")
        if not 0.0 <= reference_strength <= 1.0:
            raise ValueError(f"reference_strength must be in [0, 1], got {reference_strength}")
        self.reference_strength = float(reference_strength)
        self.device = resolve_device(device)
        self.precision = precision
        if precision == "fp16" and self.device.type == "cpu":
            logger.info("fp16 on the CPU is slow and little tested; bf16 is the usual CPU choice")
        self.net = net.eval().to(self.device)
        self.size = int(getattr(net, "out_size", None) or net.config["out_size"])
        self.batch_size = batch_size
        self.checker = (
            reference_check.to(self.device)
            if isinstance(reference_check, ReferenceChecker)
            else ReferenceChecker(
                identity_weights, identity_threshold, reference_check, None, identity_backend, self.device
            )
        )
        self._detector = detector if isinstance(detector, FaceDetector) else None
        self.detector_name = detector if isinstance(detector, str) else detector.name
        self.detector_weights = detector_weights
        self.face_selection = face_selection
        self.background = background
        self.resized: list[str] = []  # names of the inputs resized to the network size

    # ------------------------------------------------------------------ aligned faces

    @torch.no_grad()
    def forward(self, lq: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Runs the network on one batch: ``lq`` ``(B, 3, S, S)``, ``ref`` None, ``(B, 3, S, S)`` or
        ``(B, K, 3, S, S)``, all in ``[-1, 1]``; returns ``(B, 3, S, S)`` float32 in ``[-1, 1]``."""
        strength = {} if self.reference_strength == 1.0 else {"reference_strength": self.reference_strength}
        with self._precision():
            out = self.net(lq.to(self.device), None if ref is None else ref.to(self.device), **strength)
        return out.float().clamp(-1.0, 1.0)

    def prepare_aligned(self, image: ImageLike, name: str | None = None, what: str = "face") -> np.ndarray:
        """Reads an aligned face as an ``(S, S, 3)`` array, resized if needed (listed in ``resized``).

        Raises ``ImageReadError`` when it cannot be read, ``ValueError`` when it is not square.
        """
        name = name or describe(image, None)
        array = load_image(image, name)
        height, width = array.shape[:2]
        if height != width:
            raise ValueError(
                f"{name}: {what} is {width}x{height}, not square: is it an aligned face? "
                "(use whole-photo mode for photos)"
            )
        if height != self.size:
            logger.debug("%s: %s is %dx%d; resized to %dx%d", name, what, width, height, self.size, self.size)
            self.resized.append(name)
            array = resize(array, self.size)
        return array

    def restore_aligned(
        self,
        faces: list[ImageLike],
        references: list[list[ImageLike] | None] | None = None,
        face_names: list[str] | None = None,
        reference_names: list[list[str]] | None = None,
    ) -> AlignedResult:
        """Restores aligned faces, batched.

        Args:
            faces: Aligned faces (square; resized to the network size if needed).
            references: One entry per face: a list of its aligned references, or None (reference-free:
                the network uses the face itself). None: none for all.
            face_names, reference_names: For messages (default: the path, or ``face <i>``).
        """
        return self.restore_prepared(
            *any_input.read_aligned(self, faces, references, face_names, reference_names)
        )

    def restore_prepared(
        self,
        lq: list[np.ndarray],
        refs: list[list[np.ndarray] | None],
        face_names: list[str],
        reference_names: list[list[str]],
    ) -> AlignedResult:
        """:meth:`restore_aligned` for faces and references already ``(S, S, 3)`` (no reading, no resizing)."""
        outputs: list[np.ndarray | None] = [None] * len(lq)
        checks: list[IdentityCheck] = []
        for indices in any_input.batches(refs, self.batch_size):
            ref_batch = None
            if refs[indices[0]]:
                ref_batch = torch.stack([to_network(refs[i], self.device) for i in indices])
                if self.checker.enabled:
                    batch_checks = self.checker.check(
                        to_network([lq[i] for i in indices], self.device),
                        ref_batch,
                        [face_names[i] for i in indices],
                        [reference_names[i] for i in indices],
                    )
                    checks += batch_checks
                    kept = [n for n, check in enumerate(batch_checks) if not check.refused]
                    indices, ref_batch = [indices[n] for n in kept], ref_batch[kept]
            if indices:
                lq_batch = to_network([lq[i] for i in indices], self.device)
                if ref_batch is not None:
                    self._report_gate(
                        lq_batch,
                        ref_batch,
                        [face_names[i] for i in indices],
                        [reference_names[i] for i in indices],
                    )
                out = self.forward(lq_batch, ref_batch)
                for i, face in zip(indices, from_network(out)):
                    outputs[i] = face
        return AlignedResult(faces=outputs, checks=checks)

    def _precision(self) -> contextlib.AbstractContextManager:
        """The autocast context of ``precision`` (none for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    @torch.no_grad()
    def _report_gate(
        self, lq: torch.Tensor, refs: torch.Tensor, face_names: list, reference_names: list
    ) -> None:
        """Logs a warning for each reference that the network's reference gate (``reference_gate``)
        will set aside as another person's: the face is then restored without it. ``refs``:
        (B, K, 3, S, S); the gate runs at the network's precision, so it decides as in :meth:`forward`."""
        gate = getattr(self.net, "reference_gate", None)
        if gate is None:
            return
        with self._precision():
            logits = gate(lq, refs).float()
        for face, names, row in zip(face_names, reference_names, logits.tolist()):
            for name, logit in zip(names, row):
                if logit < 0:
                    logger.warning(
                        "%s: the network's reference gate judges %s to show another person "
                        "(p = %.2f); the face is restored without it",
                        face,
                        name,
                        1 / (1 + math.exp(-logit)),
                    )

    # ------------------------------------------------------------------ whole photos

    @property
    def detector(self) -> FaceDetector:
        """The face detector, built at first use."""
        if self._detector is None:
            self._detector = build_detector(self.detector_name, self.device, self.detector_weights)
        return self._detector

    def align_reference(
        self, reference: ImageLike, aligned: bool | None = None, name: str | None = None
    ) -> np.ndarray:
        """Returns a reference as an aligned ``(S, S, 3)`` face.

        ``aligned``: True: already aligned (only resized). False: detect and align its largest face.
        None (auto): a square image whose detected landmarks already sit on the FFHQ template (or where
        no face is found) is taken as aligned; anything else is aligned. Raises :class:`NoFaceError` when
        a reference that must be aligned shows no face.
        """
        name = name or describe(reference, None)
        array = load_image(reference, name)
        if aligned:
            return self.prepare_aligned(array, name, "reference")
        faces = self.detector.detect(array)
        if aligned is None and array.shape[0] == array.shape[1]:
            if not faces:
                logger.info("%s: no face detected in a square reference; taken as already aligned", name)
            if not faces or landmarks_look_aligned(faces[0].landmarks, array.shape[0]):
                return self.prepare_aligned(array, name, "reference")
        if not faces:
            raise NoFaceError(f"{name}: no face found in the reference")
        return align_face(array, faces[0].landmarks, self.size)[0]

    def restore_photo(
        self,
        photo: ImageLike,
        references: list[ImageLike] | ImageLike | None = None,
        references_aligned: bool | None = None,
        upscale: float = 1.0,
        name: str | None = None,
        reference_names: list[str] | None = None,
    ) -> PhotoResult:
        """Detects the faces of a photo, restores them with the references and pastes them back.

        ``references``: one or several, shared by all faces; photos or aligned faces (see
        :meth:`align_reference`). ``upscale``: the output is the photo enlarged this many times, the
        faces pasted at full resolution. Raises :class:`NoFaceError` when the photo, or a reference
        that must be aligned, shows no face.
        """
        name = name or describe(photo, None)
        refs = any_input.as_list(references)
        reference_names = reference_names or [
            any_input.name_of(r, f"reference {j}") for j, r in enumerate(refs)
        ]
        aligned = [self.align_reference(r, references_aligned, n) for r, n in zip(refs, reference_names)]
        results = self.restore_photos_prepared(
            [load_image(photo, name)], aligned, upscale, [name], reference_names
        )
        if not results[0].faces:
            raise NoFaceError(f"{name}: no face found")
        return results[0]

    def restore_photos_prepared(
        self,
        images: list[np.ndarray],
        references: list[np.ndarray],
        upscale: float = 1.0,
        names: list[str] | None = None,
        reference_names: list[str] | None = None,
        choose: Callable[[np.ndarray, str], tuple[list[np.ndarray], list[str]]] | None = None,
    ) -> list[PhotoResult]:
        """:meth:`restore_photo` for RGB ``uint8`` photos (a video's frames) sharing references already
        aligned ``(S, S, 3)``, their faces restored in batches across photos. A photo without a face
        comes back enlarged all the same, with ``faces == []`` (no error). ``choose(crop, face name)``,
        if given, returns each face's own ``(references, names)`` instead (e.g. a reference picker)."""
        if not (math.isfinite(upscale) and upscale >= 1.0):
            raise ValueError(f"upscale must be a finite number >= 1, got {upscale}")
        names = names or [f"photo {i}" for i in range(len(images))]
        reference_names = reference_names or [f"reference {j}" for j in range(len(references))]
        faces, face_names = [], []
        for image, name in zip(images, names):
            found = select_faces(self.detector.detect(image), self.face_selection, image.shape)
            faces.append([(det, *align_face(image, det.landmarks, self.size)) for det in found])
            face_names += [name if len(found) == 1 else f"{name} (face {i})" for i in range(len(found))]
        crops = [crop for detected in faces for _, crop, _ in detected]
        choose = choose or (lambda crop, name: (references, reference_names))
        chosen = [choose(crop, name) for crop, name in zip(crops, face_names)]
        refs, ref_names = [refs or None for refs, _ in chosen], [names for _, names in chosen]
        result = self.restore_prepared(crops, refs, face_names, ref_names)
        restored, checks = iter(zip(result.faces, face_names)), {check.face: check for check in result.checks}
        results = []
        for image, detected in zip(images, faces):
            mine = [RestoredFace(d, a, c, o, checks.get(n)) for (d, c, a), (o, n) in zip(detected, restored)]
            kept = [(f.restored, f.affine) for f in mine if f.restored is not None]  # refused: not pasted
            bg = None if self.background is None else self.background(image, upscale)
            pasted = paste_faces(image, [f for f, _ in kept], [a for _, a in kept], None, upscale, bg)
            results.append(PhotoResult(image=pasted, faces=mine, references=references))
        return results

    # ------------------------------------------------------------------ one call for everything

    def restore(self, images: Any, references: Any = None, aligned: bool = True, references_aligned=None):
        """Restores one image or a batch of any kind, giving back that kind (see :func:`any_input.restore_any`;
        raises ``ReferenceMismatchError`` for a refused reference, after the whole batch)."""
        return any_input.restore_any(self, images, references, aligned, references_aligned)
