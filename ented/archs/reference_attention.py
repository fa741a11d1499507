"""Dense reference attention: every decoder position looks up its match in the reference's features.

Not in the ENTED paper: the stronger variant's switch (``ENTED(reference_attention=(32, ...))``).
ENTED's texture extraction pools the reference into ``k`` vectors per layer (one per semantic
label) and its latent refinement works on 16x16 tokens, so neither can say *where* a small detail
(a mole, a scar) sits. Reference-based super-resolution (e.g. TTSR, Yang et al., CVPR 2020;
C2-Matching, Jiang et al., CVPR 2021) and reference-based face restoration with diffusion
(ReF-LDM, Hsiao et al., 2024) transfer such detail by dense cross-attention from the restored
image's features to the reference's features at 32-128 px. This module does that at one decoder
scale. Aligned faces put the same facial point near the same place, so attention is local, in
the blocked form of HaloNet (Vaswani et al., CVPR 2021): the map is cut into ``b x b`` blocks
(b = 8), and the positions of a block attend to the reference positions of the same block grown
by a halo of ``w`` on every side, in each of the K references -- cost linear in the image area:

    q = W_q [norm(x) ; P]        x: decoder activations (B, C, h, w); P: Fourier features of the position
    k = W_k [norm(g_ref) ; P]    g_ref: E_ref's features at this scale and the two coarser ones, upsampled
                                 (B, K, C_k, h, w): the context that finds the match
    v = W_v norm(f_ref)          f_ref: E_ref's features at this scale (B, K, C_v, h, w): the detail
    x <- x + W_o softmax(q k^T / sqrt(d) - |p_q - p_k|^2 / (2 sigma^2)) v   (block + halo of every reference)

The last term is a learned Gaussian prior on the displacement between a position and the
reference position it reads (sigma per head, initially ``sigma`` positions): at the start each position
reads the reference around its own place -- right for aligned faces up to the pose -- and the
features learn to follow the pose from there. Positions outside the image are masked out. ``W_o``
starts at zero, so at initialisation the decoder is ENTED's.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

BLOCK = 8


def fourier_positions(size: int, num_frequencies: int, device=None, dtype=None) -> torch.Tensor:
    """(4 * num_frequencies, size, size) sines and cosines of the pixel centres' coordinates in [-1, 1]."""
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    frequencies = math.pi * 2.0 ** torch.arange(num_frequencies, device=device, dtype=torch.float32)
    angles = torch.cat([x[None] * frequencies[:, None, None], y[None] * frequencies[:, None, None]])
    return torch.cat([angles.sin(), angles.cos()]).to(dtype)


def halo_blocks(maps: torch.Tensor, block: int, window: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, blocks, (block + 2 window)^2, C): each block with its halo, zero-padded."""
    size = block + 2 * window
    unfolded = F.unfold(maps, size, padding=window, stride=block)
    return rearrange(unfolded, "n (c s) blocks -> n blocks s c", s=size * size)


class DenseReferenceAttention(nn.Module):
    """Local (block + halo) cross-attention from decoder activations to reference features at one scale.

    Args:
        channels: Channels of the decoder activations (output channels too).
        value_channels: Channels of the reference features read as values.
        key_channels: Channels of the reference features matched as keys.
        dim: Query/key size per head [default: 32].
        num_heads: Heads; must divide ``channels`` [default: 1].
        window: Halo ``w`` in positions of this scale [default: 4].
        num_frequencies: Octaves of the Fourier position features [default: 4].
        sigma: Initial width of the displacement prior, in positions [default: 1].
    """

    def __init__(
        self,
        channels: int,
        value_channels: int,
        key_channels: int,
        dim: int = 32,
        num_heads: int = 1,
        window: int = 4,
        num_frequencies: int = 4,
        sigma: float = 1.0,
    ):
        super().__init__()
        if channels % num_heads:
            raise ValueError(
                f"reference attention: {channels} channels are not divisible by {num_heads} heads"
            )
        if window < 0:
            raise ValueError(f"reference attention window must be >= 0, got {window}")
        self.num_heads = num_heads
        self.window = window
        self.num_frequencies = num_frequencies
        positions = 4 * num_frequencies
        self.norm_x = nn.GroupNorm(1, channels)
        self.norm_keys = nn.GroupNorm(1, key_channels)
        self.norm_values = nn.GroupNorm(1, value_channels)
        self.to_q = nn.Conv2d(channels + positions, dim * num_heads, 1)
        self.to_k = nn.Conv2d(key_channels + positions, dim * num_heads, 1)
        self.to_v = nn.Conv2d(value_channels, channels, 1)
        if sigma <= 0:
            raise ValueError(f"reference attention sigma must be positive, got {sigma}")
        self.log_sigma = nn.Parameter(torch.full((num_heads,), math.log(sigma)))
        self.to_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(
        self, x: torch.Tensor, values: torch.Tensor, keys: torch.Tensor, return_attention: bool = False
    ):
        """x: (B, C, h, w); values: (B, K, C_v, h, w); keys: (B, K, C_k, h, w)
        -> (x + attention output (B, C, h, w), attention).

        The attention (B * blocks, heads, b*b, K*(b+2w)^2) is returned only with ``return_attention``
        (else None); blocks are in raster order, positions within a block too.
        """
        batch, _, height, width = x.shape
        num_refs = values.shape[1]
        block = min(BLOCK, height, width)
        if height % block or width % block:
            raise ValueError(f"reference attention needs sides divisible by {block}, got {height}x{width}")
        if height != width:
            raise ValueError(f"reference attention needs square maps, got {height}x{width}")
        positions = fourier_positions(height, self.num_frequencies, x.device, x.dtype)
        keys = self.norm_keys(rearrange(keys, "b k c h w -> (b k) c h w"))
        keys = self.to_k(torch.cat([keys, positions.expand(len(keys), -1, -1, -1)], 1))
        values = self.to_v(self.norm_values(rearrange(values, "b k c h w -> (b k) c h w")))
        query = self.to_q(torch.cat([self.norm_x(x), positions.expand(batch, -1, -1, -1)], 1))
        heads = self.num_heads
        q = rearrange(query, "b (m d) (y i) (x j) -> (b y x) m (i j) d", m=heads, i=block, j=block)
        k = rearrange(
            halo_blocks(keys, block, self.window), "(b k) n s (m d) -> (b n) m (k s) d", k=num_refs, m=heads
        )
        v = rearrange(
            halo_blocks(values, block, self.window), "(b k) n s (m c) -> (b n) m (k s) c", k=num_refs, m=heads
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._logit_bias(x, block, batch, num_refs))
        out = rearrange(
            out, "(b y x) m (i j) c -> b (m c) (y i) (x j)", b=batch, y=height // block, i=block, j=block
        ).contiguous(memory_format=torch.channels_last)
        attention = None
        if return_attention:
            logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            attention = (logits + self._logit_bias(x, block, batch, num_refs)).softmax(-1)
        return x + self.to_out(out), attention

    def _logit_bias(self, x: torch.Tensor, block: int, batch: int, num_refs: int) -> torch.Tensor:
        """(B * blocks, heads, b*b, K*(b+2w)^2): the displacement prior, -inf outside the image."""
        size = block + 2 * self.window
        query_pos = torch.stack(
            torch.meshgrid(*[torch.arange(block, device=x.device)] * 2, indexing="ij"), -1
        )
        key_pos = torch.stack(
            torch.meshgrid(*[torch.arange(size, device=x.device) - self.window] * 2, indexing="ij"), -1
        )
        distance2 = (query_pos.reshape(-1, 1, 2) - key_pos.reshape(1, -1, 2)).pow(2).sum(-1).to(x.dtype)
        prior = -distance2 / (2 * torch.exp(2 * self.log_sigma.to(x.dtype)))[:, None, None]  # (m, bb, s)
        inside = halo_blocks(torch.ones_like(x[:1, :1]), block, self.window)[..., 0] > 0  # (1, blocks, s)
        bias = prior[None, None].masked_fill(~inside[:, :, None, None, :], float("-inf"))  # (1, n, m, bb, s)
        bias = bias.repeat(batch, 1, 1, 1, num_refs)
        return rearrange(bias, "b n m q s -> (b n) m q s")
