"""Reference attention reconstruction loss: NTED's attention-reconstruction idea for the dense reference attention.

For every dense reference attention (:mod:`ented.archs.reference_attention`), the references are
resized to the attention's scale and read through its attention maps -- each position takes the
colours of the reference positions it attends to -- and the result is compared with the resized
ground truth by L1. The attention is thereby trained directly to find, for every position, the
place in the reference that shows the same point of the face (the moles land where they belong),
instead of only through the decoder. [NTED supervises its extraction/distribution attention the
same way; see :mod:`ented.losses.attention_reconstruction_loss`.]
"""

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ented.archs.reference_attention import warp_with_attention
from ented.archs.texture_ops import resize


@LOSS_REGISTRY.register()
class ENTEDReferenceAttentionLoss(nn.Module):
    """L1 between ``gt`` and the references read through the network's dense reference attention.

    Args:
        loss_weight: Weight of the loss [default: 1, summed over the attention scales].
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(
        self, reference_attention: dict, ref: torch.Tensor, gt: torch.Tensor, window: int
    ) -> torch.Tensor:
        """Computes the loss.

        Args:
            reference_attention: ``aux['reference_attention']`` of ENTED: {res: attention}.
            ref: (B, 3, H, W) or (B, K, 3, H, W), the references given to the network.
            gt: (B, 3, H, W) ground truth.
            window: the network's ``reference_attention_window``.

        Returns:
            Scalar loss (zero without reference attention).
        """
        if not reference_attention:
            return gt.new_zeros(())
        if ref.ndim == 4:
            ref = ref[:, None]
        losses = []
        for res, attention in reference_attention.items():
            refs = resize(ref.flatten(0, 1), (res, res)).unflatten(0, ref.shape[:2])
            pred = warp_with_attention(attention, refs, window)
            losses.append(F.l1_loss(pred.float(), resize(gt, (res, res)).float()))
        return self.loss_weight * torch.stack(losses).sum()
