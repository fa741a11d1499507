"""Identity embeddings of FFHQ-aligned faces: a frozen ArcFace behind a crop and a resize.

:class:`IdentityEncoder` is the one way ``ented`` measures identity: the identity loss, the
identity-similarity metric and the restorer's reference check all go through it.

Example::

    encoder = IdentityEncoder.from_path("experiments/pretrained_models/backbone.pth")  # insightface r50
    similarity = encoder.cosine_similarity(restored, gt)  # (B,), 1 = same embedding

The crop. ArcFace networks are trained on 112x112 crops aligned to insightface's 5-point
template; ``ented`` faces are aligned the FFHQ way. Fitting a scale + translation from the
FFHQ 512 five-point template (facexlib's, used by GFPGAN/CodeFormer to align faces) to
insightface's 112 template by least squares gives the box ``FFHQ_ARCFACE_CROP``: rows
0.1195..0.8684 and columns 0.1265..0.8754 of the image, i.e. ``[61:444, 65:448]`` of a 512
face (a 383-pixel square), which is then resized to 112x112. The five FFHQ points then land
1.0 to 2.5 px (at 112) from insightface's, so the crop is close to, not identical with,
insightface's alignment.
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ented.archs.arcface_arch import ENTEDArcFace
from ented.hub_weights import load_weights_file, resolve_weights

logger = logging.getLogger(__name__)

# (top, left, height, width) as fractions of the image side; see the module docstring.
FFHQ_ARCFACE_CROP = (0.1195, 0.1265, 0.7489, 0.7489)


class IdentityEncoder(nn.Module):
    """Frozen ArcFace that maps FFHQ-aligned faces of any size to unit-length identity embeddings.

    Gradients flow to the input faces (so it can drive a loss) but never into the network,
    whose parameters are frozen and which stays in eval mode even under ``.train()``.

    Args:
        arcface: The embedding network (its weights are used as they are).
        crop: ``(top, left, height, width)`` fractions of the face to feed ArcFace, or None to
            resize the whole image. Default: ``FFHQ_ARCFACE_CROP``.

    Shapes:
        forward(faces: (B, 3, H, W) RGB in [-1, 1]) -> (B, embedding_dim), L2-normalised.
    """

    def __init__(self, arcface: ENTEDArcFace, crop: tuple | None = FFHQ_ARCFACE_CROP):
        super().__init__()
        if crop is not None:
            crop = tuple(float(c) for c in crop)
            if len(crop) != 4 or min(crop) < 0 or min(crop[2:]) <= 0:
                raise ValueError(f"crop must be (top, left, height, width) fractions, got {crop}")
            top, left, height, width = crop
            if top + height > 1 + 1e-6 or left + width > 1 + 1e-6:
                raise ValueError(f"crop {crop} reaches outside the image")
        self.crop = crop
        self.arcface = arcface
        self.arcface.requires_grad_(False)
        self.arcface.eval()

    @classmethod
    def from_path(
        cls, weights_path: str | None, crop: tuple | None = FFHQ_ARCFACE_CROP, **arch_options
    ) -> "IdentityEncoder":
        """Builds an encoder from an ArcFace weights file.

        Args:
            weights_path: A ``.pth``/``.pt``/``.safetensors`` state dict in insightface's iresnet
                layout (bare, or nested under ``'params'``/``'state_dict'``; a ``'module.'``
                prefix is removed), a local path or ``hf://owner/repo/filename``. None gives
                random weights and logs a warning: identity numbers are then meaningless.
            crop: See the class.
            **arch_options: ``ENTEDArcFace`` arguments. Those not given are read from the file
                (stage depths, widths, embedding size, input size), so every insightface
                iresnet loads without options.

        Raises:
            FileNotFoundError: The file does not exist.
            ValueError: The file does not fit the network; names the file and the keys.
        """
        if weights_path is None:
            logger.warning(
                "IdentityEncoder: no ArcFace weights given, using random weights; identity "
                "similarities and losses are meaningless (pass weights_path, see docs/metrics.md)"
            )
            return cls(ENTEDArcFace(**arch_options), crop=crop)
        path = resolve_weights(weights_path)
        state_dict = load_weights_file(path)
        options = {**infer_arcface_options(state_dict), **arch_options}  # given options win
        arcface = ENTEDArcFace(**options)
        load_arcface_state_dict(arcface, state_dict, path)
        return cls(arcface, crop=crop)

    @property
    def embedding_dim(self) -> int:
        return self.arcface.config["embedding_dim"]

    def train(self, mode: bool = True) -> "IdentityEncoder":
        """Keeps ArcFace in eval mode: its BatchNorm statistics are part of the pretrained weights."""
        super().train(mode)
        self.arcface.eval()
        return self

    def prepare(self, faces: torch.Tensor) -> torch.Tensor:
        """Crops and resizes faces to ArcFace's input.

        Args:
            faces: (B, 3, H, W) RGB in [-1, 1].

        Returns:
            (B, 3, S, S) with S the network's ``input_size`` (112 for released weights).
        """
        if faces.ndim != 4 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (B, 3, H, W) RGB, got {tuple(faces.shape)}")
        height, width = faces.shape[-2:]
        if self.crop is not None:
            top, left, crop_h, crop_w = self.crop
            y0, x0 = round(top * height), round(left * width)
            y1, x1 = (
                min(height, y0 + max(1, round(crop_h * height))),
                min(width, x0 + max(1, round(crop_w * width))),
            )
            faces = faces[:, :, y0:y1, x0:x1]
        size = self.arcface.input_size
        if tuple(faces.shape[-2:]) != (size, size):
            faces = F.interpolate(
                faces, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return faces

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Embeds faces.

        Args:
            faces: (B, 3, H, W) FFHQ-aligned RGB in [-1, 1].

        Returns:
            (B, embedding_dim) L2-normalised embeddings.
        """
        return F.normalize(self.arcface(self.prepare(faces)), dim=1)

    def cosine_similarity(self, a_faces: torch.Tensor, b_faces: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of the identity embeddings of two batches of faces.

        Args:
            a_faces: (B, 3, H, W) RGB in [-1, 1].
            b_faces: (B, 3, H', W') or (1, 3, H', W') RGB in [-1, 1]; sizes may differ from ``a_faces``.

        Returns:
            (B,) similarities in [-1, 1]; 1 for identical faces.
        """
        return (self(a_faces) * self(b_faces)).sum(dim=1)


def infer_arcface_options(state_dict: dict) -> dict:
    """Reads ``ENTEDArcFace`` arguments (layers, base_channels, embedding_dim, input_size) from its weights.

    Args:
        state_dict: Weights in insightface's iresnet layout.

    Returns:
        Keyword arguments for ``ENTEDArcFace``; empty if the keys are not iresnet's (loading
        into the default network will then report the mismatch).
    """
    try:
        base_channels = state_dict["conv1.weight"].shape[0]
        embedding_dim, fc_inputs = state_dict["fc.weight"].shape
    except KeyError:
        return {}
    layers = []
    for stage in range(1, 5):
        indices = {int(key.split(".")[1]) for key in state_dict if key.startswith(f"layer{stage}.")}
        layers.append(max(indices) + 1 if indices else 0)
    positions = fc_inputs // (base_channels * 8)
    input_size = round(positions**0.5) * 16
    return {
        "layers": tuple(layers),
        "base_channels": base_channels,
        "embedding_dim": embedding_dim,
        "input_size": input_size,
    }


def load_arcface_state_dict(arcface: ENTEDArcFace, state_dict: dict, source: str) -> None:
    """Loads weights strictly, with an error that names the file and the offending keys.

    Args:
        arcface: The network to fill.
        state_dict: Its weights.
        source: Where they came from (a path), for the error message.

    Raises:
        ValueError: Keys are missing, unexpected, or of the wrong shape.
    """
    own = arcface.state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs network {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        inferred = infer_arcface_options(state_dict)
        hint = f"; the file looks like ENTEDArcFace({inferred})" if inferred else ""
        raise ValueError(
            f"ArcFace weights {source} do not fit ENTEDArcFace({arcface.config}): "
            f"missing keys {_shorten(missing)}, unexpected keys {_shorten(unexpected)}, "
            f"shape mismatches {_shorten(mismatched)}{hint}"
        )
    arcface.load_state_dict(state_dict, strict=False)  # strict apart from num_batches_tracked


def _shorten(items: list, limit: int = 8) -> str:
    if len(items) <= limit:
        return str(items)
    return f"{items[:limit]} and {len(items) - limit} more"
