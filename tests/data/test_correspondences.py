"""Known correspondences between two photos of one synthetic person (the reference flow's target)."""

import json
import os

import cv2
import numpy as np
import pytest
from basicsr.data import build_dataset
from scipy.interpolate import griddata
from tiny_configs import training_dataset_options

from ented.data.correspondences import GRID, correspondence_rows, flip_rows
from ented.data.posed_faces import decode_face_mask
from ented.data.sidecars import sidecar_path
from ented.data.synthetic_faces import iter_synthetic_faces, write_synthetic_identity_set

SIZE = 128


def high_pass(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return grey - cv2.GaussianBlur(grey, (0, 0), 2)


def warp_by_rows(ref: np.ndarray, rows: np.ndarray) -> tuple:
    """The reference resampled onto the gt's pixels by the rows' correspondences (linear between
    them), and where that is defined."""
    valid = rows[:, 4] > 0
    yy, xx = np.mgrid[: ref.shape[0], : ref.shape[1]].astype(np.float32)
    maps = [
        griddata(rows[valid, :2], rows[valid, 2 + i], (xx, yy), method="linear").astype(np.float32)
        for i in range(2)
    ]
    defined = np.isfinite(maps[0])
    warped = cv2.remap(ref, np.nan_to_num(maps[0]), np.nan_to_num(maps[1]), cv2.INTER_LINEAR)
    return warped, defined


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.corrcoef(a[where], b[where])[0, 1])


def far_pair(faces):
    """The two views of the first identity with the largest yaw difference."""
    views = [f for f in faces if f.identity == faces[0].identity]
    pairs = [
        (abs(a.sidecar["pose"]["yaw"] - b.sidecar["pose"]["yaw"]), i, j)
        for i, a in enumerate(views)
        for j, b in enumerate(views)
        if i < j
    ]
    _, i, j = max(pairs)
    return views[i], views[j]


def test_correspondences_carry_the_reference_onto_the_gt():
    gt, ref = far_pair(list(iter_synthetic_faces(num_identities=1, images_per_identity=6, size=SIZE, seed=3)))
    rows = correspondence_rows(gt.sidecar, ref.sidecar, SIZE)
    valid = rows[:, 4] > 0
    assert rows.shape == (GRID * GRID, 5) and 60 < valid.sum() < GRID * GRID
    assert (rows[~valid] == 0).all() and (rows[valid, :4] >= 0).all() and (rows[valid, :4] <= SIZE - 1).all()
    assert np.abs(rows[valid, 2:4] - rows[valid, :2]).sum(1).mean() > 1.5  # the pose moves the points
    warped, defined = warp_by_rows(ref.image.astype(np.float32), rows)
    face = decode_face_mask(gt.sidecar) & defined
    # the skin pattern, eyes and marks line up once the reference follows the correspondences
    aligned = correlation(high_pass(gt.image), high_pass(warped), face)
    in_place = correlation(high_pass(gt.image), high_pass(ref.image), face)
    assert aligned > in_place + 0.15 and aligned > 0.5


def test_flipping_rows_mirrors_the_pixel_centres():
    rows = np.array([[0, 5, 10, 6, 1], [3, 3, 3, 3, 0]], np.float32)
    np.testing.assert_array_equal(flip_rows(rows, 64)[0], [63, 5, 53, 6, 1])
    np.testing.assert_array_equal(flip_rows(rows, 64)[1], rows[1])  # invalid rows stay


@pytest.fixture(scope="module")
def face_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    write_synthetic_identity_set(str(root), num_identities=2, images_per_identity=3, size=64, seed=4)
    return str(root)


def train_opt(root, **extra):
    return training_dataset_options(root, 64, correspondences=True, **extra)


def test_dataset_correspondences_follow_the_flip(face_root, seeded):
    dataset = build_dataset(train_opt(face_root, num_ref=2, use_hflip=True))
    flipped_seen = set()
    for index in list(range(len(dataset))) * 4:
        sample = dataset[index]
        corr = sample["correspondences"].numpy()
        assert corr.shape == (2, GRID * GRID, 5)
        gt = sample["gt"].permute(1, 2, 0).numpy()
        on_file = cv2.imread(sample["gt_path"])[..., ::-1].astype(np.float32) / 255
        flipped = np.allclose(gt, on_file[:, ::-1], atol=1e-5)
        assert flipped or np.allclose(gt, on_file, atol=1e-5)
        flipped_seen.add(flipped)
        gt_sidecar = read_json(sidecar_path(sample["gt_path"]))
        for k, ref_path in enumerate(sample["ref_path"].split(os.pathsep)):
            ref_sidecar = read_json(sidecar_path(ref_path))
            expected = correspondence_rows(gt_sidecar, ref_sidecar, 64)
            if flipped:
                expected = flip_rows(expected, 64)
            np.testing.assert_allclose(corr[k], expected, atol=1e-4)
        if flipped_seen == {True, False}:
            break
    assert flipped_seen == {True, False}


def test_dataset_refuses_what_cannot_carry_correspondences(face_root, tmp_path):
    with pytest.raises(ValueError, match="ref_use_hflip or ref_affine_prob"):
        build_dataset(train_opt(face_root, ref_affine_prob=0.5))
    with pytest.raises(ValueError, match="needs references"):
        build_dataset(train_opt(face_root, reference="none"))
    flat = tmp_path / "flat"
    write_synthetic_identity_set(str(flat), 1, 2, size=64, renderer="flat")
    dataset = build_dataset(train_opt(str(flat)))
    with pytest.raises(FileNotFoundError, match=r"sidecar .*0\.json"):
        dataset[0]
    posed = tmp_path / "posed"
    write_synthetic_identity_set(str(posed), 1, 2, size=64, seed=1)
    for name in ("0.json", "1.json"):
        sidecar = read_json(str(posed / "id0000" / name))
        del sidecar["head"]
        (posed / "id0000" / name).write_text(json.dumps(sidecar), encoding="utf-8")
    with pytest.raises(ValueError, match=r"sidecar of .*id0000.* missing: head"):
        build_dataset(train_opt(str(posed)))[0]


def test_mismatched_references_come_from_another_identity_with_no_correspondences(face_root, seeded):
    dataset = build_dataset(train_opt(face_root, num_ref=2, mismatched_reference_prob=0.5))
    kinds = set()
    for index in list(range(len(dataset))) * 4:
        sample = dataset[index]
        identity = os.path.basename(os.path.dirname(sample["gt_path"]))
        ref_identities = {os.path.basename(os.path.dirname(p)) for p in sample["ref_path"].split(os.pathsep)}
        assert len(ref_identities) == 1  # all references of one person
        mismatched = ref_identities != {identity}
        valid = sample["correspondences"][..., 4]
        assert (valid.sum() == 0) if mismatched else (valid.sum() > 0)
        assert sample["reference_match"].tolist() == ([0.0, 0.0] if mismatched else [1.0, 1.0])
        kinds.add(mismatched)
    assert kinds == {True, False}


def test_only_samples_that_may_be_mismatched_carry_reference_match(face_root, seeded):
    assert "reference_match" not in build_dataset(train_opt(face_root))[0]


def test_mismatched_reference_prob_is_checked(face_root, tmp_path):
    for prob in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"mismatched_reference_prob must be in \[0, 1\)"):
            build_dataset(train_opt(face_root, mismatched_reference_prob=prob))
    with pytest.raises(ValueError, match="mismatched_reference_prob needs references"):
        build_dataset(
            training_dataset_options(face_root, 64, reference="none", mismatched_reference_prob=0.2)
        )
    single = tmp_path / "single"
    write_synthetic_identity_set(str(single), 1, 3, size=64, seed=2)
    with pytest.raises(ValueError, match="at least two identities"):
        build_dataset(train_opt(str(single), mismatched_reference_prob=0.2))
