"""Background upsamplers: the whole photo enlarged before the restored faces are pasted on it.

GFPGAN's ``--upscale N --bg_upsampler realesrgan``: the photo is enlarged N times and the faces are
pasted at that size (:func:`ented.face_alignment.paste_faces`). An upsampler is a
callable ``(photo, upscale) -> enlarged photo`` on RGB ``uint8`` arrays ``(H, W, 3) ->
(int(H * upscale), int(W * upscale), 3)``, given to ``ENTEDRestorer(background=...)``; without one
the paste-back enlarges the photo with Lanczos, as facexlib does.

:class:`RealESRGANUpsampler` is Real-ESRGAN (``realesrgan``'s ``RealESRGANer`` with BasicSR's
``RRDBNet``, e.g. ``RealESRGAN_x2plus.pth``), tiled, brought to the exact size with Lanczos as
``RealESRGANer.enhance(outscale=...)`` does. Its weights are read as data only
(:func:`ented.hub_weights.read_state_dict`); the architecture (scale, blocks, widths) is read from
them; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# BasicSR's RRDBNet pixel-unshuffles its input for scale 2 (x4 channels) and 1 (x16) before conv_first
_SCALE_BY_UNSHUFFLE = {1: 4, 4: 2, 16: 1}


def output_size(image: np.ndarray, upscale: float) -> tuple[int, int]:
    """``(width, height)`` of ``image`` enlarged ``upscale`` times, truncated as facexlib does."""
    height, width = image.shape[:2]
    return int(width * upscale), int(height * upscale)


def rrdbnet_config(state_dict: dict) -> dict:
    """BasicSR ``RRDBNet`` constructor arguments that fit ``state_dict`` (Real-ESRGAN's x1/x2/x4 weights).

    Raises:
        ValueError: The weights are not an RRDBNet's.
    """
    try:
        first = state_dict["conv_first.weight"]
        grow = state_dict["body.0.rdb1.conv1.weight"]
        last = state_dict["conv_last.weight"]
    except KeyError as err:
        raise ValueError(f"not Real-ESRGAN RRDBNet weights: no {err.args[0]!r} entry") from None
    channels = last.shape[0]
    scale = _SCALE_BY_UNSHUFFLE.get(first.shape[1] / channels)
    if scale is None:
        raise ValueError(f"not Real-ESRGAN RRDBNet weights: conv_first takes {first.shape[1]} channels")
    blocks = {int(key.split(".")[1]) for key in state_dict if key.startswith("body.")}
    return {
        "num_in_ch": channels,
        "num_out_ch": channels,
        "scale": scale,
        "num_feat": first.shape[0],
        "num_block": max(blocks) + 1,
        "num_grow_ch": grow.shape[0],
    }


class RealESRGANUpsampler:
    """Real-ESRGAN background upsampler (GFPGAN's ``--bg_upsampler realesrgan``).

    Args:
        weights: A Real-ESRGAN RRDBNet weights file (``RealESRGAN_x2plus.pth``, ``.safetensors``),
            ``params_ema`` preferred to ``params`` as ``RealESRGANer`` does.
        device: Torch device.
        tile: Tile side in input pixels, 0 for the whole photo at once (GFPGAN's ``--bg_tile``, 400).
        tile_pad, pre_pad: ``RealESRGANer``'s padding (GFPGAN: 10 and 0).
        half: fp16 (CUDA only, as GFPGAN on a GPU).

    Raises:
        FileNotFoundError, ValueError: Missing or unreadable weights, or not an RRDBNet's (never
            random weights).
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        device="cpu",
        tile: int = 400,
        tile_pad: int = 10,
        pre_pad: int = 0,
        half: bool = False,
    ):
        import torch
        from basicsr.archs.rrdbnet_arch import RRDBNet

        from ented.hub_weights import read_state_dict

        if tile < 0:
            raise ValueError(f"tile must be 0 (no tiling) or a positive size, got {tile}")
        state_dict, _ = read_state_dict(weights, ("params_ema", "params"), "Real-ESRGAN weights")
        config = rrdbnet_config(state_dict)
        net = RRDBNet(**config)
        net.load_state_dict(state_dict, strict=True)
        self.scale = config["scale"]
        self.device = torch.device(device)
        self.upsampler = _upsampler_class()(net, self.scale, self.device, tile, tile_pad, pre_pad, half)
        logger.info("background upsampler: Real-ESRGAN x%d from %s (tile %d)", self.scale, weights, tile)

    def __call__(self, image: np.ndarray, upscale: float) -> np.ndarray:
        """RGB ``uint8`` ``(H, W, 3)`` -> ``(int(H * upscale), int(W * upscale), 3)``."""
        printed = io.StringIO()  # RealESRGANer prints a line per tile: kept for the debug log
        try:
            with contextlib.redirect_stdout(printed):
                bgr, _ = self.upsampler.enhance(np.ascontiguousarray(image[:, :, ::-1]), outscale=upscale)
        except NameError as err:  # a tile that failed: RealESRGANer prints the error, then uses it unset
            raise RuntimeError(f"Real-ESRGAN failed on a tile: {printed.getvalue().strip()}") from err
        finally:
            if printed.getvalue():
                logger.debug("Real-ESRGAN: %s", " ".join(printed.getvalue().split()))
        out = np.ascontiguousarray(bgr[:, :, ::-1])
        size = output_size(image, upscale)
        if out.shape[1::-1] != size:  # enhance keeps the network's own size when outscale == scale
            out = cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
        return out


def _upsampler_class():
    """``RealESRGANer`` around a network already loaded.

    ``RealESRGANer.__init__`` always ``torch.load``s a path (or downloads a URL) itself, so this
    subclass sets the same attributes from a network whose weights :func:`read_state_dict` read;
    the tiling, padding and ``enhance`` are realesrgan's own (realesrgan 0.3.0).
    """
    from realesrgan.utils import RealESRGANer

    class LoadedRealESRGANer(RealESRGANer):
        def __init__(self, model, scale, device, tile, tile_pad, pre_pad, half):  # no super(): no torch.load
            self.scale, self.tile_size, self.tile_pad, self.pre_pad = scale, tile, tile_pad, pre_pad
            self.mod_scale, self.device = None, device
            self.half = half and device.type == "cuda"
            self.model = model.eval().to(device)
            if self.half:
                self.model = self.model.half()

    return LoadedRealESRGANer
