"""Reference attention reconstruction loss: NTED's attention-reconstruction idea for the dense reference attention.

For every dense reference attention (:mod:`ented.archs.reference_attention`), the references are
resized to the attention's scale and read through its attention maps -- each position takes the
colours of the reference positions it attends to -- and the result is compared with the resized
ground truth by L1. The attention is thereby trained directly to find, for every position, the
place in the reference that shows the same point of the face (the moles land where they belong),
instead of only through the decoder. [NTED supervises its extraction/distribution attention the
same way; see :mod:`ented.losses.attention_reconstruction_loss`.]

Two photos of a person differ in lighting and background, which no correspondence can undo; with
``detail_sigma`` both sides are compared after removing their Gaussian blur (sigma in pixels of
the attention's scale), so only the fine detail -- what the attention is for -- is matched.
"""

import math

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from ented.archs.reference_attention import warp_with_attention
from ented.archs.texture_ops import resize


@LOSS_REGISTRY.register()
class ENTEDReferenceAttentionLoss(nn.Module):
    """L1 between ``gt`` and the references read through the network's dense reference attention.

    Args:
        loss_weight: Weight of the loss [default: 1, summed over the attention scales].
        detail_sigma: Compare high-pass images (minus a Gaussian blur of this sigma, in pixels of
            the attention's scale) [default: 1]; None compares colours.
    """

    def __init__(self, loss_weight: float = 1.0, detail_sigma: float | None = 1.0):
        super().__init__()
        if detail_sigma is not None and detail_sigma <= 0:
            raise ValueError(f"detail_sigma must be positive or None, got {detail_sigma}")
        self.loss_weight = loss_weight
        self.detail_sigma = detail_sigma

    def _detail(self, images: torch.Tensor) -> torch.Tensor:
        if self.detail_sigma is None:
            return images
        kernel = 2 * math.ceil(3 * self.detail_sigma) + 1
        return images - gaussian_blur(images, [kernel, kernel], [self.detail_sigma, self.detail_sigma])

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
            target = resize(gt, (res, res))
            losses.append(F.l1_loss(self._detail(pred.float()), self._detail(target.float())))
        return self.loss_weight * torch.stack(losses).sum()
