"""The reference gate: a rejected reference is not read at all; the known answer decides in training."""

import pytest
import torch
from tiny_configs import TINY_ENTED_64

from ented.archs.ented_arch import ENTED
from ented.archs.reference_gate import ReferenceGate


def gated_network() -> ENTED:
    net = ENTED(**TINY_ENTED_64, reference_attention=(32,), reference_gate=True).eval()
    with torch.no_grad():
        for module in net.reference_attention.values():
            module.to_out.weight.normal_(0, 0.1)  # so that the reference visibly matters
    return net


def set_gate_answer(net: ENTED, logit: float) -> None:
    """Makes the gate answer ``logit`` for every pair."""
    with torch.no_grad():
        net.reference_gate.head[-1].weight.zero_()
        net.reference_gate.head[-1].bias.fill_(logit)


def test_a_rejected_reference_gives_exactly_the_output_without_one(seeded):
    net = gated_network()
    lq, ref = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        without = net(lq)
        set_gate_answer(net, -3.0)
        rejected, aux = net(lq, ref, return_aux=True)
        set_gate_answer(net, 3.0)
        accepted = net(lq, ref)
    assert aux["reference_gate"].shape == (2, 1)
    torch.testing.assert_close(rejected, without)
    assert float((accepted - without).abs().mean()) > 1e-3


def test_accepted_references_are_read_as_by_the_network_without_a_gate(seeded):
    net = gated_network()
    set_gate_answer(net, 3.0)
    ungated = ENTED(**TINY_ENTED_64, reference_attention=(32,)).eval()
    missing, unexpected = ungated.load_state_dict(net.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("reference_gate.") for k in unexpected)
    lq, refs = torch.randn(1, 3, 64, 64), torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(lq, refs), ungated(lq, refs))


def test_reference_match_decides_per_reference_instead_of_the_gate(seeded):
    net = gated_network()
    set_gate_answer(net, -3.0)  # the gate would reject both; the known answer keeps the first
    lq, refs = torch.randn(1, 3, 64, 64), torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        forced = net(lq, refs, reference_match=torch.tensor([[1.0, 0.0]]))
        set_gate_answer(net, 3.0)
        by_hand = net(lq, torch.stack([refs[:, 0], lq], 1))  # the second replaced by the input
    torch.testing.assert_close(forced, by_hand)


def test_reference_match_is_checked():
    net = gated_network()
    lq, refs = torch.randn(2, 3, 64, 64), torch.randn(2, 2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"reference_match must be \(B, K\) = \(2, 2\); got \(2,\)"):
        net(lq, refs, reference_match=torch.ones(2))
    with pytest.raises(ValueError, match="reference_match needs a network with reference_gate"):
        net(lq, None, reference_match=torch.ones(2, 1))
    ungated = ENTED(**TINY_ENTED_64, reference_attention=(32,))
    with pytest.raises(ValueError, match="reference_match needs a network with reference_gate"):
        ungated(lq, refs, reference_match=torch.ones(2, 2))


@pytest.mark.parametrize("size", [32, 128])
def test_the_gate_reads_pairs_at_64_px_at_most_and_answers_per_reference(size, seeded):
    gate = ReferenceGate(size)
    assert gate.size == min(size, 64)
    lq, refs = torch.randn(3, 3, size, size), torch.randn(3, 2, 3, size, size)
    logits = gate(lq, refs)
    assert logits.shape == (3, 2)
    swapped = gate(lq, refs.flip(1))  # each reference judged on its own
    torch.testing.assert_close(swapped, logits.flip(1))
