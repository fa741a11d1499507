"""Fixes to BasicSR 1.4.2's runners that ENTED's entry points apply before running them.

- Resuming: ``basicsr.train.load_resume_state`` maps the saved state to
  ``torch.cuda.current_device()`` and crashes on a machine without CUDA. Ours maps it to the
  CPU there.
- ``--launcher pytorch``: ``basicsr.utils.dist_util._init_dist_pytorch`` divides by the number
  of GPUs and asks for NCCL. Ours uses gloo when there is no GPU, so
  ``torchrun --nproc_per_node=2 -m ented.train ... --launcher pytorch`` runs on CPUs.

Both replace module attributes that BasicSR looks up at call time; :func:`apply` is idempotent.
:func:`log_into_basicsr_logger` is for our entry points' own processes: it sends ``ented``'s log
records to BasicSR's logger, so dataset and metric messages reach the run's log file too.
"""

import logging
import os
from os import path as osp

import torch
import torch.distributed as dist


def load_resume_state(opt: dict):
    """BasicSR's ``load_resume_state``, loading onto the CPU when CUDA is not available."""
    from basicsr.utils import check_resume, scandir

    resume_state_path = opt["path"].get("resume_state")
    if opt["auto_resume"]:
        state_folder = osp.join("experiments", opt["name"], "training_states")
        if osp.isdir(state_folder):
            iterations = [int(name.split(".state")[0]) for name in scandir(state_folder, suffix="state")]
            if iterations:
                resume_state_path = osp.join(state_folder, f"{max(iterations)}.state")
                opt["path"]["resume_state"] = resume_state_path
    if resume_state_path is None:
        return None
    if torch.cuda.is_available() and opt.get("num_gpu", 0) != 0:
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    resume_state = torch.load(resume_state_path, map_location=device, weights_only=False)
    check_resume(opt, resume_state["iter"])
    return resume_state


def init_dist_pytorch(backend: str = "nccl", **kwargs) -> None:
    """BasicSR's ``_init_dist_pytorch``, falling back to gloo on a machine without GPUs."""
    num_gpus = torch.cuda.device_count()
    if num_gpus == 0:
        backend = "gloo"
    else:
        torch.cuda.set_device(int(os.environ["RANK"]) % num_gpus)
    dist.init_process_group(backend=backend, **kwargs)


def apply() -> None:
    """Installs the fixes into BasicSR's runner modules."""
    import basicsr.train
    import basicsr.utils.dist_util

    basicsr.train.load_resume_state = load_resume_state
    basicsr.utils.dist_util._init_dist_pytorch = init_dist_pytorch


class ForwardToBasicsrLogger(logging.Handler):
    """Hands a record to BasicSR's ``basicsr`` logger (its console and, in a run, its log file)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("basicsr").handle(record)


def log_into_basicsr_logger() -> None:
    """Routes ``ented.*`` records (INFO and above) to BasicSR's logger instead of the root logger.

    Meant for the processes of ``ented-train`` / ``ented-test``, which own their logging; a library
    user keeps Python's default routing.
    """
    ented_logger = logging.getLogger("ented")
    if not any(isinstance(h, ForwardToBasicsrLogger) for h in ented_logger.handlers):
        ented_logger.addHandler(ForwardToBasicsrLogger())
    ented_logger.setLevel(logging.INFO)
    ented_logger.propagate = False
