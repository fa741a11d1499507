"""Identity similarity between the output and the ground truth or the reference.

Backends. ``backend: arcface`` (default, the standard for papers): ArcFace cosine similarity.
``backend: dlib``: ``1 - Euclidean distance`` of dlib's 128-D face descriptors
(:class:`ented.dlib_identity.DlibFaceDescriptor`, the ``identity`` extra; works offline, no
weights to pass); 1 for identical faces, dlib's same-person distance 0.6 is 0.4 here. Not
comparable with ArcFace numbers or with published results.

ArcFace weights. ``weights_path`` is an insightface iresnet ``backbone.pth`` (or safetensors) file, a
path or ``hf://`` spec (see :mod:`ented.identity`). Without it the metric refuses to run
(``ValueError`` saying where to get the weights), unless ``allow_random_weights: true`` is set:
a random ArcFace is then used, a warning labelled "random weights" is logged, and the numbers
mean nothing (identical faces still score 1).

Caching. Encoders live in the module-level ``IDENTITY_ENCODERS`` dict keyed by
``(weights file or None, crop, arch options, device)``: each is built once per process.
``IDENTITY_ENCODERS.clear()`` frees them.
"""

import logging

import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from ented.hub_weights import resolve_device, resolve_weights
from ented.identity import FFHQ_ARCFACE_CROP, IdentityEncoder
from ented.image_io import bgr_image_to_tensor

logger = logging.getLogger(__name__)

ARCFACE_SOURCE = (
    "insightface's arcface_torch backbone.pth (e.g. ms1mv3_arcface_r50_fp16/backbone.pth, "
    "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch)"
)

# (weights file or None, crop, sorted arch options, device) -> IdentityEncoder.
IDENTITY_ENCODERS: dict = {}


@METRIC_REGISTRY.register()
def calculate_ented_identity_similarity(
    img,
    img2=None,
    against: str = "gt",
    weights_path: str | None = None,
    crop=FFHQ_ARCFACE_CROP,
    arch: dict | None = None,
    device=None,
    allow_random_weights: bool = False,
    backend: str = "arcface",
    **kwargs,
) -> float:
    """Identity similarity (ArcFace cosine, or dlib) of the restored face and the ground truth or the reference.

    Args:
        img: (H, W, 3) BGR uint8, the restored face (FFHQ-aligned).
        img2: (H, W, 3) BGR uint8, the ground truth; used when ``against='gt'``.
        against: ``'gt'`` compares with ``img2``; ``'ref'`` with ``kwargs['ref']``, the
            reference photo the model was given (another photo of the same person).
        weights_path: ArcFace weights file or ``hf://`` spec; required unless ``allow_random_weights``.
        crop: ``(top, left, height, width)`` fractions fed to ArcFace (default: FFHQ-aligned).
        arch: ``ENTEDArcFace`` options; default: read from the weights file (iresnet50 if none).
        device: Where to run; default CUDA, then MPS, then the CPU.
        allow_random_weights: Without ``weights_path``, use a random ArcFace instead of raising.
        backend: ``'arcface'`` or ``'dlib'`` (``1 - `` dlib descriptor distance; ``weights_path``,
            ``crop``, ``arch``, ``device`` and ``allow_random_weights`` are ArcFace's and must be unset).
        **kwargs: Other data from the model: ``ref`` ((H, W, 3) BGR uint8) is read for
            ``against='ref'``; the rest (``better``, ...) is ignored.

    Returns:
        Similarity, higher = same identity: ArcFace cosine in [-1, 1]; dlib ``1 - distance`` (<= 1).

    Raises:
        ValueError: Unknown ``against`` or ``backend``, a missing image, ArcFace options with the dlib
            backend, or (dlib) no face found in an image.
    """
    if against == "gt":
        other = img2
    elif against == "ref":
        other = kwargs.get("ref")
    else:
        raise ValueError(f"against must be 'gt' or 'ref', got {against!r}")
    if other is None:
        raise ValueError(f"identity similarity against {against!r} needs that image, but none was passed")
    if backend == "dlib":
        arcface_options = {"weights_path": weights_path, "arch": arch, "device": device}
        given = [key for key, value in arcface_options.items() if value is not None]
        given += ["crop"] if crop is None or tuple(crop) != FFHQ_ARCFACE_CROP else []
        given += ["allow_random_weights"] if allow_random_weights else []
        if given:
            raise ValueError(f"identity similarity with backend 'dlib' takes no ArcFace options, got {given}")
        return dlib_similarity(img, other, against)
    if backend != "arcface":
        raise ValueError(f"identity similarity backend must be 'arcface' or 'dlib', got {backend!r}")
    device = resolve_device(device)
    encoder = get_identity_encoder(weights_path, crop, arch, device, allow_random_weights)
    with torch.no_grad():
        similarity = encoder.cosine_similarity(
            bgr_image_to_tensor(img, device), bgr_image_to_tensor(other, device)
        )
    return float(similarity.item())


def dlib_similarity(img: np.ndarray, other: np.ndarray, against: str = "gt") -> float:
    """``1 - `` dlib descriptor distance of two FFHQ-aligned BGR uint8 faces (errors name the image)."""
    from ented.dlib_identity import DlibFaceDescriptor

    descriptor = DlibFaceDescriptor(aligned=True)
    restored = descriptor.descriptor(np.ascontiguousarray(img[:, :, ::-1]), "restored face")
    target = descriptor.descriptor(
        np.ascontiguousarray(other[:, :, ::-1]), "ground truth" if against == "gt" else "reference"
    )
    return 1.0 - float(DlibFaceDescriptor.descriptor_distance(restored, target))


def get_identity_encoder(
    weights_path=None,
    crop=FFHQ_ARCFACE_CROP,
    arch: dict | None = None,
    device=None,
    allow_random_weights: bool = False,
):
    """Returns the cached :class:`IdentityEncoder` for this configuration, building it on first use.

    Args:
        weights_path: ArcFace weights file or ``hf://`` spec, or None (random weights, only with
            ``allow_random_weights``).
        crop: See :class:`ented.identity.IdentityEncoder`.
        arch: ``ENTEDArcFace`` options, or None.
        device: Where the encoder lives; default CUDA, then MPS, then the CPU.
        allow_random_weights: Without ``weights_path``, use a random ArcFace instead of raising.

    Raises:
        ValueError: ``weights_path`` is None and random weights were not allowed.
    """
    if weights_path is None and not allow_random_weights:
        raise ValueError(
            "identity similarity needs ArcFace weights: set the metric's weights_path to "
            f"{ARCFACE_SOURCE}; to score with a random ArcFace anyway (meaningless numbers, for "
            "plumbing tests only), set allow_random_weights: true"
        )
    device = resolve_device(device)
    path = None if weights_path is None else resolve_weights(weights_path)
    crop = None if crop is None else tuple(crop)
    arch = dict(arch or {})
    key = (path, crop, tuple(sorted((k, _hashable(v)) for k, v in arch.items())), str(device))
    if key not in IDENTITY_ENCODERS:
        if path is None:
            logger.warning(
                "identity similarity (random weights): no ArcFace weights_path and allow_random_weights "
                "is set: the values are meaningless, never report them"
            )
        IDENTITY_ENCODERS[key] = IdentityEncoder.from_path(path, crop=crop, **arch).to(device)
    return IDENTITY_ENCODERS[key]


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value
