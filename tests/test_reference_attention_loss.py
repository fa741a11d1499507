"""The reference attention reconstruction loss and the warp it is built on."""

import torch

from ented.archs.ented_arch import ENTED
from ented.archs.reference_attention import warp_with_attention
from ented.losses.reference_attention_loss import ENTEDReferenceAttentionLoss

BLOCK, WINDOW = 8, 2


def shift_attention(batch: int, size: int, dy: int, dx: int) -> torch.Tensor:
    """One-hot attention in which every position reads the reference at (y + dy, x + dx)."""
    span = BLOCK + 2 * WINDOW
    blocks = (size // BLOCK) ** 2
    attention = torch.zeros(batch * blocks, 1, BLOCK * BLOCK, span * span)
    for i in range(BLOCK):
        for j in range(BLOCK):
            attention[:, 0, i * BLOCK + j, (i + WINDOW + dy) * span + (j + WINDOW + dx)] = 1
    return attention


def test_warp_reads_where_the_attention_points():
    ref = torch.rand(2, 1, 3, 16, 16)
    torch.testing.assert_close(warp_with_attention(shift_attention(2, 16, 0, 0), ref, WINDOW), ref[:, 0])
    shifted = warp_with_attention(shift_attention(2, 16, 1, -2), ref, WINDOW)
    torch.testing.assert_close(shifted[..., :15, 2:], ref[:, 0, :, 1:, :-2])
    assert shifted[..., 15, :].abs().max() == 0  # read below the image: zero padding


def test_loss_is_zero_only_for_the_right_correspondence():
    loss = ENTEDReferenceAttentionLoss(loss_weight=2.0, detail_sigma=None)
    ref = torch.rand(2, 3, 32, 32) * 2 - 1
    gt = torch.roll(ref, shifts=(2, 0), dims=(-2, -1))  # the gt shows the reference 2 px (1 position) lower
    right = {16: shift_attention(2, 16, -1, 0)}
    wrong = {16: shift_attention(2, 16, 0, 0)}
    small_gt = torch.nn.functional.interpolate(gt, size=16, mode="area")
    small_ref = torch.nn.functional.interpolate(ref, size=16, mode="area")
    expected_wrong = 2.0 * (small_ref - small_gt).abs().mean()
    torch.testing.assert_close(loss(wrong, ref, gt, WINDOW), expected_wrong)
    assert loss({}, ref, gt, WINDOW) == 0
    same = {16: shift_attention(2, 16, 0, 0)}
    assert loss(same, ref, ref, WINDOW) < 1e-6
    # reading one position up undoes the move everywhere but the top row (which wraps round in gt)
    assert loss(right, ref, gt, WINDOW) < 0.1 * loss(wrong, ref, gt, WINDOW)


def test_loss_trains_the_attention_of_a_network(seeded):
    net = ENTED(
        out_size=64, width=1 / 16, style_dim=16, code_dim=8, codebook_size=32, reference_attention=(32,)
    )
    lq, ref, gt = (torch.rand(2, 3, 64, 64) * 2 - 1 for _ in range(3))
    _, aux = net(lq, ref, return_aux=True)
    ENTEDReferenceAttentionLoss()(aux["reference_attention"], ref, gt, window=4).backward()
    module = net.reference_attention["32"]
    for name in ("to_q", "to_k"):
        assert getattr(module, name).weight.grad.abs().sum() > 0, name
    assert module.log_sigma.grad.abs().sum() > 0


def test_detail_loss_ignores_lighting_but_not_misplaced_detail():
    loss = ENTEDReferenceAttentionLoss(detail_sigma=1.0)
    ref = torch.rand(1, 3, 16, 16) * 2 - 1
    relit = ref * 0.8 + torch.linspace(-0.3, 0.3, 16)  # another exposure and a lighting ramp
    same_place = {16: shift_attention(1, 16, 0, 0)}
    moved = {16: shift_attention(1, 16, 0, 1)}
    colour_loss = ENTEDReferenceAttentionLoss(detail_sigma=None)
    assert loss(same_place, ref, relit, WINDOW) < 0.5 * colour_loss(same_place, ref, relit, WINDOW)
    assert loss(moved, ref, relit, WINDOW) > 2 * loss(same_place, ref, relit, WINDOW)
