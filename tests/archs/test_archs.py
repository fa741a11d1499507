"""ENTED generator and discriminator: registry-generated forward/backward and semantics tests."""

import json

import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from tiny_configs import TINY_ENTED, TINY_ENTED_64

from ented.archs.ented_arch import ENTED
from ented.archs.ented_discriminator_arch import ENTEDDiscriminator, minibatch_stddev


def _images(batch, size, refs=None):
    shape = (batch, 3, size, size) if refs is None else (batch, refs, 3, size, size)
    return torch.rand(shape) * 2 - 1


# Every architecture ENTED registers needs an entry: (constructor kwargs, inputs factory, extra loss).
TINY_ARCHS = {
    "ENTED": (TINY_ENTED_64, lambda: (_images(2, 64), _images(2, 64))),
    "ENTEDDiscriminator": (dict(out_size=32, width=1 / 16), lambda: (_images(3, 32),)),
    "ENTEDArcFace": (
        dict(layers=(1, 1, 1, 1), base_channels=8, embedding_dim=32, input_size=32),
        lambda: (_images(2, 32),),
    ),
    "ENTEDGFPGANv1Clean": (
        dict(out_size=32, num_style_feat=16, channel_multiplier=1, narrow=1 / 32, num_mlp=1),
        lambda: (_images(2, 32),),
    ),
}
REGISTERED = sorted(name for name, _ in ARCH_REGISTRY if name.upper().startswith("ENTED"))


def test_registry_has_ented_archs():
    assert {"ENTED", "ENTEDDiscriminator"} <= set(REGISTERED)


def _forward_loss(net, inputs):
    """A loss that touches every output element with a random weight, plus any auxiliary loss."""
    if isinstance(net, ENTED):
        out, aux = net(*inputs, return_aux=True)
        extra = aux["vq"]["loss"] if "vq" in aux else 0.0
    else:
        out, extra = net(*inputs), 0.0
    weights = torch.randn_like(out)
    return (out * weights).mean() + extra


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_arch_forward_backward(name, seeded):
    assert name in TINY_ARCHS, (
        f"{name} is registered but has no tiny config in tests/archs/test_archs.py::TINY_ARCHS"
    )
    kwargs, make_inputs = TINY_ARCHS[name]
    net = ARCH_REGISTRY.get(name)(**kwargs)
    net.train()
    loss = _forward_loss(net, make_inputs())
    assert torch.isfinite(loss)
    loss.backward()
    for pname, p in net.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_arch_config_rebuilds(name, seeded):
    kwargs, make_inputs = TINY_ARCHS[name]
    cls = ARCH_REGISTRY.get(name)
    net = cls(**kwargs).eval()
    twin = cls(**json.loads(json.dumps(net.config))).eval()
    twin.load_state_dict(net.state_dict())
    inputs = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(twin(*inputs), net(*inputs), rtol=0, atol=0)


# ---------------------------------------------------------------- generator semantics


@pytest.fixture
def tiny_net(seeded):
    return ENTED(**TINY_ENTED_64).eval()


def test_attention_maps_are_softmaxes(tiny_net):
    lq, ref = _images(2, 64), _images(2, 64, refs=2)
    out, aux = tiny_net(lq, ref, return_aux=True)
    assert out.shape == (2, 3, 64, 64)
    # 16 and 32 have textures at out_size 64, two distribution layers each
    assert len(aux["texture_attention"]) == 4
    for extraction, distribution in aux["texture_attention"]:
        b, k_refs, labels, h, w = extraction.shape
        assert (b, k_refs) == (2, 2)
        assert distribution.shape[:2] == (2, k_refs * labels)
        torch.testing.assert_close(extraction.sum(dim=(-2, -1)), torch.ones(b, k_refs, labels))
        torch.testing.assert_close(distribution.sum(dim=1), torch.ones(2, *distribution.shape[-2:]))
    vq = aux["vq"]
    assert vq["indices"].shape == (2, 16, 16) and vq["indices"].dtype == torch.long
    assert vq["loss"].ndim == 0 and vq["perplexity"].ndim == 0
    assert 0 < float(vq["used_fraction"]) <= 1


def test_output_depends_on_reference(tiny_net):
    lq = _images(1, 64)
    with torch.no_grad():
        a = tiny_net(lq, _images(1, 64))
        b = tiny_net(lq, _images(1, 64))
    assert (a - b).abs().max() > 1e-4


def test_textures_flow_from_reference_without_refinement(seeded):
    """Even with the refinement (and its styles) off, the reference changes the output via textures."""
    net = ENTED(**TINY_ENTED_64, use_refinement=False).eval()
    lq = _images(1, 64)
    with torch.no_grad():
        assert (net(lq, _images(1, 64)) - net(lq, _images(1, 64))).abs().max() > 1e-4


def test_single_reference_equals_k1_and_duplicated_references(tiny_net):
    lq, ref = _images(2, 64), _images(2, 64)
    with torch.no_grad():
        single = tiny_net(lq, ref)
        k1 = tiny_net(lq, ref[:, None])
        duplicated = tiny_net(lq, torch.stack([ref, ref], dim=1))
    torch.testing.assert_close(k1, single)
    # the mean texture and attention over duplicated keys are those of one reference
    torch.testing.assert_close(duplicated, single, rtol=1e-4, atol=1e-5)


def test_no_reference_is_self_reference(tiny_net):
    lq = _images(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(tiny_net(lq), tiny_net(lq, lq))


def test_aux_only_when_asked(tiny_net):
    lq = _images(1, 64)
    assert isinstance(tiny_net(lq), torch.Tensor)


def _param_names(**kwargs):
    with torch.device("meta"):
        return {n for n, _ in ENTED(**TINY_ENTED_64, **kwargs).named_parameters()}


@pytest.mark.parametrize(
    "switch, removed_prefixes, added_prefixes",
    [
        ("use_vq", ("quantizer.",), ()),
        ("use_refinement", ("refinement.",), ("style_mapping.",)),
        ("identity_residual", ("identity_alpha",), ()),
    ],
)
def test_ablation_switch_removes_its_module(switch, removed_prefixes, added_prefixes):
    full, ablated = _param_names(), _param_names(**{switch: False})
    removed, added = full - ablated, ablated - full
    assert removed and all(n.startswith(removed_prefixes) for n in removed), removed
    assert all(n.startswith(added_prefixes) for n in added), added
    assert not any(n.startswith(removed_prefixes) for n in ablated)


def test_unmodulated_decoder_has_no_styles():
    full, ablated = _param_names(), _param_names(modulated=False)
    removed = full - ablated
    assert removed and all(".modulation." in n or n.startswith("refinement.style_") for n in removed), removed
    assert not any("modulation" in n or "style" in n for n in ablated)
    assert ablated <= full


def test_lq_skips_add_identity_residuals(seeded):
    net = ENTED(**TINY_ENTED_64, lq_skips=(32,))
    assert {n.split(".")[1] for n, _ in net.named_parameters() if n.startswith("lq_skips.")} == {"32"}
    lq = _images(2, 64)
    out = net(lq, _images(2, 64))
    (out * torch.randn_like(out)).mean().backward()
    assert net.lq_skips["32"].weight.grad.abs().sum() > 0
    with torch.no_grad():
        net.lq_skips["32"].weight.zero_()
        net.lq_skips["32"].bias.zero_()
        plain = ENTED(**TINY_ENTED_64)
        plain.load_state_dict(net.state_dict(), strict=False)
        ref = _images(2, 64)
        torch.testing.assert_close(net.eval()(lq, ref), plain.eval()(lq, ref))
    with pytest.raises(ValueError, match="lq_skips must be"):
        ENTED(**TINY_ENTED_64, lq_skips=(64,))
    with pytest.raises(ValueError, match="identity_residual=True"):
        ENTED(**TINY_ENTED_64, lq_skips=(32,), identity_residual=False)


def test_all_switches_off_is_nted_like(seeded):
    net = ENTED(**TINY_ENTED, use_vq=False, use_refinement=False, identity_residual=False, modulated=False)
    names = {n for n, _ in net.named_parameters()}
    assert not any(
        n.startswith(("quantizer", "refinement", "style_mapping", "identity_alpha")) for n in names
    )
    out, aux = net(_images(1, 32), _images(1, 32), return_aux=True)
    assert out.shape == (1, 3, 32, 32) and "vq" not in aux and len(aux["texture_attention"]) == 2


def test_parameter_groups_partition_trainable_parameters(tiny_net):
    groups = tiny_net.parameter_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in tiny_net.parameters()}
    attention_names = {
        n for n, p in tiny_net.named_parameters() if id(p) in {id(q) for q in groups["attention"]}
    }
    assert any(n.startswith("quantizer.") for n in attention_names)
    assert any(n.startswith("refinement.") for n in attention_names)
    assert any(n.startswith("extractions.") for n in attention_names)
    assert any(".distribution." in n for n in attention_names)
    assert not any(".conv.weight" in n and ".distribution." not in n for n in attention_names)


def test_freeze_codebook(tiny_net):
    keys = set(tiny_net.state_dict())
    tiny_net.freeze_codebook()
    assert not tiny_net.quantizer.codebook.weight.requires_grad
    assert set(tiny_net.state_dict()) == keys
    groups = tiny_net.parameter_groups()
    assert all(p is not tiny_net.quantizer.codebook.weight for g in groups.values() for p in g)
    out, aux = tiny_net.train()(_images(2, 64), return_aux=True)
    (out.mean() + aux["vq"]["loss"]).backward()
    assert tiny_net.quantizer.codebook.weight.grad is None
    assert tiny_net.quantizer.proj_in.weight.grad.abs().sum() > 0


def test_init_codebook_from_images(tiny_net):
    images = _images(2, 64)
    tiny_net.init_codebook_(images)
    _, aux = tiny_net(images, return_aux=True)
    assert float(aux["vq"]["used_fraction"]) > 0.5  # 32 code words, 512 positions
    with pytest.raises(ValueError, match="use_vq"):
        ENTED(**TINY_ENTED, use_vq=False).init_codebook_(_images(1, 32))


@pytest.mark.parametrize("dtype, batch", [(torch.bfloat16, 2), (torch.float16, 2), (torch.float16, 1)])
def test_autocast_stays_finite(tiny_net, dtype, batch):
    lq, ref = _images(batch, 64), _images(batch, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        out, aux = tiny_net(lq, ref, return_aux=True)
    assert torch.isfinite(out).all()
    assert torch.isfinite(aux["vq"]["loss"])
    reference = tiny_net(lq, ref).detach()
    assert (out.float() - reference).abs().mean() < 0.1 * reference.abs().mean() + 0.05


@pytest.mark.parametrize("batch", [1, 2])
def test_channels_last_matches_contiguous(tiny_net, batch):
    nchw = ENTED(**TINY_ENTED_64, channels_last=False).eval()
    nchw.load_state_dict(tiny_net.state_dict())
    lq, ref = _images(batch, 64), _images(batch, 64)
    with torch.no_grad():
        out_cl, aux_cl = tiny_net(lq, ref, return_aux=True)
        out, aux = nchw(lq, ref, return_aux=True)
    assert out_cl.is_contiguous()
    torch.testing.assert_close(out_cl, out, rtol=1e-4, atol=1e-4)
    for (e1, d1), (e2, d2) in zip(aux_cl["texture_attention"], aux["texture_attention"]):
        torch.testing.assert_close(e1, e2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(d1, d2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [32, 64, 128, 256, 512])
def test_sizes_construct(size):
    net = ENTED(out_size=size, width=1 / 16, style_dim=16, code_dim=8, codebook_size=32)
    assert net.sizes[0] == 16 and net.sizes[-1] == size
    assert all(res < size for res in net.labels)


def test_size_128_runs(seeded):
    net = ENTED(out_size=128, width=1 / 16, style_dim=16, code_dim=8, codebook_size=32).eval()
    with torch.no_grad():
        out, aux = net(_images(1, 128), _images(1, 128), return_aux=True)
    assert out.shape == (1, 3, 128, 128)
    assert [d.shape[-1] for _, d in aux["texture_attention"]] == [16, 16, 32, 32, 64, 64]


def test_full_size_networks_construct_on_meta():
    with torch.device("meta"):
        net512 = ENTED()
        net1024 = ENTED(out_size=1024)
        disc = ENTEDDiscriminator()
    assert sorted(net1024.labels) == [16, 32, 64, 128, 256]
    assert net1024.channels[1024] == 32
    assert sum(p.numel() for p in net512.parameters()) > sum(p.numel() for p in disc.parameters()) > 0


@pytest.mark.parametrize("bad", [48, 16, 2048, 100, 512.0])
def test_invalid_out_size(bad):
    with pytest.raises(ValueError, match="power of two"):
        ENTED(out_size=bad)
    with pytest.raises(ValueError, match="power of two"):
        ENTEDDiscriminator(out_size=bad)


def test_invalid_inputs(tiny_net):
    with pytest.raises(ValueError, match=r"lq must be \(B, 3, 64, 64\)"):
        tiny_net(_images(1, 32))
    with pytest.raises(ValueError, match="batch size 1 but lq has 2"):
        tiny_net(_images(2, 64), _images(1, 64))
    with pytest.raises(ValueError, match="ref must be"):
        tiny_net(_images(1, 64), _images(1, 32))
    with pytest.raises(ValueError, match="discriminator input"):
        ENTEDDiscriminator(out_size=32, width=1 / 16)(_images(1, 64))


def test_channel_and_label_overrides_from_json(seeded):
    net = ENTED(**TINY_ENTED_64, channels={"64": 64}, num_labels={"32": 0, "16": 4})
    assert net.channels[64] == 4  # 64 * 1/16
    assert net.labels == {16: 4}
    twin = ENTED(**json.loads(json.dumps(net.config)))
    assert twin.labels == net.labels and twin.channels == net.channels


# ---------------------------------------------------------------- discriminator


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8])
def test_discriminator_any_batch(batch, seeded):
    disc = ENTEDDiscriminator(out_size=32, width=1 / 16)
    assert disc(_images(batch, 32)).shape == (batch, 1)


def test_minibatch_stddev_matches_definition(seeded):
    x = torch.randn(8, 4, 2, 2)
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (8, 5, 2, 2)
    # sample i is grouped with the samples i mod 2 (group size 4, 2 groups)
    for i in range(8):
        group = x[i % 2 :: 2]
        expected = group.std(dim=0, unbiased=False).mean()
        torch.testing.assert_close(y[i, 4], torch.full((2, 2), float(expected)), rtol=1e-4, atol=1e-5)
    # a group of one has no spread (only the 1e-8 inside the square root)
    assert minibatch_stddev(x[:1], 4)[:, 4].abs().max() < 1e-3


def test_discriminator_separates_after_few_steps(seeded):
    """A sanity check that the discriminator can learn: real = smooth images, fake = noise."""
    disc = ENTEDDiscriminator(out_size=32, width=1 / 16)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.0, 0.99))
    real = F.interpolate(_images(4, 4), size=32, mode="bilinear")
    for _ in range(15):
        fake = _images(4, 32)
        loss = F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert disc(real).mean() > disc(_images(4, 32)).mean()


def test_torch_compile_fullgraph(seeded):
    """The forwards trace into one graph (no data-dependent Python control flow)."""
    net = ENTED(**TINY_ENTED_64).eval()
    disc = ENTEDDiscriminator(out_size=32, width=1 / 16)
    lq, ref = _images(2, 64), _images(2, 64)
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(lq, ref), net(lq, ref))
    compiled_disc = torch.compile(disc, fullgraph=True, backend="eager")
    assert compiled_disc(_images(3, 32)).shape == (3, 1)


def test_reference_attention_starts_as_faithful_ented_and_learns(seeded):
    net = ENTED(**TINY_ENTED_64, reference_attention=(16, 32))
    added = {n for n, _ in net.named_parameters()} - _param_names()
    assert added and all(n.startswith(("reference_attention.16.", "reference_attention.32.")) for n in added)
    lq, ref = _images(2, 64), _images(2, 64)
    plain = ENTED(**TINY_ENTED_64)
    plain.load_state_dict(net.state_dict(), strict=False)
    with torch.no_grad():  # zero-initialised output projection: at start the decoder is ENTED's
        torch.testing.assert_close(net.eval()(lq, ref), plain.eval()(lq, ref))
        for module in net.reference_attention.values():
            module.to_out.weight.normal_(0, 0.1)
    net.train()
    out = net(lq, ref)
    (out * torch.randn_like(out)).mean().backward()
    for name, p in net.reference_attention.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_reference_attention_maps_and_references(seeded):
    net = ENTED(**TINY_ENTED_64, reference_attention=(32,), reference_attention_heads=2).eval()
    with torch.no_grad():
        net.reference_attention["32"].to_out.weight.normal_(0, 0.1)
        lq, ref = _images(2, 64), _images(2, 64)
        single = net(lq, ref)
        _, aux = net(lq, torch.stack([ref, _images(2, 64), ref], 1), return_aux=True)
        attention = aux["reference_attention"][32]  # 16 blocks of 8x8, each with a halo of 4
        assert attention.shape == (2 * 16, 2, 8 * 8, 3 * 16 * 16)
        torch.testing.assert_close(attention.sum(-1), torch.ones(2 * 16, 2, 8 * 8))
        # the top-left block's halo lies partly outside the image: no attention goes there
        outside = torch.ones(16, 16, dtype=torch.bool)
        outside[4:, 4:] = False
        assert attention[0, :, :, :256][..., outside.flatten()].abs().max() == 0
        duplicated = net(lq, torch.stack([ref, ref], 1))
        torch.testing.assert_close(duplicated, single, rtol=1e-4, atol=1e-5)
    # with textures and refinement off, the attention is the reference's only way in
    only_attention = ENTED(
        **TINY_ENTED_64, reference_attention=(32,), use_refinement=False, num_labels={16: 0, 32: 0}
    ).eval()
    with torch.no_grad():
        lq, ref, other = _images(2, 64), _images(2, 64), _images(2, 64)
        torch.testing.assert_close(only_attention(lq, ref), only_attention(lq, other))
        only_attention.reference_attention["32"].to_out.weight.normal_(0, 0.1)
        assert (only_attention(lq, ref) - only_attention(lq, other)).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="reference_attention must be"):
        ENTED(**TINY_ENTED_64, reference_attention=(128,))
    with pytest.raises(ValueError, match="divisible"):
        ENTED(**TINY_ENTED_64, reference_attention=(32,), reference_attention_heads=5)


def test_reference_attention_is_local(seeded):
    from ented.archs.reference_attention import DenseReferenceAttention

    attention = DenseReferenceAttention(8, 8, 8, dim=8, window=2)
    torch.nn.init.normal_(attention.to_out.weight)
    x, ref = torch.randn(1, 8, 32, 32), torch.randn(1, 1, 8, 32, 32)
    far = ref.clone()
    # shuffle positions beyond the top-left block's halo (rows/cols < 10): the norms' statistics stay
    far[..., 20:, 20:] = far[..., 20:, 20:].flatten(-2)[..., torch.randperm(144)].view(1, 1, 8, 12, 12)
    with torch.no_grad():
        before, after = attention(x, ref, ref)[0], attention(x, far, far)[0]
    torch.testing.assert_close(after[..., :8, :8], before[..., :8, :8])
    assert (after[..., 24:, 24:] - before[..., 24:, 24:]).abs().max() > 1e-3


def test_reference_strength_runs_from_no_reference_to_the_reference(seeded):
    net = ENTED(**TINY_ENTED_64, reference_attention=(32,)).eval()
    with torch.no_grad():
        net.reference_attention["32"].to_out.weight.normal_(0, 0.1)
        lq, refs = _images(2, 64), torch.stack([_images(2, 64), _images(2, 64)], 1)
        full, none = net(lq, refs), net(lq, None)
        torch.testing.assert_close(net(lq, refs, reference_strength=0.0), none, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net(lq, refs, reference_strength=1.0), full)
        half = net(lq, refs, reference_strength=0.5)
        assert (half - full).abs().mean() > 1e-4 and (half - none).abs().mean() > 1e-4
        distance = [(net(lq, refs, reference_strength=s) - none).abs().mean() for s in (0.25, 0.5, 0.75)]
        assert distance[0] < distance[1] < distance[2] < (full - none).abs().mean()
    with pytest.raises(ValueError, match="reference_strength"):
        net(lq, refs, reference_strength=1.5)
