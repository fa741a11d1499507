"""``ented-benchmark train``: ENTED and GFPGANv1Clean trained on the same data for the same budget, then scored.

::

    ented-benchmark train --output bench_train --threads 2

Pretrained GFPGAN and CodeFormer learnt from FFHQ; ENTED here learns from what the user has. This
compares the architectures on equal terms:

1. **Data**: the pose-varied synthetic set with an identity-disjoint split and fixed, seeded test
   triplets with sidecars (:func:`ented.reference_detail.prepare_posed_data`), written once under
   ``<output>/data`` (degradations from ``ented_dense.yml``).
2. **Training**: each method of :data:`~ented.benchmark.train_options.METHODS` from its option file
   in ``options/benchmark/`` (checked: an unknown key is an error naming it), through BasicSR's
   ``train_pipeline`` with ``ENTEDModel``: ENTED with references (``ented_dense``), ENTED trained
   blind (``ented_blind``, ``reference: none``) and GFPGANv1Clean (``gfpgan``, through
   :class:`~ented.archs.gfpgan_baseline_arch.ENTEDGFPGANv1Clean`). The budget is iterations
   (``--iters``), the same for every method and seed, so every method sees the same number of
   batches of the same size; each run's wall-clock seconds are recorded beside it. A run whose
   record (``runs/<method>_seed<s>/train.json``) says it finished with these iterations and options
   is not trained again.
3. **Scoring**: the quality harness (:mod:`ented.benchmark.quality`) on the held-out test triplets:
   bicubic, ``gfpgan:``, ``ented-blind:`` (run without references) and ``ented:`` rows, with the
   identity-detail metrics, under ``<output>/quality``.
"""

import argparse
import hashlib
import json
import logging
import time
from copy import deepcopy
from pathlib import Path

from ented.benchmark.train_options import METHODS

logger = logging.getLogger(__name__)

OPTIONS_SUBDIR = "benchmark"
DEGRADATION_KEYS = ("blur_sigma", "downsample_range", "noise_range", "jpeg_range")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ented.benchmark.train_options import add_arguments as add

    add(parser)


def load_checked_options(path: Path) -> dict:
    """The option file at ``path``, checked as ENTEDModel and its dataset check them.

    Raises:
        ValueError: an option key nobody reads (``train: unknown option 'pixle_opt' ...``).
    """
    import yaml
    from basicsr.utils.registry import DATASET_REGISTRY

    import ented  # noqa: F401  (registers ENTED's models, networks and datasets)
    from ented.models.ented_model import check_options
    from ented.options import check_known_keys

    with open(path, encoding="utf-8") as f:
        opt = yaml.safe_load(f)
    try:
        check_options(opt)
        for phase, dataset_opt in opt.get("datasets", {}).items():
            dataset_class = DATASET_REGISTRY.get(dataset_opt["type"])
            check_known_keys(f"datasets.{phase}", dataset_opt, dataset_class.OPTIONS)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return opt


def run_options(base: dict, data: dict, size: int, seed: int, iters: int) -> dict:
    """``base`` with the prepared set's paths, ``size``, ``seed`` and the iteration budget filled in."""
    opt = deepcopy(base)
    opt["name"] = f"{base['name']}_seed{seed}"
    opt["manual_seed"] = seed
    opt["datasets"]["train"].update(dataroot_gt=data["faces"], meta_info=data["train_list"], out_size=size)
    opt["network_g"]["out_size"] = size
    if opt.get("network_d"):
        opt["network_d"]["out_size"] = size
    opt["train"]["total_iter"] = iters
    opt["logger"]["save_checkpoint_freq"] = iters
    return opt


def prepare_data(folder: Path, base: dict, args) -> dict:
    """The synthetic set of ``args`` under ``folder``, written once (a rerun reads ``data.json``)."""
    from ented.atomic_io import atomic_write_text
    from ented.reference_detail import prepare_posed_data

    settings = {
        "size": args.size,
        "identities": args.identities,
        "images_per_identity": args.images_per_identity,
        "test_identities": args.test_identities,
        "data_seed": args.data_seed,
        "degradation": {k: base["datasets"]["train"][k] for k in DEGRADATION_KEYS},
    }
    data_file = folder / "data.json"
    if data_file.is_file():
        record = json.loads(data_file.read_text())
        if record["settings"] != settings:
            raise ValueError(
                f"{folder} holds a synthetic set made with {record['settings']}, not {settings}; "
                "use another --output"
            )
        return record["data"]
    data = prepare_posed_data(
        folder,
        args.identities,
        args.images_per_identity,
        args.size,
        0,
        args.test_identities,
        args.data_seed,
        settings["degradation"],
    )
    atomic_write_text(data_file, json.dumps({"settings": settings, "data": data}, indent=1))
    return data


def train_once(opt: dict, run_dir: Path) -> dict:
    """Trains ``opt`` in ``run_dir`` unless its record says it is done; returns the record."""
    from ented.atomic_io import atomic_write_text
    from ented.experiment import train

    options_hash = hashlib.sha256(json.dumps(opt, sort_keys=True).encode("utf-8")).hexdigest()
    record_file = run_dir / "train.json"
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        if record["options_hash"] == options_hash and Path(record["checkpoint"]).is_file():
            logger.info("%s: trained already (%s)", opt["name"], record["checkpoint"])
            return record
    logger.info("%s: training for %d iterations", opt["name"], opt["train"]["total_iter"])
    started = time.perf_counter()
    checkpoint = train(opt, run_dir)
    record = {
        "name": opt["name"],
        "iters": opt["train"]["total_iter"],
        "seconds": round(time.perf_counter() - started, 1),
        "checkpoint": str(checkpoint),
        "options_hash": options_hash,
    }
    atomic_write_text(record_file, json.dumps(record, indent=1))
    logger.info("%s: trained in %.0f s", opt["name"], record["seconds"])
    return record


def quality_arguments(args, data: dict, methods: list) -> argparse.Namespace:
    """The quality harness's arguments: the test triplets, ``methods``, ``args``' metrics."""
    from ented.benchmark import quality

    parser = argparse.ArgumentParser()
    quality.add_arguments(parser)
    argv = ["--list", data["test_list"], "--gt-root", data["faces"], "--lq-root", data["test_root"]]
    argv += ["--size", str(args.size), "--output", str(Path(args.output) / "quality")]
    argv += ["--grids", str(args.grids), "--device", "cpu", "--metrics", *args.metrics]
    argv += ["--lpips-weights", args.lpips_weights] if args.lpips_weights else []
    return parser.parse_args(argv + ["--", *methods])


def run(args) -> int:
    """Prepares the data, trains every method and seed, scores them; returns the harness's status."""
    from ented.atomic_io import atomic_write_text
    from ented.benchmark import quality
    from ented.experiment import OPTIONS_DIR

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    output = Path(args.output).resolve()
    options_dir = Path(args.options_dir) if args.options_dir else OPTIONS_DIR / OPTIONS_SUBDIR
    try:
        bases = {method: load_checked_options(options_dir / METHODS[method][0]) for method in args.methods}
        data = prepare_data(output / "data", bases[args.methods[0]], args)
    except (ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2
    records, methods = [], ["bicubic"]
    for method in args.methods:
        _, kind, label = METHODS[method]
        for seed in args.seeds:
            opt = run_options(bases[method], data, args.size, seed, args.iters)
            record = train_once(opt, output / "runs" / f"{method}_seed{seed}")
            records.append(dict(record, method=method, seed=seed))
            row_label = label if len(args.seeds) == 1 else f"{label} seed{seed}"
            methods.append(f"{kind}:{row_label}={record['checkpoint']}")
    atomic_write_text(output / "training.json", json.dumps(records, indent=1))
    for record in records:
        logger.info(
            "%s seed %d: %d iterations, %.0f s",
            record["method"],
            record["seed"],
            record["iters"],
            record["seconds"],
        )
    return quality.run(quality_arguments(args, data, methods))
