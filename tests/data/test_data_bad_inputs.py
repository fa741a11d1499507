"""Bad input: every case fails with a message naming the file (and line), or is converted with a
logged warning, never a cryptic error from inside OpenCV."""

import logging
import os

import cv2
import numpy as np
import pytest
from basicsr.data import build_dataset

from ented.data.layouts import read_ffhq_ref_csv, read_list_file
from ented.data.synthetic_faces import write_synthetic_identity_set
from ented.image_io import decode_image, read_image_file

SIZE = 64


@pytest.fixture
def face_root(tmp_path):
    root = tmp_path / "faces"
    write_synthetic_identity_set(str(root), num_identities=3, images_per_identity=3, size=SIZE, seed=0)
    return root


def triplet_list(tmp_path, text: str) -> str:
    path = tmp_path / "list.txt"
    path.write_text(text)
    return str(path)


def triplet_opt(root, meta_info, **extra):
    return {
        "type": "ENTEDReferenceTripletDataset",
        "name": "t",
        "dataroot_gt": str(root),
        "meta_info": meta_info,
        "out_size": SIZE,
        **extra,
    }


def train_opt(root, **extra):
    return {
        "type": "ENTEDReferenceFaceDataset",
        "name": "t",
        "dataroot_gt": str(root),
        "out_size": SIZE,
        **extra,
    }


# ---------------------------------------------------------------- unreadable files
@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_truncated_file_is_named(tmp_path, extension):
    ok, encoded = cv2.imencode(extension, np.full((64, 64, 3), 128, np.uint8))
    path = tmp_path / f"cut{extension}"
    path.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    with pytest.raises(ValueError, match=f"{path}.*truncated"):
        read_image_file(str(path))


def test_garbage_and_empty_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(ValueError, match=f"{garbage}.*cannot be decoded"):
        read_image_file(str(garbage))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{empty}.*empty"):
        read_image_file(str(empty))
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        read_image_file(str(tmp_path / "nowhere.png"))
    with pytest.raises(FileNotFoundError, match="key0"):
        decode_image(None, "db.lmdb:key0")


def test_truncated_image_inside_a_dataset_names_it(face_root, tmp_path):
    victim = face_root / "id0001" / "2.png"
    victim.write_bytes(victim.read_bytes()[:300])
    dataset = build_dataset(triplet_opt(face_root, None, layout="identity_folders"))
    with pytest.raises(ValueError, match=f"{victim}.*truncated"):
        for index in range(len(dataset)):
            dataset[index]


# ---------------------------------------------------------------- converted with a warning
def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8)[None] * 4, (64, 1))
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    img = read_image_file(str(tmp_path / "gray.png"))
    assert img.shape == (64, 64, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[..., 0], gray / 255.0, atol=1e-6)
    assert np.array_equal(img[..., 0], img[..., 2])


def test_rgba_is_composited_over_white(tmp_path, caplog):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 2] = 200  # red in BGR(A)
    rgba[:, :32, 3] = 255  # left half opaque, right half transparent
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), rgba)
    with caplog.at_level(logging.WARNING):
        img = read_image_file(str(path))
    assert img.shape == (64, 64, 3)
    np.testing.assert_allclose(img[0, 0], [0, 0, 200 / 255], atol=1e-6)
    np.testing.assert_allclose(img[0, 63], [1, 1, 1], atol=1e-6)
    assert "alpha" in caplog.text and "rgba.png" in caplog.text


def test_16_bit_is_scaled_to_unit_range(tmp_path):
    deep = np.full((64, 64, 3), 65535 // 4, np.uint16)
    deep[0, 0] = 65535
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    img = read_image_file(str(tmp_path / "deep.png"))
    assert img.max() == pytest.approx(1.0) and img[5, 5, 0] == pytest.approx(0.25, abs=1e-4)


def test_wrong_size_is_resized_with_a_warning_or_refused(face_root, caplog):
    odd = face_root / "id0000" / "1.png"
    cv2.imwrite(str(odd), np.full((100, 80, 3), 90, np.uint8))
    dataset = build_dataset(triplet_opt(face_root, None, layout="identity_folders", reference="none"))
    with caplog.at_level(logging.WARNING):
        sample = dataset[1]
    assert sample["gt"].shape == (3, SIZE, SIZE)
    assert "100x80" in caplog.text and str(odd) in caplog.text
    strict = build_dataset(triplet_opt(face_root, None, layout="identity_folders", size_mismatch="error"))
    with pytest.raises(ValueError, match=f"{odd} is 100x80; expected {SIZE}x{SIZE}"):
        strict[1]


# ---------------------------------------------------------------- references and identities
def test_missing_reference_file_names_file_and_line(face_root, tmp_path):
    meta = triplet_list(tmp_path, "id0000/0.png - id0000/1.png\nid0001/0.png - id0001/9.png\n")
    with pytest.raises(FileNotFoundError, match=r"id0001/9.png \(from .*list.txt:2\)"):
        build_dataset(triplet_opt(face_root, meta))


def test_row_without_reference_is_an_error_when_matched(face_root, tmp_path):
    meta = triplet_list(tmp_path, "id0000/0.png - id0000/1.png\nid0001/0.png - -\n")
    with pytest.raises(ValueError, match="list.txt:2.*no reference"):
        build_dataset(triplet_opt(face_root, meta))
    assert len(build_dataset(triplet_opt(face_root, meta, reference="none"))) == 2


def test_single_image_identity_is_skipped_in_training_unless_allowed(face_root, caplog):
    for name in ("1.png", "2.png"):
        os.remove(face_root / "id0002" / name)
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset(train_opt(face_root))
    assert len(dataset) == 6 and "skipping 1 image" in caplog.text and "id0002/0.png" in caplog.text
    assert all("id0002" not in dataset[i]["gt_path"] for i in range(len(dataset)))
    kept = build_dataset(train_opt(face_root, allow_gt_as_ref=True, use_hflip=False))
    assert len(kept) == 7
    sample = kept[6]
    assert sample["ref_path"] == sample["gt_path"]
    with pytest.raises(ValueError, match="id0002/0.png has no reference other than itself"):
        build_dataset(triplet_opt(face_root, None, layout="identity_folders"))


# ---------------------------------------------------------------- malformed lists
def test_malformed_list_line_names_file_and_line(tmp_path):
    meta = triplet_list(tmp_path, "id0000/0.png - id0000/1.png\n\n# comment\nid0000/0.png\n")
    with pytest.raises(ValueError, match=r"list.txt:4: expected .* got 1 field"):
        read_list_file(meta)
    mixed = triplet_list(tmp_path, "id0000 id0000/0.png\nid0000/0.png - id0000/1.png\n")
    with pytest.raises(ValueError, match="list.txt:2: triplet line in a list of identity lines"):
        read_list_file(mixed)


def test_malformed_csv_row_names_file_and_line(tmp_path):
    path = tmp_path / "refs.csv"
    path.write_text("gt,lq,ref\na.png,b.png,c.png\nd.png,e.png\n")
    with pytest.raises(ValueError, match=r"refs.csv:3: 2 columns, the header has 3"):
        read_ffhq_ref_csv(str(path))
    path.write_text("gt,ref\n,c.png\n")
    with pytest.raises(ValueError, match=r"refs.csv:2: no gt or lq path"):
        read_ffhq_ref_csv(str(path))


# ---------------------------------------------------------------- empty or missing datasets
def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no samples"):
        build_dataset(train_opt(tmp_path / "empty"))
    meta = triplet_list(tmp_path, "# nothing here\n")
    with pytest.raises(ValueError, match="has no entries"):
        build_dataset(triplet_opt(tmp_path, meta))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset(train_opt(tmp_path / "missing"))
    with pytest.raises(ValueError, match="needs the option meta_info"):
        build_dataset(triplet_opt(tmp_path, None))
    with pytest.raises(ValueError, match="unknown layout"):
        build_dataset(train_opt(tmp_path, layout="celeba"))


def test_images_outside_identity_folders_are_ignored_with_a_warning(face_root, caplog):
    cv2.imwrite(str(face_root / "stray.png"), np.zeros((SIZE, SIZE, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset(train_opt(face_root))
    assert len(dataset) == 9 and "stray.png" in caplog.text


def test_missing_lmdb_key_is_named(face_root, tmp_path):
    from ented.data.preparation import pack_lmdb

    lmdb_path = pack_lmdb(str(face_root), str(tmp_path / "faces.lmdb"))
    meta = triplet_list(tmp_path, "id0000/0.png - id0000/7.png\n")
    dataset = build_dataset(triplet_opt(lmdb_path, meta, io_backend={"type": "lmdb"}))
    with pytest.raises(FileNotFoundError, match="faces.lmdb:id0000/7"):
        dataset[0]
