"""Synthetic low-quality faces: GFPGAN's blind degradation, driven by an explicit random generator.

``lq = JPEG_q( noise_sigma( downsample_s( gt * k ) ) ) resized back``, then optional colour jitter
and grayscale, as in GFPGAN's ``FFHQDegradationDataset`` (its option names are kept). Unlike
BasicSR's helpers, every random draw comes from the ``numpy.random.Generator`` passed in, so a test
set degraded with ``np.random.default_rng([seed, index])`` is identical on every run and machine,
while training draws a fresh generator per sample.
"""

import logging
import math

import cv2
import numpy as np
from basicsr.data.degradations import bivariate_Gaussian

logger = logging.getLogger(__name__)

# default: GFPGAN v1 training options (options/train_gfpgan_v1.yml), the ranges the ENTED spec names
DEGRADATION_DEFAULTS = {
    "blur_kernel_size": 41,
    "kernel_list": ["iso", "aniso"],
    "kernel_prob": [0.5, 0.5],
    "blur_sigma": [0.1, 10],
    "downsample_range": [0.8, 8],
    "noise_range": [0, 20],
    "jpeg_range": [60, 100],
    "color_jitter_prob": 0.0,
    "color_jitter_shift": 20,
    "gray_prob": 0.0,
    "gt_gray": False,
}


def _as_range(value, key: str):
    if value is None:
        return None
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"degradation option {key} must be [low, high] with low <= high, got {value}")
    return float(value[0]), float(value[1])


class FaceDegradation:
    """Makes ``lq`` from ``gt`` with randomly drawn blur, downsampling, noise and JPEG.

    Args:
        blur_kernel_size: side of the blur kernel (odd). Default 41.
        kernel_list: kernel types among ``iso`` (isotropic Gaussian) and ``aniso`` (anisotropic,
            rotated). Default ``['iso', 'aniso']``.
        kernel_prob: probability of each kernel type. Default ``[0.5, 0.5]``.
        blur_sigma: [low, high] Gaussian sigma in pixels (each axis for ``aniso``). Default [0.1, 10].
        downsample_range: [low, high] downsampling factor. Default [0.8, 8].
        noise_range: [low, high] Gaussian noise sigma on the 0-255 scale, or None. Default [0, 20].
        jpeg_range: [low, high] JPEG quality, or None. Default [60, 100].
        color_jitter_prob: probability of shifting each RGB channel of lq. Default 0.
        color_jitter_shift: largest shift, on the 0-255 scale. Default 20.
        gray_prob: probability of making lq grayscale. Default 0.
        gt_gray: when lq is made gray, make gt gray too. Default False.
    """

    def __init__(
        self,
        blur_kernel_size: int = 41,
        kernel_list=("iso", "aniso"),
        kernel_prob=(0.5, 0.5),
        blur_sigma=(0.1, 10),
        downsample_range=(0.8, 8),
        noise_range=(0, 20),
        jpeg_range=(60, 100),
        color_jitter_prob: float = 0.0,
        color_jitter_shift: float = 20,
        gray_prob: float = 0.0,
        gt_gray: bool = False,
    ):
        if blur_kernel_size % 2 != 1 or blur_kernel_size < 1:
            raise ValueError(f"blur_kernel_size must be a positive odd number, got {blur_kernel_size}")
        unknown = set(kernel_list) - {"iso", "aniso"}
        if unknown:
            raise ValueError(f"kernel_list may contain 'iso' and 'aniso', got {sorted(unknown)}")
        if len(kernel_prob) != len(kernel_list) or sum(kernel_prob) <= 0:
            raise ValueError(
                f"kernel_prob {list(kernel_prob)} must give one weight per kernel in {list(kernel_list)}"
            )
        self.blur_kernel_size = int(blur_kernel_size)
        self.kernel_list = list(kernel_list)
        self.kernel_prob = np.asarray(kernel_prob, np.float64) / float(sum(kernel_prob))
        self.blur_sigma = _as_range(blur_sigma, "blur_sigma")
        self.downsample_range = _as_range(downsample_range, "downsample_range")
        self.noise_range = _as_range(noise_range, "noise_range")
        self.jpeg_range = _as_range(jpeg_range, "jpeg_range")
        self.color_jitter_prob = float(color_jitter_prob or 0.0)
        self.color_jitter_shift = float(color_jitter_shift) / 255.0
        self.gray_prob = float(gray_prob or 0.0)
        self.gt_gray = bool(gt_gray)

    @classmethod
    def from_opt(cls, opt: dict) -> "FaceDegradation":
        """Builds from a dataset option dict; absent keys take :data:`DEGRADATION_DEFAULTS`."""
        kwargs = {key: opt.get(key, default) for key, default in DEGRADATION_DEFAULTS.items()}
        return cls(**kwargs)

    def describe(self) -> str:
        return (
            f"blur kernel {self.blur_kernel_size} {self.kernel_list} sigma {self.blur_sigma}, "
            f"downsample {self.downsample_range}, noise {self.noise_range}, JPEG {self.jpeg_range}, "
            f"colour jitter p={self.color_jitter_prob}, gray p={self.gray_prob}"
        )

    def blur_kernel(self, rng: np.random.Generator) -> np.ndarray:
        """A normalized (k, k) Gaussian kernel of a randomly chosen type and sigma."""
        kind = self.kernel_list[rng.choice(len(self.kernel_list), p=self.kernel_prob)]
        low, high = self.blur_sigma
        sigma_x = rng.uniform(low, high)
        if kind == "iso":
            kernel = bivariate_Gaussian(self.blur_kernel_size, sigma_x, sigma_x, 0.0, isotropic=True)
        else:
            sigma_y = rng.uniform(low, high)
            theta = rng.uniform(-math.pi, math.pi)
            kernel = bivariate_Gaussian(self.blur_kernel_size, sigma_x, sigma_y, theta, isotropic=False)
        return (kernel / kernel.sum()).astype(np.float32)

    def __call__(self, gt: np.ndarray, rng: np.random.Generator) -> tuple:
        """Degrades one image.

        Args:
            gt: (H, W, 3) float32 BGR in [0, 1].
            rng: the source of every random choice.

        Returns:
            (lq, gt): lq (H, W, 3) float32 in [0, 1], quantized to 8 bits; gt unchanged unless
            ``gt_gray`` applied.
        """
        h, w = gt.shape[:2]
        lq = cv2.filter2D(gt, -1, self.blur_kernel(rng), borderType=cv2.BORDER_REFLECT)
        scale = rng.uniform(*self.downsample_range)
        small = (max(1, int(w // scale)), max(1, int(h // scale)))
        lq = cv2.resize(lq, small, interpolation=cv2.INTER_LINEAR)
        if self.noise_range is not None:
            sigma = rng.uniform(*self.noise_range) / 255.0
            lq = np.clip(lq + rng.standard_normal(lq.shape, dtype=np.float32) * sigma, 0.0, 1.0)
        if self.jpeg_range is not None:
            quality = int(rng.uniform(*self.jpeg_range))
            ok, encoded = cv2.imencode(
                ".jpg",
                np.rint(np.clip(lq, 0, 1) * 255).astype(np.uint8),
                [int(cv2.IMWRITE_JPEG_QUALITY), quality],
            )
            if not ok:
                raise RuntimeError("OpenCV could not JPEG-encode the degraded image")
            lq = cv2.imdecode(encoded, cv2.IMREAD_COLOR).astype(np.float32) / 255.0
        lq = cv2.resize(lq, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.color_jitter_prob > 0 and rng.uniform() < self.color_jitter_prob:
            shift = rng.uniform(-self.color_jitter_shift, self.color_jitter_shift, 3).astype(np.float32)
            lq = lq + shift
        if self.gray_prob > 0 and rng.uniform() < self.gray_prob:
            lq = np.repeat(
                cv2.cvtColor(np.clip(lq, 0, 1).astype(np.float32), cv2.COLOR_BGR2GRAY)[..., None], 3, 2
            )
            if self.gt_gray:
                gt = np.repeat(cv2.cvtColor(gt, cv2.COLOR_BGR2GRAY)[..., None], 3, 2)
        lq = np.clip(np.rint(lq * 255.0), 0, 255).astype(np.float32) / 255.0
        return lq, gt
