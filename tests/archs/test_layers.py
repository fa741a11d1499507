"""Building blocks of the ENTED network, each checked against its definition."""

import math

import pytest
import torch
import torch.nn.functional as F

from ented.archs.latent_refinement import CrossAttention, LatentRefinement
from ented.archs.stylegan2_layers import (
    BlurUpsample,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    fused_leaky_relu,
    make_blur_kernel,
)
from ented.archs.texture_ops import TextureDistribution, TextureExtraction
from ented.archs.vector_quantizer import VectorQuantizer

# ---------------------------------------------------------------- StyleGAN2 layers


def grouped_modulated_conv(module: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's original per-sample weight modulation, with one grouped convolution."""
    b, c_in, h, w = x.shape
    s = module.modulation(style)  # (B, C_in)
    weight = module.weight[None] * module.scale * s[:, None, :, None, None]  # (B, C_out, C_in, k, k)
    if module.demodulate:
        weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + module.eps)
    c_out, k = weight.shape[1], weight.shape[-1]
    x = x.reshape(1, b * c_in, h, w)
    if module.upsample:
        weight = weight.transpose(1, 2).reshape(b * c_in, c_out, k, k)
        out = F.conv_transpose2d(x, weight, stride=2, groups=b)
        out = module.blur(out.reshape(b, c_out, *out.shape[-2:]))
        return out
    out = F.conv2d(x, weight.reshape(b * c_out, c_in, k, k), padding=k // 2, groups=b)
    return out.reshape(b, c_out, h, w)


@pytest.mark.parametrize("batch", [1, 3])  # batch 1 modulates the weight, larger batches the activations
@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_batched_modulated_conv_equals_grouped_conv(upsample, demodulate, batch, seeded):
    module = ModulatedConv2d(6, 5, 3, style_dim=7, demodulate=demodulate, upsample=upsample)
    with torch.no_grad():
        module.modulation.bias.normal_()  # make the styles matter
    x, style = torch.randn(batch, 6, 8, 8), torch.randn(batch, 7)
    out = module(x, style)
    assert out.shape == ((batch, 5, 16, 16) if upsample else (batch, 5, 8, 8))
    expected = grouped_modulated_conv(module, x, style)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    deferred, demod = module(x, style, defer_demodulation=True)
    if demod is not None:
        deferred = deferred * demod[:, :, None, None]
    torch.testing.assert_close(deferred, expected, rtol=1e-4, atol=1e-5)


def test_demodulation_normalises_output_scale(seeded):
    module = ModulatedConv2d(64, 64, 3, style_dim=8)
    x = torch.randn(2, 64, 16, 16)
    small, large = module(x, torch.randn(2, 8)), module(x, 100 * torch.randn(2, 8))
    # demodulated output std stays about that of the input, whatever the style scale
    assert 0.5 < small.std() < 2 and 0.5 < large.std() < 2


def test_modulated_conv_finite_in_half_precision(seeded):
    module = ModulatedConv2d(32, 32, 3, style_dim=8)
    x = torch.randn(2, 32, 8, 8)
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", dtype=dtype):
            out = module(x, torch.randn(2, 8) * 1e-3)  # tiny styles: demodulation energy underflows in fp16
        assert torch.isfinite(out).all()


def test_fused_leaky_relu():
    x = torch.tensor([[-1.0, 2.0]]).reshape(1, 2, 1, 1)
    bias = torch.tensor([0.5, -1.0])
    out = fused_leaky_relu(x, bias).flatten()
    torch.testing.assert_close(out, torch.tensor([-0.5 * 0.2, 1.0]) * math.sqrt(2))
    gain = torch.tensor([[2.0, 0.25]])
    out = fused_leaky_relu(x, bias, gain=gain).flatten()
    torch.testing.assert_close(out, torch.tensor([-1.5 * 0.2, -0.5 * 0.2]) * math.sqrt(2))
    assert torch.equal(x.flatten(), torch.tensor([-1.0, 2.0]))  # the input is not modified in place


def test_equal_layers_keep_unit_scale(seeded):
    x = torch.randn(64, 256)
    assert 0.8 < EqualLinear(256, 256, bias=False)(x).std() < 1.2
    conv = EqualConv2d(64, 64, 3, bias=False)
    assert 0.8 < conv(torch.randn(2, 64, 16, 16)).std() < 1.2


def test_resampling_shapes_and_constant_preservation():
    x = torch.ones(1, 2, 8, 8)
    up = BlurUpsample()(x)
    assert up.shape == (1, 2, 16, 16)
    # away from the border the FIR upsampler keeps a constant image constant
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12))
    assert EqualConv2d(2, 4, 3, downsample=True)(x).shape == (1, 4, 4, 4)
    assert EqualConv2d(2, 4, 3, upsample=True)(x).shape == (1, 4, 16, 16)
    torch.testing.assert_close(make_blur_kernel().sum(), torch.tensor(1.0))


# ---------------------------------------------------------------- texture operations


def test_extraction_matches_definition(seeded):
    op = TextureExtraction(6, 5, num_labels=4, kernel_size=3)
    feats = torch.randn(2, 6, 7, 7)
    textures, attn = op(feats)
    assert textures.shape == (2, 4, 5) and attn.shape == (2, 4, 7, 7)
    torch.testing.assert_close(attn.sum(dim=(2, 3)), torch.ones(2, 4))
    key = F.normalize(feats - feats.mean(1, keepdim=True), dim=1)
    logits = F.conv2d(key, op.logits.weight, padding=1)
    expected_attn = torch.softmax(logits.flatten(2), dim=-1)
    values = op.values(feats).flatten(2)  # (B, C, HW)
    expected = torch.einsum("bkn,bcn->bkc", expected_attn, values)
    torch.testing.assert_close(textures, expected, rtol=1e-4, atol=1e-5)


def test_extraction_key_ignores_feature_scale_and_offset(seeded):
    op = TextureExtraction(6, 5, num_labels=4, kernel_size=1)
    feats = torch.randn(1, 6, 5, 5)
    _, a = op(feats)
    _, b = op(3 * feats + 2)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_distribution_matches_definition(seeded):
    op = TextureDistribution(5, num_labels=4, kernel_size=3)
    x, textures = torch.randn(2, 5, 6, 6), torch.randn(2, 4, 5)
    out, attn = op(x, textures)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 6, 6))
    expected = (x + torch.einsum("blc,blhw->bchw", textures, attn)) / math.sqrt(2)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    # with two references the label's texture is the mean of its two textures
    other = torch.randn(2, 4, 5)
    out2, attn2 = op(x, torch.cat([textures, other], dim=1))
    assert attn2.shape == (2, 8, 6, 6)
    expected2 = (x + torch.einsum("blc,blhw->bchw", (textures + other) / 2, attn)) / math.sqrt(2)
    torch.testing.assert_close(out2, expected2, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- vector quantizer


def test_vq_output_is_a_code_word_with_straight_through_gradient(seeded):
    vq = VectorQuantizer(8, code_dim=4, codebook_size=16)
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    out, info = vq(z)
    ze = vq.proj_in(z)
    codes = vq.codebook.weight
    # nearest code word by brute force
    dist = torch.cdist(ze.detach().permute(0, 2, 3, 1).reshape(-1, 4), codes.detach())
    assert torch.equal(info["indices"].flatten(), dist.argmin(dim=1))
    torch.testing.assert_close(out, vq.proj_out(codes[info["indices"]].permute(0, 3, 1, 2)))
    # straight-through: d out / d z is that of the unquantized path proj_out(proj_in(z))
    weight = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weight).sum(), z)
    (expected,) = torch.autograd.grad((vq.proj_out(vq.proj_in(z)) * weight).sum(), z)
    torch.testing.assert_close(grad, expected)
    # loss = codebook + 0.25 commitment, both equal to the MSE in the forward pass
    mse = F.mse_loss(codes[info["indices"]].permute(0, 3, 1, 2), ze)
    torch.testing.assert_close(info["loss"], 1.25 * mse)


def test_vq_usage_statistics(seeded):
    vq = VectorQuantizer(8, code_dim=4, codebook_size=16).train()
    _, info = vq(torch.randn(2, 8, 4, 4))
    used = info["indices"].unique().numel()
    torch.testing.assert_close(info["used_fraction"], torch.tensor(used / 16))
    assert 1 <= float(info["perplexity"]) <= used + 1e-4
    stats = vq.usage_stats()
    assert int(stats["counts"].sum()) == 32 and stats["used_fraction"] == used / 16
    vq.eval()(torch.randn(1, 8, 4, 4))
    assert int(vq.usage_stats()["counts"].sum()) == 32  # eval mode does not count
    vq.reset_usage()
    assert int(vq.usage.sum()) == 0
    assert "usage" not in vq.state_dict()


def test_vq_data_init_spreads_usage(seeded):
    vq = VectorQuantizer(8, code_dim=4, codebook_size=16)
    z = torch.randn(4, 8, 4, 4) + 3.0  # latents in a narrow cone, like an encoder's
    _, before = vq(z)
    vq.init_codebook_(vq.proj_in(z))
    _, after = vq(z)
    assert float(after["used_fraction"]) > 0.75 and float(after["used_fraction"]) > float(
        before["used_fraction"]
    )
    assert float(after["loss"].detach()) < float(before["loss"].detach())


def test_vq_learns_codebook(seeded):
    """The codebook loss moves the chosen code words towards the latents."""
    vq = VectorQuantizer(4, code_dim=4, codebook_size=8)
    opt = torch.optim.Adam(vq.codebook.parameters(), lr=0.05)
    z = torch.randn(1, 4, 4, 4)
    first = None
    for _ in range(50):
        _, info = vq(z)
        first = float(info["loss"].detach()) if first is None else first
        opt.zero_grad()
        info["loss"].backward()
        opt.step()
    assert float(info["loss"].detach()) < 0.5 * first


# ---------------------------------------------------------------- latent refinement


def test_cross_attention_matches_manual(seeded):
    attn = CrossAttention(8, num_heads=2)
    x, ctx = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    q = attn.q(x).reshape(1, 3, 2, 4).transpose(1, 2)
    k, v = attn.kv(ctx).reshape(1, 5, 2, 2, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(1, 3, 8))
    torch.testing.assert_close(attn(x, ctx), expected, rtol=1e-4, atol=1e-5)


def test_refinement_shapes_and_reference_dependence(seeded):
    module = LatentRefinement(16, num_styles=5, style_dim=12, num_heads=4, grid=4)
    z = torch.randn(2, 16, 4, 4)
    refined, styles = module(z, torch.randn(2, 3, 16, 4, 4))
    assert refined.shape == z.shape and styles.shape == (2, 5, 12)
    refined2, styles2 = module(z, torch.randn(2, 3, 16, 4, 4))
    assert (refined - refined2).abs().max() > 1e-4 and (styles - styles2).abs().max() > 1e-4
    with pytest.raises(ValueError, match="divisible"):
        LatentRefinement(10, 1, 4, num_heads=4)
