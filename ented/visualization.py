"""Side-by-side comparison images: the pictures people look at instead of reading numbers."""

import cv2
import numpy as np

LABELS = ("LQ", "reference", "output", "GT")


def comparison_grid(
    lq: np.ndarray, ref: np.ndarray | None, output: np.ndarray, gt: np.ndarray | None
) -> np.ndarray:
    """Puts LQ | reference | output | GT side by side, each under a caption.

    Args:
        lq, ref, output, gt: uint8 BGR images (H, W, 3) of one size; ``ref`` and ``gt`` may be
            None (a grey panel captioned "none" stands in).

    Returns:
        uint8 BGR image (H + caption, 4 * W, 3).
    """
    height, width = output.shape[:2]
    caption_height = max(14, height // 10)
    panels = []
    for label, image in zip(LABELS, (lq, ref, output, gt)):
        if image is None:
            image = np.full_like(output, 128)
            label = f"{label}: none"
        elif image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        caption = np.full((caption_height, width, 3), 255, np.uint8)
        scale = caption_height / 30
        cv2.putText(
            caption, label, (2, int(caption_height * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1
        )
        panels.append(np.concatenate([caption, image], axis=0))
    return np.concatenate(panels, axis=1)
