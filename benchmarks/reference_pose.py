"""Calibrates the reference picker's yaw estimate on the posed synthetic renderer, whose views have a known yaw.

For a head turned by ``yaw``, the nose tip's offset from the eye midpoint along the eye line, over
the eye distance (``ented.restoration.reference_picker.yaw_ratio``), is ``c * tan(yaw)`` with ``c``
the nose's depth in front of the eyes over the eye distance. ``c`` is fitted by least squares
through the origin on the renderer's true landmarks (``PosedFace.landmarks``) of the even-numbered
identities and reported on the odd ones; then the estimate is measured as the picker runs it when
no landmarks are given: dlib's 68 landmarks of the rendered, FFHQ-aligned crop, reduced to five.

The renderer draws yaw in +-25 degrees, pitch +-10 and roll +-5 (``sample_head_view``); its faces
are drawn, not photographed, so dlib's landmark predictor (trained on photos) is less sure of them
than of a photo: the dlib row is a lower bound of sorts, the true-landmark row the geometry.

    python benchmarks/reference_pose.py               # 20 identities x 10 views, about 15 s
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from ented.data.posed_faces import render_posed_face, sample_head_identity, sample_head_view
from ented.dlib_identity import DlibFaceDescriptor
from ented.restoration.reference_picker import (
    YAW_RATIO_PER_TAN,
    landmarks_5_from_68,
    pose_from_landmarks,
    yaw_ratio,
)


def measure(identities: int, views: int, size: int, seed: int) -> dict:
    """``{"identity", "yaw", "true", "dlib", "pitch", "pitch_true", "pitch_dlib"}`` arrays: per view its
    identity index, true yaw (degrees), the yaw ratio from the true and from dlib's landmarks, the
    true pitch and the pitch ratio from both."""
    rng = np.random.default_rng(seed)
    descriptor = DlibFaceDescriptor(aligned=True)
    rows = []
    for identity_index in range(identities):
        identity = sample_head_identity(rng)
        for _ in range(views):
            view = sample_head_view(rng)
            face = render_posed_face(identity, view, size)
            found = landmarks_5_from_68(descriptor.landmarks(face.image, points=68))
            rows.append(
                (
                    identity_index,
                    view.yaw,
                    yaw_ratio(face.landmarks),
                    yaw_ratio(found),
                    view.pitch,
                    pose_from_landmarks(face.landmarks).pitch_ratio,
                    pose_from_landmarks(found).pitch_ratio,
                )
            )
    columns = np.array(rows, dtype=np.float64).T
    return dict(zip(("identity", "yaw", "true", "dlib", "pitch", "pitch_true", "pitch_dlib"), columns))


def fit_ratio_per_tan(ratio: np.ndarray, yaw: np.ndarray) -> float:
    """Least-squares ``c`` in ``ratio = c * tan(yaw)``."""
    tangent = np.tan(np.radians(yaw))
    return float(ratio @ tangent / (tangent @ tangent))


def summary(name: str, ratio: np.ndarray, yaw: np.ndarray, c: float) -> str:
    estimate = np.degrees(np.arctan(ratio / c))
    rho = spearmanr(yaw, estimate)[0]
    signs = np.mean(np.sign(estimate[np.abs(yaw) > 5]) == np.sign(yaw[np.abs(yaw) > 5]))
    error = np.abs(estimate - yaw)
    return (
        f"  {name:<28} n={len(yaw):<4} Spearman {rho:.3f}  sign right (|yaw| > 5) {100 * signs:5.1f}%  "
        f"|error| median {np.median(error):4.1f} deg, p90 {np.percentile(error, 90):4.1f} deg"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.time()
    data = measure(args.identities, args.views, args.size, args.seed)
    calibration = data["identity"] % 2 == 0
    c = fit_ratio_per_tan(data["true"][calibration], data["yaw"][calibration])
    print(f"yaw ratio per tan(yaw), fitted on the even identities' true landmarks: {c:.3f}")
    print(f"  (reference_picker.YAW_RATIO_PER_TAN = {YAW_RATIO_PER_TAN})")
    held_out = ~calibration
    print("held-out identities, fitted c:")
    print(summary("true landmarks", data["true"][held_out], data["yaw"][held_out], c))
    print(f"all identities, YAW_RATIO_PER_TAN = {YAW_RATIO_PER_TAN}:")
    print(summary("true landmarks", data["true"], data["yaw"], YAW_RATIO_PER_TAN))
    print(summary("dlib 68 -> 5 on the render", data["dlib"], data["yaw"], YAW_RATIO_PER_TAN))
    print("pitch ratio against the true pitch (Spearman; within one identity: the mean over identities):")
    for name, key in (("true landmarks", "pitch_true"), ("dlib 68 -> 5 on the render", "pitch_dlib")):
        within = np.mean(
            [
                spearmanr(data["pitch"][data["identity"] == i], data[key][data["identity"] == i])[0]
                for i in np.unique(data["identity"])
            ]
        )
        print(
            f"  {name:<28} all {spearmanr(data['pitch'], data[key])[0]:.3f}  within one identity {within:.3f}"
        )
    print(f"({len(data['yaw'])} views at {args.size} px in {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
