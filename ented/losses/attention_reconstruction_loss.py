"""Attention reconstruction loss [NTED].

For every distribution layer, the reference and the ground truth are resized to the layer's
extraction and distribution sizes; RGB "textures" are extracted from the reference with the
layer's extraction attention and distributed with its distribution attention; the result is
compared with the resized ground truth by L1. This makes the attention maps semantically
meaningful (the right reference region lands at the right output pixel).
"""

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ented.archs.texture_ops import distribute_rgb, resize


@LOSS_REGISTRY.register()
class ENTEDAttentionReconstructionLoss(nn.Module):
    """L1 between ``gt`` and the reference's colours routed through the network's attention maps.

    Args:
        loss_weight: Weight of the loss [NTED: 15].
        reduction: 'mean' or 'sum' of the per-pixel L1 within a layer.
        layer_reduction: How the layers are combined: 'sum' [NTED adds the layers] or 'mean'.
    """

    def __init__(self, loss_weight: float = 15.0, reduction: str = "mean", layer_reduction: str = "sum"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if layer_reduction not in ("mean", "sum"):
            raise ValueError(f"layer_reduction must be 'mean' or 'sum', got {layer_reduction!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.layer_reduction = layer_reduction

    def forward(
        self, texture_attention: list[tuple[torch.Tensor, torch.Tensor]], ref: torch.Tensor, gt: torch.Tensor
    ) -> torch.Tensor:
        """Computes the loss.

        Args:
            texture_attention: ``aux['texture_attention']`` of ENTED: per distribution layer a pair
                (extraction (B, K, k, h_e, w_e), distribution (B, K*k, h_d, w_d)).
            ref: (B, 3, H, W) or (B, K, 3, H, W), the references given to the network.
            gt: (B, 3, H, W) ground truth.

        Returns:
            Scalar loss (zero when there is no distribution layer).
        """
        if not texture_attention:
            return gt.new_zeros(())
        if ref.ndim == 4:
            ref = ref[:, None]
        losses = []
        for extraction, distribution in texture_attention:
            if extraction.shape[:2] != ref.shape[:2]:
                raise ValueError(
                    f"extraction attention is for (B, K) = {tuple(extraction.shape[:2])} but ref gives "
                    f"{tuple(ref.shape[:2])}"
                )
            pred = distribute_rgb(extraction, distribution, ref)
            target = resize(gt, pred.shape[-2:])
            losses.append(F.l1_loss(pred.float(), target.float(), reduction=self.reduction))
        total = torch.stack(losses).sum() if self.layer_reduction == "sum" else torch.stack(losses).mean()
        return self.loss_weight * total
