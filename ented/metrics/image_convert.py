"""Converts the images BasicSR hands to metrics (BGR HWC, [0, 255]) into network input tensors."""

import numpy as np
import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """Returns ``device``, or CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bgr_image_to_tensor(img: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """Turns one BGR image into an RGB network input.

    Args:
        img: (H, W, 3) BGR (or (H, W) gray) in [0, 255], uint8 as BasicSR's ``tensor2img``
            writes it, or float.

    Returns:
        (1, 3, H, W) float32 RGB in [-1, 1] on ``device``.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {img.shape}")
    rgb = np.ascontiguousarray(img[..., ::-1], dtype=np.float32)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    return (tensor / 127.5 - 1).to(device)
