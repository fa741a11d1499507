"""Reference gate loss: the gate must say which references show the input's person.

Binary cross-entropy between the gate's logits (:mod:`ented.archs.reference_gate`) and the
known answer, over every reference of the batch. The answers come from a training dataset that
sometimes hands over another person's references (``mismatched_reference_prob``), as
``reference_match`` in the batch.
"""

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class ENTEDReferenceGateLoss(nn.Module):
    """Mean binary cross-entropy of the same-person logits.

    Args:
        loss_weight: Weight of the loss [default: 1.0].
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, logits: torch.Tensor, reference_match: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``aux["reference_gate"]``: (B, K) same-person logits.
            reference_match: (B, K): 1 where the reference shows the input's person, 0 where not.
        """
        if logits.shape != reference_match.shape:
            raise ValueError(
                f"reference gate: logits {tuple(logits.shape)} and reference_match "
                f"{tuple(reference_match.shape)} must have the same (B, K) shape"
            )
        return self.loss_weight * F.binary_cross_entropy_with_logits(logits.float(), reference_match.float())
