"""The registered ENTED datasets: layouts, sample contract, references, determinism, lmdb."""

import os

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.registry import DATASET_REGISTRY
from tiny_configs import training_dataset_options
from torch.utils.data import DataLoader

from ented.data.preparation import pack_lmdb, prepare_test_set
from ented.data.synthetic_faces import write_synthetic_identity_set

SIZE = 64
HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="module")
def face_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    write_synthetic_identity_set(str(root), num_identities=5, images_per_identity=4, size=SIZE, seed=0)
    return str(root)


def identity_of(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


def train_opt(root, **extra):
    return training_dataset_options(root, SIZE, **extra)


def triplet_opt(root, **extra):
    return {
        "type": "ENTEDReferenceTripletDataset",
        "name": "val",
        "phase": "val",
        "dataroot_gt": root,
        "layout": "identity_folders",
        "out_size": SIZE,
        **extra,
    }


def test_names_are_registered():
    for name in (
        "ENTEDReferenceFaceDataset",
        "ENTEDReferenceTripletDataset",
        "ENTEDReferenceRealWorldDataset",
    ):
        assert DATASET_REGISTRY.get(name) is not None


def test_training_sample_contract(face_root):
    dataset = build_dataset(train_opt(face_root, **HALF))
    assert len(dataset) == 20
    sample = dataset[5]
    assert set(sample) == {"lq", "gt", "ref", "lq_path", "gt_path", "ref_path"}
    for key in ("lq", "gt", "ref"):
        assert sample[key].shape == (3, SIZE, SIZE) and sample[key].dtype == torch.float32
        assert -1.0 <= sample[key].min() and sample[key].max() <= 1.0
    assert sample["gt"].min() < -0.5  # really normalized to [-1, 1], not [0, 1]
    assert all(isinstance(sample[k], str) for k in ("lq_path", "gt_path", "ref_path"))
    unnormalized = build_dataset(train_opt(face_root))[5]
    assert 0.0 <= unnormalized["gt"].min() and unnormalized["gt"].max() <= 1.0


def test_training_reference_is_another_image_of_the_same_identity(face_root):
    dataset = build_dataset(train_opt(face_root))
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["ref_path"] != sample["gt_path"]
        assert identity_of(sample["ref_path"]) == identity_of(sample["gt_path"])
        assert not torch.equal(sample["ref"], sample["gt"])


def test_training_is_random_and_follows_torch_seed(face_root):
    dataset = build_dataset(train_opt(face_root, use_hflip=False))
    a, b = dataset[0], dataset[0]
    assert not torch.equal(a["lq"], b["lq"])
    torch.manual_seed(11)
    c = dataset[0]
    torch.manual_seed(11)
    d = dataset[0]
    assert torch.equal(c["lq"], d["lq"]) and c["ref_path"] == d["ref_path"]


def test_training_lq_is_degraded_gt(face_root):
    sample = build_dataset(train_opt(face_root, use_hflip=False))[0]
    mse = torch.mean((sample["lq"] - sample["gt"]) ** 2).item()
    assert 1e-5 < mse < 0.1


def test_several_references_stack_and_batch(face_root):
    dataset = build_dataset(train_opt(face_root, num_ref=3, **HALF))
    sample = dataset[0]
    assert sample["ref"].shape == (3, 3, SIZE, SIZE)
    paths = sample["ref_path"].split(os.pathsep)
    assert len(paths) == 3 and len(set(paths)) == 3 and sample["gt_path"] not in paths
    batch = next(iter(DataLoader(dataset, batch_size=2, num_workers=0)))
    assert batch["ref"].shape == (2, 3, 3, SIZE, SIZE)
    assert batch["lq"].shape == (2, 3, SIZE, SIZE)
    assert len(batch["ref_path"]) == 2


def test_hflip_flips_gt_and_references_together(face_root):
    import cv2

    dataset = build_dataset(train_opt(face_root, use_hflip=True, noise_range=[0, 0]))
    torch.manual_seed(0)
    flips = []
    for _ in range(12):
        sample = dataset[0]
        raw = cv2.imread(sample["gt_path"])[..., ::-1].astype(np.float32) / 255
        gt = sample["gt"].permute(1, 2, 0).numpy()
        ref_raw = cv2.imread(sample["ref_path"])[..., ::-1].astype(np.float32) / 255
        ref = sample["ref"].permute(1, 2, 0).numpy()
        gt_flipped = np.allclose(gt, raw[:, ::-1], atol=1e-6)
        assert gt_flipped or np.allclose(gt, raw, atol=1e-6)
        assert np.allclose(ref, ref_raw[:, ::-1] if gt_flipped else ref_raw, atol=1e-6)
        flips.append(gt_flipped)
    assert any(flips) and not all(flips)


def test_reference_augmentation_changes_only_the_reference(face_root):
    import cv2

    opt = train_opt(face_root, use_hflip=False, ref_affine_prob=1.0, ref_color_jitter_prob=1.0)
    sample = build_dataset(opt)[0]
    ref_raw = torch.from_numpy(cv2.imread(sample["ref_path"])[..., ::-1].transpose(2, 0, 1) / 255.0).float()
    gt_raw = torch.from_numpy(cv2.imread(sample["gt_path"])[..., ::-1].transpose(2, 0, 1) / 255.0).float()
    assert (sample["ref"] - ref_raw).abs().mean() > 0.01
    assert torch.allclose(sample["gt"], gt_raw, atol=1e-6)
    assert sample["ref"].shape == (3, SIZE, SIZE) and 0 <= sample["ref"].min() and sample["ref"].max() <= 1


def test_triplet_on_the_fly_is_reproducible(face_root):
    first = build_dataset(triplet_opt(face_root, seed=5))
    second = build_dataset(triplet_opt(face_root, seed=5))
    other_seed = build_dataset(triplet_opt(face_root, seed=6))
    for index in (0, 7):
        a, b = first[index], second[index]
        for key in ("lq", "gt", "ref"):
            assert torch.equal(a[key], b[key])
        assert a["ref_path"] == b["ref_path"]
        assert identity_of(a["ref_path"]) == identity_of(a["gt_path"]) and a["ref_path"] != a["gt_path"]
    assert not torch.equal(first[0]["lq"], other_seed[0]["lq"])


def test_mismatched_references_come_from_another_identity(face_root):
    dataset = build_dataset(triplet_opt(face_root, reference="mismatched", num_ref=2))
    again = build_dataset(triplet_opt(face_root, reference="mismatched", num_ref=2))
    others = set()
    for index in range(len(dataset)):
        sample = dataset[index]
        paths = sample["ref_path"].split(os.pathsep)
        assert sample["ref"].shape == (2, 3, SIZE, SIZE)
        assert all(identity_of(p) != identity_of(sample["gt_path"]) for p in paths)
        assert len({identity_of(p) for p in paths}) == 1
        assert sample["ref_path"] == again[index]["ref_path"]
        others.add(identity_of(paths[0]))
    assert len(others) > 1  # not always the same stranger


def test_reference_none_omits_the_reference(face_root):
    sample = build_dataset(triplet_opt(face_root, reference="none"))[0]
    assert set(sample) == {"lq", "gt", "lq_path", "gt_path"}


def test_unknown_reference_mode_is_refused(face_root):
    with pytest.raises(ValueError, match="reference must be one of"):
        build_dataset(triplet_opt(face_root, reference="random"))


def test_prepared_test_list_is_read_by_the_triplet_dataset(face_root, tmp_path):
    list_path = prepare_test_set(face_root, str(tmp_path), num_ref=2, seed=1)
    opt = {
        "type": "ENTEDReferenceTripletDataset",
        "name": "test",
        "dataroot_gt": face_root,
        "dataroot_lq": str(tmp_path),
        "meta_info": list_path,
        "out_size": SIZE,
        "num_ref": 2,
    }
    dataset = build_dataset(opt)
    assert len(dataset) == 20
    sample = dataset[3]
    assert sample["lq_path"].startswith(str(tmp_path)) and os.path.isfile(sample["lq_path"])
    assert sample["ref"].shape == (2, 3, SIZE, SIZE)
    assert all(identity_of(p) == identity_of(sample["gt_path"]) for p in sample["ref_path"].split(os.pathsep))
    assert sample["gt_path"] not in sample["ref_path"].split(os.pathsep)
    assert not torch.equal(sample["lq"], sample["gt"])
    names = [os.path.basename(dataset[i]["lq_path"]) for i in range(len(dataset))]
    assert len(set(names)) == len(names)  # result files named after lq never collide
    # stored lq: the same tensor every time, whatever the dataset seed
    assert torch.equal(build_dataset({**opt, "seed": 99})[3]["lq"], sample["lq"])


def test_identity_list_layout_for_training(face_root, tmp_path):
    list_path = tmp_path / "train.txt"
    list_path.write_text(
        "# identity image\nid0000 id0000/0.png\nid0000 id0000/2.png\nid0003 id0003/1.png\nid0003 id0003/3\n"
    )
    dataset = build_dataset(train_opt(face_root, layout="list", meta_info=str(list_path)))
    assert len(dataset) == 4
    sample = dataset[3]  # "id0003/3" gets .png
    assert sample["gt_path"].endswith("id0003/3.png") and sample["ref_path"].endswith("id0003/1.png")


def test_ffhq_ref_csv_with_and_without_header(face_root, tmp_path):
    headed = tmp_path / "headed.csv"
    headed.write_text('gt,ref\nid0000/0.png,"id0000/1.png;id0000/2.png"\nid0001/0.png,id0001/3.png\n')
    bare = tmp_path / "bare.csv"
    bare.write_text("id0000/0.png,id0000/1.png,id0000/2.png\nid0001/0.png,id0001/3.png\n")
    for csv_path in (headed, bare):
        opt = triplet_opt(face_root, layout="ffhq_ref_csv", meta_info=str(csv_path), num_ref=2)
        dataset = build_dataset(opt)
        assert len(dataset) == 2
        assert dataset[0]["ref_path"].split(os.pathsep) == [
            os.path.join(face_root, f"id0000/{n}.png") for n in (1, 2)
        ]
        assert dataset[1]["ref"].shape == (2, 3, SIZE, SIZE)  # one reference, repeated for num_ref 2
        mismatched = build_dataset({**opt, "reference": "mismatched"})
        assert identity_of(mismatched[0]["ref_path"].split(os.pathsep)[0]) == "id0001"
        training = build_dataset(train_opt(face_root, layout="ffhq_ref_csv", meta_info=str(csv_path)))
        assert identity_of(training[0]["ref_path"]) == "id0000"


def test_rows_without_identity_are_grouped_by_shared_images(tmp_path):
    from ented.data.layouts import read_list_file

    path = tmp_path / "rows.txt"
    path.write_text("a/1.png - a/2.png\na/3.png - a/2.png\nb/1.png - b/2.png alice\nb/3.png - b/1.png\n")
    identities = [record.identity for record in read_list_file(str(path))]
    assert identities[0] == identities[1] != identities[2]
    assert identities[2] == identities[3] == "alice"


def test_real_world_dataset_has_no_gt(face_root, tmp_path):
    list_path = tmp_path / "real.txt"
    list_path.write_text("- id0000/0.png id0000/1.png\n- id0001/0.png id0001/2.png,id0001/3.png\n")
    opt = {
        "type": "ENTEDReferenceRealWorldDataset",
        "name": "real",
        "dataroot_lq": face_root,
        "dataroot_ref": face_root,
        "meta_info": str(list_path),
        "out_size": SIZE,
        **HALF,
    }
    dataset = build_dataset(opt)
    sample = dataset[1]
    assert set(sample) == {"lq", "lq_path", "ref", "ref_path"}
    assert sample["lq"].shape == sample["ref"].shape == (3, SIZE, SIZE)
    assert sample["ref_path"].endswith("id0001/2.png")
    folders = build_dataset({**opt, "layout": "identity_folders", "meta_info": None, "num_ref": 2})
    assert len(folders) == 20 and folders[0]["ref"].shape == (2, 3, SIZE, SIZE)
    assert "ref" not in build_dataset({**opt, "reference": "none"})[0]
    csv_path = tmp_path / "real.csv"
    csv_path.write_text("lq,ref1,ref2\nid0002/1.png,id0002/0.png,id0002/3.png\n")
    from_csv = build_dataset({**opt, "layout": "ffhq_ref_csv", "meta_info": str(csv_path), "num_ref": 2})
    assert from_csv[0]["ref_path"].split(os.pathsep)[1].endswith("id0002/3.png")


def test_lmdb_round_trip(face_root, tmp_path):
    lmdb_path = pack_lmdb(face_root, str(tmp_path / "faces.lmdb"))
    assert os.path.isfile(os.path.join(lmdb_path, "meta_info.txt"))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".pack-")]
    disk = build_dataset(triplet_opt(face_root, seed=2))
    lmdb = build_dataset(triplet_opt(lmdb_path, seed=2, io_backend={"type": "lmdb"}))
    assert len(lmdb) == len(disk)
    for index in (0, 13):
        a, b = disk[index], lmdb[index]
        assert (
            torch.equal(a["gt"], b["gt"])
            and torch.equal(a["lq"], b["lq"])
            and torch.equal(a["ref"], b["ref"])
        )
        assert b["gt_path"] == os.path.relpath(os.path.splitext(a["gt_path"])[0], face_root)
    training = build_dataset(train_opt(lmdb_path, io_backend={"type": "lmdb"}, num_ref=2))
    sample = training[4]
    assert sample["ref"].shape == (2, 3, SIZE, SIZE)
    assert all(
        p.split("/")[0] == sample["gt_path"].split("/")[0] for p in sample["ref_path"].split(os.pathsep)
    )
    # workers forked after this process opened the lmdb open their own environment
    batch = next(iter(DataLoader(training, batch_size=4, num_workers=2)))
    assert batch["ref"].shape == (4, 2, 3, SIZE, SIZE)


def test_workers_give_valid_samples(face_root):
    dataset = build_dataset(train_opt(face_root))
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True)
    batch = next(iter(loader))
    assert batch["lq"].shape == (4, 3, SIZE, SIZE)


def test_blind_training_samples_carry_no_reference(face_root):
    dataset = build_dataset(train_opt(face_root, reference="none"))
    sample = dataset[0]
    assert set(sample) == {"lq", "gt", "lq_path", "gt_path"}
    assert len(dataset) == len(build_dataset(train_opt(face_root)))  # the same images as with references
    with pytest.raises(ValueError, match="'matched' or 'none'"):
        build_dataset(train_opt(face_root, reference="mismatched"))
    with pytest.raises(ValueError, match="evaluation datasets"):
        build_dataset(train_opt(face_root, sidecars=True))


def test_sidecars_reach_the_batch(face_root):
    from ented.data.sidecars import read_sidecar

    dataset = build_dataset(triplet_opt(face_root, sidecars=True))
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["face_mask"].shape == (2, 1, SIZE, SIZE) and batch["marks"].shape == (2, 16, 4)
    sidecar = read_sidecar(batch["gt_path"][0])
    count = len(sidecar["marks"])
    expected = [[m["x"], m["y"], m["radius"], float(m["visible"])] for m in sidecar["marks"]]
    np.testing.assert_allclose(batch["marks"][0, :count].numpy(), expected, atol=1e-4)
    assert not batch["marks"][0, count:].any()  # padding is invisible
    assert 0.1 < batch["face_mask"][0].mean() < 0.6


def test_missing_or_wrong_size_sidecar_is_named(face_root, tmp_path):
    write_synthetic_identity_set(str(tmp_path / "flat"), 2, 2, size=SIZE, renderer="flat")
    with pytest.raises(FileNotFoundError, match=r"sidecar .*0\.json"):
        build_dataset(triplet_opt(str(tmp_path / "flat"), sidecars=True))[0]
    write_synthetic_identity_set(str(tmp_path / "big"), 2, 2, size=2 * SIZE)
    with pytest.raises(ValueError, match="describes a 128 px image"):
        build_dataset(triplet_opt(str(tmp_path / "big"), sidecars=True))[0]
