"""Preparation: identity-disjoint splits, fixed test sets, lmdb packing and the ented-prepare CLI."""

import os

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset

from ented.cli.prepare import main
from ented.data.preparation import prepare_split, prepare_test_set, split_identities
from ented.data.synthetic_faces import write_synthetic_identity_set

SIZE = 64


@pytest.fixture(scope="module")
def face_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    write_synthetic_identity_set(str(root), num_identities=10, images_per_identity=3, size=SIZE, seed=0)
    return str(root)


def read_identity_list(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def test_split_is_identity_disjoint_complete_and_seeded():
    names = [f"person{i}" for i in range(50)]
    train, test = split_identities(names, test_fraction=0.2, seed=3)
    assert len(test) == 10 and not set(train) & set(test) and set(train) | set(test) == set(names)
    assert split_identities(reversed(names), test_fraction=0.2, seed=3) == (train, test)
    assert split_identities(names, test_fraction=0.2, seed=4)[1] != test
    assert len(split_identities(names, num_test=7)[1]) == 7
    with pytest.raises(ValueError, match="num_test"):
        split_identities(names, num_test=50)
    with pytest.raises(ValueError, match="at least two identities"):
        split_identities(["alone"])


def test_prepare_split_never_splits_an_identity(face_root, tmp_path):
    result = prepare_split(face_root, str(tmp_path), num_test=3, seed=1)
    train = read_identity_list(result["train"])
    test = read_identity_list(result["test"])
    train_ids, test_ids = {i for i, _ in train}, {i for i, _ in test}
    assert len(test_ids) == 3 and len(train_ids) == 7 and not train_ids & test_ids
    assert len(train) + len(test) == 30
    assert all(path.startswith(identity + "/") for identity, path in train + test)
    again = prepare_split(face_root, str(tmp_path / "again"), num_test=3, seed=1)
    assert read_identity_list(again["test"]) == test


def test_test_set_is_fixed_by_its_seed(face_root, tmp_path):
    first = prepare_test_set(face_root, str(tmp_path / "a"), num_ref=2, seed=4, images_per_identity=2)
    second = prepare_test_set(face_root, str(tmp_path / "b"), num_ref=2, seed=4, images_per_identity=2)
    other = prepare_test_set(face_root, str(tmp_path / "c"), num_ref=2, seed=5, images_per_identity=2)
    lines = open(first).read().splitlines()
    assert lines == open(second).read().splitlines() and len(lines) == 20
    gt, lq, refs, identity = lines[0].split()
    assert gt.startswith(identity) and gt not in refs.split(",") and len(refs.split(",")) == 2
    a = cv2.imread(str(tmp_path / "a" / lq))
    assert np.array_equal(a, cv2.imread(str(tmp_path / "b" / lq)))
    assert not np.array_equal(a, cv2.imread(str(tmp_path / "c" / lq)))
    assert other != first
    assert not [f for _, _, files in os.walk(tmp_path) for f in files if f.endswith(".tmp")]


def test_test_set_rejects_unknown_degradation_keys(face_root, tmp_path):
    with pytest.raises(ValueError, match="unknown degradation option"):
        prepare_test_set(face_root, str(tmp_path), degradation={"blur_sigmas": [1, 2]})


def test_cli_end_to_end(tmp_path):
    root, meta, test_dir = tmp_path / "syn", tmp_path / "meta", tmp_path / "test"
    assert (
        main(["-q", "synthetic", str(root), "--identities", "6", "--images", "3", "--size", str(SIZE)]) == 0
    )
    assert sorted(os.listdir(root)) == [f"id{i:04d}" for i in range(6)]
    assert main(["-q", "split", str(root), "--out", str(meta), "--num-test", "2", "--seed", "0"]) == 0
    args = [
        "-q",
        "testset",
        str(root),
        "--out",
        str(test_dir),
        "--identities-list",
        str(meta / "test.txt"),
        "--num-ref",
        "1",
        "--seed",
        "0",
        "--blur-sigma",
        "2",
        "3",
        "--jpeg-range",
        "70",
        "80",
    ]
    assert main(args) == 0
    list_path = test_dir / "test_list.txt"
    dataset = build_dataset(
        {
            "type": "ENTEDReferenceTripletDataset",
            "name": "t",
            "dataroot_gt": str(root),
            "dataroot_lq": str(test_dir),
            "meta_info": str(list_path),
            "out_size": SIZE,
        }
    )
    assert len(dataset) == 6
    test_ids = {line.split()[0] for line in open(meta / "test.txt")}
    for index in range(len(dataset)):
        sample = dataset[index]
        assert os.path.basename(os.path.dirname(sample["gt_path"])) in test_ids
        assert not torch.equal(sample["lq"], sample["gt"])
    assert main(["-q", "lmdb", str(root), str(tmp_path / "syn.lmdb")]) == 0
    assert len(open(tmp_path / "syn.lmdb" / "meta_info.txt").read().splitlines()) == 18
    assert main(["-q", "lmdb", str(root), str(tmp_path / "syn.lmdb")]) == 2  # exists: refused, not clobbered
    assert main(["-q", "astronaut", str(tmp_path / "astronaut.png"), "--size", "128"]) == 0
    assert cv2.imread(str(tmp_path / "astronaut.png")).shape == (128, 128, 3)


def test_cli_reports_bad_input_with_exit_code(tmp_path, caplog):
    assert main(["-q", "split", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in caplog.text


def test_cli_synthetic_renderers(tmp_path):
    assert (
        main(
            ["-q", "synthetic", str(tmp_path / "posed"), "--identities", "1", "--images", "2", "--size", "32"]
        )
        == 0
    )
    assert sorted(os.listdir(tmp_path / "posed" / "id0000")) == ["0.json", "0.png", "1.json", "1.png"]
    flat = ["-q", "synthetic", str(tmp_path / "flat"), "--identities", "1", "--images", "2", "--size", "32"]
    assert main([*flat, "--renderer", "flat"]) == 0
    assert sorted(os.listdir(tmp_path / "flat" / "id0000")) == ["0.png", "1.png"]
