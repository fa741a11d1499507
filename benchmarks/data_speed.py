"""How fast the data side is: synthetic-set generation and training samples per second per worker.

    python benchmarks/data_speed.py --size 512 --samples 40
    python benchmarks/data_speed.py --generate-only --identities 100 --images 6

Samples/s is measured in the calling process (one worker, no DataLoader), on a synthetic set
written to a temporary folder, with the default (GFPGAN) degradation: the throughput one
DataLoader worker can give. Multiply by the number of workers (up to the number of cores).
"""

import argparse
import os
import tempfile
import time

import torch

import ented  # noqa: F401  (registers the datasets)
from ented.data.synthetic_faces import RENDERERS, write_synthetic_identity_set


def time_generation(root: str, identities: int, images: int, size: int, seed: int, renderer: str) -> float:
    start = time.perf_counter()
    write_synthetic_identity_set(root, identities, images, size, seed, renderer=renderer)
    return time.perf_counter() - start


def samples_per_second(opt: dict, samples: int) -> tuple:
    from basicsr.data import build_dataset

    dataset = build_dataset(opt)
    dataset[0]  # warm-up: file client, caches
    start = time.perf_counter()
    for i in range(samples):
        dataset[i % len(dataset)]
    elapsed = time.perf_counter() - start
    return samples / elapsed, len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--num-ref", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and OpenCV threads (one worker's share)"
    )
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for renderer in RENDERERS:
            for size in sorted({128, args.size}):
                root = os.path.join(tmp, f"{renderer}_{size}")
                seconds = time_generation(root, args.identities, args.images, size, 0, renderer)
                count = args.identities * args.images
                print(
                    f"{renderer} synthetic set {args.identities} x {args.images} at {size}px: {seconds:.2f} s "
                    f"({1000 * seconds / count:.1f} ms/image, written as PNG)"
                )
        if args.generate_only:
            return
        root = os.path.join(tmp, f"posed_{args.size}")
        opt = {
            "type": "ENTEDReferenceFaceDataset",
            "name": "benchmark",
            "phase": "train",
            "dataroot_gt": root,
            "out_size": args.size,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "num_ref": args.num_ref,
        }
        rate, length = samples_per_second(opt, args.samples)
        print(
            f"ENTEDReferenceFaceDataset at {args.size}px, num_ref {args.num_ref}, GFPGAN degradation, "
            f"{args.threads} thread(s): {rate:.1f} samples/s per worker ({length} images)"
        )
        quiet = {
            **opt,
            "blur_sigma": [0.1, 0.1],
            "downsample_range": [1, 1],
            "noise_range": None,
            "jpeg_range": None,
        }
        rate, _ = samples_per_second(quiet, args.samples)
        print(f"  same, reading only (no blur/noise/JPEG): {rate:.1f} samples/s")


if __name__ == "__main__":
    main()
