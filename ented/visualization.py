"""Side-by-side comparison images: the pictures people look at instead of reading numbers.

One grid for every caller: ``ented-test`` (LQ | reference | output | GT, BGR), the demo, and
``ented-restore --compare`` (input | reference | output, RGB). Channels are never touched, so the
grid is in whatever colour order its panels are.
"""

from collections.abc import Sequence

import cv2
import numpy as np

LABELS = ("LQ", "reference", "output", "GT")


def side_by_side(
    panels: Sequence[np.ndarray | None], labels: Sequence[str], height: int | None = None, gap: int = 0
) -> np.ndarray:
    """Puts images next to each other at one height, each under its caption, on white.

    Args:
        panels: uint8 ``(H, W, 3)`` images of any sizes; each is scaled to ``height`` keeping its
            aspect ratio (nearest neighbour, so pixels stay visible). None: a grey square panel
            captioned ``"<label>: none"`` stands in.
        labels: One caption per panel.
        height: Panel height; default the last panel's (the output).
        gap: White columns between panels.

    Returns:
        uint8 ``(height + caption, sum of widths + gaps, 3)``.
    """
    if len(panels) != len(labels):
        raise ValueError(f"{len(panels)} panels but {len(labels)} labels")
    shown = [panel for panel in panels if panel is not None]
    if not shown:
        raise ValueError("a comparison needs at least one image")
    height = height or (panels[-1] if panels[-1] is not None else shown[-1]).shape[0]
    caption_height = max(14, height // 10)
    columns = []
    for label, image in zip(labels, panels):
        if image is None:
            image, label = np.full((height, height, 3), 128, np.uint8), f"{label}: none"
        elif image.shape[0] != height:
            width = max(1, round(image.shape[1] * height / image.shape[0]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        caption = np.full((caption_height, image.shape[1], 3), 255, np.uint8)
        cv2.putText(
            caption,
            label,
            (2, int(caption_height * 0.75)),
            cv2.FONT_HERSHEY_SIMPLEX,
            caption_height / 30,
            (0, 0, 0),
            1,
        )
        columns.append(np.concatenate([caption, image], axis=0))
        if gap:
            columns.append(np.full((height + caption_height, gap, 3), 255, np.uint8))
    return np.concatenate(columns[:-1] if gap else columns, axis=1)


def comparison_grid(
    lq: np.ndarray, ref: np.ndarray | None, output: np.ndarray, gt: np.ndarray | None
) -> np.ndarray:
    """LQ | reference | output | GT, each under a caption, at the output's height.

    Args:
        lq, ref, output, gt: uint8 images (H, W, 3); ``ref`` and ``gt`` may be None (a grey
            panel captioned "none" stands in).

    Returns:
        uint8 image (H + caption, 4 * W, 3) for panels of one size.
    """
    return side_by_side((lq, ref, output, gt), LABELS)
