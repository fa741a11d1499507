"""The networks ``ented-benchmark speed`` compares: ENTED and GFPGANv1Clean, full or tiny.

Full: ENTED at the given size with its default (512 recipe) configuration, and GFPGANv1Clean
in GFPGAN v1.3/v1.4's released configuration. Tiny (``--dry-run``): the same classes with
narrow channel plans, for checking the benchmark's code paths on CPU in seconds.
CodeFormer is timed in its own process (:mod:`ented.benchmark.codeformer_speed`).
"""

import torch

from ented.archs.ented_arch import ENTED
from ented.archs.ented_discriminator_arch import ENTEDDiscriminator
from ented.archs.gfpgan_baseline_arch import ENTEDGFPGANv1Clean

# GFPGAN v1.3/v1.4's released generator (its inference_gfpgan.py, arch 'clean')
GFPGAN_RELEASED = {
    "num_style_feat": 512,
    "channel_multiplier": 2,
    "num_mlp": 8,
    "narrow": 1,
}
# small enough to build and run at 64 px on CPU in about a second
GFPGAN_TINY = {"num_style_feat": 64, "channel_multiplier": 1, "num_mlp": 2, "narrow": 0.125}
ENTED_TINY_WIDTH = 1 / 16

# GFPGAN's discriminator (train_gfpgan_v1.yml: StyleGAN2Discriminator, channel_multiplier 1):
# StyleGAN2's channel plan at multiplier 1. Built with ENTEDDiscriminator's pure-PyTorch layers,
# because BasicSR's StyleGAN2Discriminator needs its compiled CUDA ops.
GFPGAN_DISCRIMINATOR_CHANNELS = {
    4: 512,
    8: 512,
    16: 512,
    32: 512,
    64: 256,
    128: 128,
    256: 64,
    512: 32,
    1024: 16,
}


def build_ented(size: int, tiny: bool = False) -> ENTED:
    """ENTED at ``size`` with the default configuration (the recipes'), or narrow when ``tiny``."""
    return ENTED(out_size=size, width=ENTED_TINY_WIDTH if tiny else 1.0)


def build_gfpgan(size: int, tiny: bool = False) -> ENTEDGFPGANv1Clean:
    """GFPGANv1Clean at ``size`` (released configuration, or narrow when ``tiny``), random weights,
    as ``net(lq, ref=None) -> image`` (the ``gfpgan`` package's generator inside, as ``.net``)."""
    return ENTEDGFPGANv1Clean(out_size=size, sft_half=True, **(GFPGAN_TINY if tiny else GFPGAN_RELEASED))


def build_gfpgan_discriminator(size: int, tiny: bool = False) -> ENTEDDiscriminator:
    """GFPGAN's discriminator shape (StyleGAN2, channel multiplier 1)."""
    channels = {res: c for res, c in GFPGAN_DISCRIMINATOR_CHANNELS.items() if res <= size}
    return ENTEDDiscriminator(out_size=size, width=ENTED_TINY_WIDTH if tiny else 1.0, channels=channels)


def build_networks(size: int, tiny: bool = False) -> dict:
    """{record name: network} for the in-process comparison, in timing order."""
    return {f"ENTED-{size}": build_ented(size, tiny), f"GFPGANv1Clean-{size}": build_gfpgan(size, tiny)}


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
