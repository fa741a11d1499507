"""A whole photo restored by a trained checkpoint: the picture of docs/restoring.md.

No ENTED weights for real faces exist, so the photo is made from the pose-varied synthetic set
that ``ented-demo`` renders and the demo's checkpoint restores it: one held-out person's face is
set into a larger picture (its own background carried outward, turned and enlarged), the picture
is degraded as a whole (blur, 4x down-sampling, noise, JPEG), and ``ENTEDRestorer.restore_photo``
aligns the face, restores it with another photo of the person and pastes it back (facexlib's
paste-back). MTCNN finds no face in these drawn heads, so the face's five landmarks, known from the
construction, stand in for the detector. Writes degraded photo | reference | restored photo |
original::

    ented-demo && python benchmarks/whole_photo_figure.py ented_demo --data ented_demo/data.json \\
        --out docs/images/restored_photo.png
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from ented.experiment import load_run
from ented.face_alignment import ffhq_template
from ented.image_io import load_image, write_image_atomic
from ented.restoration.face_detection import FaceDetection, FaceDetector
from ented.restoration.restorer import ENTEDRestorer
from ented.visualization import side_by_side


class KnownLandmarks(FaceDetector):
    """A detector that returns the one face whose landmarks the caller knows."""

    name = "known landmarks"

    def __init__(self, landmarks: np.ndarray):
        self.landmarks = landmarks

    def _detect(self, image: np.ndarray) -> list[FaceDetection]:
        low, high = self.landmarks.min(0), self.landmarks.max(0)
        box = np.concatenate([low - (high - low), high + (high - low)])
        return [FaceDetection(box=box, landmarks=self.landmarks, score=1.0)]


def make_photo(face: np.ndarray, angle: float = 12.0, scale: float = 1.6, margin: int = 40) -> tuple:
    """``(photo, landmarks)``: the aligned ``face`` turned by ``angle`` degrees and enlarged ``scale``
    times inside a larger picture whose background continues the face's own."""
    size = face.shape[0]
    padded = cv2.copyMakeBorder(face, margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    side = int(round(padded.shape[0] * scale))
    centre = (padded.shape[1] / 2, padded.shape[0] / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += (side - padded.shape[0]) / 2
    photo = cv2.warpAffine(
        padded, matrix, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    landmarks = (ffhq_template(size) + margin) @ matrix[:, :2].T + matrix[:, 2]
    return photo, landmarks


def degrade(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    """Blur (sigma 2.5), 4x down-sampling, Gaussian noise (sigma 6), JPEG 60, back to full size."""
    rng = np.random.default_rng(seed)
    height, width = photo.shape[:2]
    small = cv2.resize(
        cv2.GaussianBlur(photo, (0, 0), 2.5), (width // 4, height // 4), interpolation=cv2.INTER_AREA
    )
    noisy = np.clip(small + rng.normal(0, 6, small.shape), 0, 255).astype(np.uint8)
    _, encoded = cv2.imencode(".jpg", noisy[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 60])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return cv2.resize(decoded, (width, height), interpolation=cv2.INTER_CUBIC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "run", type=Path, help="the ented-demo folder (or a run of benchmarks/reference_detail.py)"
    )
    parser.add_argument("--data", type=Path, required=True, help="its data.json")
    parser.add_argument("--row", type=int, default=0, help="which test triplet's person")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    _, net = load_run(args.run)
    data = json.loads(args.data.read_text())
    row = Path(data["test_list"]).read_text().splitlines()[args.row].split()
    faces = Path(data["faces"])
    original, landmarks = make_photo(load_image(str(faces / row[0])))
    reference = load_image(str(faces / row[2].split(",")[0]))
    degraded = degrade(original)
    restorer = ENTEDRestorer(net, device="cpu", reference_check="off", detector=KnownLandmarks(landmarks))
    restored = restorer.restore_photo(degraded, reference, references_aligned=True).image
    panels = [degraded, reference, restored, original]
    figure = side_by_side(
        panels, ["degraded photo", "reference", "restored", "original"], height=original.shape[0], gap=4
    )
    write_image_atomic(str(args.out), np.ascontiguousarray(figure[..., ::-1]))  # the writer takes BGR
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
