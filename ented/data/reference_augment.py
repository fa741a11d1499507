"""Optional augmentation of training references: flip, colour shift and a small affine warp.

A reference is another photo of the person, so it never matches the gt pixel for pixel; these
augmentations widen that gap so the network learns to look the detail up rather than copy a
fixed position. All are off by default (options prefixed ``ref_``).
"""

import cv2
import numpy as np

REFERENCE_AUGMENT_DEFAULTS = {
    "ref_use_hflip": False,
    "ref_color_jitter_prob": 0.0,
    "ref_color_jitter_shift": 20,
    "ref_affine_prob": 0.0,
    "ref_affine_rotation": 5.0,
    "ref_affine_scale": [0.95, 1.05],
    "ref_affine_translate": 0.02,
}


class ReferenceAugmentation:
    """Randomly flips, colour-shifts and warps a reference image.

    Args:
        ref_use_hflip: flip each reference horizontally with probability 0.5 (independently of the
            gt's flip). Default False.
        ref_color_jitter_prob: probability of shifting each channel by up to
            ``ref_color_jitter_shift`` (0-255 scale). Default 0.
        ref_color_jitter_shift: Default 20.
        ref_affine_prob: probability of a random similarity warp. Default 0.
        ref_affine_rotation: largest rotation in degrees. Default 5.
        ref_affine_scale: [low, high] scale. Default [0.95, 1.05].
        ref_affine_translate: largest shift as a fraction of the side. Default 0.02.
    """

    def __init__(
        self,
        ref_use_hflip: bool = False,
        ref_color_jitter_prob: float = 0.0,
        ref_color_jitter_shift: float = 20,
        ref_affine_prob: float = 0.0,
        ref_affine_rotation: float = 5.0,
        ref_affine_scale=(0.95, 1.05),
        ref_affine_translate: float = 0.02,
    ):
        self.hflip = bool(ref_use_hflip)
        self.color_jitter_prob = float(ref_color_jitter_prob)
        self.color_jitter_shift = float(ref_color_jitter_shift) / 255.0
        self.affine_prob = float(ref_affine_prob)
        self.rotation = float(ref_affine_rotation)
        self.scale = (float(ref_affine_scale[0]), float(ref_affine_scale[1]))
        self.translate = float(ref_affine_translate)

    @classmethod
    def from_opt(cls, opt: dict) -> "ReferenceAugmentation":
        return cls(**{key: opt.get(key, default) for key, default in REFERENCE_AUGMENT_DEFAULTS.items()})

    @property
    def active(self) -> bool:
        return self.hflip or self.color_jitter_prob > 0 or self.affine_prob > 0

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augments one (H, W, 3) float32 image in [0, 1]."""
        if self.hflip and rng.uniform() < 0.5:
            img = np.ascontiguousarray(img[:, ::-1])
        if self.affine_prob > 0 and rng.uniform() < self.affine_prob:
            h, w = img.shape[:2]
            matrix = cv2.getRotationMatrix2D(
                (w / 2, h / 2), rng.uniform(-self.rotation, self.rotation), rng.uniform(*self.scale)
            )
            matrix[:, 2] += rng.uniform(-self.translate, self.translate, 2) * np.array([w, h])
            img = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if self.color_jitter_prob > 0 and rng.uniform() < self.color_jitter_prob:
            shift = rng.uniform(-self.color_jitter_shift, self.color_jitter_shift, 3).astype(np.float32)
            img = np.clip(img + shift, 0.0, 1.0)
        return img
