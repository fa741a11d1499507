"""GFPGANv1Clean as a generator ``ENTEDModel`` can train: the blind baseline of ``ented-benchmark train``.

::

    lq ──GFPGANv1Clean (U-Net encoder ─SFT─> StyleGAN2 decoder)──> out      (ref: accepted, ignored)

``ENTEDModel`` calls its generator as ``net(lq, ref, return_aux=True)`` and asks it for
``parameter_groups()``; this wrapper gives GFPGAN's generator (from the ``gfpgan`` package, the
``benchmark`` extra) that interface, so GFPGAN trains on the same dataset, degradations, batch,
optimizer, losses and iteration budget as ENTED. GFPGAN's own ``GFPGANModel`` is not used: it always
trains a GAN with its own optimizer settings and EMA, and its facial-component crops scale with
``out_size / 512`` (zero below 512 px).
"""

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class ENTEDGFPGANv1Clean(nn.Module):
    """GFPGANv1Clean (``input_is_latent``, ``different_w``, no pretrained decoder): lq -> out.

    Args:
        out_size: Face size S, a power of two.
        num_style_feat: Style (latent) width [GFPGAN v1.3/v1.4: 512].
        channel_multiplier: StyleGAN2 channel multiplier [GFPGAN v1.3/v1.4: 2].
        narrow: Channel scale of the U-Net and the decoder [GFPGAN: 1].
        num_mlp: Layers of the StyleGAN2 mapping network [GFPGAN: 8]; unused with
            ``input_is_latent`` (GFPGAN's setting), so its parameters are frozen.
        sft_half: SFT on half of the decoder's channels [GFPGAN v1.3/v1.4: true].

    The U-Net's intermediate RGB heads (``toRGB``) serve only GFPGAN's image-pyramid loss, which
    ``ENTEDModel`` does not have; they are frozen too.
    """

    def __init__(
        self,
        out_size: int = 512,
        num_style_feat: int = 512,
        channel_multiplier: int = 2,
        narrow: float = 1.0,
        num_mlp: int = 8,
        sft_half: bool = True,
    ):
        super().__init__()
        try:
            from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
        except ImportError as error:
            raise ImportError(
                "ENTEDGFPGANv1Clean needs the gfpgan package: pip install 'ented[benchmark]'"
            ) from error
        self.config = {
            "out_size": out_size,
            "num_style_feat": num_style_feat,
            "channel_multiplier": channel_multiplier,
            "narrow": narrow,
            "num_mlp": num_mlp,
            "sft_half": sft_half,
        }
        self.net = GFPGANv1Clean(
            out_size=out_size,
            num_style_feat=num_style_feat,
            channel_multiplier=channel_multiplier,
            decoder_load_path=None,
            fix_decoder=False,
            num_mlp=num_mlp,
            input_is_latent=True,
            different_w=True,
            narrow=narrow,
            sft_half=sft_half,
        )
        self.net.toRGB.requires_grad_(False)
        self.net.stylegan_decoder.style_mlp.requires_grad_(False)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """All trainable parameters in 'base' (the base learning rate); none in 'attention'."""
        return {"base": [p for p in self.parameters() if p.requires_grad], "attention": []}

    def forward(self, lq: torch.Tensor, ref: torch.Tensor | None = None, return_aux: bool = False):
        """Restores ``lq``; ``ref`` is ignored (GFPGAN is blind).

        Args:
            lq: (B, 3, S, S) in [-1, 1].
            ref: Ignored ((B, 3, S, S), (B, K, 3, S, S) or None).
            return_aux: Also return an (empty) aux dict, as ``ENTEDModel`` asks in training.

        Returns:
            out (B, 3, S, S), or ``(out, {})`` with ``return_aux``.
        """
        out = self.net(lq, return_rgb=False)[0]
        return (out, {}) if return_aux else out
