"""``ented-prepare``: build the data ENTED trains and tests on.

Subcommands::

    ented-prepare synthetic datasets/synthetic --identities 60 --images 6 --size 128 --seed 0
    ented-prepare split datasets/synthetic --out datasets/synthetic_meta --test-fraction 0.2 --seed 0
    ented-prepare testset datasets/synthetic --out datasets/synthetic_test \\
        --identities-list datasets/synthetic_meta/test.txt --num-ref 1 --seed 0
    ented-prepare lmdb datasets/synthetic datasets/synthetic.lmdb
    ented-prepare astronaut docs/astronaut_512.png --size 512

Also ``python -m ented.prepare ...``.
"""

import argparse
import logging
import sys

from ented.data import preparation
from ented.data.synthetic_faces import write_synthetic_identity_set


def _add_degradation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("degradation (defaults: GFPGAN's ranges)")
    group.add_argument("--blur-sigma", nargs=2, type=float, metavar=("LOW", "HIGH"))
    group.add_argument("--blur-kernel-size", type=int)
    group.add_argument("--downsample-range", nargs=2, type=float, metavar=("LOW", "HIGH"))
    group.add_argument("--noise-range", nargs=2, type=float, metavar=("LOW", "HIGH"))
    group.add_argument("--jpeg-range", nargs=2, type=float, metavar=("LOW", "HIGH"))


def _degradation_options(args) -> dict:
    names = ("blur_sigma", "blur_kernel_size", "downsample_range", "noise_range", "jpeg_range")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ented-prepare",
        description="Build the data ENTED trains and tests on: synthetic set, splits, test triplets, lmdb.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "synthetic", help="write the built-in synthetic identity set (root/<identity>/<n>.png)"
    )
    p.add_argument("root")
    p.add_argument("--identities", type=int, default=60)
    p.add_argument("--images", type=int, default=6, help="images per identity")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pose-jitter", type=float, default=1.0, help="0: perfectly aligned views")

    p = sub.add_parser("split", help="identity-disjoint train/test identity lists (train.txt, test.txt)")
    p.add_argument("root", help="identity folders")
    p.add_argument("--out", required=True)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--num-test", type=int, help="exact number of test identities (overrides the fraction)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--identities-list", help="identity list to split instead of scanning root")

    p = sub.add_parser("testset", help="fixed, seeded (lq, gt, ref) triplets: lq images + triplet list")
    p.add_argument("root", help="identity folders with HQ images (dataroot_gt)")
    p.add_argument("--out", required=True, help="output folder (dataroot_lq)")
    p.add_argument("--identities-list", help="only these identities (e.g. test.txt from split)")
    p.add_argument("--num-ref", type=int, default=1)
    p.add_argument("--images-per-identity", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, help="resize gt to SIZE before degrading")
    p.add_argument("--list-name", default="test_list.txt")
    _add_degradation_arguments(p)

    p = sub.add_parser("lmdb", help="pack images into a BasicSR lmdb keyed by relative path")
    p.add_argument("root")
    p.add_argument("lmdb_path", help="must end with .lmdb")
    p.add_argument("--map-size", type=int, help="bytes (default: 10x the files, at least 1 GiB)")
    p.add_argument("--compress-level", type=int, default=1)

    p = sub.add_parser("astronaut", help="write skimage's astronaut photo as an FFHQ-aligned face")
    p.add_argument("path")
    p.add_argument("--size", type=int, default=512)
    return parser


def run(args) -> object:
    """Executes parsed arguments; returns what the library function returned."""
    progress = not args.quiet
    if args.command == "synthetic":
        return write_synthetic_identity_set(
            args.root, args.identities, args.images, args.size, args.seed, args.pose_jitter, progress=progress
        )
    if args.command == "split":
        return preparation.prepare_split(
            args.root, args.out, args.test_fraction, args.num_test, args.seed, args.identities_list
        )
    if args.command == "testset":
        return preparation.prepare_test_set(
            args.root,
            args.out,
            identity_list=args.identities_list,
            num_ref=args.num_ref,
            images_per_identity=args.images_per_identity,
            seed=args.seed,
            size=args.size,
            degradation=_degradation_options(args),
            list_name=args.list_name,
            progress=progress,
        )
    if args.command == "lmdb":
        return preparation.pack_lmdb(
            args.root, args.lmdb_path, map_size=args.map_size, compress_level=args.compress_level
        )
    if args.command == "astronaut":
        import cv2

        from ented.data.example_faces import astronaut_face
        from ented.data.image_io import write_image_atomic

        write_image_atomic(args.path, cv2.cvtColor(astronaut_face(args.size), cv2.COLOR_RGB2BGR))
        return args.path
    raise ValueError(f"unknown command {args.command}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        result = run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        logging.getLogger("ented.prepare").error("%s", error)
        return 2
    if args.command != "synthetic":
        logging.getLogger("ented.prepare").info(
            "wrote %s", result if isinstance(result, str) else result["train"]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
