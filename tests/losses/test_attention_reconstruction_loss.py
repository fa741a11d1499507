"""ENTEDAttentionReconstructionLoss: exact on constructed attention, positive otherwise, differentiable."""

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from ented.archs.ented_arch import ENTED
from ented.losses.attention_reconstruction_loss import ENTEDAttentionReconstructionLoss


def _permutation_case(size=4):
    """Reference pixels as labels: extraction label j = pixel j; distribution maps output pixel p to perm[p]."""
    n = size * size
    ref = torch.rand(1, 3, size, size) * 2 - 1
    extraction = torch.eye(n).reshape(1, 1, n, size, size)
    perm = torch.randperm(n)
    distribution = torch.zeros(1, n, n)
    distribution[0, perm, torch.arange(n)] = 1.0
    distribution = distribution.reshape(1, n, size, size)
    gt = ref.flatten(2)[:, :, perm].reshape(1, 3, size, size)
    return extraction, distribution, ref, gt


def test_registered():
    assert LOSS_REGISTRY.get("ENTEDAttentionReconstructionLoss") is ENTEDAttentionReconstructionLoss


def test_zero_when_attention_reproduces_gt(seeded):
    extraction, distribution, ref, gt = _permutation_case()
    loss = ENTEDAttentionReconstructionLoss()([(extraction, distribution)], ref, gt)
    assert float(loss) < 1e-6


def test_positive_otherwise_and_weighted(seeded):
    extraction, distribution, ref, gt = _permutation_case()
    wrong = torch.rand_like(gt) * 2 - 1
    loss = ENTEDAttentionReconstructionLoss(loss_weight=1.0)([(extraction, distribution)], ref, wrong)
    assert float(loss) > 0.1
    loss15 = ENTEDAttentionReconstructionLoss()([(extraction, distribution)], ref, wrong)
    torch.testing.assert_close(loss15, 15 * loss)


def test_multiple_references_and_resizing(seeded):
    extraction, distribution, ref, gt = _permutation_case()
    # reference 2 gets no distribution weight: the loss is that of reference 1 alone
    ext2 = torch.cat([extraction, extraction], dim=1)
    dist2 = torch.cat([distribution, torch.zeros_like(distribution)], dim=1)
    refs = torch.stack([ref, torch.rand_like(ref)], dim=1)
    assert float(ENTEDAttentionReconstructionLoss()([(ext2, dist2)], refs, gt)) < 1e-6
    # full-size images are resized to the attention sizes
    big_ref = torch.nn.functional.interpolate(ref, scale_factor=4, mode="nearest")
    big_gt = torch.nn.functional.interpolate(gt, scale_factor=4, mode="nearest")
    assert float(ENTEDAttentionReconstructionLoss()([(extraction, distribution)], big_ref, big_gt)) < 1e-6


def test_gradient_reaches_network_attention(seeded):
    net = ENTED(out_size=32, width=1 / 16, style_dim=16, code_dim=8, codebook_size=32)
    lq, ref, gt = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3))
    _, aux = net(lq, ref, return_aux=True)
    loss = ENTEDAttentionReconstructionLoss()(aux["texture_attention"], ref, gt)
    assert loss > 0
    loss.backward()
    for name, p in net.named_parameters():
        if (
            name.startswith("extractions.")
            and name.endswith("logits.weight")
            or ".distribution.logits." in name
        ):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_invalid_arguments():
    with pytest.raises(ValueError, match="reduction"):
        ENTEDAttentionReconstructionLoss(reduction="none")
    extraction, distribution, ref, gt = _permutation_case()
    with pytest.raises(ValueError, match="extraction attention"):
        ENTEDAttentionReconstructionLoss()([(extraction, distribution)], ref.expand(2, -1, -1, -1), gt)
