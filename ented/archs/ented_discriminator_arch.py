"""StyleGAN2 residual discriminator with minibatch standard deviation, pure PyTorch [NTED].

Registered as ``ENTEDDiscriminator``: BasicSR's own ``StyleGAN2Discriminator`` needs compiled CUDA
ops and fails on CPU.
"""

import json
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ented.archs.ented_arch import check_out_size
from ented.archs.stylegan2_layers import SQRT2, EqualConv2d, EqualLinear

# StyleGAN2 discriminator channels with channel multiplier 2 (the 512 plan NTED uses) [NTED]
DISCRIMINATOR_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}


class ResBlock(nn.Module):
    """Two 3x3 convs (the second downsamples) plus a blurred 1x1 stride-2 skip, summed / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3, downsample=True, activation=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, downsample=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


def minibatch_stddev(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Appends the minibatch standard deviation as extra feature channels (StyleGAN2).

    The group is the largest divisor of the batch size not above ``group_size``, so any batch
    size works (batch 1 gives a group of one and a zero feature).

    Args:
        x: (B, C, H, W).
        group_size: Preferred group size (4).
        num_channels: Number of stddev channels (1).

    Returns:
        (B, C + num_channels, H, W).
    """
    b, c, h, w = x.shape
    group = next(g for g in range(min(group_size, b), 0, -1) if b % g == 0)
    y = x.float().reshape(group, b // group, num_channels, c // num_channels, h, w)
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)
    y = y.mean(dim=(2, 3, 4)).reshape(b // group, num_channels, 1, 1)
    y = y.repeat(group, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


@ARCH_REGISTRY.register()
class ENTEDDiscriminator(nn.Module):
    """StyleGAN2 residual discriminator: img (B, 3, S, S) -> logits (B, 1).

    Args:
        out_size: Image size S, a power of two in 32..1024.
        width: Channel multiplier.
        channels: Optional {res: channels} overriding the StyleGAN2 plan (before ``width``).
        stddev_group: Minibatch-stddev group size [StyleGAN2/NTED: 4].
        stddev_channels: Minibatch-stddev feature channels [StyleGAN2: 1].
    """

    def __init__(
        self,
        out_size: int = 512,
        width: float = 1.0,
        channels: dict | None = None,
        stddev_group: int = 4,
        stddev_channels: int = 1,
    ):
        super().__init__()
        check_out_size(out_size)
        if stddev_group < 1:
            raise ValueError(f"stddev_group must be >= 1, got {stddev_group}")
        self.config = {
            "out_size": out_size,
            "width": width,
            "channels": None if channels is None else {int(k): int(v) for k, v in channels.items()},
            "stddev_group": stddev_group,
            "stddev_channels": stddev_channels,
        }
        json.dumps(self.config)
        plan = dict(DISCRIMINATOR_CHANNELS)
        plan.update({int(k): int(v) for k, v in (channels or {}).items()})
        ch = {res: max(stddev_channels, int(round(c * width))) for res, c in plan.items()}
        if ch[4] % stddev_channels:
            raise ValueError(f"stddev_channels={stddev_channels} must divide the 4x4 channels {ch[4]}")
        self.out_size = out_size
        self.stddev_group = stddev_group
        self.stddev_channels = stddev_channels
        self.from_rgb = EqualConv2d(3, ch[out_size], 1, activation=True)
        sizes = [2**i for i in range(int(math.log2(out_size)), 2, -1)]  # out_size .. 8
        self.blocks = nn.Sequential(*(ResBlock(ch[res], ch[res // 2]) for res in sizes))
        self.final_conv = EqualConv2d(ch[4] + stddev_channels, ch[4], 3, activation=True)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation=True), EqualLinear(ch[4], 1)
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: (B, 3, S, S) in [-1, 1] -> (B, 1) logits."""
        size = self.out_size
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != size or img.shape[3] != size:
            raise ValueError(f"discriminator input must be (B, 3, {size}, {size}); got {tuple(img.shape)}")
        x = self.blocks(self.from_rgb(img))
        x = minibatch_stddev(x, self.stddev_group, self.stddev_channels)
        x = self.final_conv(x)
        return self.final_linear(x.flatten(1))
