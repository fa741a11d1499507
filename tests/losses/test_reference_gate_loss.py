"""The reference gate loss: binary cross-entropy of the same-person logits against the known answer."""

import math

import pytest
import torch

from ented.losses.reference_gate_loss import ENTEDReferenceGateLoss


def test_gate_loss_is_the_weighted_mean_cross_entropy():
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    match = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    by_hand = [
        -math.log(1 / (1 + math.exp(-2.0))),  # same person, logit 2
        -math.log(1 - 1 / (1 + math.exp(1.0))),  # another, logit -1
        math.log(2.0),  # same person, logit 0
        -math.log(1 - 1 / (1 + math.exp(-3.0))),  # another, logit 3: confidently wrong
    ]
    loss = ENTEDReferenceGateLoss(loss_weight=0.5)(logits, match)
    assert float(loss) == pytest.approx(0.5 * sum(by_hand) / 4, rel=1e-6)


def test_gate_loss_checks_the_shapes():
    with pytest.raises(ValueError, match=r"logits \(2, 1\) and reference_match \(2,\)"):
        ENTEDReferenceGateLoss()(torch.zeros(2, 1), torch.zeros(2))
