"""Latent-space refinement by cross-attention to the reference, and style codes [abstract; layout default].

The (quantized) 16x16 tokens of the degraded input query the reference encoder's 16x16 tokens
(L pre-norm cross-attention blocks with an MLP); then one learned query per decoder conv attends
to the refined tokens and yields that conv's style vector (a W+ code). With several references
the keys/values are the tokens of all references concatenated.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp, trunc_normal_
from torch import nn


class CrossAttention(nn.Module):
    """Multi-head attention of ``x`` (queries) to ``context`` (keys/values) via SDPA.

    Args:
        dim: Token size of both sequences.
        num_heads: Heads; must divide ``dim``.
    """

    def __init__(self, dim: int, num_heads: int = 8):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D), context: (B, M, D) -> (B, N, D)."""
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(context), "b m (two h d) -> two b h m d", two=2, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class CrossAttentionBlock(nn.Module):
    """Pre-norm block: ``x += attn(norm(x), norm(ctx)); x += mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_kv(context))
        return x + self.mlp(self.norm_mlp(x))


class LatentRefinement(nn.Module):
    """Refines the LQ latent with the reference's tokens and reads out per-conv style codes.

    Args:
        dim: Channels of the 16x16 latent and of the reference's 16x16 features.
        num_styles: Number of style vectors to produce (one per decoder conv); 0 for none.
        style_dim: Size of each style vector.
        depth: Number of cross-attention blocks L [default: 2].
        num_heads: Attention heads [default: 8].
        mlp_ratio: MLP hidden size / dim [default: 4, ViT].
        grid: Side of the token grid (16).
    """

    def __init__(
        self,
        dim: int,
        num_styles: int,
        style_dim: int,
        depth: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        grid: int = 16,
    ):
        super().__init__()
        self.pos_query = nn.Parameter(torch.zeros(1, grid * grid, dim))
        self.pos_context = nn.Parameter(torch.zeros(1, grid * grid, dim))
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.num_styles = num_styles
        if num_styles:
            self.style_queries = nn.Parameter(torch.zeros(1, num_styles, dim))
            self.style_attn = CrossAttentionBlock(dim, num_heads, mlp_ratio)
            self.style_norm = nn.LayerNorm(dim)
            self.style_head = nn.Linear(dim, style_dim)
            trunc_normal_(self.style_queries, std=0.02)
        trunc_normal_(self.pos_query, std=0.02)
        trunc_normal_(self.pos_context, std=0.02)

    def forward(self, z: torch.Tensor, ref_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cross-attends the latent to the references.

        Args:
            z: (B, D, 16, 16) latent of the degraded input (quantized when VQ is on).
            ref_feats: (B, K, D, 16, 16) reference features.

        Returns:
            The refined latent (B, D, 16, 16) and the styles (B, num_styles, style_dim), or None
            when ``num_styles`` is 0.
        """
        h, w = z.shape[-2:]
        x = rearrange(z, "b d h w -> b (h w) d") + self.pos_query
        context = rearrange(ref_feats, "b k d h w -> b k (h w) d") + self.pos_context[:, None]
        context = rearrange(context, "b k n d -> b (k n) d")
        for block in self.blocks:
            x = block(x, context)
        styles = None
        if self.num_styles:
            queries = self.style_queries.repeat(x.shape[0], 1, 1)  # not a view: FlopCounterMode-safe
            styles = self.style_head(self.style_norm(self.style_attn(queries, x)))
        return rearrange(x, "b (h w) d -> b d h w", h=h, w=w), styles
