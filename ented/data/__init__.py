"""Registers every `*_dataset.py` module of this package in BasicSR's registries."""

from ented._discovery import import_modules_with_suffix

import_modules_with_suffix(__name__, __file__, "_dataset")
