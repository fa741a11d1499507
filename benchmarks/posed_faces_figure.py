"""Draws docs/images/posed_faces.png: a few pose-varied synthetic identities, their marks circled.

Each row is one person (seed 0, identities 0-3), each column one photo of them. Green circles are
the visible moles the sidecar lists -- the same moles in every photo, moved and foreshortened by
the pose. Run: ``python benchmarks/posed_faces_figure.py [--out docs/images/posed_faces.png]``.
"""

import argparse

import cv2
import numpy as np

from ented.atomic_io import atomic_imwrite
from ented.data.synthetic_faces import iter_synthetic_faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/images/posed_faces.png")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    rows: dict = {}
    for face in iter_synthetic_faces(num_identities=4, images_per_identity=5, size=args.size, seed=0):
        image = cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR)
        for mark in face.sidecar["marks"]:
            if mark["visible"]:
                centre = (int(round(mark["x"])), int(round(mark["y"])))
                cv2.circle(image, centre, int(mark["radius"]) + 3, (0, 220, 0), 1, cv2.LINE_AA)
        yaw = face.sidecar["pose"]["yaw"]
        cv2.putText(image, f"yaw {yaw:+.0f}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
        rows.setdefault(face.identity, []).append(image)
    grid = np.concatenate([np.concatenate(images, axis=1) for images in rows.values()], axis=0)
    atomic_imwrite(grid, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
