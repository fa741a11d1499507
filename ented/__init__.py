"""ENTED: reference-based blind face restoration, as a BasicSR plugin.

``import ented`` makes BasicSR 1.4.2 importable on current torchvision, then registers ENTED's
architectures, losses, datasets, models and metrics in BasicSR's registries. Every name it
registers starts with ``ENTED``.
"""

import _ented_torchvision_compat

_ented_torchvision_compat.install()

from ented import archs, data, losses, metrics, models  # noqa: E402  (after the shim)
from ented.version import __version__  # noqa: E402

__all__ = ["__version__", "archs", "data", "losses", "metrics", "models"]
