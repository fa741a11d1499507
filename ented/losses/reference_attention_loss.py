"""Reference-attention detail loss: the dense reference attention must read the ground truth's detail.

Not in the ENTED paper; the training signal of the stronger variant's dense reference attention
(:mod:`ented.archs.reference_attention`). Trained through the output alone, that attention learns
to read the reference at the query's own place, which is right only where the reference's pose
matches the input's (measured in docs/architecture.md, "Reference detail": erased marks come back
when the reference shows them within half a pixel of their place, almost never beyond 2 px). This
loss gives every query a direct signal: replay the attention on the reference's *fine detail*
(its high-pass residual, so lighting and colour differences between the photos do not count) and
compare with the ground truth's fine detail by L1. It is NTED's attention-reconstruction idea
(ENTEDAttentionReconstructionLoss replays the texture attention on RGB) applied to the dense
attention, on detail rather than colour.

    D(x) = x - GaussianBlur_sigma(x)                  the fine detail of an image
    pred = A · D(resize(ref, res))                     A: the attention at scale res, mean over heads
    loss = w · Σ_res L1(pred, D(resize(gt, res)))
"""

import math

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from einops import rearrange
from torch import nn

from ented.archs.reference_attention import halo_blocks
from ented.archs.texture_ops import resize


def gaussian_high_pass(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) -> the images minus their Gaussian blur (``sigma`` px, reflected borders)."""
    radius = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = img.shape[1]
    blurred = F.pad(img, (radius,) * 4, mode="reflect")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return img - blurred


@LOSS_REGISTRY.register()
class ENTEDReferenceAttentionLoss(nn.Module):
    """L1 between the ground truth's fine detail and the reference's fine detail read by the attention.

    Args:
        loss_weight: Weight of the loss [default: 1; not in the paper].
        sigma: Width (pixels of each attention's scale) of the blur whose residual is the detail
            [default: 1].
    """

    def __init__(self, loss_weight: float = 1.0, sigma: float = 1.0):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.loss_weight = loss_weight
        self.sigma = sigma

    def forward(self, reference_attention: dict, ref: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Computes the loss.

        Args:
            reference_attention: ``aux['reference_attention']`` of ENTED: {res: (B * blocks, heads,
                b*b, K*(b+2w)^2)}, blocks and positions in raster order.
            ref: (B, 3, H, W) or (B, K, 3, H, W), the references given to the network.
            gt: (B, 3, H, W) ground truth.

        Returns:
            Scalar loss.
        """
        if not reference_attention:
            raise ValueError("ENTEDReferenceAttentionLoss needs a network with reference_attention")
        if ref.ndim == 4:
            ref = ref[:, None]
        batch, num_refs = ref.shape[:2]
        losses = []
        for res, attention in reference_attention.items():
            block = math.isqrt(attention.shape[2])
            side = math.isqrt(attention.shape[3] // num_refs)
            if block * block != attention.shape[2] or side * side * num_refs != attention.shape[3]:
                raise ValueError(
                    f"attention at {res} has shape {tuple(attention.shape)}; expected K={num_refs}"
                )
            detail = gaussian_high_pass(resize(ref.flatten(0, 1).float(), (res, res)), self.sigma)
            values = rearrange(
                halo_blocks(detail, block, (side - block) // 2), "(b k) n s c -> (b n) (k s) c", k=num_refs
            )
            pred = attention.float().mean(1) @ values  # (B * blocks, b*b, 3)
            pred = rearrange(
                pred, "(b y x) (i j) c -> b c (y i) (x j)", b=batch, y=res // block, i=block, j=block
            )
            target = gaussian_high_pass(resize(gt.float(), (res, res)), self.sigma)
            losses.append(F.l1_loss(pred, target))
        return self.loss_weight * torch.stack(losses).sum()
