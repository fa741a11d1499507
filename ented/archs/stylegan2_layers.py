"""StyleGAN2 building blocks in pure PyTorch (no compiled ops), shared by ENTED's networks.

Equalized learning rate (weights stored at unit variance and scaled by ``1/sqrt(fan_in)`` at run
time), FIR ``[1, 3, 3, 1]`` blur resampling, bias + leaky ReLU(0.2) times ``sqrt(2)``, and the
modulated/demodulated convolution. These are the facts of StyleGAN2 (Karras et al., 2020) that
NTED builds on [NTED]; the code is written from the equations, and every forward is free of
data-dependent Python control flow so that ``torch.compile`` can trace it.

The modulated convolution is *batched*: instead of one grouped convolution with a per-sample
weight, it scales the input activations by the style, runs one ordinary convolution with the
shared weight, and scales the output by the demodulation coefficients. Because the convolution is
linear in its input, ``conv(x * s, W) * d == conv(x, W * s * d)``, i.e. it is exactly StyleGAN2's
weight demodulation ("fused=False" in the official code), but it runs as one dense convolution
that works with channels_last and any batch size.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    negative_slope: float = 0.2,
    scale: float = SQRT2,
    gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """``leaky_relu(x * gain + bias) * scale`` in two passes over ``x``.

    Because leaky ReLU is positively homogeneous, the output scale is folded into the affine
    step: ``leaky_relu(x * gain * scale + bias * scale)``.

    Args:
        x: (B, C, ...) activations.
        bias: (C,) or None.
        negative_slope: Leaky ReLU slope (StyleGAN2: 0.2).
        scale: Output gain, > 0 (StyleGAN2: sqrt(2), keeps the activations' second moment).
        gain: Optional (B, C) per-sample, per-channel factor applied to ``x`` first (demodulation).

    Returns:
        Tensor shaped like ``x``.
    """
    shape = (-1, x.shape[1]) + (1,) * (x.ndim - 2)
    if gain is not None:
        gain = (gain * scale).to(x.dtype).reshape(shape)
        out = x * gain if bias is None else torch.addcmul((bias * scale).to(x.dtype).view(shape), x, gain)
    elif bias is not None:
        out = torch.add((bias * scale).to(x.dtype).view(shape), x, alpha=scale)
    else:
        out = x * scale
    return F.leaky_relu_(out, negative_slope)


class FusedLeakyReLU(nn.Module):
    """Learned bias followed by leaky ReLU(0.2) times sqrt(2).

    Args:
        channels: Number of channels of the bias.
    """

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = SQRT2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, ...); gain: optional (B, C) factor applied before the bias (a deferred demodulation)."""
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale, gain)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate.

    Args:
        in_features: Input size.
        out_features: Output size.
        bias: Whether to learn a bias.
        bias_init: Initial bias value (1 for style modulation, so styles start as identity).
        lr_mul: Learning-rate multiplier (StyleGAN2's mapping network uses 0.01).
        activation: If True, the output goes through bias + leaky ReLU * sqrt(2).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, activation={self.activation}"


def make_blur_kernel(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR kernel as a normalised 2-D outer product: (len, len), sums to 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


def _depthwise_kernel(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return kernel.to(x.dtype).expand(x.shape[1], 1, *kernel.shape)


class Blur(nn.Module):
    """Depthwise FIR blur with explicit padding (used around strided and transposed convs).

    Args:
        pad: (before, after) padding applied to both spatial axes.
        gain: Multiplies the kernel (4 after a x2 upsampling, which inserts zeros).
        taps: 1-D FIR taps; StyleGAN2 uses (1, 3, 3, 1).
    """

    def __init__(self, pad: tuple[int, int], gain: float = 1.0, taps=(1, 3, 3, 1)):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps) * gain, persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        # the kernel is symmetric, so correlation equals convolution
        return F.conv2d(x, _depthwise_kernel(self.kernel, x), groups=x.shape[1])


class BlurUpsample(nn.Module):
    """x2 FIR upsampling (zero insertion + [1,3,3,1] blur), written as one depthwise transposed conv.

    Used for the RGB skip connections of the decoder. (B, C, H, W) -> (B, C, 2H, 2W).
    """

    def __init__(self, taps=(1, 3, 3, 1)):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps) * 4, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(
            x, _depthwise_kernel(self.kernel, x), stride=2, padding=1, groups=x.shape[1]
        )


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate, optional FIR-blurred x2 down- or upsampling.

    Downsampling blurs first and then applies a stride-2 convolution; upsampling applies a
    stride-2 transposed convolution and then blurs (StyleGAN2's layout).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        bias: Whether to add a learned bias (ignored when ``activation`` is True, which owns one).
        activation: If True, bias + leaky ReLU * sqrt(2) follows.
        downsample: Blur + stride-2 conv, (H, W) -> (H/2, W/2).
        upsample: Stride-2 transposed conv + blur, (H, W) -> (2H, 2W). ``kernel_size`` must be 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: bool = False,
        downsample: bool = False,
        upsample: bool = False,
    ):
        super().__init__()
        if downsample and upsample:
            raise ValueError("EqualConv2d cannot both downsample and upsample")
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.downsample = downsample
        self.upsample = upsample
        self.blur = _resample_blur(kernel_size, downsample, upsample)
        self.padding = 0 if (downsample or upsample) else kernel_size // 2
        self.act = FusedLeakyReLU(out_channels) if activation else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if (bias and not activation) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _resampling_conv(
            x, self.weight * self.scale, self.blur, self.downsample, self.upsample, self.padding
        )
        if self.act is not None:
            return self.act(x)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).view(1, -1, 1, 1)
        return x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, downsample={self.downsample}, upsample={self.upsample}"


def _resample_blur(kernel_size: int, downsample: bool, upsample: bool) -> Blur | None:
    """The blur StyleGAN2 puts before a strided conv or after a transposed conv (4-tap kernel)."""
    if downsample:
        p = 4 - 2 + kernel_size - 1
        return Blur(((p + 1) // 2, p // 2))
    if upsample:
        p = 4 - 2 - (kernel_size - 1)
        return Blur(((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
    return None


def _resampling_conv(
    x: torch.Tensor, weight: torch.Tensor, blur: Blur | None, downsample: bool, upsample: bool, padding: int
) -> torch.Tensor:
    weight = weight.to(x.dtype)
    if downsample:
        return F.conv2d(blur(x), weight, stride=2)
    if upsample:
        # conv_transpose2d wants (in, out, k, k)
        return blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
    return F.conv2d(x, weight, padding=padding)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, batched (no per-sample grouped convolution).

    ``y = d * conv(x * s, W)`` with ``s = A(style)`` (one scale per input channel and sample) and
    ``d = rsqrt(sum_{i,kh,kw} (W s)^2 + eps)`` (one per output channel and sample). This equals
    the weight-demodulated convolution ``conv(x, W * s * d)`` exactly. The demodulation sum is
    computed in float32 so that it cannot overflow or underflow under fp16/bf16 autocast.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        style_dim: Size of the style vector.
        demodulate: Normalise each output channel (StyleGAN2: True for convs, False for ToRGB).
        upsample: Stride-2 transposed conv + blur, (H, W) -> (2H, 2W).
        eps: Added to the demodulation sum (StyleGAN2: 1e-8; applied in float32).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        eps: float = 1e-8,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.upsample = upsample
        self.eps = eps
        self.blur = _resample_blur(kernel_size, False, upsample)
        self.padding = 0 if upsample else kernel_size // 2

    def demodulation(self, s: torch.Tensor) -> torch.Tensor:
        """(B, C_in) modulation scales -> (B, C_out) demodulation coefficients, float32."""
        w2 = (self.weight.float() * self.scale).square().sum(dim=(2, 3))  # (C_out, C_in)
        # elementwise product + sum (not a matmul) so that autocast keeps it in float32
        energy = (s.float().square()[:, None, :] * w2[None]).sum(-1)
        return torch.rsqrt(energy + self.eps)

    def forward(self, x: torch.Tensor, style: torch.Tensor, defer_demodulation: bool = False):
        """Applies the modulated convolution.

        Args:
            x: (B, C_in, H, W).
            style: (B, style_dim).
            defer_demodulation: Return the demodulation coefficients instead of applying them,
                so that the caller can fuse them into its next elementwise op.

        Returns:
            (B, C_out, H', W'); with ``defer_demodulation`` a pair (output, coefficients (B, C_out)
            float32, or None when they are already applied).
        """
        s = self.modulation(style)  # (B, C_in)
        d = self.demodulation(s) if self.demodulate else None
        if x.shape[0] == 1:
            # one sample: modulate the (small) weight instead of the (large) activations
            weight = self.weight * self.scale * s.reshape(1, -1, 1, 1)
            if d is not None:
                weight = weight * d.reshape(-1, 1, 1, 1)
            x = _resampling_conv(x, weight, self.blur, False, self.upsample, self.padding)
            return (x, None) if defer_demodulation else x
        x = x * s.to(x.dtype)[:, :, None, None]
        x = _resampling_conv(x, self.weight * self.scale, self.blur, False, self.upsample, self.padding)
        if defer_demodulation:
            return x, d
        if d is not None:
            x = x * d.to(x.dtype)[:, :, None, None]
        return x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, demodulate={self.demodulate}, upsample={self.upsample}"


class ToRGB(nn.Module):
    """Per-scale RGB head: a conv to 3 channels plus the upsampled RGB of the previous scale.

    NTED uses a 3x3 kernel [NTED]; with a ``style_dim`` the conv is modulated without
    demodulation (StyleGAN2's ToRGB), otherwise it is a plain equalized conv.

    Args:
        in_channels: Input channels.
        style_dim: Style size, or None for a plain conv.
        kernel_size: 3 [NTED] (StyleGAN2 uses 1).
        upsample_skip: Whether a previous-scale RGB image is upsampled and added.
    """

    def __init__(
        self, in_channels: int, style_dim: int | None, kernel_size: int = 3, upsample_skip: bool = True
    ):
        super().__init__()
        if style_dim is None:
            self.conv = EqualConv2d(in_channels, 3, kernel_size, bias=False)
        else:
            self.conv = ModulatedConv2d(in_channels, 3, kernel_size, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))
        self.upsample = BlurUpsample() if upsample_skip else None

    def forward(
        self, x: torch.Tensor, style: torch.Tensor | None = None, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.conv(x) if style is None else self.conv(x, style)
        out = out + self.bias.to(out.dtype).view(1, -1, 1, 1)
        if skip is not None:
            out = out + self.upsample(skip)
        return out
