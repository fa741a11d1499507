"""ArcFace identity backbone: the IResNet of insightface's ``arcface_torch``.

The layout, and therefore every state-dict key, follows insightface's ``arcface_torch``
``backbones/iresnet.py``, so that its released ``backbone.pth`` files load without renaming:

- ``ms1mv3_arcface_r50_fp16/backbone.pth``  -> ``ENTEDArcFace(layers=(3, 4, 14, 3))`` (the default)
- ``ms1mv3_arcface_r100_fp16/backbone.pth`` -> ``ENTEDArcFace(layers=(3, 13, 30, 3))``
- ``ms1mv3_arcface_r18_fp16/backbone.pth``  -> ``ENTEDArcFace(layers=(2, 2, 2, 2))``
- ``ms1mv3_arcface_r34_fp16/backbone.pth``  -> ``ENTEDArcFace(layers=(3, 4, 6, 3))``
- the ``glint360k_cosface_r*`` backbones of the same model zoo, with the same ``layers``.

Keys: ``conv1.weight``, ``bn1.*``, ``prelu.weight``, ``layer{1..4}.{i}.{bn1,conv1,bn2,prelu,conv2,bn3}``,
``layer{1..4}.0.downsample.{0,1}``, ``bn2.*``, ``fc.{weight,bias}``, ``features.*`` (``BatchNorm1d``).
Those files are trained on 112x112 RGB crops aligned with insightface's 5-point template and
normalised to [-1, 1]; see :mod:`ented.identity` for turning FFHQ-aligned faces into such crops.
"""

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

# Small enough for CPU unit tests; shared with the registry-generated architecture tests.
TINY_CONFIG = {"layers": (1, 1, 1, 1), "base_channels": 8, "embedding_dim": 32, "input_size": 32}


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block of IResNet: BN-conv-BN-PReLU-conv-BN (+ shortcut).

    The stride sits in the second conv; the shortcut is a strided 1x1 conv + BN whenever the
    shape changes.

    Args:
        in_channels: Input channels.
        channels: Output channels.
        stride: Stride of the second conv (2 in the first block of each stage).
        bn_eps: BatchNorm epsilon.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, bn_eps: float = 1e-5):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=bn_eps)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=bn_eps)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=bn_eps)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=bn_eps),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


@ARCH_REGISTRY.register()
class ENTEDArcFace(nn.Module):
    """IResNet ArcFace embedding network (insightface ``arcface_torch`` layout).

    Args:
        layers: Blocks per stage. ``(3, 4, 14, 3)`` is iresnet50, ``(3, 13, 30, 3)`` iresnet100,
            ``(2, 2, 2, 2)`` iresnet18, ``(3, 4, 6, 3)`` iresnet34.
        base_channels: Channels of the stem and the first stage; stages use
            ``base_channels * (1, 2, 4, 8)``. 64 for the released networks.
        embedding_dim: Size of the output embedding (512 for the released networks).
        input_size: Side of the square input. The released networks use 112; the fully
            connected layer sees ``(input_size / 16) ** 2`` positions. Must be divisible by 16.
        dropout: Dropout before the fully connected layer (insightface default 0).
        bn_eps: BatchNorm epsilon (insightface: 1e-5).

    Shapes:
        forward(img: (B, 3, input_size, input_size) RGB in [-1, 1]) -> (B, embedding_dim),
        not normalised (normalise it to compare identities by cosine).
    """

    def __init__(
        self,
        layers: tuple = (3, 4, 14, 3),
        base_channels: int = 64,
        embedding_dim: int = 512,
        input_size: int = 112,
        dropout: float = 0.0,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {layers}")
        if input_size % 16 != 0:
            raise ValueError(f"input_size must be divisible by 16 (four stride-2 stages), got {input_size}")
        self.config = {
            "layers": layers,
            "base_channels": base_channels,
            "embedding_dim": embedding_dim,
            "input_size": input_size,
            "dropout": dropout,
            "bn_eps": bn_eps,
        }
        self.input_size = input_size

        self.conv1 = _conv3x3(3, base_channels)
        self.bn1 = nn.BatchNorm2d(base_channels, eps=bn_eps)
        self.prelu = nn.PReLU(base_channels)
        in_channels = base_channels
        for stage, num_blocks in enumerate(layers):
            channels = base_channels * 2**stage
            blocks = [IBasicBlock(in_channels, channels, stride=2, bn_eps=bn_eps)]
            blocks += [IBasicBlock(channels, channels, bn_eps=bn_eps) for _ in range(num_blocks - 1)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            in_channels = channels
        self.bn2 = nn.BatchNorm2d(in_channels, eps=bn_eps)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_channels * (input_size // 16) ** 2, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=bn_eps)
        # insightface keeps the scale of the embedding BatchNorm fixed at 1.
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Embeds aligned faces.

        Args:
            img: (B, 3, input_size, input_size) RGB in [-1, 1].

        Returns:
            (B, embedding_dim) raw embeddings.
        """
        if img.ndim != 4 or img.shape[1] != 3 or tuple(img.shape[-2:]) != (self.input_size,) * 2:
            raise ValueError(
                f"ENTEDArcFace expects (B, 3, {self.input_size}, {self.input_size}) faces, got "
                f"{tuple(img.shape)}; use ented.identity.IdentityEncoder to crop and resize"
            )
        x = self.prelu(self.bn1(self.conv1(img)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))
