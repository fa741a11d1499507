"""Imports a sub-package's modules so that their BasicSR registrations run.

BasicSR discovers nothing by itself: an architecture, dataset, loss, model or metric exists
in its registry only once its module is imported. Like BasicSR's own packages, each of ours
imports every file whose name ends with its suffix (``*_arch.py``, ``*_dataset.py``, ...),
always through its fully qualified name, so no module is registered twice.
"""

import importlib
import pkgutil
from os import path as osp


def import_modules_with_suffix(package_name: str, package_file: str, suffix: str) -> list:
    """Imports ``package_name.<name>`` for every module in the package whose name ends with ``suffix``.

    Args:
        package_name: The package's ``__name__``, e.g. ``"ented.archs"``.
        package_file: The package's ``__file__``.
        suffix: e.g. ``"_arch"``.

    Returns:
        The imported modules, sorted by name.
    """
    folder = osp.dirname(osp.abspath(package_file))
    names = sorted(info.name for info in pkgutil.iter_modules([folder]) if info.name.endswith(suffix))
    return [importlib.import_module(f"{package_name}.{name}") for name in names]
