"""Reading images of every kind into RGB uint8, and writing them without half-written files."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from ented.image_io import ImageReadError, from_network, load_image, save_image, to_network


def test_loads_paths_pil_arrays_and_tensors(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for source in (
        tmp_path / "a.png",
        str(tmp_path / "a.png"),
        Image.fromarray(rgb),
        rgb,
        rgb.astype(np.float32) / 255,
        torch.from_numpy(rgb).permute(2, 0, 1),
        torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
    ):
        out = load_image(source)
        assert out.dtype == np.uint8 and out.shape == (8, 6, 3)
        assert np.array_equal(out, rgb), type(source)


def test_grayscale_becomes_three_channels(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    for source in (tmp_path / "g.png", gray, gray[:, :, None], torch.from_numpy(gray)[None]):
        out = load_image(source)
        assert out.shape == (6, 8, 3) and np.array_equal(out[:, :, 1], gray)


def test_rgba_is_composited_onto_white(tmp_path, caplog):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2, :, :3] = 10
    rgba[:2, :, 3] = 255  # top half opaque dark, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    with caplog.at_level("INFO"):
        for source in (tmp_path / "t.png", rgba):
            out = load_image(source)
            assert out.shape == (4, 4, 3)
            assert (out[:2] == 10).all() and (out[2:] == 255).all()
    assert "alpha channel" in caplog.text


def test_16_bit_images(tmp_path):
    deep = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4096).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.array_equal(load_image(tmp_path / "deep.png")[:, :, 0], (deep >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.png", "missing.png: file not found"),
        (
            lambda d: (d / "bad.jpg").write_bytes(b"no image") and d / "bad.jpg",
            "bad.jpg: not a readable image",
        ),
        (lambda d: d, "is a folder"),
        (lambda d: np.zeros((4, 4, 5), np.uint8), r"shape \(4, 4, 5\) is not an image"),
        (lambda d: np.full((4, 4, 3), 2.0, np.float32), r"float values must be in \[0, 1\]"),
        (lambda d: np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (lambda d: "not/a/real/file.png", "not/a/real/file.png: file not found"),
    ],
)
def test_bad_images_are_reported_with_their_name(tmp_path, make, message):
    with pytest.raises(ImageReadError, match=message):
        load_image(make(tmp_path))


def test_truncated_file_is_reported(tmp_path):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "cut.jpg")
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_network_conversion_round_trip():
    images = [np.random.default_rng(i).integers(0, 256, (5, 5, 3), dtype=np.uint8) for i in range(2)]
    batch = to_network(images)
    assert batch.shape == (2, 3, 5, 5) and batch.min() >= -1 and batch.max() <= 1
    assert all(np.array_equal(a, b) for a, b in zip(from_network(batch), images))
    assert (from_network(torch.full((1, 3, 2, 2), 7.0))[0] == 255).all()  # clamped


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    image = np.full((4, 4, 3), 100, np.uint8)
    path = save_image(image, tmp_path / "out.png")
    assert np.array_equal(load_image(path), image)
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)  # an ordinary file, not mkstemp's 0600
    before = path.read_bytes()

    def broken_save(self, fp, format=None, **params):
        fp.write(b"half an ima")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "out.png")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
