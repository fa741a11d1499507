"""ENTEDModel through BasicSR's runners: option-file training, resume after SIGKILL, several processes."""

import os
import signal
import subprocess
import sys
import time
from copy import deepcopy

import pytest
import torch
import yaml
from basicsr.models import build_model
from tiny_configs import NORMALISE, TEST_DEGRADATION, TINY_NETWORK_G

from ented.atomic_io import atomic_torch_save
from ented.data.preparation import prepare_split, prepare_test_set
from ented.data.synthetic_faces import write_synthetic_identity_set

SIZE = 32
TINY_D = {"type": "ENTEDDiscriminator", "out_size": SIZE, "width": 1 / 16}


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Six synthetic identities of three 32 px images, split 4 train / 2 test, with a fixed test set."""
    root = tmp_path_factory.mktemp("faces")
    write_synthetic_identity_set(str(root / "hq"), num_identities=6, images_per_identity=3, size=SIZE, seed=1)
    split = prepare_split(str(root / "hq"), str(root / "lists"), num_test=2, seed=1)
    test_list = prepare_test_set(
        str(root / "hq"),
        str(root / "test"),
        identity_list=split["test"],
        images_per_identity=1,
        seed=1,
        size=SIZE,
        degradation=TEST_DEGRADATION,
    )
    return {
        "hq": str(root / "hq"),
        "train_list": split["train"],
        "test_root": str(root / "test"),
        "test_list": test_list,
    }


def train_options(faces, name, total_iter, checkpoint_freq, gan=False) -> dict:
    train = {
        "ema_decay": 0.9,
        "optim_g": {"type": "Adam", "lr": 2e-3, "betas": [0, 0.99]},
        "attention_lr": 5e-4,
        "total_iter": total_iter,
        "warmup_iter": -1,
        "stage": 2,
        "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
        "attention_opt": {"type": "ENTEDAttentionReconstructionLoss", "loss_weight": 1.0},
        "vq_weight": 1.0,
    }
    opt = {
        "name": name,
        "model_type": "ENTEDModel",
        "num_gpu": 0,
        "manual_seed": 0,
        "datasets": {
            "train": {
                "name": "train",
                "type": "ENTEDReferenceFaceDataset",
                "dataroot_gt": faces["hq"],
                "layout": "list",
                "meta_info": faces["train_list"],
                "out_size": SIZE,
                **NORMALISE,
                **TEST_DEGRADATION,
                "use_hflip": True,
                "num_worker_per_gpu": 0,
                "batch_size_per_gpu": 2,
                "use_shuffle": True,
                "dataset_enlarge_ratio": 10,
            },
            "val": {
                "name": "val",
                "type": "ENTEDReferenceTripletDataset",
                "dataroot_gt": faces["hq"],
                "dataroot_lq": faces["test_root"],
                "layout": "list",
                "meta_info": faces["test_list"],
                "out_size": SIZE,
                **NORMALISE,
            },
        },
        "network_g": dict(TINY_NETWORK_G),
        "path": {"pretrain_network_g": None, "resume_state": None},
        "train": train,
        "val": {
            "val_freq": 10**9,
            "save_img": True,
            "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False}},
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": checkpoint_freq, "use_tb_logger": False},
    }
    if gan:
        opt["network_d"] = dict(TINY_D)
        train["optim_d"] = {"type": "Adam", "lr": 2e-3, "betas": [0, 0.99]}
        train["gan_opt"] = {"type": "GANLoss", "gan_type": "wgan_softplus", "loss_weight": 0.1}
        train["r1_interval"] = 2
    return opt


def write_yaml(opt: dict, path) -> str:
    path.write_text(yaml.safe_dump(opt, sort_keys=False), encoding="utf-8")
    return str(path)


def model_from(opt: dict, root) -> "torch.nn.Module":
    """Builds ENTEDModel the way BasicSR's parse_options would for a single CPU process."""
    opt = deepcopy(opt)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, root_path=str(root))
    experiments = os.path.join(str(root), "experiments", opt["name"])
    opt["path"].update(
        experiments_root=experiments,
        models=os.path.join(experiments, "models"),
        training_states=os.path.join(experiments, "training_states"),
        visualization=os.path.join(experiments, "visualization"),
    )
    return build_model(opt)


def batch(faces, opt) -> dict:
    from basicsr.data import build_dataset

    dataset = build_dataset(opt["datasets"]["train"])
    samples = [dataset[i] for i in range(2)]
    return {key: torch.stack([s[key] for s in samples]) for key in ("lq", "gt", "ref")}


def test_option_file_trains_through_basicsr_train_pipeline(faces, tmp_path, monkeypatch):
    from basicsr.train import train_pipeline

    import ented  # noqa: F401

    opt_path = write_yaml(
        train_options(faces, "pipeline", total_iter=3, checkpoint_freq=1), tmp_path / "train.yml"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train", "-opt", opt_path])
    train_pipeline(str(tmp_path))

    models = tmp_path / "experiments" / "pipeline" / "models"
    first = torch.load(models / "net_g_1.pth")
    last = torch.load(models / "net_g_latest.pth")
    assert set(last) == {"params", "params_ema"}
    changed = [k for k in first["params"] if not torch.equal(first["params"][k], last["params"][k])]
    assert changed, "three training iterations changed no generator weight"
    grids = list((tmp_path / "experiments" / "pipeline" / "visualization" / "val").glob("*_grid_*.png"))
    assert len(grids) == 2  # one per test triplet: LQ | reference | output | GT


def test_stage1_autoencodes_hq_and_stage2_freezes_the_codebook(faces, tmp_path):
    opt = train_options(faces, "stages", total_iter=1, checkpoint_freq=1)
    data = batch(faces, opt)

    opt["train"]["stage"] = 1
    stage1 = model_from(opt, tmp_path)
    stage1.feed_data(data)
    assert stage1.generator_input is stage1.gt

    opt["train"]["stage"] = 2
    stage2 = model_from(opt | {"train": opt["train"] | {"freeze_codebook": True}}, tmp_path)
    stage2.feed_data(data)
    assert stage2.generator_input is stage2.lq
    codebook = {
        k: v.clone() for k, v in stage2.net_g.named_parameters() if "codebook" in k or "embedding" in k
    }
    assert codebook, "no code-book parameter found by name"
    stage2.optimize_parameters(1)
    for name, before in codebook.items():
        assert torch.equal(before, dict(stage2.net_g.named_parameters())[name]), name


def test_attention_modules_get_their_own_learning_rate(faces, tmp_path):
    model = model_from(train_options(faces, "lr", total_iter=1, checkpoint_freq=1), tmp_path)
    base, attention = model.optimizer_g.param_groups
    assert base["lr"] == 2e-3 and attention["lr"] == 5e-4
    assert len(attention["params"]) > 0
    assert model.optimizer_g.defaults["betas"] == (0.0, 0.99)


def test_identity_loss_joins_the_generator_step(faces, tmp_path):
    opt = train_options(faces, "identity", total_iter=1, checkpoint_freq=1)
    opt["train"]["identity_opt"] = {
        "type": "ENTEDIdentityLoss",
        "loss_weight": 1.0,
        **{"layers": [1, 1, 1, 1], "base_channels": 8, "embedding_dim": 32, "input_size": 32},
    }
    model = model_from(opt, tmp_path)
    model.feed_data(batch(faces, opt))
    arcface = [p.clone() for p in model.losses["identity"].parameters()]
    model.optimize_parameters(1)
    assert 0 < float(model.log_dict["l_g_identity"]) <= 2.0  # 1 - cosine, weight 1
    assert all(torch.equal(a, b) for a, b in zip(arcface, model.losses["identity"].parameters()))


def test_gan_step_trains_the_discriminator_with_lazy_r1(faces, tmp_path):
    opt = train_options(faces, "gan", total_iter=2, checkpoint_freq=1, gan=True)
    opt["train"]["r1_gamma"] = 4.0  # not the default: the value below must come from the option
    model = model_from(opt, tmp_path)
    model.feed_data(batch(faces, train_options(faces, "gan", 2, 1)))
    d_before = [p.clone() for p in model.net_d.parameters()]
    model.optimize_parameters(1)
    assert {"l_g_gan", "l_d_real", "l_d_fake"} <= set(model.log_dict) and "l_d_r1" not in model.log_dict

    # R1 of the discriminator as it stands before iteration 2 (the G step leaves D untouched),
    # computed here without BasicSR's r1_penalty: E[ ||d D(x) / d x||^2 ] over the real batch.
    critic = deepcopy(model.net_d)
    real = model.gt.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(real).sum(), real)
    penalty = grad.pow(2).flatten(1).sum(1).mean()
    model.optimize_parameters(2)  # r1_interval 2: the penalty runs on even iterations
    assert "l_d_r1" in model.log_dict
    # Lazy R1 (StyleGAN2): gamma / 2 * penalty, scaled by the interval it is skipped for.
    expected = opt["train"]["r1_gamma"] / 2 * penalty * opt["train"]["r1_interval"]
    torch.testing.assert_close(model.log_dict["l_d_r1"], float(expected), rtol=1e-4, atol=1e-7)
    assert expected > 0
    model.optimize_parameters(3)
    assert "l_d_r1" not in model.log_dict
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.net_d.parameters()))


def test_non_finite_loss_names_the_iteration_and_the_term(faces, tmp_path):
    opt = train_options(faces, "nan", total_iter=1, checkpoint_freq=1)
    model = model_from(opt, tmp_path)
    data = batch(faces, opt)
    data["gt"][0, 0, 0, 0] = float("nan")
    model.feed_data(data)
    with pytest.raises(FloatingPointError, match=r"iteration 7: .*l_g_pix=nan"):
        model.optimize_parameters(7)


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "net_g_latest.pth"
    atomic_torch_save({"params": {"w": torch.ones(2)}}, str(path))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed while saving")

    with pytest.raises(RuntimeError, match="killed while saving"):
        atomic_torch_save({"params": Unpicklable()}, str(path))
    assert torch.equal(torch.load(path)["params"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["net_g_latest.pth"]


def run_entry(args, cwd, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_sigkill_mid_training_resumes_iteration_optimizer_and_ema(faces, tmp_path):
    opt = train_options(faces, "killed", total_iter=100000, checkpoint_freq=2)
    opt_path = write_yaml(opt, tmp_path / "train.yml")
    states = tmp_path / "experiments" / "killed" / "training_states"
    process = subprocess.Popen(
        [sys.executable, "-m", "ented.cli.train", "-opt", opt_path],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while time.time() < deadline and not (states / "4.state").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(int(p.name.split(".")[0]) for p in states.glob("*.state"))
    assert saved and saved[-1] >= 4, "training saved no state before the deadline"
    last = saved[-1]

    resumed = run_entry(
        [
            sys.executable, "-m", "ented.cli.train", "-opt", opt_path, "--auto_resume",
            "--force_yml", f"train:total_iter={last + 1}", "logger:save_checkpoint_freq=1",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = "".join(p.read_text() for p in (tmp_path / "experiments" / "killed").glob("train_*.log"))
    assert "Resuming training from epoch: " in log and f"iter: {last}." in log
    assert "ENTEDReferenceTripletDataset: 2 triplets" in log  # ented's own logs reach the run's log file

    state = torch.load(states / f"{last + 1}.state", weights_only=False)
    assert state["iter"] == last + 1
    adam_steps = {float(s["step"]) for s in state["optimizers"][0]["state"].values()}
    assert adam_steps == {float(last + 1)}, "the optimizer restarted instead of resuming"

    models = tmp_path / "experiments" / "killed" / "models"
    before = torch.load(models / f"net_g_{last}.pth")
    after = torch.load(models / f"net_g_{last + 1}.pth")
    decay = opt["train"]["ema_decay"]
    for name, ema in after["params_ema"].items():
        if name in after["params"] and after["params"][name].is_floating_point():
            expected = decay * before["params_ema"][name] + (1 - decay) * after["params"][name]
            torch.testing.assert_close(ema, expected, msg=f"EMA of {name} was not resumed")


# Runs ented-train's steps, and has every rank (not only rank 0) save what it holds at the end.
EVERY_RANK_SAVES = """
import os, sys, torch
import ented
from ented import runner_fixes
from ented.models.ented_model import ENTEDModel

save = ENTEDModel.save
held_folder = sys.argv[1]


def save_on_every_rank(self, epoch, current_iter):
    save(self, epoch, current_iter)
    held = {
        "g": self.get_bare_model(self.net_g).state_dict(),
        "g_ema": self.net_g_ema.state_dict(),
        "d": self.get_bare_model(self.net_d).state_dict(),
        "adam_steps": [float(s["step"]) for o in self.optimizers for s in o.state_dict()["state"].values()],
        "log": {k: float(v) for k, v in self.log_dict.items()},
    }
    torch.save(held, os.path.join(held_folder, f"rank{self.opt['rank']}.pth"))


ENTEDModel.save = save_on_every_rank
runner_fixes.apply()
runner_fixes.log_into_basicsr_logger()
sys.argv = sys.argv[:1] + sys.argv[2:]
from basicsr.train import train_pipeline

train_pipeline(os.getcwd())
"""


def test_two_processes_train_with_gloo_through_torchrun(faces, tmp_path):
    """Generator, discriminator and lazy R1 (iteration 2) under DistributedDataParallel on CPU:
    after the steps both ranks hold the same weights (DDP averaged their gradients)."""
    opt = train_options(faces, "ddp", total_iter=2, checkpoint_freq=10, gan=True)
    opt_path = write_yaml(opt, tmp_path / "train.yml")
    script = tmp_path / "every_rank_saves.py"
    script.write_text(EVERY_RANK_SAVES, encoding="utf-8")
    held = tmp_path / "held"
    held.mkdir()
    result = run_entry(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(script), str(held), "-opt", opt_path, "--launcher", "pytorch",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    log = "".join(p.read_text() for p in (tmp_path / "experiments" / "ddp").glob("train_*.log"))
    assert "World size (gpu number): 2" in log
    ranks = [torch.load(held / f"rank{rank}.pth") for rank in (0, 1)]
    for rank in ranks:
        assert set(rank["adam_steps"]) == {2.0}, "each rank made two generator and discriminator steps"
        assert "l_d_r1" in rank["log"]
    initial = model_from(opt, tmp_path / "fresh").net_g.state_dict()  # same seed, no steps
    changed = [
        k for k, v in ranks[0]["g"].items() if v.is_floating_point() and not torch.equal(v, initial[k])
    ]
    assert changed, "two steps changed no generator weight"
    for network in ("g", "g_ema", "d"):
        for name, value in ranks[0][network].items():
            assert torch.equal(value, ranks[1][network][name]), f"ranks differ in {network}.{name}"
    saved = torch.load(tmp_path / "experiments" / "ddp" / "models" / "net_g_latest.pth")
    for name, value in saved["params"].items():
        assert torch.equal(value, ranks[1]["g"][name]), name


def test_trainable_codebook_starts_from_the_first_batch_latents(faces, tmp_path):
    opt = train_options(faces, "codebook", total_iter=1, checkpoint_freq=1)
    opt["train"]["freeze_codebook"] = False
    model = model_from(opt, tmp_path)
    data = batch(faces, opt)
    quantizer = model.net_g.quantizer
    with torch.no_grad():
        latents = quantizer.proj_in(model.net_g.lq_encoder(data["gt"])[-1])
    model.feed_data(data)
    model.init_codebook_from_batch()
    words = quantizer.codebook.weight
    distance = torch.cdist(words, latents.permute(0, 2, 3, 1).reshape(-1, words.shape[1]))
    assert distance.min(dim=1).values.max() < 0.05 * latents.std() * words.shape[1] ** 0.5
    torch.testing.assert_close(model.net_g_ema.quantizer.codebook.weight, words)
    assert not model.codebook_pending_init


def test_validation_image_names_do_not_double_the_identity():
    from ented.models.ented_model import _sample_name

    assert _sample_name("test/lq/id0002/id0002_0.png") == "id0002_0"  # ented-prepare testset's names
    assert _sample_name("faces/id0001/0.png") == "id0001_0"
    assert _sample_name("faces/id1/id10_0.png") == "id1_id10_0"  # another identity's prefix is kept


def test_flow_loss_teaches_the_reference_flow_the_known_correspondences(faces, tmp_path):
    opt = train_options(faces, "flow", total_iter=1, checkpoint_freq=1)
    opt["network_g"].update(reference_attention=[32], reference_flow=32)
    opt["datasets"]["train"]["correspondences"] = True
    opt["train"]["flow_opt"] = {"type": "ENTEDReferenceFlowLoss", "loss_weight": 1.0}
    model = model_from(opt, tmp_path)
    from basicsr.data import build_dataset

    dataset = build_dataset(opt["datasets"]["train"])
    samples = [dataset[i] for i in range(4)]
    data = {key: torch.stack([s[key] for s in samples]) for key in ("lq", "gt", "ref", "correspondences")}
    model.feed_data(data)
    losses = []
    for step in range(1, 41):
        model.optimize_parameters(step)
        losses.append(float(model.log_dict["l_g_flow"]))
    # the zero flow's error is the mean displacement; training on the same batch drives it down
    valid = data["correspondences"][..., 4] > 0
    displacement = (data["correspondences"][..., 2:4] - data["correspondences"][..., :2]).abs().sum(-1)[valid]
    assert losses[0] == pytest.approx(float(displacement.mean()), rel=1e-4)
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0]
    del data["correspondences"]
    model.feed_data(data)
    with pytest.raises(ValueError, match="correspondences: true"):
        model.optimize_parameters(41)


def gate_options(faces) -> dict:
    opt = train_options(faces, "gate", total_iter=1, checkpoint_freq=1)
    opt["network_g"].update(reference_attention=[16], reference_gate=True)
    opt["datasets"]["train"]["mismatched_reference_prob"] = 0.5
    opt["train"]["gate_opt"] = {"type": "ENTEDReferenceGateLoss", "loss_weight": 1.0}
    return opt


def test_gate_learns_the_known_answers_which_decide_what_the_generator_reads(faces, tmp_path, seeded):
    from basicsr.data import build_dataset

    opt = gate_options(faces)
    model = model_from(opt, tmp_path)
    dataset = build_dataset(opt["datasets"]["train"])
    samples = {}
    for index in range(len(dataset)):  # two samples of each answer
        sample = dataset[index]
        samples.setdefault(float(sample["reference_match"][0]), []).append(sample)
        if all(len(samples.get(answer, [])) >= 2 for answer in (0.0, 1.0)):
            break
    chosen = samples[1.0][:2] + samples[0.0][:2]
    data = {k: torch.stack([s[k] for s in chosen]) for k in ("lq", "gt", "ref", "reference_match")}
    model.feed_data(data)
    read = model.references_read
    torch.testing.assert_close(read[:2], data["ref"][:2])
    torch.testing.assert_close(read[2:], data["lq"][2:])  # another person's: the input in its place
    losses = []
    for step in range(1, 31):
        model.optimize_parameters(step)
        losses.append(float(model.log_dict["l_g_gate"]))
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    with torch.no_grad():
        logits = model.net_g.reference_gate(data["lq"], data["ref"][:, None])[:, 0]
    assert (logits[:2] > 0).all() and (logits[2:] < 0).all()
    del data["reference_match"]
    model.feed_data(data)
    with pytest.raises(ValueError, match="gate_opt needs reference_match in the batch"):
        model.optimize_parameters(31)


def test_gate_and_gate_loss_come_together(faces, tmp_path):
    without_loss = gate_options(faces)
    del without_loss["train"]["gate_opt"]
    with pytest.raises(ValueError, match="reference_gate and train.gate_opt go together"):
        model_from(without_loss, tmp_path / "a")
    without_gate = gate_options(faces)
    del without_gate["network_g"]["reference_gate"]
    with pytest.raises(ValueError, match="the loss needs the gate"):
        model_from(without_gate, tmp_path / "b")
