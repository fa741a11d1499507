"""``ented-train`` / ``python -m ented.cli.train``: BasicSR's training runner with ENTED registered.

Takes BasicSR's arguments (``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``,
``--force_yml``); experiments go under the working directory.
"""

import argparse

from ented.cli.basicsr_arguments import build_parser, run_pipeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Checks BasicSR's arguments (``--help`` and bad arguments exit here); BasicSR reads them again."""
    return build_parser("ented-train", "Train an ENTED experiment with BasicSR's runner.").parse_args(argv)


def main() -> None:
    run_pipeline("train")


if __name__ == "__main__":
    main()
