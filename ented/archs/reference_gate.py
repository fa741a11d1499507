"""Reference gate: does this reference show the input's person? A reference that does not is not read.

Not in the ENTED paper: part of the stronger variant (``ENTED(reference_gate=True)``). A network
that follows its reference closely enough to bring back erased marks also copies a stranger's
marks when given a stranger's photo: on the pose-varied synthetic set, the flow network pasted
48% of another person's moles (docs/architecture.md). Nothing in a mark itself says whose it is;
only the whole face does. Face-verification networks answer that question (FaceNet, Schroff et
al., CVPR 2015; ArcFace, Deng et al., CVPR 2019) from one face at a time. Here both photos are
already aligned to the same five-point template, so the gate reads them side by side: a small
CNN on the six channels ``[lq ; ref]`` (early fusion, as in the pair comparison of Zagoruyko and
Komodakis, CVPR 2015) downsampled to 64 px at most, which compares skin, hair, eyes and face
shape place by place, and gives one same-person logit per reference.

On the synthetic set's validation identities (``benchmarks/reference_identity_probe.py``, 2,400
steps, the last 600), this gate separates same-person from other-person pairs with a ROC AUC of
0.92-0.96; ENTED's own encoders, pooled and compared by a verification head, reach 0.75-0.81.

The network reads a reference whose logit is at least 0 and replaces one below 0 by the input
itself (the self reference of ``ref=None``), so a rejected reference gives exactly the output
without one. In training, the known answer decides instead (``reference_match``), so the rest of
the network learns from true references only, and the gate learns from
:class:`~ented.losses.reference_gate_loss.ENTEDReferenceGateLoss` on pairs where some references
are another person's (the dataset's ``mismatched_reference_prob``).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

GATE_SIZE = 64  # the largest input the gate reads; bigger faces are area-downsampled to it
GATE_FINAL = 4  # the gate's last feature map is GATE_FINAL x GATE_FINAL


def keep_references(lq: torch.Tensor, refs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """refs (B, K, 3, S, S) with the references where ``keep`` (B, K) is false replaced by lq (B, 3, S, S)."""
    return torch.where(keep[:, :, None, None, None].bool(), refs, lq[:, None].to(refs.dtype))


class ReferenceGate(nn.Module):
    """(lq (B, 3, S, S), refs (B, K, 3, S, S)) -> same-person logits (B, K).

    Args:
        out_size: S, the network's image size (32 or more).
        width: Channels of the first stage; each stage halves the size, and the channels double
            up to ``2 * width`` [default: 32].
    """

    def __init__(self, out_size: int, width: int = 32):
        super().__init__()
        self.size = min(out_size, GATE_SIZE)
        stages, channels = [], 6
        for i in range(int(math.log2(self.size // GATE_FINAL))):
            out = width if i < 2 else 2 * width
            stages += [
                nn.Conv2d(channels, out, 3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(out, out, 3, stride=2, padding=1),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        self.body = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * GATE_FINAL**2, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1)
        )

    def forward(self, lq: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        batch, num_refs = refs.shape[:2]
        pairs = torch.cat([lq[:, None].expand_as(refs), refs], 2).flatten(0, 1)  # (B * K, 6, S, S)
        if pairs.shape[-1] != self.size:
            pairs = F.interpolate(pairs, size=self.size, mode="area")
        return self.head(self.body(pairs.contiguous()))[:, 0].view(batch, num_refs)
