"""Fixes to BasicSR 1.4.2's runners that ENTED's entry points apply before running them.

- Resuming: ``basicsr.train.load_resume_state`` maps the saved state to
  ``torch.cuda.current_device()`` and crashes on a machine without CUDA, unpickles fully, and
  stops at the first unreadable or stray file. Ours loads onto the CPU as data only, falls back
  to the newest state that loads, and removes leftovers of interrupted saves (see
  :func:`load_resume_state`).
- ``--launcher pytorch``: ``basicsr.utils.dist_util._init_dist_pytorch`` divides by the number
  of GPUs and asks for NCCL. Ours uses gloo when there is no GPU, so
  ``torchrun --nproc_per_node=2 -m ented.cli.train ... --launcher pytorch`` runs on CPUs.

- Machines without CUDA: ``prefetch_mode: cuda`` (BasicSR's ``CUDAPrefetcher``) and
  ``pin_memory: true`` need CUDA, so the 512 recipes would crash on a CPU-only machine. Ours
  switches them off there, with a logged notice (see :func:`drop_cuda_only_data_options`).

All replace module attributes that BasicSR looks up at call time; :func:`apply` is idempotent.
``ented-train`` / ``ented-test`` call it; call it yourself before ``basicsr.train.train_pipeline``
when you use BasicSR's runner directly (see the README).
:func:`log_into_basicsr_logger` is for our entry points' own processes: it sends ``ented``'s log
records to BasicSR's logger, so dataset and metric messages reach the run's log file too; :func:`apply`
does the same for BasicSR's runner used directly, once that runner has set its logger up. Either way
a record goes through at the level BasicSR's logger allows, so ranks > 0 under ``torchrun`` (ERROR)
do not repeat rank 0's lines.
"""

import logging
import os
import re
from os import path as osp

import torch
import torch.distributed as dist

from ented.atomic_io import remove_stale_temporaries
from ented.hub_weights import UnreadableFileError, load_torch_file

logger = logging.getLogger(__name__)


def load_resume_state(opt: dict):
    """BasicSR's ``load_resume_state``, made safe and robust.

    - States are read as data only (``weights_only=True``) onto the CPU, so a file in
      ``training_states/`` cannot run code and a machine without CUDA can resume.
    - With ``--auto_resume`` the newest ``<iteration>.state`` whose state *and* network
      checkpoints (``models/net_<x>_<iteration>.pth``) load is used; newer ones that do not load
      are named in a warning. Other files there (``backup.state``) are ignored.
    - ``.tmp`` files left by a save that was killed are removed from ``models/`` and
      ``training_states/`` first.

    Raises:
        UnreadableFileError: an explicit ``path.resume_state`` cannot be loaded (names it).
        RuntimeError: with ``--auto_resume``, no training state loads (names each and why).
    """
    from basicsr.utils import check_resume

    path_opt = opt["path"]
    experiment = osp.join("experiments", opt["name"])
    state_folder = path_opt.get("training_states") or osp.join(experiment, "training_states")
    models_folder = path_opt.get("models") or osp.join(experiment, "models")
    for folder in (state_folder, models_folder):
        for removed in remove_stale_temporaries(folder):
            logger.warning(f"removed {removed}, left by a save that was interrupted")

    resume_state = None
    if opt["auto_resume"]:
        candidates = saved_training_states(state_folder)
        if candidates:
            resume_state_path, resume_state = _newest_loadable_state(candidates, opt, models_folder)
            path_opt["resume_state"] = resume_state_path
    resume_state_path = path_opt.get("resume_state")
    if resume_state_path is None:
        return None
    if resume_state is None:
        resume_state = read_training_state(resume_state_path)
    check_resume(opt, resume_state["iter"])
    return resume_state


def read_training_state(path: str) -> dict:
    """A BasicSR training state (``iter``, ``epoch``, ``optimizers``, ``schedulers``), read as data only.

    Raises:
        UnreadableFileError: naming ``path``: unsafe, corrupt, or not a training state.
    """
    state = load_torch_file(path, "training state")
    missing = {"iter", "epoch", "optimizers", "schedulers"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise UnreadableFileError(
            f"training state {path} is not a BasicSR training state (no {sorted(missing)})"
        )
    return state


def saved_training_states(folder: str) -> list[tuple[int, str]]:
    """``(iteration, path)`` of the ``<iteration>.state`` files in ``folder``, newest first.

    Other files (``backup.state``, ``.tmp`` leftovers) are skipped, with a notice for ``*.state``.
    """
    if not osp.isdir(folder):
        return []
    states = []
    for name in os.listdir(folder):
        match = re.fullmatch(r"(\d+)\.state", name)
        if match:
            states.append((int(match.group(1)), osp.join(folder, name)))
        elif name.endswith(".state"):
            logger.warning(f"ignoring {osp.join(folder, name)} when resuming: not named <iteration>.state")
    return sorted(states, reverse=True)


def _newest_loadable_state(candidates: list[tuple[int, str]], opt: dict, models_folder: str):
    failures = []
    for iteration, state_path in candidates:
        try:
            state = read_training_state(state_path)
            for checkpoint in _resume_checkpoints(opt, models_folder, iteration):
                load_torch_file(checkpoint, "network checkpoint")
        except (UnreadableFileError, FileNotFoundError) as error:
            failures.append(str(error))
            continue
        if failures:
            skipped = "".join(f"\n  - {failure}" for failure in failures)
            logger.warning(
                f"--auto_resume: resuming from {state_path} (iteration {iteration}); skipped:{skipped}"
            )
        return state_path, state
    listed = "".join(f"\n  - {failure}" for failure in failures)
    raise RuntimeError(
        f"--auto_resume: no training state in {osp.dirname(candidates[0][1])} can be resumed:{listed}\n"
        "Move the broken files away to resume from an older state, or drop --auto_resume to start over."
    )


def _resume_checkpoints(opt: dict, models_folder: str, iteration: int) -> list[str]:
    """The network files BasicSR's ``check_resume`` will load for a resume from ``iteration``."""
    ignored = opt["path"].get("ignore_resume_networks") or []
    return [
        osp.join(models_folder, f"net_{key.removeprefix('network_')}_{iteration}.pth")
        for key in opt
        if key.startswith("network_") and key not in ignored
    ]


def init_dist_pytorch(backend: str = "nccl", **kwargs) -> None:
    """BasicSR's ``_init_dist_pytorch``, falling back to gloo on a machine without GPUs."""
    num_gpus = torch.cuda.device_count()
    if num_gpus == 0:
        backend = "gloo"
    else:
        torch.cuda.set_device(int(os.environ["RANK"]) % num_gpus)
    dist.init_process_group(backend=backend, **kwargs)


def drop_cuda_only_data_options(opt: dict, cuda_available: bool | None = None) -> list[str]:
    """On a machine without CUDA, sets each dataset's ``prefetch_mode: cuda`` to none (BasicSR's
    CPU prefetcher) and ``pin_memory: true`` to false, logging a notice for each.

    Args:
        opt: the parsed options; changed in place.
        cuda_available: default ``torch.cuda.is_available()``.

    Returns:
        The notices, one per option switched off.
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_available:
        return []
    notices = []
    for phase, dataset_opt in (opt.get("datasets") or {}).items():
        if dataset_opt.get("prefetch_mode") == "cuda":
            dataset_opt["prefetch_mode"] = None
            notices.append(f"datasets.{phase}.prefetch_mode: cuda switched off (no CUDA on this machine)")
        if dataset_opt.get("pin_memory"):
            dataset_opt["pin_memory"] = False
            notices.append(f"datasets.{phase}.pin_memory: true switched off (no CUDA on this machine)")
    for notice in notices:
        logger.warning(notice)
    return notices


def parse_options(root_path: str, is_train: bool = True):
    """BasicSR's ``parse_options``, then :func:`drop_cuda_only_data_options`."""
    from basicsr.utils.options import parse_options as basicsr_parse_options

    opt, args = basicsr_parse_options(root_path, is_train=is_train)
    drop_cuda_only_data_options(opt)
    return opt, args


def apply() -> None:
    """Installs the fixes into BasicSR's runner modules."""
    import basicsr.test
    import basicsr.train
    import basicsr.utils.dist_util

    show_in_basicsr_runs()
    basicsr.train.load_resume_state = load_resume_state
    basicsr.train.parse_options = parse_options
    basicsr.test.parse_options = parse_options
    basicsr.utils.dist_util._init_dist_pytorch = init_dist_pytorch


class ForwardToBasicsrLogger(logging.Handler):
    """Hands a record to BasicSR's ``basicsr`` logger (its console and, in a run, its log file), at
    the level that logger lets through: BasicSR sets ``ERROR`` on ranks > 0 under ``torchrun``, so
    those ranks stay quiet instead of repeating rank 0's lines.

    Args:
        once_set_up: Forward only once a runner has given BasicSR's logger its handlers (for
            ``import ented`` + BasicSR's runner, where ``ented``'s records also reach the root logger;
            when the root logger has a console of its own, only to BasicSR's log file, so that no
            line shows twice on the console).
    """

    def __init__(self, once_set_up: bool = False):
        super().__init__()
        self.once_set_up = once_set_up

    def emit(self, record: logging.LogRecord) -> None:
        basicsr_logger = logging.getLogger("basicsr")
        if not basicsr_logger.isEnabledFor(record.levelno):
            return
        if not self.once_set_up:
            basicsr_logger.handle(record)
            return
        on_root = logging.getLogger().handlers  # the record reaches those through ented's propagation
        root_console = any(type(h) is logging.StreamHandler for h in on_root)
        for handler in basicsr_logger.handlers:  # BasicSR's own handlers only, not its parents'
            if handler in on_root or record.levelno < handler.level:
                continue
            if root_console and type(handler) is logging.StreamHandler:
                continue  # the root logger's console already shows it: BasicSR's log file only
            handler.handle(record)


def _forwarder(ented_logger: logging.Logger) -> ForwardToBasicsrLogger | None:
    return next((h for h in ented_logger.handlers if isinstance(h, ForwardToBasicsrLogger)), None)


def show_in_basicsr_runs() -> None:
    """Lets ``ented``'s INFO messages reach BasicSR's console and log file once a runner sets them up.

    Called by :func:`apply`, for BasicSR's runner used directly. ``ented``'s records keep reaching
    the root logger as before; without a BasicSR runner nothing changes.
    """
    ented_logger = logging.getLogger("ented")
    if _forwarder(ented_logger) is None:
        ented_logger.addHandler(ForwardToBasicsrLogger(once_set_up=True))
    if ented_logger.level == logging.NOTSET:
        ented_logger.setLevel(logging.INFO)


def log_into_basicsr_logger() -> None:
    """Routes ``ented.*`` records (INFO and above) to BasicSR's logger instead of the root logger.

    Meant for the processes of ``ented-train`` / ``ented-test``, which own their logging; a library
    user keeps Python's default routing.
    """
    ented_logger = logging.getLogger("ented")
    forwarder = _forwarder(ented_logger)
    if forwarder is None or forwarder.once_set_up:
        if forwarder is not None:
            ented_logger.removeHandler(forwarder)
        ented_logger.addHandler(ForwardToBasicsrLogger())
    ented_logger.setLevel(logging.INFO)
    ented_logger.propagate = False
