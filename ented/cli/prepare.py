"""``ented-prepare``: build the data ENTED trains and tests on.

Subcommands::

    ented-prepare synthetic datasets/synthetic --identities 60 --images 6 --size 128 --seed 0
    ented-prepare split datasets/synthetic --out datasets/synthetic_meta --test-fraction 0.2 --seed 0
    ented-prepare testset datasets/synthetic --out datasets/synthetic_test \\
        --identities-list datasets/synthetic_meta/test.txt --num-ref 1 --seed 0
    ented-prepare lmdb datasets/synthetic datasets/synthetic.lmdb
    ented-prepare astronaut docs/astronaut_512.png --size 512

Also ``python -m ented.cli.prepare ...``.
"""

import argparse
import logging
import math
import sys

from ented.image_formats import DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV

# ented.data.synthetic_faces.RENDERERS, written out: importing ented.data loads torch and BasicSR
# (its datasets), and the parser imports nothing heavy (tests/cli/test_cli_help.py checks the two agree)
RENDERERS = ("posed", "flat")


def _integer(low: int, high: int | None = None, odd: bool = False):
    """An argparse ``type``: a whole number in ``[low, high]`` (odd if ``odd``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high) or (odd and value % 2 == 0):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(
                f"must be {'an odd number ' if odd else ''}{bounds}, got {value}"
            )
        return value

    return parse


def _number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """An argparse ``type``: a finite number in the interval from ``low`` to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
            raise argparse.ArgumentTypeError(
                f"must be in {left}{low:g}, {'inf' if high is None else f'{high:g}'}{right}, got {text}"
            )
        return value

    return parse


class _Range(argparse.Action):
    """``LOW HIGH`` with ``LOW <= HIGH``, reported in argparse's own style."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values[0] > values[1]:
            raise argparse.ArgumentError(self, f"LOW {values[0]:g} is above HIGH {values[1]:g}")
        setattr(namespace, self.dest, values)


def _add_degradation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("degradation (defaults: GFPGAN's ranges)")
    pair = {"nargs": 2, "action": _Range, "metavar": ("LOW", "HIGH")}
    group.add_argument("--blur-sigma", type=_number(0, low_open=True), **pair, help="pixels, > 0")
    group.add_argument("--blur-kernel-size", type=_integer(1, odd=True), help="odd")
    group.add_argument(
        "--downsample-range", type=_number(0, low_open=True), **pair, help="factor, > 0 (1: none)"
    )
    group.add_argument("--noise-range", type=_number(0), **pair, help="sigma, 0-255 scale, >= 0")
    group.add_argument("--jpeg-range", type=_number(0, 100), **pair, help="quality, 0-100")


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
    parser.add_argument(
        "--max-pixels",
        type=_integer(1),
        default=None,
        help=f"refuse images above this many pixels (default: ${MAX_IMAGE_PIXELS_ENV} or "
        f"{DEFAULT_MAX_IMAGE_PIXELS})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    positive, seed = _integer(1), _integer(0)

    p = sub.add_parser(
        "synthetic", help="write the built-in synthetic identity set (root/<identity>/<n>.png)"
    )
    p.add_argument("root")
    p.add_argument("--identities", type=positive, default=60)
    p.add_argument("--images", type=positive, default=6, help="images per identity")
    p.add_argument("--size", type=positive, default=128)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--pose-jitter",
        type=_number(0),
        default=1.0,
        help="scales the pose ranges; 0: frontal / aligned views",
    )
    p.add_argument(
        "--renderer",
        choices=RENDERERS,
        default="posed",
        help="posed: 3-D heads from varied poses, with a .json sidecar per image (default); flat: the first, "
        "near-aligned drawings",
    )

    p = sub.add_parser("split", help="identity-disjoint train/test identity lists (train.txt, test.txt)")
    p.add_argument("root", help="identity folders")
    p.add_argument("--out", required=True)
    p.add_argument("--test-fraction", type=_number(0, 1, low_open=True, high_open=True), default=0.1)
    p.add_argument(
        "--num-test", type=positive, help="exact number of test identities (overrides the fraction)"
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--identities-list", help="identity list to split instead of scanning root")

    p = sub.add_parser("testset", help="fixed, seeded (lq, gt, ref) triplets: lq images + triplet list")
    p.add_argument("root", help="identity folders with HQ images (dataroot_gt)")
    p.add_argument("--out", required=True, help="output folder (dataroot_lq)")
    p.add_argument("--identities-list", help="only these identities (e.g. test.txt from split)")
    p.add_argument("--num-ref", type=positive, default=1)
    p.add_argument("--images-per-identity", type=positive)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--size", type=positive, help="resize gt to SIZE before degrading")
    p.add_argument("--list-name", default="test_list.txt", help="a file name inside --out")
    _add_degradation_arguments(p)

    p = sub.add_parser("lmdb", help="pack root/<identity>/<image> into a BasicSR lmdb keyed by relative path")
    p.add_argument("root")
    p.add_argument("lmdb_path", help="must end with .lmdb")
    p.add_argument(
        "--map-size", type=_integer(1 << 20), help="bytes, >= 1 MiB (default: 10x the files, at least 1 GiB)"
    )
    p.add_argument("--compress-level", type=_integer(0, 9), default=1, help="PNG level, 0-9")
    p.add_argument(
        "--lq-of",
        metavar="LIST",
        help="pack the stored lq files of this triplet list instead (ROOT: its dataroot_lq)",
    )

    p = sub.add_parser("astronaut", help="write skimage's astronaut photo as an FFHQ-aligned face")
    p.add_argument("path")
    p.add_argument("--size", type=positive, default=512)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args) -> object:
    """Executes parsed arguments; returns what the library function returned."""
    from ented.data import preparation
    from ented.data.synthetic_faces import write_synthetic_identity_set

    progress = not args.quiet
    if args.command == "synthetic":
        return write_synthetic_identity_set(
            args.root,
            args.identities,
            args.images,
            args.size,
            args.seed,
            args.pose_jitter,
            progress=progress,
            renderer=args.renderer,
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
            max_pixels=args.max_pixels,
        )
    if args.command == "lmdb":
        return preparation.pack_lmdb(
            args.root,
            args.lmdb_path,
            paths=preparation.stored_lq_paths(args.lq_of) if args.lq_of else None,
            map_size=args.map_size,
            compress_level=args.compress_level,
            progress=progress,
            max_pixels=args.max_pixels,
        )
    if args.command == "astronaut":
        import cv2

        from ented.data.example_faces import astronaut_face
        from ented.image_io import write_image_atomic

        write_image_atomic(args.path, cv2.cvtColor(astronaut_face(args.size), cv2.COLOR_RGB2BGR))
        return args.path
    raise ValueError(f"unknown command {args.command}")


def main(argv=None) -> int:
    """Runs ``ented-prepare``. Returns 0, 2 for bad input (one ``ERROR`` line naming the file), or
    1 when writing fails midway (a full disk); bad arguments exit 2 through argparse."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        result = run(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as error:
        logging.getLogger("ented.cli.prepare").error("%s", error)
        return 2
    except OSError as error:  # PermissionError, disk full: the message names the file
        logging.getLogger("ented.cli.prepare").error("%s", error)
        return 1
    if args.command != "synthetic":
        logging.getLogger("ented.cli.prepare").info(
            "wrote %s", result if isinstance(result, str) else result["train"]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
