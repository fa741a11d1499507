"""LPIPS (Zhang et al. 2018) between the output and the ground truth, via the ``lpips`` package.

Weights. ``lpips`` ships its linear heads; its backbone (torchvision AlexNet, VGG16 or
SqueezeNet 1.1 ImageNet weights) is looked up, in order:

1. ``weights_path``: a torchvision state dict file of the backbone (``alexnet-owt-7be5be79.pth``,
   ``vgg16-397923af.pth``, ``squeezenet1_1-b8a52dc0.pth``), a path or ``hf://`` spec; either the
   whole classifier's keys (``features.0.weight``, ...) or the features' alone (``0.weight``, ...);
2. torch's hub cache (``$TORCH_HOME/hub/checkpoints/<that file name>``), where torchvision
   keeps what it has downloaded;
3. otherwise the metric refuses to run (``ValueError`` naming the file and where to get it),
   unless ``allow_random_weights: true`` is set: then the backbone is random (seeded, so
   identical across runs) and a warning labelled "random weights" is logged. Such LPIPS values
   are only good for comparing images scored in the same set-up, never for reporting.

Caching. Networks live in the module-level ``LPIPS_NETWORKS`` dict keyed by
``(net, weights file or None, device)``: each is built once per process, however many images
are scored. ``LPIPS_NETWORKS.clear()`` frees them.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING

import torch
from basicsr.utils.registry import METRIC_REGISTRY
from torchvision import models

from ented.hub_weights import load_weights_file, resolve_device, resolve_weights
from ented.image_io import bgr_image_to_tensor

if TYPE_CHECKING:
    import lpips

logger = logging.getLogger(__name__)

# (net, resolved weights path or None, device) -> lpips.LPIPS in eval mode.
LPIPS_NETWORKS: dict = {}

_TORCHVISION_WEIGHTS = {
    "alex": models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": models.VGG16_Weights.IMAGENET1K_V1,
    "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
}


@METRIC_REGISTRY.register()
def calculate_ented_lpips(
    img,
    img2,
    net: str = "alex",
    weights_path: str | None = None,
    crop_border: int = 0,
    device=None,
    allow_random_weights: bool = False,
    **kwargs,
) -> float:
    """LPIPS distance of two images (0 = identical, larger = more different).

    Args:
        img: (H, W, 3) BGR uint8, the restored image.
        img2: (H, W, 3) BGR uint8, the ground truth.
        net: LPIPS backbone: ``'alex'`` (the usual choice for restoration papers), ``'vgg'`` or
            ``'squeeze'``.
        weights_path: Backbone weights file or ``hf://`` spec; see the module docstring.
        crop_border: Pixels dropped at each edge before comparing.
        device: Where to run; default CUDA, then MPS, then the CPU.
        allow_random_weights: Without backbone weights, use a random backbone instead of raising.
        **kwargs: Other data BasicSR or the model pass (``ref``, ``better``, ...): ignored.

    Returns:
        The LPIPS distance.
    """
    if img.shape != img2.shape:
        raise ValueError(f"LPIPS needs images of one shape, got {img.shape} and {img2.shape}")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    device = resolve_device(device)
    network = get_lpips_network(net, weights_path, device, allow_random_weights)
    with torch.no_grad():
        distance = network(bgr_image_to_tensor(img, device), bgr_image_to_tensor(img2, device))
    return float(distance.item())


def get_lpips_network(
    net: str = "alex", weights_path: str | None = None, device=None, allow_random_weights: bool = False
) -> lpips.LPIPS:
    """Returns the cached LPIPS network for this configuration, building it on first use.

    Args:
        net: ``'alex'``, ``'vgg'`` or ``'squeeze'``.
        weights_path: Backbone weights file or ``hf://`` spec, or None (see the module docstring).
        device: Where the network lives; default CUDA, then MPS, then the CPU.
        allow_random_weights: Without backbone weights, use a random backbone instead of raising.

    Raises:
        ValueError: No backbone weights were found and random weights were not allowed.
    """
    if net not in _TORCHVISION_WEIGHTS:
        raise ValueError(f"LPIPS net must be one of {sorted(_TORCHVISION_WEIGHTS)}, got {net!r}")
    device = resolve_device(device)
    path = None if weights_path is None else resolve_weights(weights_path)
    # checked before the cache: a random network built earlier for a caller that allowed it must
    # not pass for a real one later
    if path is None and not os.path.isfile(_hub_cache_file(net)) and not allow_random_weights:
        raise ValueError(
            f"LPIPS needs {net} backbone weights: {_hub_cache_file(net)} is absent and no weights_path "
            f"was given. Get {_TORCHVISION_WEIGHTS[net].url} and set the metric's weights_path to it "
            "(or put it at that path); to score with a random backbone anyway (values comparable only "
            "within one set-up), set allow_random_weights: true"
        )
    key = (net, path, str(device))
    if key not in LPIPS_NETWORKS:
        LPIPS_NETWORKS[key] = _build(net, path).to(device).eval()
    return LPIPS_NETWORKS[key]


def _build(net: str, path: str | None) -> lpips.LPIPS:
    import lpips  # imported when a network is first built, not on ``import ented``

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(pretrained|weight enum).*", category=UserWarning
        )  # lpips calls torchvision the old way
        if path is None and os.path.isfile(_hub_cache_file(net)):
            return lpips.LPIPS(net=net, pnet_rand=False, verbose=False)  # torchvision reads its cache
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same random backbone in every run
            network = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    if path is None:
        logger.warning(
            f"LPIPS (random weights): no {net} backbone weights ({_hub_cache_file(net)} is absent and no "
            "weights_path was given); allow_random_weights is set: LPIPS values only compare images "
            "within this set-up, never report them"
        )
    else:
        _load_backbone(network, path)
    return network


def _hub_cache_file(net: str) -> str:
    file_name = os.path.basename(_TORCHVISION_WEIGHTS[net].url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", file_name)


def _load_backbone(network: lpips.LPIPS, path: str) -> None:
    """Copies torchvision ``features.<i>.*`` weights into lpips' ``slice<k>.<i>.*`` modules."""
    state_dict = load_weights_file(path)
    wanted = {}
    for name in network.net.state_dict():
        feature_key = name.split(".", 1)[1]  # 'slice2.3.weight' -> '3.weight'
        for candidate in (f"features.{feature_key}", feature_key):
            if candidate in state_dict:
                wanted[name] = state_dict[candidate]
                break
    missing = [f"features.{name.split('.', 1)[1]}" for name in network.net.state_dict() if name not in wanted]
    if missing:
        raise ValueError(
            f"LPIPS backbone weights {path} do not fit lpips' {network.pnet_type} backbone: missing keys {missing}"
        )
    try:
        network.net.load_state_dict(wanted)
    except RuntimeError as error:
        raise ValueError(
            f"LPIPS backbone weights {path} do not fit lpips' {network.pnet_type} backbone: {error}"
        ) from error
