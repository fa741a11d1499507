"""``ented-demo``: train a tiny ENTED on pose-varied synthetic people and show what the reference brings back.

Steps, all on CPU in a working folder (default ``./ented_demo``):

1. render the pose-varied synthetic identity set (:mod:`ented.data.posed_faces`: every person has
   moles, a scar and a skin pattern on a 3-D head seen from a different pose in every photo), split
   it by identity and write fixed, seeded test triplets of the unseen identities;
2. train ``options/demo_train_tiny.yml`` (ENTED with dense reference attention) through BasicSR's
   ``train_pipeline``;
3. test the checkpoint through BasicSR's ``test_pipeline`` (metrics, comparison grids);
4. score the same checkpoint on the unseen identities with the true reference, 2 and 4 true
   references, another identity's reference and no reference (:mod:`ented.reference_detail`), and
   write ``comparison.png`` (LQ | reference | output | GT).

The exit status is 0 only when the true reference beats both another identity's reference and no
reference on erased-mark recall and on face detail.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ented.experiment import load_option_file, load_trained_network, runner_context, train, write_option_file

DEMO_SIZE = 64  # the demo's face size, as in options/demo_*.yml
# the demo's verdict: the true reference must beat these rows on these metrics
VERDICT_METRICS = ("erased_mark_recall", "face_detail")
VERDICT_RIVALS = ("another identity", "no reference")
TABLE_METRICS = ("face_psnr", "face_detail", "erased_mark_recall", "pasted_marks")

logger = logging.getLogger(__name__)


def degradation_of(dataset_opt: dict) -> dict:
    from ented.data.degradation import DEGRADATION_DEFAULTS

    return {key: dataset_opt[key] for key in DEGRADATION_DEFAULTS if key in dataset_opt}


def true_reference_losses(rows: dict) -> list[str]:
    """The ``metric vs rival`` pairs on which the true reference is not strictly better (empty: it wins)."""
    return [
        f"{metric} vs {rival}"
        for metric in VERDICT_METRICS
        for rival in VERDICT_RIVALS
        if not rows["true reference"][metric] > rows[rival][metric]
    ]


def format_table(rows: dict) -> str:
    header = f"{'reference':<20}" + "".join(f"{m:>20}" for m in TABLE_METRICS)
    lines = [header, "-" * len(header)]
    for condition, values in rows.items():
        lines.append(f"{condition:<20}" + "".join(f"{values[m]:>20.3f}" for m in TABLE_METRICS))
    return "\n".join(lines)


def write_comparison(net, data: dict, path: Path, count: int = 4) -> None:
    """LQ | reference | output | GT rows for the first ``count`` test triplets, scaled x3 (nearest)."""
    import cv2
    import numpy as np
    import torch
    from basicsr.data import build_dataset

    from ented.image_io import write_image_atomic
    from ented.reference_detail import bgr_image, triplet_options
    from ented.visualization import comparison_grid

    dataset = build_dataset(triplet_options(data, "test", DEMO_SIZE))
    rows = []
    for index in range(0, min(len(dataset), 2 * count), 2):  # one photo per identity
        sample = dataset[index]
        with torch.no_grad():
            output = net(sample["lq"][None], sample["ref"][None])[0]
        images = [bgr_image(t) for t in (sample["lq"], sample["ref"], output, sample["gt"])]
        rows.append(comparison_grid(*images))
    grid = np.concatenate(rows, axis=0)
    write_image_atomic(str(path), cv2.resize(grid, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST))


def run(args: argparse.Namespace) -> int:
    from ented.atomic_io import atomic_write_text
    from ented.reference_detail import CONDITIONS, evaluate_conditions, prepare_posed_data

    started = time.perf_counter()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    train_opt = load_option_file("demo_train_tiny.yml")
    test_opt = load_option_file("demo_test_tiny.yml")
    data = prepare_posed_data(
        workdir,
        args.identities,
        args.images_per_identity,
        DEMO_SIZE,
        num_val=0,
        num_test=args.test_identities,
        seed=args.seed,
        degradation=degradation_of(train_opt["datasets"]["train"]),
    )
    # the paths of the set, for the probes of benchmarks/ (reference_paths.py, reference_strength.py)
    atomic_write_text(workdir / "data.json", json.dumps(data))
    logger.info("demo data ready in %.1f s", time.perf_counter() - started)
    test_set = {
        "dataroot_gt": data["faces"],
        "dataroot_lq": data["test_root"],
        "meta_info": data["test_list"],
    }
    train_opt["datasets"]["train"].update(dataroot_gt=data["faces"], meta_info=data["train_list"])
    train_opt["datasets"]["val"].update(test_set)
    train_opt["train"]["total_iter"] = args.iters
    train_opt["logger"]["save_checkpoint_freq"] = max(1, args.iters // 2)
    train_opt["manual_seed"] = args.seed
    checkpoint = train(train_opt, workdir)
    trained = time.perf_counter()

    from basicsr.test import test_pipeline

    test_opt["datasets"]["test"].update(test_set)
    test_opt["path"]["pretrain_network_g"] = str(checkpoint)
    test_yml = write_option_file(test_opt, workdir / "options" / "demo_test.yml")
    with runner_context(workdir, ["ented-test", "-opt", test_yml]):
        test_pipeline(str(workdir))
    net = load_trained_network(train_opt, checkpoint)
    rows = evaluate_conditions(net, data, "test", DEMO_SIZE, CONDITIONS)
    (workdir / "reference_conditions.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    comparison = workdir / "comparison.png"
    write_comparison(net, data, comparison)
    finished = time.perf_counter()

    print(
        f"\nENTED demo: one checkpoint, {args.test_identities} unseen identities, five reference conditions"
    )
    print(format_table(rows))
    print(
        "\nface_psnr: dB on the face; face_detail: correlation of fine detail with the ground truth;"
        "\nerased_mark_recall: share of the marks the input lost that come back at their place;"
        "\npasted_marks: share of another person's marks (from that reference) drawn on this face."
    )
    print(f"\ncomparison (LQ | reference | output | GT): {comparison}")
    print(f"checkpoint: {checkpoint}")
    print(f"time: {finished - started:.0f} s in all, {trained - started:.0f} s to data + training")
    losses = true_reference_losses(rows)
    if losses:
        print(
            f"FAILED: the true reference is not better on {', '.join(losses)}: the reference path is not working"
        )
        return 1
    print("OK: the true reference beats another identity's and no reference on erased marks and face detail")
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
