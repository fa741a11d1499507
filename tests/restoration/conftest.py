"""Fixtures shared by the tests of ``ented.restoration``."""

import pytest


@pytest.fixture(scope="session")
def mtcnn():
    """One MTCNN detector for the whole run (building it costs about a second)."""
    pytest.importorskip("facenet_pytorch")
    from ented.restoration.face_detection import build_detector

    return build_detector("mtcnn")
