"""Reference vs blind on the pose-varied synthetic set: does the reference bring back the person's marks?

Trains each variant for each seed on the same identity-disjoint split, then scores every checkpoint
on held-out identities under five conditions (see :mod:`ented.reference_detail`). Writes
``<workdir>/results.json`` and prints a Markdown table of mean ± std over seeds.

Variants (all from ``options/demo_train_tiny.yml``, 64 px):

- ``faithful``: ENTED as the paper describes it (``reference_attention: []``, no flow);
- ``dense``: with dense reference attention (``reference_attention: [32, 64]``), no reference flow;
- ``flow``: the demo's network: dense reference attention reading the reference warped by the
  reference flow (``reference_flow: 32``), trained with the flow loss on known correspondences;
- ``gated``: the ``flow`` network with the reference gate (``reference_gate: true``), which reads
  only references it judges to show the input's person, trained with the gate loss on a dataset
  where a quarter of the samples have another person's references (``mismatched_reference_prob:
  0.25``; the rest of the network then reads the input itself in their place);
- ``blind``: the ``dense`` network trained with no reference (``reference: none``), so "reference
  vs blind" compares two trained models (a flow would only warp the input onto itself).

Settings are chosen with ``--split val``; report with ``--split test`` on a set whose identities
never served for choices (another ``--data-seed``). The runs of docs/architecture.md (2-core CPU,
processes side by side, one thread each; about 17 min per 1,500-iteration run that way)::

    B="python benchmarks/reference_detail.py --workdir bench_ref --data-seed 1 --split test --threads 1"
    $B --prepare-only
    $B --variants dense --seeds 0 1 2 & $B --variants blind --seeds 0 1 2 & $B --variants faithful --seeds 0
    wait; $B --variants faithful --seeds 1 & $B --variants faithful --seeds 2; wait
    $B --variants faithful dense blind --seeds 0 1 2 --table-only

The flow network is undertrained at 1,500 iterations (validation recall 0.68 against 0.86 at
3,000); its 3,000-iteration test run, in a workdir of its own (a workdir keeps one result per
variant and seed), three processes side by side (about an hour)::

    B3="python benchmarks/reference_detail.py --workdir bench_ref_3000 --data-seed 1 --split test --threads 1"
    $B3 --prepare-only
    for s in 0 1 2; do $B3 --variants flow --iters 3000 --seeds $s & done; wait
    for s in 0 1 2; do $B3 --variants gated --iters 3000 --seeds $s & done; wait
    $B3 --variants blind --iters 3000 --seeds 0 --threads 2
    $B3 --variants blind --iters 3000 --seeds 1 & $B3 --variants blind --iters 3000 --seeds 2; wait
    $B3 --variants flow gated blind --iters 3000 --table-only
"""

import argparse
import json
import logging
import time
from copy import deepcopy
from pathlib import Path

import torch

from ented.atomic_io import atomic_write_text
from ented.experiment import load_option_file, load_trained_network, train
from ented.reference_detail import (
    CONDITIONS,
    METRICS,
    evaluate_conditions,
    markdown_table,
    prepare_posed_data,
)

SIZE = 64
NO_FLOW = {"dataset": {"correspondences": False}, "train": {"flow_opt": None}}
VARIANTS = {
    "faithful": {"network_g": {"reference_attention": [], "reference_flow": 0}, **NO_FLOW},
    "dense": {"network_g": {"reference_flow": 0}, **NO_FLOW},
    "flow": {"network_g": {}, "dataset": {}},
    "gated": {
        "network_g": {"reference_gate": True},
        "dataset": {"mismatched_reference_prob": 0.25},
        "train": {"gate_opt": {"type": "ENTEDReferenceGateLoss", "loss_weight": 1.0}},
    },
    "blind": {
        "network_g": {"reference_flow": 0},
        "dataset": {"reference": "none", "correspondences": False},
        "train": {"flow_opt": None},
    },
}


def variant_options(base: dict, variant: str, data: dict, seed: int, iters: int, overrides: dict) -> dict:
    opt = deepcopy(base)
    spec = VARIANTS[variant]
    opt["name"] = f"{variant}_seed{seed}"
    opt["manual_seed"] = seed
    opt["network_g"].update(spec["network_g"])
    train_set = opt["datasets"]["train"]
    train_set.update(dataroot_gt=data["faces"], meta_info=data["train_list"], **spec["dataset"])
    opt["train"].update(spec.get("train", {}))
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
        "--threads", type=int, help="torch threads (e.g. 1 to run two processes side by side)"
    )
    parser.add_argument("--prepare-only", action="store_true", help="write the data and stop")
    parser.add_argument("--table-only", action="store_true", help="print the table of finished runs")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=parse_override,
        default=[],
        help="option override, e.g. --set network_g.reference_attention_sigma=1.0 (value in JSON)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir).resolve()
    base = load_option_file("demo_train_tiny.yml")
    data = load_or_prepare_data(workdir, base, args)
    if args.prepare_only:
        return
    overrides = dict(args.overrides)
    results_dir = workdir / "results" / args.split
    for variant in args.variants:
        for seed in args.seeds:
            result_file = results_dir / f"{variant}_seed{seed}.json"
            if args.table_only or _finished(result_file, overrides, args.iters):
                continue
            opt = variant_options(base, variant, data, seed, args.iters, overrides)
            started = time.perf_counter()
            checkpoint = train(opt, workdir / "runs" / f"{variant}_seed{seed}")
            trained = time.perf_counter() - started
            net = load_trained_network(opt, checkpoint)
            conditions = {"no reference": CONDITIONS["no reference"]} if variant == "blind" else CONDITIONS
            scores = evaluate_conditions(net, data, args.split, SIZE, conditions)
            record = {"overrides": overrides, "iters": args.iters, "train_seconds": trained, "scores": scores}
            atomic_write_text(result_file, json.dumps(record, indent=1))
            logging.info("%s seed %d: %s", variant, seed, json.dumps(scores))
    print_tables(results_dir, args, overrides)


def load_or_prepare_data(workdir: Path, base: dict, args) -> dict:
    data_file = workdir / "data.json"
    if data_file.is_file():
        return json.loads(data_file.read_text())
    degradation = {
        k: base["datasets"]["train"][k]
        for k in ("blur_sigma", "downsample_range", "noise_range", "jpeg_range")
    }
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
    atomic_write_text(data_file, json.dumps(data))
    return data


def _finished(result_file: Path, overrides: dict, iters: int) -> bool:
    if not result_file.is_file():
        return False
    record = json.loads(result_file.read_text())
    return record["overrides"] == overrides and record["iters"] == iters


def print_tables(results_dir: Path, args, overrides: dict) -> None:
    """Prints the tables of the finished runs with these iterations and overrides (a result of
    other settings is left out, with a warning)."""
    runs = {}
    for variant in args.variants:
        for seed in args.seeds:
            path = results_dir / f"{variant}_seed{seed}.json"
            if _finished(path, overrides, args.iters):
                runs.setdefault(variant, []).append(json.loads(path.read_text())["scores"])
            elif path.is_file():
                logging.warning("%s: left out, trained with other iterations or overrides", path)
    rows = {}
    gated = any("references_read" in c for scores in runs.values() for s in scores for c in s.values())
    columns = METRICS + (("references_read",) if gated else ())
    for variant, scores in runs.items():
        for condition in CONDITIONS:
            if all(condition in s for s in scores):
                rows[f"{variant}: {condition}"] = {
                    m: [s[condition][m] for s in scores if m in s[condition]] for m in columns
                }
    seeds = {variant: len(scores) for variant, scores in runs.items()}
    print(f"\n{args.split} split, {args.iters} iterations, seeds per variant {seeds}\n")
    print(markdown_table(rows, columns))
    yaw_columns = [k for scores in runs.values() for k in scores[0].get("true reference", {}) if "@" in k]
    yaw_columns = list(dict.fromkeys(yaw_columns))
    yaw_rows = {
        variant: {k: [s["true reference"][k] for s in scores] for k in yaw_columns}
        for variant, scores in runs.items()
        if "true reference" in scores[0]
    }
    if yaw_rows:
        print("\nTrue reference, erased-mark recall by yaw difference between reference and gt:\n")
        print(markdown_table(yaw_rows, columns=yaw_columns))


if __name__ == "__main__":
    main()
