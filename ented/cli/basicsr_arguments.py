"""BasicSR 1.4.2's runner arguments, for ``ented-train`` and ``ented-test`` to check before torch loads.

BasicSR parses ``sys.argv`` itself, inside ``train_pipeline`` / ``test_pipeline``
(``basicsr/utils/options.py``, ``parse_options``), after ``import basicsr`` has loaded torch. This
parser takes the same arguments, so that ``--help`` and bad arguments answer at once; BasicSR
then parses the same ``sys.argv`` again.
"""

import argparse
import os


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments of BasicSR 1.4.2's ``parse_options``, with help texts."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-opt", type=str, required=True, help="option YAML file")
    parser.add_argument(
        "--launcher",
        choices=["none", "pytorch", "slurm"],
        default="none",
        help="job launcher: none (one process, default), pytorch (torchrun) or slurm",
    )
    parser.add_argument(
        "--auto_resume", action="store_true", help="resume from the experiment's latest training state"
    )
    parser.add_argument(
        "--debug", action="store_true", help="BasicSR's debug mode (experiment name prefixed with debug_)"
    )
    parser.add_argument("--local_rank", type=int, default=0, help="set by the distributed launcher")
    parser.add_argument(
        "--force_yml",
        nargs="+",
        default=None,
        help="override option entries, e.g. train:ema_decay=0.999",
    )
    return parser


def run_pipeline(stage: str) -> None:
    """Runs BasicSR's ``train_pipeline`` or ``test_pipeline`` (``stage``: "train" or "test") in the
    working directory, with ENTED registered and :mod:`ented.runner_fixes` applied."""
    import importlib

    import ented
    from ented import runner_fixes

    ented.register()  # before the runner looks names up (done already unless registration was deferred)
    runner_fixes.apply()
    runner_fixes.log_into_basicsr_logger()
    pipeline = getattr(importlib.import_module(f"basicsr.{stage}"), f"{stage}_pipeline")
    pipeline(os.getcwd())
