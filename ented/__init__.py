"""ENTED: reference-based blind face restoration, as a BasicSR plugin.

``import ented`` makes BasicSR 1.4.2 importable on current torchvision, then registers ENTED's
architectures, losses, datasets, models and metrics in BasicSR's registries (:func:`register`).
Every name it registers starts with ``ENTED``.

With ``ENTED_DEFER_REGISTRATION=1`` in the environment, ``import ented`` registers nothing and
imports neither torch nor BasicSR; :func:`register` does it later. The console scripts
(:mod:`_ented_launcher`) use this to answer ``--help`` and usage errors before torch loads.
"""

import os

import _ented_torchvision_compat
from ented.version import __version__

DEFER_REGISTRATION_ENV = "ENTED_DEFER_REGISTRATION"

__all__ = ["__version__", "archs", "data", "losses", "metrics", "models", "register"]


def register() -> None:
    """Registers ENTED's architectures, datasets, losses, metrics and models in BasicSR's registries.

    Installs the torchvision shim first (BasicSR imports a module torchvision removed). Calling it
    again does nothing: each module is imported, and so registered, once.
    """
    _ented_torchvision_compat.install()
    from ented import archs, data, losses, metrics, models  # noqa: F401  (importing registers)


_ented_torchvision_compat.install()
if os.environ.get(DEFER_REGISTRATION_ENV) != "1":
    register()
