"""Resuming from damaged or hostile training folders (issue 12, items 2, 3, 12 and 18).

Training states come from the real training code (``ENTEDModel.save`` after optimizer steps), so
the safe loader is tested on what a run actually writes.
"""

import logging
import os
import pickle
import shutil
import sys
from copy import deepcopy

import pytest
import test_training
import torch
from test_training import model_from, train_options, write_yaml

from ented import runner_fixes
from ented.atomic_io import atomic_path
from ented.hub_weights import UnreadableFileError

faces = test_training.faces  # the synthetic identity set, as a fixture of this module too
# Datasets are not built by build_model: their paths are never read here.
NO_DATA = {"hq": "unused", "train_list": "unused", "test_root": "unused", "test_list": "unused"}
PAYLOAD_MARK = "payload_ran"


class Payload:
    """Unpickling this would create a file: proof that a file ran code."""

    def __init__(self, mark_path: str):
        self.mark_path = mark_path

    def __reduce__(self):
        return (os.makedirs, (self.mark_path,))


def run_options(data: dict, total_iter: int = 10, gan: bool = True) -> dict:
    """A tiny run with two optimizers and a scheduler (whose state holds a Counter)."""
    opt = train_options(data, "resume", total_iter=total_iter, checkpoint_freq=1, gan=gan)
    opt["train"]["r1_interval"] = 1
    opt["train"]["scheduler"] = {"type": "MultiStepLR", "milestones": [5], "gamma": 0.5}
    return opt


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """A tiny GAN run that saved networks and states at iterations 1 and 2 (the real code)."""
    root = tmp_path_factory.mktemp("trained")
    model = model_from(run_options(NO_DATA), root)
    torch.manual_seed(0)
    data = {"lq": torch.rand(2, 3, 32, 32) * 2 - 1, "gt": torch.rand(2, 3, 32, 32) * 2 - 1}
    data["ref"] = data["gt"].flip(-1)
    model.feed_data(data)
    for iteration in (1, 2):
        model.optimize_parameters(iteration)
        model.update_learning_rate(iteration)
        model.save(0, iteration)
    return root


@pytest.fixture
def trained_run(trained_root, tmp_path):
    """Returns ``run(iterations)``: auto-resume options for a copy of the run in ``tmp_path``
    that keeps the states and checkpoints of ``iterations`` only."""

    def run(iterations=(1, 2)) -> dict:
        shutil.copytree(trained_root / "experiments", tmp_path / "experiments")
        opt = deepcopy(run_options(NO_DATA))
        opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=True, root_path=str(tmp_path))
        experiment = tmp_path / "experiments" / "resume"
        opt["path"].update(
            experiments_root=str(experiment),
            models=str(experiment / "models"),
            training_states=str(experiment / "training_states"),
            visualization=str(experiment / "visualization"),
        )
        for dropped in {1, 2} - set(iterations):
            for path in experiment.glob(f"*/*_{dropped}.pth"):
                path.unlink()
            (experiment / "training_states" / f"{dropped}.state").unlink()
        return opt

    return run


def states_folder(opt) -> str:
    return opt["path"]["training_states"]


def test_real_training_state_loads_safely_and_resumes_the_optimizers(trained_run, tmp_path):
    opt = trained_run()
    state = runner_fixes.load_resume_state(opt)
    assert state["iter"] == 2
    assert opt["path"]["resume_state"].endswith("2.state")
    assert opt["path"]["pretrain_network_g"].endswith("net_g_2.pth")
    assert opt["path"]["pretrain_network_d"].endswith("net_d_2.pth")
    assert len(state["optimizers"]) == 2 and len(state["schedulers"]) == 2
    resumed = model_from(opt | {"auto_resume": False}, tmp_path)
    resumed.resume_training(state)
    adam_steps = {float(s["step"]) for s in resumed.optimizer_g.state_dict()["state"].values()}
    assert adam_steps == {2.0}


def test_crafted_training_state_does_not_run_code(trained_run, tmp_path):
    opt = trained_run((1,))
    mark = tmp_path / PAYLOAD_MARK
    torch.save({"iter": 5, "epoch": 0, "optimizers": [Payload(str(mark))], "schedulers": []},
               os.path.join(states_folder(opt), "5.state"))  # fmt: skip
    state = runner_fixes.load_resume_state(opt)
    assert not mark.exists(), "unpickling the training state ran code"
    assert state["iter"] == 1  # the hostile newest state was skipped

    opt["auto_resume"] = False
    opt["path"]["resume_state"] = os.path.join(states_folder(opt), "5.state")
    with pytest.raises(UnreadableFileError, match=r"5\.state.*refused.*could run code"):
        runner_fixes.load_resume_state(opt)
    assert not mark.exists()


def test_crafted_pretrain_network_does_not_run_code(trained_run, tmp_path):
    """BasicSR's load of pretrain_network_g goes through the safe loader, whatever torch's default."""
    opt = trained_run((1,))
    mark = tmp_path / PAYLOAD_MARK
    hostile = tmp_path / "hostile.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "extra": Payload(str(mark))}, hostile)
    opt["path"]["pretrain_network_g"] = str(hostile)
    opt["path"]["resume_state"] = None
    with pytest.raises(UnreadableFileError, match="hostile.pth"):
        model_from(opt | {"auto_resume": False}, tmp_path)
    assert not mark.exists(), "loading pretrain_network_g ran code"


def test_torch_floor_has_safe_default_loading():
    """setup.py's torch floor is a version whose torch.load defaults to weights_only=True (2.6)."""
    import re
    from pathlib import Path

    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text(encoding="utf-8")
    floor = re.search(r'"torch>=(\d+)\.(\d+)', setup)
    assert floor and (int(floor.group(1)), int(floor.group(2))) >= (2, 6), setup


def test_corrupt_newest_state_falls_back_and_says_so(trained_run, tmp_path, caplog):
    opt = trained_run()
    newest = os.path.join(states_folder(opt), "2.state")
    with open(newest, "r+b") as f:
        f.truncate(100)
    with caplog.at_level(logging.WARNING, logger="ented.runner_fixes"):
        state = runner_fixes.load_resume_state(opt)
    assert state["iter"] == 1
    assert opt["path"]["pretrain_network_g"].endswith("net_g_1.pth")
    assert "2.state" in caplog.text and "corrupt or truncated" in caplog.text
    assert "resuming from" in caplog.text and "1.state" in caplog.text


def test_corrupt_newest_checkpoint_falls_back_to_the_state_before(trained_run, tmp_path, caplog):
    opt = trained_run()
    with open(os.path.join(opt["path"]["models"], "net_d_2.pth"), "wb") as f:
        f.write(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="ented.runner_fixes"):
        state = runner_fixes.load_resume_state(opt)
    assert state["iter"] == 1 and "net_d_2.pth" in caplog.text


def test_corrupt_explicit_state_names_the_file(trained_run, tmp_path):
    opt = trained_run((1,))
    path = os.path.join(states_folder(opt), "1.state")
    with open(path, "r+b") as f:
        f.truncate(50)
    opt["auto_resume"] = False
    opt["path"]["resume_state"] = path
    with pytest.raises(UnreadableFileError, match=r"training state .*1\.state cannot be read"):
        runner_fixes.load_resume_state(opt)


def test_corrupt_pretrain_network_names_the_file(trained_run, tmp_path):
    opt = trained_run((1,))
    broken = os.path.join(opt["path"]["models"], "net_g_1.pth")
    with open(broken, "r+b") as f:
        f.truncate(200)
    opt["path"]["pretrain_network_g"] = broken
    with pytest.raises(UnreadableFileError, match=r"net_g_1\.pth cannot be read"):
        model_from(opt | {"auto_resume": False}, tmp_path)


def test_no_loadable_state_lists_every_file(trained_run, tmp_path):
    opt = trained_run()
    with open(os.path.join(states_folder(opt), "1.state"), "wb") as f:
        f.write(pickle.dumps("junk"))
    torch.save("a string, not a state", os.path.join(states_folder(opt), "2.state"))
    with pytest.raises(
        RuntimeError, match=r"(?s)no training state.*2\.state is not a BasicSR training state.*1\.state"
    ):
        runner_fixes.load_resume_state(opt)


def test_stray_backup_state_does_not_stop_resuming(trained_run, tmp_path, caplog):
    opt = trained_run((1,))
    (tmp_path / "backup.state").write_bytes(b"")
    os.replace(tmp_path / "backup.state", os.path.join(states_folder(opt), "backup.state"))
    with caplog.at_level(logging.WARNING, logger="ented.runner_fixes"):
        state = runner_fixes.load_resume_state(opt)
    assert state["iter"] == 1
    assert "backup.state" in caplog.text


def test_leftover_tmp_files_of_a_killed_save_are_removed(trained_run, tmp_path):
    opt = trained_run((1,))
    leftovers = []
    for folder, name in ((states_folder(opt), "2.state"), (opt["path"]["models"], "net_g_2.pth")):

        class Killed(Exception):
            pass

        with pytest.raises(Killed), atomic_path(os.path.join(folder, name)) as tmp:
            leftovers.append(tmp)
            with open(tmp, "wb") as f:
                f.write(b"half")
            os.link(tmp, tmp + ".keep")  # atomic_path removes its own file on an exception;
            raise Killed  # a SIGKILL would not: keep a copy under the same name
    for tmp in leftovers:
        os.replace(tmp + ".keep", tmp)
    user_file = os.path.join(opt["path"]["models"], "notes.tmp")
    open(user_file, "w").close()
    state = runner_fixes.load_resume_state(opt)
    assert state["iter"] == 1
    assert not any(os.path.exists(tmp) for tmp in leftovers)
    assert os.path.exists(user_file)  # only atomic_path's own names are removed


def test_runner_fixes_apply_lets_basicsr_runner_resume_on_cpu(faces, trained_run, tmp_path, monkeypatch):
    """The README's recipe for BasicSR's own runner: ``runner_fixes.apply()``, then resume on CPU.

    Without it BasicSR's ``load_resume_state`` asks ``torch.cuda.current_device()`` (no GPU: crash)
    and unpickles fully.
    """
    import basicsr.train
    import basicsr.utils.dist_util

    trained_run((1,))
    opt_path = write_yaml(run_options(faces, total_iter=2), tmp_path / "train.yml")
    for module, name in (
        (basicsr.train, "load_resume_state"),
        (basicsr.utils.dist_util, "_init_dist_pytorch"),
    ):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    runner_fixes.apply()
    assert basicsr.train.load_resume_state is runner_fixes.load_resume_state
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train", "-opt", opt_path, "--auto_resume"])
    basicsr.train.train_pipeline(str(tmp_path))

    state = torch.load(tmp_path / "experiments" / "resume" / "training_states" / "2.state")
    assert state["iter"] == 2
    adam_steps = {float(s["step"]) for s in state["optimizers"][0]["state"].values()}
    assert adam_steps == {2.0}, "the optimizer restarted instead of resuming from iteration 1"


def test_readme_tells_users_of_basicsr_runner_to_apply_the_fixes():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### BasicSR's runner directly", 1)[1].split("\n## ", 1)[0]
    assert "runner_fixes.apply()" in section and "train_pipeline(os.getcwd())" in section
    assert section.index("runner_fixes.apply()") < section.index("train_pipeline(os.getcwd())")
