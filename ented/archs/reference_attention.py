"""Dense reference attention: every decoder position looks up its match in the reference's features.

Not in the ENTED paper: the stronger variant's switch (``ENTED(reference_attention=(32, ...))``).
ENTED's texture extraction pools the reference into ``k`` vectors per layer (one per semantic
label) and its latent refinement works on 16x16 tokens, so neither can say *where* a small detail
(a mole, a scar) sits. Reference-based super-resolution (e.g. TTSR, Yang et al., CVPR 2020;
C2-Matching, Jiang et al., CVPR 2021) and reference-based face restoration with diffusion
(ReF-LDM, Hsiao et al., 2024) transfer such detail by dense cross-attention from the restored
image's features to the reference's features at 32-128 px; this module does that with one
attention per chosen decoder scale:

    q = W_q [x ; P]          x: decoder activations (B, C, h, w), P: fixed Fourier position features
    k = W_k [f_ref ; P]      f_ref: E_ref's features at the same scale (B, K, C, h, w), K references
    v = W_v f_ref
    x <- x + W_o softmax(q k^T / sqrt(d)) v      (over the h*w*K reference positions)

Positions enter queries and keys because aligned faces put the same facial point near the same
place, so the attention starts local and learns to follow the pose from the features. ``W_o`` starts
at zero: at initialisation the decoder is ENTED's.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def fourier_positions(size: int, num_frequencies: int, device=None, dtype=None) -> torch.Tensor:
    """(4 * num_frequencies, size, size) sines and cosines of the pixel centres' coordinates in [-1, 1]."""
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    frequencies = math.pi * 2.0 ** torch.arange(num_frequencies, device=device, dtype=torch.float32)
    angles = torch.cat([x[None] * frequencies[:, None, None], y[None] * frequencies[:, None, None]])
    return torch.cat([angles.sin(), angles.cos()]).to(dtype)


class DenseReferenceAttention(nn.Module):
    """Cross-attention from decoder activations to reference features at one scale.

    Args:
        channels: Channels of the decoder activations (output channels too).
        ref_channels: Channels of the reference features.
        dim: Query/key size per head [default: 64].
        num_heads: Heads [default: 1].
        num_frequencies: Octaves of the Fourier position features [default: 4].
    """

    def __init__(
        self, channels: int, ref_channels: int, dim: int = 64, num_heads: int = 1, num_frequencies: int = 4
    ):
        super().__init__()
        if channels % num_heads:
            raise ValueError(
                f"reference attention: {channels} channels are not divisible by {num_heads} heads"
            )
        self.num_heads = num_heads
        self.num_frequencies = num_frequencies
        pos = 4 * num_frequencies
        self.norm_x = nn.GroupNorm(1, channels)
        self.norm_ref = nn.GroupNorm(1, ref_channels)
        self.to_q = nn.Conv2d(channels + pos, dim * num_heads, 1)
        self.to_k = nn.Conv2d(ref_channels + pos, dim * num_heads, 1)
        self.to_v = nn.Conv2d(ref_channels, channels, 1)
        self.to_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor, return_attention: bool = False):
        """x: (B, C, h, w); ref: (B, K, C_ref, h, w) -> (x + attention output (B, C, h, w), attention).

        The attention (B, heads, h*w, K*h*w) is computed only with ``return_attention`` (else None).
        """
        batch, _, size, _ = x.shape
        num_refs = ref.shape[1]
        positions = fourier_positions(size, self.num_frequencies, x.device, x.dtype)
        refs = rearrange(ref, "b k c h w -> (b k) c h w")
        normed = self.norm_ref(refs)
        keys = self.to_k(torch.cat([normed, positions.expand(len(refs), -1, -1, -1)], 1))
        values = self.to_v(normed)
        query = self.to_q(torch.cat([self.norm_x(x), positions.expand(batch, -1, -1, -1)], 1))
        q = rearrange(query, "b (n d) h w -> b n (h w) d", n=self.num_heads)
        k = rearrange(keys, "(b k) (n d) h w -> b n (k h w) d", k=num_refs, n=self.num_heads)
        v = rearrange(values, "(b k) (n d) h w -> b n (k h w) d", k=num_refs, n=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.to_out(
            rearrange(out, "b n (h w) d -> b (n d) h w", h=size).contiguous(memory_format=torch.channels_last)
        )
        if not return_attention:
            return x + out, None
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        return x + out, attention
