"""Vector-quantized dictionary of high-quality latent code words [abstract; layout default].

The latent of the degraded input is projected (1x1) to ``code_dim``, each position is replaced
by its nearest code word (L2), gradients pass straight through, and a 1x1 projection maps back.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class VectorQuantizer(nn.Module):
    """Nearest-code-word quantizer with straight-through gradients and usage statistics.

    Args:
        in_channels: Channels of the latent map (512 at full width).
        code_dim: Size of a code word [default: 256].
        codebook_size: Number of code words N [default: 1024].
        beta: Weight of the commitment term ``||z - sg(e)||^2`` [default: 0.25, VQ-VAE].
    """

    def __init__(self, in_channels: int, code_dim: int = 256, codebook_size: int = 1024, beta: float = 0.25):
        super().__init__()
        self.proj_in = nn.Conv2d(in_channels, code_dim, 1)
        self.codebook = nn.Embedding(codebook_size, code_dim)
        # default: code words on the scale of the projected latent (about 0.5 at init), so that the
        # nearest-neighbour search spreads over the codebook instead of collapsing on one word
        nn.init.normal_(self.codebook.weight, std=0.5)
        self.proj_out = nn.Conv2d(code_dim, in_channels, 1)
        self.beta = beta
        # counts of code selections seen in training mode since the last reset (derived state)
        self.register_buffer("usage", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    def freeze_codebook(self, frozen: bool = True) -> None:
        """Stops (or resumes) training of the code words; the state dict is unchanged."""
        self.codebook.weight.requires_grad_(not frozen)

    @torch.no_grad()
    def init_codebook_(self, latents: torch.Tensor, noise: float = 0.01) -> None:
        """Sets the code words to randomly chosen projected latents (data-dependent initialisation).

        Encoder latents sit in a narrow cone around their mean, so a random codebook sends
        almost every position to the same word; starting from real latents avoids that collapse
        [default; the usual k-means-style VQ initialisation].

        Args:
            latents: Projected latents, (B, code_dim, h, w) or (N, code_dim).
            noise: Relative Gaussian jitter added so that repeated picks differ.
        """
        if latents.ndim == 4:
            latents = rearrange(latents, "b c h w -> (b h w) c")
        n, size = latents.shape[0], self.codebook.num_embeddings
        picks = torch.randperm(n, device=latents.device)[:size] if n >= size else torch.randint(n, (size,))
        codes = latents[picks.to(latents.device)].float()
        codes = codes + noise * codes.std() * torch.randn_like(codes)
        self.codebook.weight.copy_(codes.to(self.codebook.weight))

    def reset_usage(self) -> None:
        self.usage.zero_()

    def usage_stats(self) -> dict:
        """Code usage accumulated in training mode: {'used_fraction', 'perplexity', 'counts'}."""
        total = self.usage.sum().clamp(min=1)
        probs = self.usage.float() / total
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return {
            "used_fraction": float((self.usage > 0).float().mean()),
            "perplexity": float(perplexity),
            "counts": self.usage.clone(),
        }

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """(B, code_dim, h, w) projected latent -> (B, h, w) indices of the nearest code words."""
        flat = rearrange(z, "b c h w -> (b h w) c").float()
        codes = self.codebook.weight.float()
        with torch.autocast(device_type=z.device.type, enabled=False):
            dist = flat.square().sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.square().sum(1)[None]
        return rearrange(dist.argmin(dim=1), "(b h w) -> b h w", b=z.shape[0], h=z.shape[2])

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """z: (B, C, h, w) -> (quantized latent (B, C, h, w), info).

        info: {'loss': codebook + beta * commitment (scalar), 'indices': (B, h, w) long,
        'perplexity': scalar tensor, 'used_fraction': scalar tensor (of this batch)}.
        """
        ze = self.proj_in(z)
        indices = self.lookup(ze)
        zq = rearrange(self.codebook(indices), "b h w c -> b c h w").to(ze.dtype)
        codebook_loss = F.mse_loss(zq.float(), ze.detach().float())
        commitment = F.mse_loss(ze.float(), zq.detach().float())
        zq = ze + (zq - ze).detach()  # straight-through
        one_hot = F.one_hot(indices.flatten(), self.codebook.num_embeddings).float()
        counts = one_hot.sum(0)
        if self.training:
            self.usage += counts.long()
        probs = counts / counts.sum()
        info = {
            "loss": codebook_loss + self.beta * commitment,
            "indices": indices,
            "perplexity": torch.exp(-(probs * torch.log(probs + 1e-10)).sum()),
            "used_fraction": (counts > 0).float().mean(),
        }
        return self.proj_out(zq), info
