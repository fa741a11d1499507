"""Lets BasicSR 1.4.2 (and GFPGAN, Real-ESRGAN) import on torchvision >= 0.17.

BasicSR imports ``torchvision.transforms.functional_tensor``, a private module that
torchvision removed in 0.17 (BasicSR issues #533, #663). This module adds a finder at the
*end* of ``sys.meta_path`` that serves that one name with a stand-in module whose
``rgb_to_grayscale`` is torchvision's public one. The real module, where it exists, is
always found first, and nothing is imported until somebody asks for the name.

It is installed twice: by ``import ented`` and, through ``ented_torchvision_compat.pth``,
at interpreter start-up, so that ``import gfpgan`` works before ``import ented`` too.
"""

import importlib.abc
import importlib.util
import sys

REMOVED_MODULE = "torchvision.transforms.functional_tensor"


class _FunctionalTensorStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != REMOVED_MODULE:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from torchvision.transforms.functional import rgb_to_grayscale

        module.rgb_to_grayscale = rgb_to_grayscale


def install():
    """Appends the stand-in finder to ``sys.meta_path`` once."""
    if not any(isinstance(finder, _FunctionalTensorStandIn) for finder in sys.meta_path):
        sys.meta_path.append(_FunctionalTensorStandIn())
