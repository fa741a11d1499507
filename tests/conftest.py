"""Shared test set-up: offline hub, few threads, tiny configurations."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

import ented  # noqa: E402, F401  (registers everything before the tests look names up)

torch.set_num_threads(2)


@pytest.fixture
def seeded():
    """Seeds torch so random inputs and weights repeat within a test."""
    torch.manual_seed(0)
