"""Identity loss: one minus the ArcFace cosine similarity of the output and the ground truth."""

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ented.identity import FFHQ_ARCFACE_CROP, IdentityEncoder


@LOSS_REGISTRY.register()
class ENTEDIdentityLoss(nn.Module):
    """``loss_weight * mean(1 - cos(ArcFace(out), ArcFace(gt)))`` with a frozen ArcFace.

    Gradients reach ``out`` (and ``gt`` if it requires them) but never ArcFace's parameters,
    which stay frozen and in eval mode.

    Args:
        loss_weight: Weight of the term (default 10: GFPGAN's identity weight; ENTED's paper
            gives none).
        weights_path: ArcFace weights (insightface iresnet ``backbone.pth`` or safetensors), a
            local path or ``hf://owner/repo/filename``. None: random weights, with a warning;
            the loss is then meaningless, useful only for plumbing tests.
        crop: ``(top, left, height, width)`` fractions of the face fed to ArcFace; the default
            suits FFHQ-aligned faces (see :mod:`ented.identity`). None resizes the whole face.
        reduction: ``'mean'`` or ``'sum'`` over the batch, or ``'none'`` for a (B,) tensor.
        **arch_options: ``ENTEDArcFace`` arguments (``layers``, ``base_channels``,
            ``embedding_dim``, ``input_size``); read from the weights file when omitted.

    Shapes:
        forward(out: (B, 3, H, W), gt: (B, 3, H, W), both RGB in [-1, 1]) -> scalar.
    """

    def __init__(
        self,
        loss_weight: float = 10.0,
        weights_path: str | None = None,
        crop: tuple | None = FFHQ_ARCFACE_CROP,
        reduction: str = "mean",
        **arch_options,
    ):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.encoder = IdentityEncoder.from_path(weights_path, crop=crop, **arch_options)

    def forward(self, out: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Computes the weighted identity loss.

        Args:
            out: (B, 3, H, W) restored faces, RGB in [-1, 1].
            gt: (B, 3, H, W) ground-truth faces, RGB in [-1, 1].

        Returns:
            The weighted loss: a scalar, or (B,) with ``reduction='none'``.
        """
        loss = 1 - self.encoder.cosine_similarity(out, gt)
        if self.reduction == "mean":
            loss = loss.mean()
        elif self.reduction == "sum":
            loss = loss.sum()
        return self.loss_weight * loss
