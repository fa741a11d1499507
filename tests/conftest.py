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


ASTRONAUT_SIZE = 256  # the aligned astronaut of the identity tests (metrics/, restoration/)


@pytest.fixture(scope="session")
def descriptor():
    """dlib's face descriptor for FFHQ-aligned crops (the ``identity`` extra)."""
    from ented.dlib_identity import DlibFaceDescriptor

    return DlibFaceDescriptor(aligned=True)


@pytest.fixture(scope="session")
def astronaut():
    """scikit-image's astronaut (public domain), FFHQ-aligned at ``ASTRONAUT_SIZE``: a real face."""
    from ented.data.example_faces import astronaut_face

    return astronaut_face(ASTRONAUT_SIZE)
