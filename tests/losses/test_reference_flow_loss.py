"""ENTEDReferenceFlowLoss: zero for the true flow, the mean displacement for none, invalid rows ignored."""

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from ented.losses.reference_flow_loss import ENTEDReferenceFlowLoss

SIZE = 64


def shift_case(dx: float, dy: float, points: int = 10):
    """Correspondences of a reference shifted by (dx, dy) pixels: gt point p shows at p + (dx, dy)."""
    gt_xy = torch.rand(1, 1, points, 2) * 40 + 10
    rows = torch.cat([gt_xy, gt_xy + torch.tensor([dx, dy]), torch.ones(1, 1, points, 1)], -1)
    return rows


def constant_flow(dx: float, dy: float, res: int) -> torch.Tensor:
    flow = torch.zeros(1, 1, 2, res, res)
    flow[:, :, 0], flow[:, :, 1] = dx * 2 / SIZE, dy * 2 / SIZE
    return flow


def test_registered():
    assert LOSS_REGISTRY.get("ENTEDReferenceFlowLoss") is ENTEDReferenceFlowLoss


def test_zero_for_the_true_flow_and_the_displacement_for_none(seeded):
    rows = shift_case(3.0, -1.5)
    loss = ENTEDReferenceFlowLoss(loss_weight=1.0)
    true = {16: constant_flow(3.0, -1.5, 16), 32: constant_flow(3.0, -1.5, 32)}
    assert float(loss(true, rows, SIZE)) < 1e-5
    none = {16: constant_flow(0, 0, 16), 32: constant_flow(0, 0, 32)}
    assert float(loss(none, rows, SIZE)) == pytest.approx(4.5, rel=1e-5)  # |3| + |-1.5| pixels
    half = {16: constant_flow(3.0, -1.5, 16), 32: constant_flow(0, 0, 32)}  # scales averaged
    assert float(ENTEDReferenceFlowLoss(loss_weight=0.5)(half, rows, SIZE)) == pytest.approx(
        0.5 * 4.5 / 2, rel=1e-5
    )


def test_invalid_rows_do_not_count_and_gradients_reach_the_flow(seeded):
    rows = shift_case(2.0, 0.0)
    rows[..., 5:, 2] += 50  # wrong targets, marked invalid
    rows[..., 5:, 4] = 0
    flow = constant_flow(2.0, 0.0, 16).requires_grad_()
    loss = ENTEDReferenceFlowLoss(loss_weight=1.0)({16: flow}, rows, SIZE)
    assert float(loss.detach()) < 1e-5
    wrong = constant_flow(0.0, 0.0, 16).requires_grad_()
    ENTEDReferenceFlowLoss()({16: wrong}, rows, SIZE).backward()
    assert wrong.grad.abs().sum() > 0
    rows[..., 4] = 0  # nothing valid: zero, not NaN
    assert float(ENTEDReferenceFlowLoss()({16: wrong}, rows, SIZE).detach()) == 0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="reference_flow: true"):
        ENTEDReferenceFlowLoss()({}, shift_case(1, 1), SIZE)
    with pytest.raises(ValueError, match=r"\(B, K, N, 5\)"):
        ENTEDReferenceFlowLoss()({16: constant_flow(0, 0, 16)}, shift_case(1, 1)[0], SIZE)
