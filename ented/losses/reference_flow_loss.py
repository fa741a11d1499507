"""Reference flow loss: the estimated flow must send each known point of the gt to its place in the reference.

The supervision GFRNet (Li et al., ECCV 2018) gives its warp with landmarks, here with the
correspondences of the pose-varied synthetic set (:mod:`ented.data.correspondences`): for every
valid pair, the flow at the point's place in the gt (read bilinearly) is compared with the offset
to its place in the reference, in pixels of the image, by L1 over both coordinates. Each scale of
the coarse-to-fine flow is scored (:mod:`ented.archs.reference_flow`), and the scales averaged.
"""

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class ENTEDReferenceFlowLoss(nn.Module):
    """Mean L1 (pixels) between the flow at the gt's points and their offsets to the reference.

    Args:
        loss_weight: Weight of the loss [default: 0.1].
    """

    def __init__(self, loss_weight: float = 0.1):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, flows: dict, correspondences: torch.Tensor, size: int) -> torch.Tensor:
        """
        Args:
            flows: ``aux["reference_flow"]``: {res: (B, K, 2, r, r)} normalised offsets.
            correspondences: (B, K, N, 5) rows ``x_gt, y_gt, x_ref, y_ref, valid`` in pixels of
                the ``size`` px image (pixel centres at integers).
            size: The image size the correspondences are in.

        Returns:
            The weighted loss; zero (with gradients to the flow) when no pair is valid.
        """
        if not flows:
            raise ValueError("ENTEDReferenceFlowLoss needs network_g with reference_flow: true")
        first = next(iter(flows.values()))
        if (
            correspondences.ndim != 4
            or correspondences.shape[:2] != first.shape[:2]
            or correspondences.shape[3] != 5
        ):
            raise ValueError(
                f"correspondences must be (B, K, N, 5) with B, K = {tuple(first.shape[:2])}; "
                f"got {tuple(correspondences.shape)}"
            )
        to_normalised = lambda xy: (xy + 0.5) / size * 2 - 1  # noqa: E731
        at_gt = to_normalised(correspondences[..., 0:2]).flatten(0, 1)[:, :, None]  # (B*K, N, 1, 2)
        target = (correspondences[..., 2:4] - correspondences[..., 0:2]).flatten(0, 1)  # pixels
        valid = correspondences[..., 4].flatten(0, 1)  # (B*K, N)
        count = valid.sum().clamp(min=1)
        losses = []
        for flow in flows.values():
            sampled = F.grid_sample(
                flow.flatten(0, 1).float(),
                at_gt.float(),
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )  # (B*K, 2, N, 1)
            predicted = sampled[..., 0].transpose(1, 2) * (size / 2)  # (B*K, N, 2) pixels
            losses.append(((predicted - target).abs().sum(-1) * valid).sum() / count)
        return self.loss_weight * torch.stack(losses).mean()
