"""Reference flow: where each point of the input face sits in the reference, estimated coarse to fine.

Not in the ENTED paper: part of the stronger variant (``ENTED(reference_flow=True)``, with
``reference_attention``). Two photos of a person aligned by five landmarks still differ by the
head's pose: a mole moves by a few pixels between them. The dense reference attention reads the
reference near each position's own place, so without help it finds only the marks that happen to
sit where the input has them (docs/architecture.md measures this). Reference-based face
restoration warps the reference onto the input before using it -- GFRNet (Li et al., ECCV 2018)
with a flow field predicted from both images and supervised by landmarks, ASFFNet (Li et al.,
CVPR 2020) with landmark-driven moving least squares; optical flow networks (FlowNet, Dosovitskiy
et al., ICCV 2015; SPyNet, Ranjan and Black, CVPR 2017) estimate such a field coarse to fine,
refining an upsampled coarse estimate at each scale from the images' features after warping.

This module does that on the encoders' features: at 16x16, then at every finer scale up to the
finest one asked for,

    g      = MLP([flatten(W E_lq(lq)_16) ; flatten(W E_ref(ref)_16)])       the pair's global context
    flow_r = up(flow_{r/2}) + head_r([E_lq(lq)_r ; warp(E_ref(ref)_r, up(flow_{r/2})) ; up(flow_{r/2}) ; g])

with ``flow`` the offset, in grid_sample's normalised coordinates (-1..1 across the image,
``align_corners=False``), from a position to the point it shows in the reference: ``warp(f, flow)``
reads ``f`` at ``p + flow(p)``. Most of the flow between two aligned photos comes from the
difference of head pose, a property of the whole face: ``W`` (a 1x1 conv to 4 channels) keeps the
16x16 maps' layout, and the MLP turns both layouts into ``g`` (32 numbers), given to every head
(on the validation split, after 600 steps of the flow loss alone: 1.17 px of error against 1.31
with local heads only and 1.94 with no flow; docs/architecture.md). Each head is three 3x3 convs; its last conv starts at zero, so the
untrained flow is zero (the reference read in place) and a network with it equals one without.
It learns from the restoration loss through the warped features and, on data with known
correspondences, from :class:`~ented.losses.reference_flow_loss.ENTEDReferenceFlowLoss`.
"""

import torch
import torch.nn.functional as F
from torch import nn

LATENT_SIZE = 16
CONTEXT_CHANNELS = 4  # per 16x16 position, per image, into the global context


def identity_grid(size: int, device=None, dtype=None) -> torch.Tensor:
    """(size, size, 2) normalised x, y of the pixel centres (grid_sample, ``align_corners=False``)."""
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([x, y], -1).to(dtype)


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """features (N, C, h, w) read at ``p + flow(p)``: flow (N, 2, h, w), normalised x, y offsets.

    Bilinear; positions beyond the border read the border.
    """
    grid = identity_grid(flow.shape[-1], flow.device, flow.dtype) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(
        features, grid.to(features.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )


class FlowHead(nn.Module):
    """Three 3x3 convs: [lq features ; warped reference features ; flow] -> flow increment (N, 2, h, w)."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 2, 3, padding=1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ReferenceFlow(nn.Module):
    """Coarse-to-fine flow from the input's positions to the reference's, on encoder features.

    Args:
        channels: {res: channels} of the encoders (E_lq and E_ref share the plan), res 16..finest.
        finest: The finest resolution to estimate (the largest reference-attention scale).
        hidden: Channels of each head's hidden convs [default: 32].
        context: Size of the global context ``g`` [default: 32]; 0 for local heads only.
    """

    def __init__(self, channels: dict[int, int], finest: int, hidden: int = 32, context: int = 32):
        super().__init__()
        self.sizes = [r for r in sorted(channels) if LATENT_SIZE <= r <= finest]
        if not self.sizes or self.sizes[-1] != finest:
            raise ValueError(f"reference flow: no encoder scale {finest} in {sorted(channels)}")
        self.squeeze = nn.Conv2d(channels[LATENT_SIZE], CONTEXT_CHANNELS, 1) if context else None
        self.context = (
            nn.Sequential(
                nn.Linear(2 * CONTEXT_CHANNELS * LATENT_SIZE**2, 4 * context),
                nn.LeakyReLU(0.2),
                nn.Linear(4 * context, context),
            )
            if context
            else None
        )
        self.heads = nn.ModuleDict(
            {str(r): FlowHead(2 * channels[r] + 2 + context, hidden) for r in self.sizes}
        )

    def forward(self, lq_by_res: dict, ref_by_res: dict, num_refs: int) -> dict[int, torch.Tensor]:
        """lq_by_res: {res: (B, C, r, r)}; ref_by_res: {res: (B * K, C, r, r)}, K = ``num_refs``
        references per input, input-major -> {res: flow (B * K, 2, r, r)} for res 16..finest."""
        context = []
        if self.context is not None:
            lq_16 = self.squeeze(lq_by_res[LATENT_SIZE]).repeat_interleave(num_refs, 0)
            ref_16 = self.squeeze(ref_by_res[LATENT_SIZE])
            context = [self.context(torch.cat([lq_16.flatten(1), ref_16.flatten(1)], 1))]  # (B * K, context)
        flows, flow = {}, None
        for res in self.sizes:
            ref = ref_by_res[res]
            if flow is None:
                flow = ref.new_zeros(ref.shape[0], 2, res, res)
            else:
                flow = F.interpolate(flow, size=res, mode="bilinear", align_corners=False)
            lq = lq_by_res[res].repeat_interleave(num_refs, 0)
            # the flow enters the head in positions of this scale, comparable across scales
            head_input = torch.cat(
                [lq, warp(ref, flow), flow * (res / 2)]
                + [g[:, :, None, None].expand(-1, -1, res, res) for g in context],
                1,
            )
            flow = flow + self.heads[str(res)](head_input) * (2 / res)
            flows[res] = flow
        return flows
