"""The console scripts' entry points: ``--help`` and usage errors answer before torch loads.

Importing ``ented.cli.<command>`` runs ``ented/__init__.py``, which imports torch and BasicSR to
register ENTED (seconds). Each entry point here imports its command's module with that
registration deferred (``ENTED_DEFER_REGISTRATION=1``, for that import only, so that child
processes register as usual), parses the arguments with the module's ``parse_args`` (which
imports nothing heavy), then registers ENTED and runs the module's ``main``. The arguments are
parsed twice, once here and once by ``main``; parsing is cheap and has no effects.

It lives outside the ``ented`` package because anything inside it runs ``ented/__init__.py``
before it runs. ``python -m ented.cli.<command>`` works too, registering at import.
"""

import importlib
import os
import sys

DEFER_REGISTRATION_ENV = "ENTED_DEFER_REGISTRATION"  # read by ented/__init__.py


def _import_deferred(name: str):
    """``importlib.import_module(name)`` with ``import ented`` registering nothing."""
    previous = os.environ.get(DEFER_REGISTRATION_ENV)
    os.environ[DEFER_REGISTRATION_ENV] = "1"
    try:
        return importlib.import_module(name)
    finally:
        if previous is None:
            del os.environ[DEFER_REGISTRATION_ENV]
        else:
            os.environ[DEFER_REGISTRATION_ENV] = previous


def launch(module_name: str) -> int | None:
    """Parses ``sys.argv`` with ``module_name``'s parser, then registers ENTED and runs the module's
    ``main()``; returns what it returns. ``--help`` and bad arguments exit while parsing."""
    module = _import_deferred(module_name)
    argv = sys.argv[1:]
    module.parse_args(argv)
    import ented

    ented.register()
    return module.main()


def train() -> int | None:
    return launch("ented.cli.train")


def test() -> int | None:
    return launch("ented.cli.test")


def demo() -> int | None:
    return launch("ented.cli.demo")


def prepare() -> int | None:
    return launch("ented.cli.prepare")


def restore() -> int | None:
    return launch("ented.cli.restore")


def benchmark() -> int | None:
    return launch("ented.cli.benchmark")
