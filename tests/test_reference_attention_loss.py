import pytest
import torch

from ented.losses.reference_attention_loss import ENTEDReferenceAttentionLoss, gaussian_high_pass


def one_hot_attention(res: int, shift: tuple[int, int], batch: int = 1, block: int = 8, window: int = 4):
    """(B * blocks, 1, b*b, (b+2w)^2): every position reads the reference ``shift`` (dy, dx) away."""
    side = block + 2 * window
    blocks = (res // block) ** 2
    attention = torch.zeros(batch * blocks, 1, block * block, side * side)
    for q in range(block * block):
        i, j = divmod(q, block)
        attention[:, 0, q, (i + window + shift[0]) * side + (j + window + shift[1])] = 1
    return attention


def test_the_loss_is_zero_when_the_attention_reads_the_matching_detail():
    torch.manual_seed(0)
    loss = ENTEDReferenceAttentionLoss(loss_weight=1.0)
    gt = torch.rand(1, 3, 16, 16) * 2 - 1
    # the reference shows the gt displaced by (1, 2) pixels; interior positions only are compared
    ref = torch.roll(gt, shifts=(1, 2), dims=(-2, -1))
    matched = one_hot_attention(16, (1, 2))
    at_own_place = one_hot_attention(16, (0, 0))
    assert loss({16: matched}, ref, gt) < 0.5 * loss({16: at_own_place}, ref, gt)
    # with the reference equal to the gt, reading the own place is exact
    assert loss({16: at_own_place}, gt, gt).item() == pytest.approx(0, abs=1e-6)


def test_only_detail_counts_not_brightness():
    gt = torch.rand(1, 3, 16, 16) * 2 - 1
    attention = one_hot_attention(16, (0, 0))
    loss = ENTEDReferenceAttentionLoss()
    assert loss({16: attention}, gt + 0.3, gt).item() == pytest.approx(0, abs=1e-5)
    assert gaussian_high_pass(torch.full((1, 1, 8, 8), 0.7), 1.0).abs().max() < 1e-6


def test_several_references_and_errors():
    gt = torch.rand(2, 3, 16, 16) * 2 - 1
    single = one_hot_attention(16, (0, 0), batch=2)
    # two references: all weight on the first one, which equals the gt
    two = torch.cat([single, torch.zeros_like(single)], -1)
    loss = ENTEDReferenceAttentionLoss()
    refs = torch.stack([gt, torch.rand_like(gt)], 1)
    assert loss({16: two}, refs, gt).item() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="reference_attention"):
        loss({}, gt, gt)
    with pytest.raises(ValueError, match="sigma"):
        ENTEDReferenceAttentionLoss(sigma=0)
