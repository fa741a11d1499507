"""Options of ``ented-benchmark train`` (kept apart so that ``--help`` imports no torch)."""

import argparse

# method -> (option file in options/benchmark/, the quality harness's method kind and label)
METHODS = {
    "ented_dense": ("ented_dense.yml", "ented", "dense"),
    "ented_blind": ("ented_blind.yml", "ented-blind", "blind"),
    "gfpgan": ("gfpgan.yml", "gfpgan", "GFPGANv1Clean"),
}
# the default budget: fits data, three trainings and scoring in 30 min on 2 CPU cores (docs/benchmarks.md)
DEFAULT_ITERS = 1000
DEFAULT_METRICS = ("psnr", "ssim", "face_psnr", "face_detail", "erased_mark_recall")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` sub-command's options."""
    data = parser.add_argument_group("data: the pose-varied synthetic set (ented.reference_detail)")
    data.add_argument("--size", type=int, default=64, help="face size in pixels (default 64)")
    data.add_argument("--identities", type=int, default=64, help="synthetic identities in all (default 64)")
    data.add_argument("--images-per-identity", type=int, default=6, help="default 6")
    data.add_argument("--test-identities", type=int, default=8, help="held-out identities scored (default 8)")
    data.add_argument("--data-seed", type=int, default=0, help="seed of the set and its split")
    train = parser.add_argument_group("training: every method the same")
    train.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="default: all three"
    )
    train.add_argument(
        "--iters",
        type=int,
        default=DEFAULT_ITERS,
        help=f"iterations per method and seed, the budget every method gets (default {DEFAULT_ITERS})",
    )
    train.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    train.add_argument(
        "--options-dir",
        help="folder of the methods' option files (default: the repository's options/benchmark)",
    )
    train.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    score = parser.add_argument_group("scoring: the quality harness (ented-benchmark quality)")
    score.add_argument(
        "--metrics", nargs="+", default=list(DEFAULT_METRICS), help=f"default: {' '.join(DEFAULT_METRICS)}"
    )
    score.add_argument("--lpips-weights", help="LPIPS backbone weights, for --metrics lpips")
    score.add_argument(
        "--grids", type=int, default=8, help="comparison grids of the first N faces (default 8)"
    )
    parser.add_argument("--output", required=True, help="folder for the data, runs, tables and grids")
