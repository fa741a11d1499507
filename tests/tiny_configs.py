"""Tiny ENTED configurations shared by tests in several folders (importable: tests/ is on sys.path
through tests/conftest.py)."""

TINY_ENTED = dict(out_size=32, width=1 / 16, style_dim=16, code_dim=8, codebook_size=32)
TINY_ENTED_64 = dict(TINY_ENTED, out_size=64)
