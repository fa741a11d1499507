"""The reference flow: warping by it, its zero start, its gradients and its outputs inside ENTED."""

import pytest
import torch
from tiny_configs import TINY_ENTED_64

from ented.archs.ented_arch import ENTED
from ented.archs.reference_flow import ReferenceFlow, warp


def test_warp_reads_the_features_at_the_offset_place(seeded):
    features = torch.randn(2, 3, 16, 16)
    flow = torch.zeros(2, 2, 16, 16)
    flow[:, 0] = 3 * 2 / 16  # 3 positions to the right
    flow[:, 1] = -1 * 2 / 16  # 1 position up
    shifted = warp(features, flow)
    torch.testing.assert_close(shifted[..., 1:, :13], features[..., :15, 3:])
    torch.testing.assert_close(warp(features, torch.zeros_like(flow)), features)
    half = warp(features, torch.full_like(flow, 0.5 * 2 / 16) * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    torch.testing.assert_close(half[..., :15], (features[..., :15] + features[..., 1:]) / 2)


def test_flow_starts_at_zero_so_the_network_is_the_one_without_it(seeded):
    with_flow = ENTED(**TINY_ENTED_64, reference_attention=(32, 64), reference_flow=64).eval()
    without = ENTED(**TINY_ENTED_64, reference_attention=(32, 64)).eval()
    added = set(with_flow.state_dict()) - set(without.state_dict())
    assert added and all(name.startswith("reference_flow.") for name in added)
    lq, ref = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        for module in with_flow.reference_attention.values():
            module.to_out.weight.normal_(0, 0.1)
        without.load_state_dict(with_flow.state_dict(), strict=False)
        out, aux = with_flow(lq, ref, return_aux=True)
        torch.testing.assert_close(out, without(lq, ref))
    assert {res: tuple(f.shape) for res, f in aux["reference_flow"].items()} == {
        16: (2, 3, 2, 16, 16),
        32: (2, 3, 2, 32, 32),
        64: (2, 3, 2, 64, 64),
    }
    assert all(float(f.abs().max()) == 0 for f in aux["reference_flow"].values())


def test_flow_moves_what_the_attention_reads_and_learns_from_the_output(seeded):
    net = ENTED(**TINY_ENTED_64, reference_attention=(32,), reference_flow=32)
    with torch.no_grad():
        net.reference_attention["32"].to_out.weight.normal_(0, 0.1)
    lq, ref = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    out = net(lq, ref)
    (out * torch.randn_like(out)).mean().backward()
    last_convs = [head.body[-1].weight.grad for head in net.reference_flow.heads.values()]
    assert all(g is not None and g.abs().sum() > 0 for g in last_convs)
    with torch.no_grad():
        before = net(lq, ref)
        net.reference_flow.heads["16"].body[-1].bias.fill_(0.5)  # a flow of 4 positions at 16x16
        assert (net(lq, ref) - before).abs().mean() > 1e-4
    assert "reference_flow.heads.16.body.4.bias" in {
        n for n, p in net.named_parameters() if any(p is q for q in net.parameter_groups()["attention"])
    }


def test_flow_needs_the_reference_attention_and_an_encoder_scale():
    with pytest.raises(ValueError, match="needs reference_attention"):
        ENTED(**TINY_ENTED_64, reference_flow=32)
    for bad in (True, 8, 64):
        with pytest.raises(ValueError, match="reference_flow must be 0"):
            ENTED(**TINY_ENTED_64, reference_attention=(32,), reference_flow=bad)
    with pytest.raises(ValueError, match="no encoder scale 128"):
        ReferenceFlow({16: 8, 32: 8, 64: 8}, 128)


def test_local_heads_only_without_global_context(seeded):
    channels = {16: 8, 32: 8}
    local, full = ReferenceFlow(channels, 32, context=0), ReferenceFlow(channels, 32)
    assert local.context is None and full.context is not None
    assert sum(p.numel() for p in local.parameters()) < sum(p.numel() for p in full.parameters())
    feats = {16: torch.randn(2, 8, 16, 16), 32: torch.randn(2, 8, 32, 32)}
    refs = {res: f.repeat_interleave(3, 0) for res, f in feats.items()}
    flows = local(feats, refs, num_refs=3)
    assert {res: tuple(f.shape) for res, f in flows.items()} == {16: (6, 2, 16, 16), 32: (6, 2, 32, 32)}


def test_attention_finer_than_the_flow_reads_it_upsampled(seeded):
    net = ENTED(**TINY_ENTED_64, reference_attention=(32, 64), reference_flow=16).eval()
    lq, ref = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        net.reference_attention["64"].to_out.weight.normal_(0, 0.1)  # only the 64 px attention reads
        before, aux = net(lq, ref, return_aux=True)
        assert set(aux["reference_flow"]) == {16}
        net.reference_flow.heads["16"].body[-1].bias.fill_(0.5)  # 4 positions at 16x16, 16 at 64x64
        assert (net(lq, ref) - before).abs().mean() > 1e-4


def test_zero_reference_strength_is_no_reference_with_the_flow_too(seeded):
    net = ENTED(**TINY_ENTED_64, reference_attention=(32,), reference_flow=32).eval()
    with torch.no_grad():
        net.reference_attention["32"].to_out.weight.normal_(0, 0.1)
        for head in net.reference_flow.heads.values():
            head.body[-1].weight.normal_(0, 0.1)
        lq, ref = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(net(lq, ref, reference_strength=0.0), net(lq, None))
        assert (net(lq, ref, reference_strength=0.5) - net(lq, None)).abs().mean() > 1e-4
