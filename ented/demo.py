"""``ented-demo``: train a tiny ENTED on the built-in synthetic identity set and show that it uses the reference.

Steps, all on CPU in a working folder (default ``./ented_demo``):

1. generate the synthetic identity set and an identity-disjoint train/test split, and write a
   fixed, seeded test set;
2. train ``options/demo_train_tiny.yml`` through BasicSR's ``train_pipeline``;
3. test the checkpoint through BasicSR's ``test_pipeline`` (metrics table, comparison grids);
4. evaluate the same checkpoint with the true reference, a reference of another identity and no
   reference. The true reference must score best, or the reference path is not working.

The exit status is 0 only when step 4 ranks the true reference first on every metric.
"""

import argparse
import logging
import os
import sys
import time
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import yaml

from ented.data.reference_base import REFERENCE_MODES

OPTIONS_DIR = Path(__file__).resolve().parents[1] / "options"
ROW_NAMES = {"matched": "true reference", "mismatched": "another identity", "none": "no reference"}
DEMO_SIZE = 64  # the demo's face size, as in options/demo_*.yml

logger = logging.getLogger(__name__)


def load_option_file(name: str) -> dict:
    path = OPTIONS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"option file {path} not found: the demo reads the repository's options/ folder "
            "(install ented from a clone with `pip install -e .`)"
        )
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def write_option_file(opt: dict, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(opt, sort_keys=False), encoding="utf-8")
    return str(path)


def prepare_data(
    workdir: Path, num_identities: int, images_per_identity: int, num_test: int, seed: int, degradation: dict
) -> dict:
    """Writes the synthetic faces, the split lists and the fixed test set; returns their paths."""
    from ented.data.preparation import prepare_split, prepare_test_set
    from ented.data.synthetic_faces import write_synthetic_identity_set

    faces = workdir / "faces"
    started = time.perf_counter()
    write_synthetic_identity_set(
        str(faces), num_identities, images_per_identity, size=DEMO_SIZE, seed=seed, progress=True
    )
    split = prepare_split(str(faces), str(workdir / "lists"), num_test=num_test, seed=seed)
    test_list = prepare_test_set(
        str(faces),
        str(workdir / "testset"),
        identity_list=split["test"],
        images_per_identity=2,
        seed=seed,
        size=DEMO_SIZE,
        degradation=degradation,
        progress=True,
    )
    logger.info("demo data ready in %.1f s", time.perf_counter() - started)
    return {
        "faces": str(faces),
        "train_list": split["train"],
        "test_root": str(workdir / "testset"),
        "test_list": test_list,
    }


def degradation_of(dataset_opt: dict) -> dict:
    from ented.data.degradation import DEGRADATION_DEFAULTS

    return {key: dataset_opt[key] for key in DEGRADATION_DEFAULTS if key in dataset_opt}


def fill_test_dataset(dataset_opt: dict, data: dict) -> None:
    dataset_opt.update(dataroot_gt=data["faces"], dataroot_lq=data["test_root"], meta_info=data["test_list"])


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


def evaluate_reference_modes(test_opt: dict) -> dict:
    """{mode: {metric: value}} for the same checkpoint with each reference mode."""
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model

    opt = deepcopy(test_opt)
    opt.update(is_train=False, dist=False, rank=0, world_size=1, root_path=os.getcwd())
    opt["path"].update(
        visualization=os.path.join("results", opt["name"], "reference_modes"),
    )
    opt["val"]["save_img"] = False
    model = build_model(opt)
    rows = {}
    for mode in REFERENCE_MODES:
        dataset_opt = deepcopy(opt["datasets"]["test"])
        dataset_opt.update(name=f"{dataset_opt['name']}_{mode}", reference=mode, phase="test")
        loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False)
        model.validation(loader, current_iter=mode, tb_logger=None, save_img=False)
        rows[mode] = dict(model.metric_results)
    return rows


def format_table(rows: dict, better: dict) -> str:
    metrics = list(next(iter(rows.values())))
    header = f"{'reference':<18}" + "".join(
        f"{m + (' ↑' if better[m] == 'higher' else ' ↓'):>12}" for m in metrics
    )
    lines = [header, "-" * len(header)]
    for mode, values in rows.items():
        lines.append(f"{ROW_NAMES[mode]:<18}" + "".join(f"{values[m]:>12.4f}" for m in metrics))
    return "\n".join(lines)


def true_reference_wins(rows: dict, better: dict) -> list[str]:
    """The metrics on which the true reference is not strictly best (empty when it wins everywhere)."""
    losses = []
    for metric, direction in better.items():
        true_value = rows["matched"][metric]
        others = [rows[mode][metric] for mode in rows if mode != "matched"]
        wins = (
            all(true_value > o for o in others)
            if direction == "higher"
            else all(true_value < o for o in others)
        )
        if not wins:
            losses.append(metric)
    return losses


def run(args: argparse.Namespace) -> int:
    import ented  # noqa: F401  (registers ENTED in BasicSR)
    from ented import runner_fixes

    runner_fixes.apply()
    from basicsr.test import test_pipeline
    from basicsr.train import train_pipeline

    started = time.perf_counter()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    train_opt = load_option_file("demo_train_tiny.yml")
    test_opt = load_option_file("demo_test_tiny.yml")
    data = prepare_data(
        workdir,
        args.identities,
        args.images_per_identity,
        args.test_identities,
        args.seed,
        degradation_of(train_opt["datasets"]["train"]),
    )

    train_opt["datasets"]["train"].update(dataroot_gt=data["faces"], meta_info=data["train_list"])
    fill_test_dataset(train_opt["datasets"]["val"], data)
    train_opt["train"]["total_iter"] = args.iters
    train_opt["logger"]["save_checkpoint_freq"] = max(1, args.iters // 2)
    train_opt["manual_seed"] = args.seed
    train_yml = write_option_file(train_opt, workdir / "options" / "demo_train.yml")

    checkpoint = workdir / "experiments" / train_opt["name"] / "models" / "net_g_latest.pth"
    fill_test_dataset(test_opt["datasets"]["test"], data)
    test_opt["path"]["pretrain_network_g"] = str(checkpoint)
    test_yml = write_option_file(test_opt, workdir / "options" / "demo_test.yml")

    with runner_context(workdir, ["ented-train", "-opt", train_yml]):
        train_pipeline(str(workdir))
    trained = time.perf_counter()
    with runner_context(workdir, ["ented-test", "-opt", test_yml]):
        test_pipeline(str(workdir))
        rows = evaluate_reference_modes(test_opt)
    grid_folder = (
        workdir / "results" / test_opt["name"] / "visualization" / test_opt["datasets"]["test"]["name"]
    )
    better = {name: metric.get("better", "higher") for name, metric in test_opt["val"]["metrics"].items()}
    table = format_table(rows, better)
    finished = time.perf_counter()
    print(
        "\nENTED demo: the same checkpoint, three references (synthetic test identities, unseen in training)"
    )
    print(table)
    print(f"\ncomparison grids (LQ | reference | output | GT): {grid_folder}")
    print(f"checkpoint: {checkpoint}")
    print(f"time: {finished - started:.0f} s in all, {trained - started:.0f} s to data + training")
    losing = true_reference_wins(rows, better)
    if losing:
        print(
            f"FAILED: the true reference is not best on {', '.join(losing)}: the reference path is not working"
        )
        return 1
    print("OK: the true reference scores best on every metric")
    return 0


def parse_args(args=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ented-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="ented_demo", help="working folder (default ./ented_demo)")
    parser.add_argument(
        "--iters", type=int, default=load_option_file("demo_train_tiny.yml")["train"]["total_iter"]
    )
    parser.add_argument("--identities", type=int, default=48, help="synthetic identities in all")
    parser.add_argument("--test-identities", type=int, default=8, help="identities held out for testing")
    parser.add_argument("--images-per-identity", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(args)


def main(args=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(run(parse_args(args)))


if __name__ == "__main__":
    main()
