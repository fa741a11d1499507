"""``ENTEDRestorer``: restore faces with a reference, from Python.

Example::

    from ented.restoration import ENTEDRestorer

    restorer = ENTEDRestorer.from_pretrained("owner/ented-512")       # or a folder, or .pth/.safetensors
    face = restorer.restore("blurry_aligned.png", "reference.png")    # aligned 512x512 faces
    photo = restorer.restore("old_photo.jpg", "reference.jpg", aligned=False)  # detect, align, paste back

Images are RGB. ``restore`` gives back what it was given: a ``uint8`` ``(H, W, 3)`` array for an array or a
path, a ``PIL.Image`` for a ``PIL.Image``, a float ``[0, 1]`` tensor for a tensor; a list or a batch for
a list or a batch. :meth:`ENTEDRestorer.restore_aligned` and :meth:`ENTEDRestorer.restore_photo`
return the details (identity checks, detected faces, crops).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ented.hub_weights import resolve_device
from ented.image_io import (
    ImageLike,
    describe,
    from_network,
    load_image,
    resize,
    to_network,
)
from ented.restoration import pretrained
from ented.restoration.face_alignment import align_face, landmarks_look_aligned, paste_faces
from ented.restoration.face_detection import FaceDetection, FaceDetector, build_detector
from ented.restoration.reference_check import IdentityCheck, ReferenceChecker

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FACE_SELECTIONS = ("all", "largest")


class NoFaceError(ValueError):
    """No face was found in a photo (or in a reference that needed aligning)."""


@dataclass
class AlignedResult:
    """What :meth:`ENTEDRestorer.restore_aligned` returns.

    Attributes:
        faces: Restored ``(S, S, 3)`` uint8 faces, in input order.
        checks: The reference identity check of each face (empty when the check is off or a face has no
            reference).
    """

    faces: list[np.ndarray]
    checks: list[IdentityCheck] = field(default_factory=list)


@dataclass
class RestoredFace:
    """One face of a photo.

    Attributes:
        detection: Box, landmarks and score from the detector.
        affine: ``(2, 3)`` photo-to-crop transform.
        crop: The aligned input face ``(S, S, 3)``.
        restored: The restored face ``(S, S, 3)``.
        check: Its reference identity check, if any.
    """

    detection: FaceDetection
    affine: np.ndarray
    crop: np.ndarray
    restored: np.ndarray
    check: IdentityCheck | None = None


@dataclass
class PhotoResult:
    """What :meth:`ENTEDRestorer.restore_photo` returns.

    Attributes:
        image: The photo with its faces restored, ``(H * upscale, W * upscale, 3)`` uint8.
        faces: The restored faces, largest first.
        references: The aligned references that were used (``(S, S, 3)`` uint8).
    """

    image: np.ndarray
    faces: list[RestoredFace]
    references: list[np.ndarray] = field(default_factory=list)

    @property
    def checks(self) -> list[IdentityCheck]:
        return [face.check for face in self.faces if face.check is not None]


class ENTEDRestorer:
    """Restores faces with ENTED and one or several references of the same person.

    Args:
        net: An ENTED network (any module ``net(lq, ref)`` with ``out_size`` and ``config``).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast; the weights stay float32).
        batch_size: Faces per forward pass.
        reference_check: ``"warn"`` (default), ``"refuse"`` or ``"off"``, or a ready
            :class:`ReferenceChecker`.
        identity_weights: ArcFace weights for the check (path or ``hf://owner/repo/file``); without them
            the check uses dlib's face descriptor (the ``identity`` extra; docs/identity.md).
        identity_threshold: Identity similarity below which a reference is taken for another person
            (default: the backend's, see :class:`ReferenceChecker`).
        identity_backend: ``"dlib"`` or ``"arcface"``; default: arcface with ``identity_weights``, else dlib.
        detector: ``"mtcnn"`` (facenet-pytorch, offline), ``"retinaface"`` (facexlib), or a
            :class:`FaceDetector`. Built at first use; only whole-photo restoration needs it.
        detector_weights: Folder with the RetinaFace weights.
        face_selection: In whole photos, restore ``"all"`` faces or only the ``"largest"``.
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
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if face_selection not in FACE_SELECTIONS:
            raise ValueError(f"face_selection must be one of {FACE_SELECTIONS}, got {face_selection!r}")
        self.device = resolve_device(device)
        self.precision = precision
        if precision == "fp16" and self.device.type == "cpu":
            logger.info("fp16 on the CPU is slow and little tested; bf16 is the usual CPU choice")
        self.net = net.eval().to(self.device)
        self.size = int(getattr(net, "out_size", None) or net.config["out_size"])
        self.batch_size = batch_size
        if isinstance(reference_check, ReferenceChecker):
            self.checker = reference_check.to(self.device)
        else:
            self.checker = ReferenceChecker(
                identity_weights=identity_weights,
                threshold=identity_threshold,
                on_mismatch=reference_check,
                backend=identity_backend,
                device=self.device,
            )
        self._detector = detector if isinstance(detector, FaceDetector) else None
        self.detector_name = detector if isinstance(detector, str) else detector.name
        self.detector_weights = detector_weights
        self.face_selection = face_selection

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        subfolder: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        **restorer_kwargs: Any,
    ) -> ENTEDRestorer:
        """Loads ``config.json`` + ``model.safetensors`` from a folder, a ``.safetensors`` file or a Hub repo.

        ``restorer_kwargs`` go to the constructor (device, precision, ...).
        """
        net = pretrained.from_pretrained(
            name_or_path, revision, cache_dir, subfolder, token, local_files_only, force_download
        )
        return cls(net, **restorer_kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike,
        config: dict | str | os.PathLike | None = None,
        param_key: str | None = "params_ema",
        **restorer_kwargs: Any,
    ) -> ENTEDRestorer:
        """Loads a BasicSR checkpoint (``net_g_<iter>.pth``).

        Args:
            checkpoint: The ``.pth`` file.
            config: The architecture: a dict of ENTED arguments, a BasicSR option YAML or a
                ``config.json``. Default: the option YAML in the checkpoint's experiment folder.
            param_key: ``"params_ema"`` (falls back to ``"params"``), ``"params"``, or None for a bare
                state dict.
        """
        return cls(pretrained.load_basicsr_checkpoint(checkpoint, config, param_key), **restorer_kwargs)

    @classmethod
    def load(
        cls,
        weights: str | os.PathLike,
        config: dict | str | os.PathLike | None = None,
        param_key: str | None = "params_ema",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        **restorer_kwargs: Any,
    ) -> ENTEDRestorer:
        """Loads from whatever ``weights`` is: ``.pth``, ``.safetensors``, a folder (pretrained or a BasicSR
        experiment) or a Hub repo id. See :func:`ented.restoration.pretrained.load_network`."""
        net = pretrained.load_network(
            weights,
            config,
            param_key,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        return cls(net, **restorer_kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike):
        """Writes ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` loads them back."""
        return pretrained.save_pretrained(self.net, save_directory)

    def push_to_hub(self, repo_id: str, **kwargs: Any):
        """Uploads the network to a Hub model repo; see :func:`ented.restoration.pretrained.push_to_hub`."""
        return pretrained.push_to_hub(self.net, repo_id, **kwargs)

    # ------------------------------------------------------------------ running the network

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    @torch.no_grad()
    def forward(self, lq: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Runs the network on one batch.

        Args:
            lq: ``(B, 3, S, S)`` aligned faces in ``[-1, 1]``.
            ref: None, ``(B, 3, S, S)`` or ``(B, K, 3, S, S)`` aligned references in ``[-1, 1]``.

        Returns:
            ``(B, 3, S, S)`` float32 in ``[-1, 1]``.
        """
        lq = lq.to(self.device)
        ref = None if ref is None else ref.to(self.device)
        with self._autocast():
            out = self.net(lq, ref)
        return out.float().clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ aligned faces

    def prepare_aligned(self, image: ImageLike, name: str | None = None, what: str = "face") -> np.ndarray:
        """Reads an aligned face as an ``(S, S, 3)`` array: resized (logged) if needed.

        Raises:
            ImageReadError: It cannot be read.
            ValueError: It is not square (then it is hardly an aligned face).
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
            logger.info("%s: %s is %dx%d; resized to %dx%d", name, what, width, height, self.size, self.size)
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
            faces: Aligned faces (square; resized to the network size with a logged notice).
            references: One entry per face: a list of its aligned references (one or several), or
                None for reference-free restoration (the network then uses the face itself). None:
                reference-free for all.
            face_names: For messages (default ``face <i>`` or the path).
            reference_names: For messages.

        Returns:
            :class:`AlignedResult`, faces in input order.

        Raises:
            ReferenceMismatchError: The check is set to refuse and a reference looks like another person.
        """
        if references is None:
            references = [None] * len(faces)
        if len(references) != len(faces):
            raise ValueError(f"got {len(faces)} faces but {len(references)} reference entries")
        face_names = face_names or [
            describe(face, None) if _is_path(face) else f"face {i}" for i, face in enumerate(faces)
        ]
        if reference_names is None:
            reference_names = [
                [describe(r, None) if _is_path(r) else f"reference {j}" for j, r in enumerate(refs or [])]
                for refs in references
            ]
        lq = [self.prepare_aligned(face, face_names[i], "face") for i, face in enumerate(faces)]
        refs = [
            None
            if not entry
            else [self.prepare_aligned(r, reference_names[i][j], "reference") for j, r in enumerate(entry)]
            for i, entry in enumerate(references)
        ]
        return self._restore_arrays(lq, refs, face_names, reference_names)

    def _restore_arrays(
        self,
        lq: list[np.ndarray],
        refs: list[list[np.ndarray] | None],
        face_names: list[str],
        reference_names: list[list[str]],
    ) -> AlignedResult:
        outputs: list[np.ndarray | None] = [None] * len(lq)
        checks: list[IdentityCheck] = []
        for indices in self._batches(refs):
            lq_batch = to_network([lq[i] for i in indices], self.device)
            k = len(refs[indices[0]] or [])
            ref_batch = None
            if k:
                ref_batch = torch.stack([to_network(refs[i], self.device) for i in indices])
                if self.checker.enabled:
                    checks += self.checker.check(
                        lq_batch,
                        ref_batch,
                        [face_names[i] for i in indices],
                        [reference_names[i] for i in indices],
                    )
            for i, out in zip(indices, from_network(self.forward(lq_batch, ref_batch))):
                outputs[i] = out
        return AlignedResult(faces=outputs, checks=checks)

    def _batches(self, refs: list[list[np.ndarray] | None]) -> list[list[int]]:
        """Consecutive groups of at most ``batch_size`` faces with the same number of references."""
        batches: list[list[int]] = []
        for i, entry in enumerate(refs):
            k = len(entry or [])
            if batches and len(batches[-1]) < self.batch_size and len(refs[batches[-1][0]] or []) == k:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

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

        Args:
            reference: A photo or an aligned face.
            aligned: True: already aligned (only resized). False: detect and align its largest face.
                None (auto): a square image whose detected landmarks already sit on the FFHQ template
                (or where no face is found) is taken as aligned; anything else is aligned.
            name: For messages.

        Raises:
            NoFaceError: A reference that must be aligned shows no face.
        """
        name = name or describe(reference, None)
        array = load_image(reference, name)
        height, width = array.shape[:2]
        if aligned:
            return self.prepare_aligned(array, name, "reference")
        faces = self.detector.detect(array)
        if aligned is None and height == width:
            if not faces:
                logger.info("%s: no face detected in a square reference; taken as already aligned", name)
                return self.prepare_aligned(array, name, "reference")
            if landmarks_look_aligned(faces[0].landmarks, height):
                return self.prepare_aligned(array, name, "reference")
        if not faces:
            raise NoFaceError(f"{name}: no face found in the reference")
        crop, _ = align_face(array, faces[0].landmarks, self.size)
        return crop

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

        Args:
            photo: The photo.
            references: One reference or a list of several (all faces of the photo use them), photos
                or aligned faces (see ``references_aligned``); None: reference-free.
            references_aligned: See :meth:`align_reference`.
            upscale: Scale the photo by this factor (Lanczos) before pasting faces back, so small faces
                keep the restored detail.
            name: For messages.
            reference_names: For messages.

        Raises:
            NoFaceError: No face in the photo, or in a reference that must be aligned.
            ReferenceMismatchError: The check is set to refuse and a reference looks like another person.
        """
        if not (math.isfinite(upscale) and upscale >= 1.0):
            raise ValueError(f"upscale must be a finite number >= 1, got {upscale}")
        name = name or describe(photo, None)
        image = load_image(photo, name)
        ref_list = _as_list(references)
        reference_names = reference_names or [
            describe(r, None) if _is_path(r) else f"reference {j}" for j, r in enumerate(ref_list)
        ]
        aligned_refs = [
            self.align_reference(ref, references_aligned, reference_names[j])
            for j, ref in enumerate(ref_list)
        ]
        detections = self.detector.detect(image)
        if not detections:
            raise NoFaceError(f"{name}: no face found")
        if self.face_selection == "largest":
            detections = detections[:1]
        crops, affines = zip(*(align_face(image, det.landmarks, self.size) for det in detections))
        face_names = [name if len(detections) == 1 else f"{name} (face {i})" for i in range(len(detections))]
        result = self._restore_arrays(
            list(crops),
            [aligned_refs or None] * len(crops),
            face_names,
            [reference_names] * len(crops),
        )
        if upscale != 1.0:
            height, width = image.shape[:2]
            image = resize(image, (round(width * upscale), round(height * upscale)))
            to_new = np.diag([image.shape[1] / width, image.shape[0] / height])
            affines = [np.concatenate([a[:, :2] @ np.linalg.inv(to_new), a[:, 2:]], axis=1) for a in affines]
        pasted = paste_faces(image, result.faces, list(affines))
        checks = result.checks or [None] * len(crops)
        faces = [
            RestoredFace(det, affine, crop, restored, check)
            for det, affine, crop, restored, check in zip(detections, affines, crops, result.faces, checks)
        ]
        return PhotoResult(image=pasted, faces=faces, references=aligned_refs)

    # ------------------------------------------------------------------ one call for everything

    def restore(
        self,
        images: Any,
        references: Any = None,
        aligned: bool = True,
        references_aligned: bool | None = None,
    ) -> Any:
        """Restores one image or a batch, giving back the same kind of object.

        Args:
            images: One image (path, ``(H, W, 3)`` array, PIL image, ``(3, H, W)`` tensor), a list of them,
                a ``(B, H, W, 3)`` uint8 array or a ``(B, 3, H, W)`` tensor. Tensors are float in ``[0, 1]``
                (or uint8). Aligned faces when ``aligned`` (default), whole photos otherwise.
            references: For one image: one reference or a list of several. For a batch: one reference
                shared by all, or a list with one entry per image (each a reference or a list of
                references), or a ``(B, K, 3, H, W)`` tensor. None: reference-free.
            aligned: Whether ``images`` are aligned faces (restored directly) or photos (faces are
                detected, aligned, restored and pasted back).
            references_aligned: Photos mode only: see :meth:`align_reference`. In aligned mode the
                references must be aligned faces.

        Returns:
            The restored image(s), in the input's kind: array -> ``uint8`` array, PIL -> PIL, tensor ->
            float ``[0, 1]`` tensor on the CPU, path -> ``uint8`` array; lists and batches alike.
        """
        items, single, kind = _split_inputs(images)
        per_item = _split_references(references, len(items), single)
        if aligned:
            outputs = self.restore_aligned(items, per_item).faces
        else:
            outputs = [
                self.restore_photo(item, refs, references_aligned).image
                for item, refs in zip(items, per_item)
            ]
        return _join_outputs(outputs, single, kind)


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _is_single_image(source: Any) -> bool:
    if isinstance(source, (str, os.PathLike, Image.Image)):
        return True
    if isinstance(source, np.ndarray):
        return source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (1, 3, 4))
    if isinstance(source, torch.Tensor):
        return source.ndim in (2, 3)
    return False


def _as_list(references: Any) -> list:
    if references is None:
        return []
    if _is_single_image(references):
        return [references]
    if isinstance(references, (np.ndarray, torch.Tensor)):
        return list(references)  # (K, ...) stack
    return list(references)


def _split_inputs(images: Any) -> tuple[list, bool, str | list[str]]:
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


def _split_references(references: Any, count: int, single: bool) -> list[list | None]:
    """One list of references (or None) per input item."""
    if references is None:
        return [None] * count
    if single:
        return [_as_list(references) or None]
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
        per_item = [_as_list(entry) or None for entry in references]
    if len(per_item) != count:
        raise ValueError(
            f"{count} images but {len(per_item)} reference entries; give one reference for all, "
            "or one entry per image"
        )
    return per_item


def _join_outputs(outputs: list[np.ndarray], single: bool, kind: str | list[str]) -> Any:
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
