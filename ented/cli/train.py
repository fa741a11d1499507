"""``ented-train`` / ``python -m ented.cli.train``: BasicSR's training runner with ENTED registered.

Takes BasicSR's arguments (``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``,
``--force_yml``); experiments go under the working directory.
"""

import os


def main() -> None:
    import ented  # noqa: F401  (registers ENTED in BasicSR before the runner looks names up)
    from ented import runner_fixes

    runner_fixes.apply()
    runner_fixes.log_into_basicsr_logger()
    from basicsr.train import train_pipeline

    train_pipeline(os.getcwd())


if __name__ == "__main__":
    main()
