"""Hostile files must not run code (issue 12, item 1): FID statistics are read as data only.

The crafted files use ``__reduce__`` to create a marker folder when unpickled: the tests check
that the marker never appears.
"""

import os

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from ented.metrics import fid_metric


class Payload:
    def __init__(self, mark_path: str):
        self.mark_path = mark_path

    def __reduce__(self):
        return (os.makedirs, (self.mark_path,))


@pytest.fixture
def stats():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(16, 4))
    return features.mean(axis=0), np.cov(features, rowvar=False)


def test_fid_statistics_with_code_are_refused_and_run_nothing(tmp_path, stats):
    mu, sigma = stats
    mark = tmp_path / "payload_ran"
    hostile = tmp_path / "inception_FFHQ_512.pth"
    torch.save({"mean": mu, "cov": sigma, "name": Payload(str(mark))}, hostile)
    with pytest.raises(ValueError) as refused:
        fid_metric.load_statistics(str(hostile))
    message = str(refused.value)
    assert str(hostile) in message  # the file
    assert "refused" in message and "could run code" in message and "makedirs" in message  # why
    assert "np.savez" in message  # how to convert it
    assert not mark.exists(), "loading FID statistics ran code"
    with pytest.raises(ValueError, match="inception_FFHQ_512.pth"):
        fid_metric.reference_statistics(str(hostile), dims=4)
    assert not mark.exists()


def test_basicsr_pth_statistics_with_numpy_arrays_still_load(tmp_path, stats):
    """GFPGAN/BasicSR's inception_FFHQ_512.pth layout: numpy mean/cov, loaded weights_only."""
    mu, sigma = stats
    path = tmp_path / "inception_FFHQ_512.pth"
    torch.save({"name": "FFHQ", "size": 512, "mean": mu, "cov": sigma}, path)
    loaded_mu, loaded_sigma = fid_metric.load_statistics(str(path))
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_sigma, sigma)


def test_npz_with_object_arrays_is_refused(tmp_path, stats):
    mu, sigma = stats
    path = tmp_path / "stats.npz"
    np.savez(path, mu=np.array([Payload(str(tmp_path / "mark"))], dtype=object), sigma=sigma)
    with pytest.raises(ValueError, match=r"stats\.npz were refused.*float arrays"):
        fid_metric.load_statistics(str(path))
    assert not (tmp_path / "mark").exists()


def test_safetensors_statistics_load(tmp_path, stats):
    mu, sigma = stats
    path = tmp_path / "stats.safetensors"
    save_file({"mu": mu, "sigma": sigma}, str(path))
    loaded_mu, loaded_sigma = fid_metric.load_statistics(str(path))
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_sigma, sigma)


def test_truncated_pth_statistics_name_the_file(tmp_path, stats):
    mu, sigma = stats
    path = tmp_path / "stats.pth"
    torch.save({"mean": torch.from_numpy(mu), "cov": torch.from_numpy(sigma)}, path)
    with open(path, "r+b") as f:
        f.truncate(64)
    with pytest.raises(ValueError, match=r"stats\.pth cannot be read \(corrupt or truncated"):
        fid_metric.load_statistics(str(path))
