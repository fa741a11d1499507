"""Every option file in options/ names registered pieces and builds its networks."""

from pathlib import Path

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils.registry import (
    ARCH_REGISTRY,
    DATASET_REGISTRY,
    LOSS_REGISTRY,
    METRIC_REGISTRY,
    MODEL_REGISTRY,
)

OPTION_FILES = sorted((Path(__file__).resolve().parents[1] / "options").glob("*.yml"))


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_there_are_option_files_for_the_paper_recipe_and_the_demo():
    names = {p.name for p in OPTION_FILES}
    assert {"train_ented_stage1_512.yml", "train_ented_stage2_512.yml", "test_ented_512.yml"} <= names
    assert {"demo_train_tiny.yml", "demo_test_tiny.yml"} <= names


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_file_names_registered_pieces(path):
    opt = load(path)
    assert opt["model_type"] in MODEL_REGISTRY
    for dataset in opt["datasets"].values():
        assert dataset["type"] in DATASET_REGISTRY, dataset["type"]
    for key in ("network_g", "network_d"):
        if opt.get(key):
            assert opt[key]["type"] in ARCH_REGISTRY
    for key, value in (opt.get("train") or {}).items():
        if key.endswith("_opt") and value:
            assert value["type"] in LOSS_REGISTRY, value["type"]
    for metric in (opt.get("val") or {}).get("metrics", {}).values():
        assert metric["type"] in METRIC_REGISTRY, metric["type"]


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_file_networks_build(path):
    opt = load(path)
    with torch.device("meta"):  # shapes only: the 512 networks are not allocated
        for key in ("network_g", "network_d"):
            if opt.get(key):
                assert sum(p.numel() for p in build_network(opt[key]).parameters()) > 0


def test_stage2_starts_from_stage1_and_freezes_its_codebook():
    stage1 = load(OPTION_FILES[0].parent / "train_ented_stage1_512.yml")
    stage2 = load(OPTION_FILES[0].parent / "train_ented_stage2_512.yml")
    assert stage1["train"]["stage"] == 1 and stage2["train"]["stage"] == 2
    assert stage2["train"]["freeze_codebook"] is True
    assert stage1["name"] in stage2["path"]["pretrain_network_g"]
    assert stage1["network_g"] == stage2["network_g"]
