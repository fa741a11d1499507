"""Issue 12, items 8, 14, 17 and 22: option typos are errors, configuration combinations are
checked up front, missing weight files are named before training, stage 1 trains."""

import logging
import os
import re
import sys
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.registry import DATASET_REGISTRY
from tiny_configs import NORMALISE, TEST_DEGRADATION, TINY_NETWORK_G

from ented import runner_fixes
from ented.data.preparation import prepare_split
from ented.data.synthetic_faces import write_synthetic_identity_set
from ented.models.ented_model import VGG19_URL, check_metrics_fit_dataset

OPTIONS = Path(__file__).resolve().parents[2] / "options"
SIZE = 32


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Four synthetic identities of two 32 px images, split 3 train / 1 test."""
    root = tmp_path_factory.mktemp("faces")
    write_synthetic_identity_set(str(root / "hq"), num_identities=4, images_per_identity=2, size=SIZE, seed=3)
    split = prepare_split(str(root / "hq"), str(root / "lists"), num_test=1, seed=3)
    return {"hq": str(root / "hq"), "train_list": split["train"], "test_list": split["test"]}


def train_dataset(faces) -> dict:
    return {
        "name": "train",
        "type": "ENTEDReferenceFaceDataset",
        "phase": "train",
        "dataroot_gt": faces["hq"],
        "layout": "list",
        "meta_info": faces["train_list"],
        "out_size": SIZE,
        **NORMALISE,
        **TEST_DEGRADATION,
        # BasicSR's own keys stay allowed
        "num_worker_per_gpu": 0,
        "batch_size_per_gpu": 2,
        "use_shuffle": True,
        "dataset_enlarge_ratio": 1,
        "prefetch_mode": None,
        "pin_memory": False,
        "persistent_workers": False,
        "gt_size": SIZE,
    }


def options(root, stage=2, **train) -> dict:
    """A tiny ENTEDModel option dict, as BasicSR's parse_options leaves it for one CPU process."""
    experiments = os.path.join(str(root), "experiments", "tiny")
    return {
        "name": "tiny",
        "model_type": "ENTEDModel",
        "num_gpu": 0,
        "manual_seed": 0,
        "is_train": True,
        "dist": False,
        "rank": 0,
        "world_size": 1,
        "auto_resume": False,
        "root_path": str(root),
        "network_g": dict(TINY_NETWORK_G),
        "path": {
            "pretrain_network_g": None,
            "resume_state": None,
            "experiments_root": experiments,
            "models": os.path.join(experiments, "models"),
            "training_states": os.path.join(experiments, "training_states"),
            "visualization": os.path.join(experiments, "visualization"),
        },
        "train": {
            "stage": stage,
            "ema_decay": 0.9,
            "optim_g": {"type": "Adam", "lr": 2e-3, "betas": [0, 0.99]},
            "total_iter": 2,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
            **train,
        },
        "val": {
            "val_freq": 10,
            "save_img": False,
            "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 0, "better": "higher"}},
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": 10, "use_tb_logger": False},
    }


def first_batch(faces, seed=0) -> dict:
    from basicsr.data import build_dataset

    dataset = build_dataset(train_dataset(faces))
    torch.manual_seed(seed)
    samples = [dataset[0], dataset[1]]
    return {key: torch.stack([s[key] for s in samples]) for key in ("lq", "gt", "ref")}


# ------------------------------------------------------------------ item 8: typos are errors
@pytest.mark.parametrize(
    ("dataset_type", "typo", "meant"),
    [
        ("ENTEDReferenceFaceDataset", "layot", "layout"),
        ("ENTEDReferenceFaceDataset", "blur_sigam", "blur_sigma"),
        ("ENTEDReferenceFaceDataset", "ref_affine_prb", "ref_affine_prob"),
        ("ENTEDReferenceFaceDataset", "sidecar", "sidecars"),
        ("ENTEDReferenceTripletDataset", "refrence", "reference"),
        ("ENTEDReferenceTripletDataset", "jpeg_rang", "jpeg_range"),
        ("ENTEDReferenceRealWorldDataset", "sead", "seed"),
        ("ENTEDReferenceRealWorldDataset", "batch_size_per_gp", "batch_size_per_gpu"),
    ],
)
def test_dataset_option_typo_is_an_error_naming_the_closest_key(dataset_type, typo, meant):
    opt = {"name": "mine", "type": dataset_type, "phase": "train", "dataroot_gt": "/nowhere", typo: 1}
    with pytest.raises(
        ValueError, match=rf"datasets mine .*unknown option '{typo}' \(did you mean '{meant}'\?\)"
    ):
        DATASET_REGISTRY.get(dataset_type)(opt)


def test_layout_typo_no_longer_trains_on_every_identity(faces):
    opt = train_dataset(faces)
    opt["layot"] = opt.pop("layout")  # the default, identity_folders, would read the test identities too
    with pytest.raises(ValueError, match="'layot' \\(did you mean 'layout'\\?\\)"):
        DATASET_REGISTRY.get("ENTEDReferenceFaceDataset")(opt)


def test_dataset_with_basicsr_keys_builds(faces):
    dataset = DATASET_REGISTRY.get("ENTEDReferenceFaceDataset")(train_dataset(faces))
    assert len(dataset) == 6


@pytest.mark.parametrize(
    ("where", "typo", "meant"),
    [
        ("train", "pixel_op", "pixel_opt"),
        ("train", "freeze_codebok", "freeze_codebook"),
        ("train", "attention_rl", "attention_lr"),
        ("val", "save_imgs", "save_img"),
        ("path", "pretrain_netwrok_g", "pretrain_network_g"),
        ("network_g", "code_dimm", "code_dim"),
        ("network_g", "reference_atention", "reference_attention"),
        ("top", "netwrok_d", "network_d"),
    ],
)
def test_model_option_typo_is_an_error_naming_the_closest_key(tmp_path, where, typo, meant):
    opt = options(tmp_path)
    (opt if where == "top" else opt[where])[typo] = None if where == "path" else 1
    with pytest.raises(ValueError, match=rf"unknown option '{typo}' \(did you mean '{meant}'\?\)"):
        build_model(opt)


def test_metric_option_typo_is_an_error_checked_against_the_metric_signature(tmp_path):
    opt = options(tmp_path)
    opt["val"]["metrics"]["psnr"]["crop_boarder"] = 4
    with pytest.raises(
        ValueError, match=r"val.metrics.psnr \(calculate_psnr\): unknown option 'crop_boarder' "
    ):
        build_model(opt)
    opt = options(tmp_path)  # the data the model passes (img, ref, marks...) is not an option
    opt["val"]["metrics"]["identity"] = {"type": "calculate_ented_identity_similarity", "ref": "x"}
    with pytest.raises(ValueError, match="unknown option 'ref'"):
        build_model(opt)


def test_ented_options_that_are_read_stay_allowed(tmp_path):
    opt = options(tmp_path, stage=1, freeze_codebook=False, codebook_init="random", vq_weight=0.5)
    opt["network_g"].update(reference_attention=[16], reference_attention_dim=8, reference_attention_heads=2)
    opt["val"].update(grids=False, suffix="x", pbar=False)
    opt["val"]["metrics"]["lpips"] = {
        "type": "calculate_ented_lpips",
        "better": "lower",
        "allow_random_weights": True,
    }
    opt["find_unused_parameters"] = False
    opt["dist_params"] = {"backend": "gloo", "port": 29500}
    model = build_model(opt)
    assert model.vq_weight == 0.5


@pytest.mark.parametrize("path", sorted(OPTIONS.glob("*.yml")), ids=lambda p: p.name)
def test_option_files_pass_the_key_checks(path):
    from ented.models.ented_model import check_options
    from ented.options import check_known_keys

    opt = yaml.safe_load(path.read_text(encoding="utf-8"))
    check_options(opt)
    for phase, dataset in opt["datasets"].items():
        check_known_keys(f"datasets.{phase}", dataset, DATASET_REGISTRY.get(dataset["type"]).OPTIONS)


# ------------------------------------------------------------------ item 14: combinations
def test_stage2_without_vq_trains(faces, tmp_path):
    opt = options(tmp_path, stage=2)
    opt["network_g"]["use_vq"] = False
    model = build_model(opt)  # freeze_codebook defaulted to true and crashed here
    model.feed_data(first_batch(faces))
    before = [p.clone() for p in model.net_g.parameters()]
    model.optimize_parameters(1)
    assert "l_g_pix" in model.log_dict and "l_g_vq" not in model.log_dict
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net_g.parameters()))


def test_stage2_with_vq_still_freezes_the_codebook(tmp_path):
    model = build_model(options(tmp_path, stage=2))
    assert not model.net_g.quantizer.codebook.weight.requires_grad


def test_freeze_codebook_without_vq_is_an_error_up_front(tmp_path):
    opt = options(tmp_path, stage=2, freeze_codebook=True)
    opt["network_g"]["use_vq"] = False
    with pytest.raises(ValueError, match="freeze_codebook: true.*no code book.*use_vq: true"):
        build_model(opt)


def identity_against_ref() -> dict:
    return {"type": "calculate_ented_identity_similarity", "against": "ref", "allow_random_weights": True}


def test_reference_none_with_identity_against_ref_fails_at_construction(tmp_path):
    opt = options(tmp_path)
    opt["val"]["metrics"]["identity_ref"] = identity_against_ref()
    opt["datasets"] = {"val": {"name": "blind", "type": "ENTEDReferenceTripletDataset", "reference": "none"}}
    with pytest.raises(
        ValueError, match="identity_ref.*against: ref.*'blind' has reference: none.*use against: gt"
    ):
        build_model(opt)
    opt["datasets"]["val"]["reference"] = "mismatched"
    build_model(opt)


def test_reference_none_with_identity_against_ref_fails_before_the_first_image(tmp_path):
    """Validation on a dataset given outside the option file (ented-test's loaders, a script)."""
    opt = options(tmp_path)
    opt["val"]["metrics"]["identity_ref"] = identity_against_ref()
    model = build_model(opt)

    class Loader:
        class dataset:  # noqa: N801  (stands in for the dataset object)
            opt = {"name": "blind", "reference": "none"}

        def __iter__(self):
            raise AssertionError("no image may be restored before the check")

    with pytest.raises(ValueError, match="against: ref"):
        model.nondist_validation(Loader(), 1, None, False)
    check_metrics_fit_dataset(opt, {"name": "seen", "reference": "matched"})


# ------------------------------------------------------------------ item 17: weights, CUDA options
def test_missing_weight_files_are_named_up_front_with_their_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # BasicSR's VGG19 path is relative to the working folder
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # and no cached copy
    opt = options(tmp_path, stage=2)
    opt["path"]["pretrain_network_g"] = "experiments/ented_stage1_512/models/net_g_latest.pth"
    opt["train"]["perceptual_opt"] = {"type": "PerceptualLoss", "layer_weights": {"relu1_1": 1.0}}
    opt["train"]["identity_opt"] = {"type": "ENTEDIdentityLoss", "weights_path": "arcface.pth"}
    opt["val"]["metrics"]["lpips"] = {"type": "calculate_ented_lpips", "weights_path": "alexnet.pth"}
    with pytest.raises(FileNotFoundError) as error:
        build_model(opt)
    message = str(error.value)
    assert "net_g_latest.pth" in message and "ented-train -opt options/train_ented_stage1_512.yml" in message
    assert "experiments/pretrained_models/vgg19-dcbb9e9d.pth" in message and VGG19_URL in message
    assert "arcface.pth" in message and "insightface" in message
    assert "alexnet.pth" in message and "alexnet-owt-7be5be79.pth" in message


@pytest.mark.parametrize("recipe", ["train_ented_stage1_512.yml", "train_ented_stage2_512.yml"])
def test_512_recipes_name_every_missing_weight_file_before_building(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    opt = yaml.safe_load((OPTIONS / recipe).read_text(encoding="utf-8"))
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, num_gpu=0)
    with pytest.raises(FileNotFoundError) as error:
        build_model(opt)
    message = str(error.value)
    assert "vgg19-dcbb9e9d.pth" in message and "arcface_r50_backbone.pth" in message
    assert ("pretrain_network_g" in message) == (recipe == "train_ented_stage2_512.yml")


def test_without_cuda_the_cuda_only_data_options_are_switched_off(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ented-train", "-opt", str(OPTIONS / "train_ented_stage1_512.yml")])
    runner_fixes.apply()
    import basicsr.train

    notices = logging.getLogger("ented.runner_fixes")
    notices.addHandler(caplog.handler)  # ented-train routes ented's records away from the root logger
    try:
        opt, _ = basicsr.train.parse_options(str(tmp_path), is_train=True)
    finally:
        notices.removeHandler(caplog.handler)
    train = opt["datasets"]["train"]
    assert train["prefetch_mode"] is None and train["pin_memory"] is False
    assert (
        "prefetch_mode: cuda switched off" in caplog.text and "pin_memory: true switched off" in caplog.text
    )


def test_with_cuda_the_data_options_are_kept():
    opt = {"datasets": {"train": {"prefetch_mode": "cuda", "pin_memory": True}}}
    assert runner_fixes.drop_cuda_only_data_options(deepcopy(opt), cuda_available=True) == []
    kept = deepcopy(opt)
    runner_fixes.drop_cuda_only_data_options(kept, cuda_available=True)
    assert kept == opt


# ------------------------------------------------------------------ item 22: stage 1 trains
def test_stage1_trains_the_codebook_with_the_gt_as_generator_input(faces, tmp_path):
    model = build_model(options(tmp_path, stage=1, freeze_codebook=False))
    net = model.get_bare_model(model.net_g)
    assert net.quantizer.codebook.weight.requires_grad
    seen = []
    net.lq_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    data = first_batch(faces)
    model.feed_data(data)
    model.optimize_parameters(1)  # also sets the code words from the batch's latents
    words = net.quantizer.codebook.weight.detach().clone()
    model.optimize_parameters(2)
    assert not torch.equal(words, net.quantizer.codebook.weight), "stage 1 did not train the code book"
    assert "l_g_vq" in model.log_dict
    # E_lq saw the HQ face, not the degraded one, at every step
    assert seen and all(torch.equal(x, data["gt"]) for x in seen)
    assert not torch.equal(data["gt"], data["lq"])


def test_readme_training_runs_stage1_before_stage2_and_names_every_weight_file():
    readme = (OPTIONS.parent / "README.md").read_text(encoding="utf-8")
    section = readme[
        readme.index("## Train with an option file") : readme.index("### BasicSR's runner directly")
    ]
    stage1 = section.index("ented-train -opt options/train_ented_stage1_512.yml")
    assert stage1 < section.index("ented-train -opt options/train_ented_stage2_512.yml")
    stage2 = yaml.safe_load((OPTIONS / "train_ented_stage2_512.yml").read_text(encoding="utf-8"))
    assert stage2["path"]["pretrain_network_g"] in section
    for recipe in ("train_ented_stage1_512.yml", "train_ented_stage2_512.yml", "test_ented_512.yml"):
        text = (OPTIONS / recipe).read_text(encoding="utf-8")
        for weights in set(re.findall(r"experiments/pretrained_models/([\w.-]+\.pth)", text)):
            assert weights in section, f"{recipe} needs {weights}; the README's training section does not say"
    assert "vgg19-dcbb9e9d.pth" in section and VGG19_URL in section
