"""``ented-benchmark train``: three methods on one tiny synthetic set, one budget, one table."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from ented.benchmark import train as bench_train
from ented.benchmark.train_options import METHODS
from ented.cli.benchmark import main
from ented.experiment import OPTIONS_DIR

ITERS = 3


def _tiny_options(folder: Path) -> Path:
    """options/benchmark/ with batch 2 (the same for every method) and ENTED's dense attention at
    32 px only (the test's size), for seconds of CPU."""
    folder.mkdir()
    for file_name, _, _ in METHODS.values():
        opt = yaml.safe_load((OPTIONS_DIR / "benchmark" / file_name).read_text())
        opt["datasets"]["train"].update(batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=1)
        if "reference_attention" in opt["network_g"]:
            opt["network_g"]["reference_attention"] = [32]
        (folder / file_name).write_text(yaml.safe_dump(opt, sort_keys=False))
    return folder


def _argv(options: Path, output: Path) -> list:
    return [
        "train",
        "--output",
        str(output),
        "--options-dir",
        str(options),
        "--size",
        "32",
        "--identities",
        "6",
        "--images-per-identity",
        "3",
        "--test-identities",
        "2",
        "--iters",
        str(ITERS),
        "--grids",
        "1",
        "--metrics",
        "psnr",
        "face_psnr",
        "erased_mark_recall",
    ]


@pytest.mark.parametrize("file_name", [spec[0] for spec in METHODS.values()])
def test_option_files_pass_the_checks(file_name):
    opt = bench_train.load_checked_options(OPTIONS_DIR / "benchmark" / file_name)
    assert opt["network_g"]["out_size"] == 64


def test_same_budget_table_and_no_retraining(tmp_path, monkeypatch):
    torch.manual_seed(0)
    options = _tiny_options(tmp_path / "options")
    output = tmp_path / "bench"
    assert main(_argv(options, output)) == 0

    records = json.loads((output / "training.json").read_text())
    assert sorted(r["method"] for r in records) == sorted(METHODS)
    for record in records:
        run = output / "runs" / f"{record['method']}_seed0" / "experiments" / record["name"]
        state = torch.load(run / "training_states" / f"{ITERS}.state", map_location="cpu", weights_only=False)
        assert state["iter"] == ITERS, record["method"]
        assert Path(record["checkpoint"]).is_file()
    results = json.loads((output / "quality" / "quality.json").read_text())
    rows = {row["name"]: row for row in results["methods"]}
    assert set(rows) == {"bicubic", "ENTED dense", "ENTED (no reference) blind", "GFPGAN GFPGANv1Clean"}
    assert all(row["status"] == "ok" for row in rows.values())
    assert "erased_mark_recall" in rows["ENTED dense"]["metrics"]
    assert "GFPGAN GFPGANv1Clean" in (output / "quality" / "quality.md").read_text()

    def no_training(opt, workdir):
        raise AssertionError(f"{opt['name']} trained again")

    monkeypatch.setattr("ented.experiment.train", no_training)
    assert main(_argv(options, output)) == 0


def test_unknown_option_key_is_refused_naming_it(tmp_path, caplog):
    options = _tiny_options(tmp_path / "options")
    opt = yaml.safe_load((options / "gfpgan.yml").read_text())
    opt["train"]["pixle_opt"] = opt["train"]["pixel_opt"]
    (options / "gfpgan.yml").write_text(yaml.safe_dump(opt, sort_keys=False))
    assert main(_argv(options, tmp_path / "bench")) == 2
    assert "pixle_opt" in caplog.text and "gfpgan.yml" in caplog.text
    assert not (tmp_path / "bench" / "runs").exists()
