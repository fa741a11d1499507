"""``ented-test`` / ``python -m ented.cli.test``: BasicSR's test runner with ENTED registered.

Takes BasicSR's arguments (``-opt``, ``--launcher``, ``--force_yml``); results go under the
working directory.
"""

import os


def main() -> None:
    import ented  # noqa: F401  (registers ENTED in BasicSR before the runner looks names up)
    from ented import runner_fixes

    runner_fixes.apply()
    runner_fixes.log_into_basicsr_logger()
    from basicsr.test import test_pipeline

    test_pipeline(os.getcwd())


if __name__ == "__main__":
    main()
