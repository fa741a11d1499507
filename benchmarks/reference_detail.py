"""Reference vs blind on the pose-varied synthetic set: does the reference bring back the person's marks?

Trains each variant for each seed on the same identity-disjoint split, then scores every checkpoint
on held-out identities under five conditions (see :mod:`ented.reference_detail`). Writes
``<workdir>/results.json`` and prints a Markdown table of mean ± std over seeds.

Variants (all from ``options/demo_train_tiny.yml``, 64 px):

- ``faithful``: ENTED as the paper describes it (``reference_attention: []``);
- ``dense``: the demo's network, with dense reference attention (``reference_attention: [32, 64]``);
- ``blind``: the ``dense`` network trained with no reference (``reference: none``), so "reference
  vs blind" compares two trained models.

Settings are chosen with ``--split val``; report with ``--split test``. Example (2-core CPU, about
5 min per training run at 1,500 iterations)::

    python benchmarks/reference_detail.py --workdir bench_ref --seeds 0 1 2 --split test
"""

import argparse
import json
import logging
import time
from copy import deepcopy
from pathlib import Path

import torch

from ented.experiment import load_option_file, load_trained_network, train
from ented.reference_detail import (
    CONDITIONS,
    METRICS,
    evaluate_conditions,
    markdown_table,
    prepare_posed_data,
)

SIZE = 64
VARIANTS = {
    "faithful": {"network_g": {"reference_attention": []}, "reference": "matched"},
    "dense": {"network_g": {}, "reference": "matched"},
    "blind": {"network_g": {}, "reference": "none"},
}


def variant_options(base: dict, variant: str, data: dict, seed: int, iters: int, overrides: dict) -> dict:
    opt = deepcopy(base)
    spec = VARIANTS[variant]
    opt["name"] = f"{variant}_seed{seed}"
    opt["manual_seed"] = seed
    opt["network_g"].update(spec["network_g"])
    train_set = opt["datasets"]["train"]
    train_set.update(dataroot_gt=data["faces"], meta_info=data["train_list"], reference=spec["reference"])
    del opt["datasets"]["val"]  # scored afterwards, under every condition
    opt.pop("val", None)
    opt["train"]["total_iter"] = iters
    opt["logger"]["save_checkpoint_freq"] = iters
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = opt
        for parent in parents:
            node = node[parent]
        node[key] = value
    return opt


def parse_override(text: str) -> tuple:
    key, _, value = text.partition("=")
    return key, json.loads(value)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="bench_reference_detail")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--identities", type=int, default=64, help="synthetic identities in all")
    parser.add_argument("--val-identities", type=int, default=8)
    parser.add_argument("--test-identities", type=int, default=8)
    parser.add_argument(
        "--split", choices=("val", "test"), default="val", help="which held-out split to score"
    )
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the set and the split")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=parse_override,
        default=[],
        help="option override, e.g. --set train.attention_opt.loss_weight=1.0 (value in JSON)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    workdir = Path(args.workdir).resolve()
    base = load_option_file("demo_train_tiny.yml")
    degradation = {
        k: base["datasets"]["train"][k]
        for k in ("blur_sigma", "downsample_range", "noise_range", "jpeg_range")
    }
    data_file = workdir / "data.json"
    if data_file.is_file():
        data = json.loads(data_file.read_text())
    else:
        data = prepare_posed_data(
            workdir,
            args.identities,
            6,
            SIZE,
            args.val_identities,
            args.test_identities,
            args.data_seed,
            degradation,
        )
        data_file.write_text(json.dumps(data))
    results_file = workdir / f"results_{args.split}.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    overrides = dict(args.overrides)
    for variant in args.variants:
        for seed in args.seeds:
            key = f"{variant}/seed{seed}"
            if (
                key in results
                and results[key]["overrides"] == overrides
                and results[key]["iters"] == args.iters
            ):
                continue
            opt = variant_options(base, variant, data, seed, args.iters, overrides)
            started = time.perf_counter()
            checkpoint = train(opt, workdir / "runs" / key)
            trained = time.perf_counter() - started
            net = load_trained_network(opt, checkpoint)
            conditions = {"no reference": CONDITIONS["no reference"]} if variant == "blind" else CONDITIONS
            scores = evaluate_conditions(net, data, args.split, SIZE, conditions)
            results[key] = {
                "overrides": overrides,
                "iters": args.iters,
                "train_seconds": trained,
                "scores": scores,
            }
            results_file.write_text(json.dumps(results, indent=1))
            logging.info("%s: %s", key, json.dumps(scores["true reference"]))
    rows = {}
    for variant in args.variants:
        for condition in CONDITIONS:
            if variant == "blind" and condition != "no reference":
                continue
            label = f"{variant}: {condition}"
            runs = [results[f"{variant}/seed{s}"]["scores"][condition] for s in args.seeds]
            rows[label] = {metric: [run[metric] for run in runs] for metric in METRICS}
    large = [
        k
        for k in results[f"{args.variants[0]}/seed{args.seeds[0]}"]["scores"].get("true reference", {})
        if "@" in k
    ]
    print(f"\n{args.split} split, seeds {args.seeds}, {args.iters} iterations, overrides {overrides}\n")
    print(markdown_table(rows))
    print("\nTrue reference, erased-mark recall by yaw difference between reference and gt:\n")
    yaw_rows = {
        variant: {
            k: [results[f"{variant}/seed{s}"]["scores"]["true reference"][k] for s in args.seeds]
            for k in large
        }
        for variant in args.variants
        if variant != "blind"
    }
    print(markdown_table(yaw_rows, columns=large))


if __name__ == "__main__":
    main()
