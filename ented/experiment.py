"""Running ENTED experiments in-process: option files, BasicSR's training runner, the trained network.

Shared by ``ented-demo`` and the reference-detail benchmark (``benchmarks/reference_detail.py``).
"""

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import yaml

OPTIONS_DIR = Path(__file__).resolve().parents[1] / "options"


def load_option_file(name: str) -> dict:
    """A YAML option file of the repository's ``options/`` folder."""
    path = OPTIONS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"option file {path} not found: ented's experiments read the repository's options/ folder "
            "(install ented from a clone with `pip install -e .`)"
        )
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def write_option_file(opt: dict, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(opt, sort_keys=False), encoding="utf-8")
    return str(path)


@contextmanager
def runner_context(workdir: Path, args: list[str]):
    """Runs a BasicSR runner in ``workdir`` with ``args`` as its command line; restores both after."""
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    sys.argv = args
    os.chdir(workdir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)


def train(opt: dict, workdir: Path) -> Path:
    """Trains ``opt`` with BasicSR's ``train_pipeline`` in ``workdir``; returns the final checkpoint."""
    import ented  # noqa: F401  (registers ENTED in BasicSR)
    from ented import runner_fixes

    runner_fixes.apply()
    from basicsr.train import train_pipeline

    workdir.mkdir(parents=True, exist_ok=True)
    option_path = write_option_file(opt, workdir / "options" / f"{opt['name']}.yml")
    with runner_context(workdir, ["ented-train", "-opt", option_path]):
        train_pipeline(str(workdir))
    return workdir / "experiments" / opt["name"] / "models" / "net_g_latest.pth"


def load_run(workdir: Path) -> tuple:
    """``(opt, network)`` of a folder :func:`train` wrote: the option file whose run has a final
    checkpoint there (``options/<name>.yml`` and ``experiments/<name>/models/net_g_latest.pth``).

    Raises:
        FileNotFoundError: naming the folder, when no option file there has a trained run.
    """
    workdir = Path(workdir)
    for option_file in sorted((workdir / "options").glob("*.yml")):
        opt = yaml.safe_load(option_file.read_text(encoding="utf-8"))
        checkpoint = workdir / "experiments" / str(opt.get("name")) / "models" / "net_g_latest.pth"
        if checkpoint.is_file():
            return opt, load_trained_network(opt, checkpoint)
    raise FileNotFoundError(
        f"{workdir}: no options/<name>.yml with a trained experiments/<name>/models/net_g_latest.pth"
    )


def load_trained_network(opt: dict, checkpoint: Path):
    """The ``network_g`` of ``opt`` with the EMA weights of ``checkpoint``, in eval mode."""
    from basicsr.archs import build_network

    from ented.hub_weights import load_torch_file

    net = build_network(dict(opt["network_g"]))
    state = load_torch_file(str(checkpoint))
    net.load_state_dict(state.get("params_ema", state.get("params")))
    return net.eval()
