"""Calibrates the reference check's dlib threshold on the real faces available offline.

Same person: a clean FFHQ-aligned crop of a real face against variants of it (horizontal flip,
Gaussian blurs, downscales, JPEG, re-alignments shifted / scaled / rotated, ENTED's training
degradations). Different people: a clean crop of one person against the variants of the other,
and against synthetic faces (``ented.data.synthetic_faces``, both renderers, clean and degraded).

Real faces (public domain): the astronaut Eileen Collins (``skimage.data.astronaut()``, NASA) and
Grace Hopper (matplotlib's ``sample_data/grace_hopper.jpg``, US Navy). Both are aligned from
dlib's 68 landmarks (eye centres, nose tip, mouth corners) onto the FFHQ template.

The threshold: on the calibration half (even-numbered variants, even synthetic identities) the
midpoint between the largest same-person and the smallest different-person distance when the
classes separate, otherwise the distance with the fewest errors (false accepts + false rejects);
reported on the held-out half. The checker uses ``1 - distance`` as its similarity.

    python benchmarks/identity_threshold.py            # about a minute on one CPU core
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import skimage.data
from matplotlib import cbook
from PIL import Image

from ented.data.degradation import FaceDegradation
from ented.data.synthetic_faces import generate_synthetic_faces
from ented.dlib_identity import DLIB_SAME_PERSON_DISTANCE, DlibFaceDescriptor, NoFaceError
from ented.face_alignment import align_face, alignment_transform

SIZE = 512


def real_photos() -> dict:
    """``{name: (H, W, 3) RGB uint8}`` of the real faces available offline."""
    hopper = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "hopper": hopper}


def ffhq_landmarks(photo: np.ndarray) -> np.ndarray:
    """FFHQ's five points ``(5, 2)`` from dlib's 68: eye centres, nose tip, mouth corners."""
    points = DlibFaceDescriptor(aligned=False).landmarks(photo, points=68)
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def jitter_alignment(landmarks: np.ndarray, scale: float, shift: float, angle: float) -> np.ndarray:
    """Landmarks moved so that the aligned crop is zoomed by ``scale``, shifted by ``shift`` of the
    eye distance and rotated by ``angle`` degrees."""
    centre = landmarks.mean(0)
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    eye_distance = np.linalg.norm(landmarks[1] - landmarks[0])
    return (landmarks - centre) @ rotation.T * scale + centre + shift * eye_distance


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def degrade(image: np.ndarray, seed: int) -> np.ndarray:
    """ENTED's training degradation (its defaults), resized back to the input's size."""
    lq, _ = FaceDegradation()(image[:, :, ::-1].astype(np.float32) / 255.0, np.random.default_rng(seed))
    lq = cv2.resize(lq, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return np.rint(np.clip(lq[:, :, ::-1], 0, 1) * 255).astype(np.uint8)


def variants(photo: np.ndarray, landmarks: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(name, aligned RGB uint8)`` variants of one face; the clean crop itself is not among them."""
    clean = align_face(photo, landmarks, SIZE)[0]
    out = [("flip", clean[:, ::-1].copy())]
    out += [(f"blur{sigma}", cv2.GaussianBlur(clean, (0, 0), sigma)) for sigma in (1, 2, 3, 4, 6, 8)]
    out += [(f"flip+blur{sigma}", cv2.GaussianBlur(clean[:, ::-1], (0, 0), sigma)) for sigma in (2, 5)]
    out += [
        (f"size{side}", cv2.resize(clean, (side, side), interpolation=cv2.INTER_AREA))
        for side in (32, 48, 64, 96, 128, 256)
    ]
    out += [(f"jpeg{quality}", jpeg(clean, quality)) for quality in (10, 20, 40, 70)]
    for scale, shift, angle in [
        (0.85, 0, 0), (1.15, 0, 0), (0.92, 0, 0), (1.08, 0, 0), (1, 0.05, 0), (1, -0.05, 0), (1, 0, 8), (1, 0, -8),
    ]:  # fmt: skip
        moved = jitter_alignment(landmarks, scale, shift, angle)
        crop = cv2.warpAffine(
            photo, alignment_transform(moved, SIZE), (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT
        )
        out.append((f"align(scale {scale}, shift {shift}, rot {angle})", crop))
    out += [(f"degrade{seed}", degrade(clean, seed)) for seed in range(12)]
    return out


def synthetic_faces(count: int) -> list[np.ndarray]:
    """Clean and degraded synthetic faces of ``count`` identities per renderer (256 px)."""
    faces = []
    for renderer in ("posed", "flat"):
        for images in generate_synthetic_faces(count, 1, size=256, seed=1, renderer=renderer).values():
            faces.append(images[0])
    return faces + [degrade(face, seed) for seed, face in enumerate(faces)]


def rates(same: np.ndarray, different: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-reject rate, false-accept rate) of ``distance < threshold`` meaning same person."""
    return float(np.mean(same >= threshold)), float(np.mean(different < threshold))


def choose_threshold(same: np.ndarray, different: np.ndarray) -> float:
    """Midpoint of the gap when the classes separate, else the fewest errors (see the docstring)."""
    if same.max() < different.min():
        return float((same.max() + different.min()) / 2)
    candidates = np.unique(np.concatenate([same, different]))
    errors = [np.sum(same >= t) + np.sum(different < t) for t in candidates]
    return float(candidates[int(np.argmin(errors))])


def describe(label: str, values: np.ndarray) -> str:
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return f"{label:<10} n={len(values):<4} min {q[0]:.3f}  p5 {q[1]:.3f}  median {q[2]:.3f}  p95 {q[3]:.3f}  max {q[4]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", type=int, default=20, help="synthetic identities per renderer")
    parser.add_argument("--verbose", action="store_true", help="print every same-person distance")
    args = parser.parse_args()
    started = time.monotonic()
    descriptor = DlibFaceDescriptor(aligned=True)

    anchors, variant_sets = {}, {}
    for name, photo in real_photos().items():
        landmarks = ffhq_landmarks(photo)
        anchors[name] = descriptor.descriptor(align_face(photo, landmarks, SIZE)[0], name)
        variant_sets[name] = []
        for label, image in variants(photo, landmarks):
            try:
                variant_sets[name].append((label, descriptor.descriptor(image, f"{name} {label}")))
            except NoFaceError as err:
                print(f"skipped: {err}")
    synthetic = [
        descriptor.descriptor(face, f"synthetic {i}")
        for i, face in enumerate(synthetic_faces(args.synthetic))
    ]

    distance = DlibFaceDescriptor.descriptor_distance
    halves = {"calibration": ([], []), "held-out": ([], [])}
    for name, anchor in anchors.items():
        for index, (label, desc) in enumerate(variant_sets[name]):
            half = "calibration" if index % 2 == 0 else "held-out"
            halves[half][0].append(distance(anchor, desc))
            if args.verbose:
                print(f"  same  {name:<10} {label:<36} {distance(anchor, desc):.3f}")
            for other, other_anchor in anchors.items():
                if other != name:  # a clean reference of somebody else against this degraded face
                    halves[half][1].append(distance(other_anchor, desc))
        for index, desc in enumerate(synthetic):
            half = "calibration" if index % 2 == 0 else "held-out"
            halves[half][1].append(distance(anchor, desc))
    same = {half: np.array(pairs[0]) for half, pairs in halves.items()}
    different = {half: np.array(pairs[1]) for half, pairs in halves.items()}

    print(f"dlib descriptor distances (real faces: {', '.join(anchors)}; {len(synthetic)} synthetic faces)")
    for half in halves:
        print(f"{half}:")
        print("  " + describe("same", same[half]))
        print("  " + describe("different", different[half]))
    threshold = choose_threshold(same["calibration"], different["calibration"])
    print(
        f"chosen distance threshold (calibration half): {threshold:.3f}  ->  similarity threshold {1 - threshold:.3f}"
    )
    for label, t in [("chosen", threshold), ("dlib's LFW 0.6", DLIB_SAME_PERSON_DISTANCE)]:
        for half in halves:
            frr, far = rates(same[half], different[half], t)
            print(f"  {label:<15} {half:<12} false reject {frr:6.1%}  false accept {far:6.1%}")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
