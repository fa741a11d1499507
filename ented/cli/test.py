"""``ented-test`` / ``python -m ented.cli.test``: BasicSR's test runner with ENTED registered.

Takes BasicSR's arguments (``-opt``, ``--launcher``, ``--force_yml``); results go under the
working directory.
"""

import argparse

from ented.cli.basicsr_arguments import build_parser, run_pipeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Checks BasicSR's arguments (``--help`` and bad arguments exit here); BasicSR reads them again."""
    return build_parser("ented-test", "Test an ENTED model with BasicSR's runner.").parse_args(argv)


def main() -> None:
    run_pipeline("test")


if __name__ == "__main__":
    main()
