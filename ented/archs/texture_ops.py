"""NTED's neural-texture extraction and distribution operations [NTED][eq].

Extraction reads a reference feature map ``F`` (C x HW) and summarises it into ``k`` texture
vectors, one per learned semantic label: a softmax over *spatial positions* picks, for each
label, where in the reference that label lives, and the textures are the attention-weighted
averages of the values. Distribution does the opposite in the decoder: a softmax over the
*labels* at each output pixel decides which texture to paint there.

With several references the textures of all of them are concatenated along the label axis, and
the distribution logits are shared between the copies of a label, so each label receives the
mean of its textures over the references [default; ENTED itself uses one reference].
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ented.archs.stylegan2_layers import SQRT2

_RSQRT2 = 1.0 / SQRT2


class TextureExtraction(nn.Module):
    """Neural-texture extraction: (B, C_in, h, w) features -> (B, k, C_out) textures.

    key = F centred and L2-normalised over channels at each pixel; logits = conv(key) with ``k``
    output channels, kernel ``m`` and no bias; ``A_e`` = softmax of the logits over the h*w
    positions; values ``V`` = conv(F); textures ``T = A_e V^T``.

    Args:
        in_channels: Channels of the reference features ``F``.
        out_channels: Channels of the textures (the decoder's channels at this scale).
        num_labels: ``k``, the number of semantic labels [NTED: 16 at 16x16, 32 at 32/64, 64 at 128/256].
        kernel_size: ``m`` of the logits conv [NTED: 1 at 16x16, else 3].
        value_kernel_size: Kernel of the values conv [eq: 1; NTED uses ``m``].
        eps: Added to the key norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_labels: int,
        kernel_size: int = 3,
        value_kernel_size: int = 1,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.logits = nn.Conv2d(in_channels, num_labels, kernel_size, padding=kernel_size // 2, bias=False)
        self.values = nn.Conv2d(in_channels, out_channels, value_kernel_size, padding=value_kernel_size // 2)
        self.eps = eps

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: (B, C_in, h, w) -> textures (B, k, C_out), attention (B, k, h, w) summing to 1 over h*w."""
        f32 = feats.float()
        key = f32 - f32.mean(dim=1, keepdim=True)
        key = key * torch.rsqrt(key.square().sum(dim=1, keepdim=True) + self.eps)
        logits = self.logits(key.to(feats.dtype))
        h, w = logits.shape[-2:]
        attn = torch.softmax(rearrange(logits, "b k h w -> b k (h w)").float(), dim=-1)
        values = rearrange(self.values(feats), "b c h w -> b (h w) c")
        textures = torch.matmul(attn.to(values.dtype), values)
        return textures, rearrange(attn, "b k (h w) -> b k h w", h=h, w=w)


class TextureDistribution(nn.Module):
    """Neural-texture distribution: paints textures into decoder features.

    logits = conv(x) with ``k`` output channels, kernel ``m`` and a bias; ``A_d`` = softmax over
    the labels at each pixel; ``out = T^T A_d``; returns ``(x + out) / sqrt(2)``.

    Args:
        channels: Decoder channels ``C`` (also the textures' channels).
        num_labels: ``k`` labels per reference.
        kernel_size: ``m`` [NTED: 1 at 16x16, else 3].
    """

    def __init__(self, channels: int, num_labels: int, kernel_size: int = 3):
        super().__init__()
        self.logits = nn.Conv2d(channels, num_labels, kernel_size, padding=kernel_size // 2)
        self.num_labels = num_labels

    def forward(self, x: torch.Tensor, textures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, h, w); textures: (B, K*k, C) for K references.

        Returns:
            The updated features (B, C, h, w) and the attention (B, K*k, h, w), a softmax over
            the K*k labels at each pixel.
        """
        num_refs = textures.shape[1] // self.num_labels
        logits = self.logits(x)
        h, w = logits.shape[-2:]
        textures = textures.to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # pixels-major layout: (B, h*w, C) views, softmax over the contiguous label axis
            logits = rearrange(logits, "b k h w -> b (h w) k").repeat(1, 1, num_refs)
            attn = torch.softmax(logits.float(), dim=-1).to(x.dtype)
            out = torch.baddbmm(
                rearrange(x, "b c h w -> b (h w) c"), attn, textures, beta=_RSQRT2, alpha=_RSQRT2
            )
            out = rearrange(out, "b (h w) c -> b c h w", h=h, w=w)
            return out, rearrange(attn, "b (h w) l -> b l h w", h=h, w=w)
        # the same logit for every reference's copy of a label: the label gets the references' mean texture
        logits = rearrange(logits, "b k h w -> b k (h w)").repeat(1, num_refs, 1)
        attn = torch.softmax(logits.float(), dim=1).to(x.dtype)
        out = torch.baddbmm(x.flatten(2), textures.transpose(1, 2), attn, beta=_RSQRT2, alpha=_RSQRT2)
        out = rearrange(out, "b c (h w) -> b c h w", h=h, w=w)
        return out, rearrange(attn, "b l (h w) -> b l h w", h=h, w=w)


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resizes (N, C, H, W) images: box filter when shrinking (exact block means), bilinear when growing."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    if img.shape[-2] >= size[0] and img.shape[-1] >= size[1]:
        return F.interpolate(img, size=size, mode="area")
    return F.interpolate(img, size=size, mode="bilinear", align_corners=False)


def distribute_rgb(extraction: torch.Tensor, distribution: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Replays one extraction/distribution pair on RGB pixels instead of features.

    Used by the attention reconstruction loss [NTED]: textures are the attention-weighted mean
    colours of the (resized) reference.

    Args:
        extraction: (B, K, k, h_e, w_e), softmax over h_e*w_e.
        distribution: (B, K*k, h_d, w_d), softmax over the K*k labels.
        ref: (B, K, 3, H, W), resized here to (h_e, w_e).

    Returns:
        (B, 3, h_d, w_d) image.
    """
    b, k_refs, _, h_e, w_e = extraction.shape
    ref = rearrange(ref, "b k c h w -> (b k) c h w")
    ref = resize(ref, (h_e, w_e))
    ref = rearrange(ref, "(b k) c h w -> b k (h w) c", b=b)
    attn = rearrange(extraction, "b k l h w -> b k l (h w)")
    textures = rearrange(torch.matmul(attn.to(ref.dtype), ref), "b k l c -> b c (k l)")
    h_d, w_d = distribution.shape[-2:]
    out = torch.matmul(textures, rearrange(distribution, "b l h w -> b l (h w)").to(ref.dtype))
    return rearrange(out, "b c (h w) -> b c h w", h=h_d, w=w_d)
