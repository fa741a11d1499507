"""``ented-benchmark quality``: several restoration methods on one paired-reference test set, one table.

::

    ented-benchmark quality --list testset/test_list.txt --gt-root faces --output bench \\
        bicubic gfpgan:GFPGANv1.4.pth codeformer:codeformer.pth ented:dense=runs/dense ented:sparse=runs/sparse

The run:

1. **Data**: :class:`~ented.data.reference_triplet_dataset.ENTEDReferenceTripletDataset` over the
   triplet list ``ented-prepare testset`` writes (or ``--layout identity_folders`` / ``ffhq_ref_csv``
   for CelebRef-HQ / FFHQ-Ref), at ``--size``, with the gt's sidecars when every gt has one. Every
   method sees the identical aligned input ``lq`` (and the same references; blind methods ignore them).
2. **Methods** (:mod:`ented.benchmark.methods`): each is run once over the set and its outputs are
   cached under ``<output>/cache/<key>/``, ``key`` the content hash of the method (kind, options,
   weights file bytes) and of the data (options, list, image bytes). A rerun, with methods added,
   runs only the methods without a finished cache. A method whose weights are missing is a row
   saying so.
3. **Metrics** (per image, on uint8 BGR images as BasicSR's validation scores them): ``psnr``,
   ``ssim`` (BasicSR's), ``lpips``, ``identity`` (ArcFace cosine to the gt), ``niqe`` (BasicSR's),
   ``landmarks`` (MTCNN five-point distance to the gt's, over the gt's inter-ocular distance),
   ``fid`` (of the method's folder of outputs against ``--fid-reference``), and, with sidecars,
   ``face_psnr``, ``face_detail``, ``erased_mark_recall`` (:mod:`ented.metrics.identity_detail_metric`).
   A metric whose network has no weights refuses to run unless ``--allow-random-weights`` is
   given; its column is then labelled "(random weights)".
4. **Report** (:mod:`ented.benchmark.report`): ``quality.md`` (mean ± std, best in bold),
   ``quality.csv``, ``quality.json``, comparison grids ``grids/<n>.png`` and ``quality_vs_speed.png``.

Exit status: 0 when every method ran; 1 when one was missing or could not be built (its row says
why); 2 when the run could not start (a metric refused, bad data).
"""

import argparse
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("psnr", "ssim", "lpips")
SIDECAR_METRICS = ("face_psnr", "face_detail", "erased_mark_recall")
ALL_METRICS = DEFAULT_METRICS + ("identity", "niqe", "landmarks", "fid") + SIDECAR_METRICS
LABELS = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "identity": "ID sim (ArcFace)",
    "niqe": "NIQE",
    "landmarks": "LMD",
    "fid": "FID",
    "face_psnr": "face PSNR",
    "face_detail": "face detail",
    "erased_mark_recall": "erased-mark recall",
}
LOWER_IS_BETTER = {"lpips", "niqe", "landmarks", "fid"}
METHOD_ORDER = ("bicubic", "gfpgan", "codeformer", "ented-blind", "ented")  # the grids' and the table's order
NIQE_BLOCK = 96  # BasicSR's NIQE scores 96x96 blocks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``quality`` sub-command's options."""
    data = parser.add_argument_group("test set")
    data.add_argument(
        "--list", dest="meta_info", help="triplet list (ented-prepare testset), identity list or FFHQ-Ref csv"
    )
    data.add_argument(
        "--layout",
        default="list",
        choices=("list", "identity_folders", "ffhq_ref_csv"),
        help="data layout (default: list)",
    )
    data.add_argument(
        "--gt-root", required=True, help="folder the gt (and by default reference) paths are relative to"
    )
    data.add_argument("--lq-root", help="folder of the stored lq images (default: the list's folder)")
    data.add_argument("--ref-root", help="folder of the references (default: --gt-root)")
    data.add_argument("--size", type=int, default=512, help="face size in pixels (default 512)")
    data.add_argument("--num-ref", type=int, default=1, help="references per face (default 1)")
    data.add_argument(
        "--seed", type=int, default=0, help="seed of on-the-fly degradation and reference choice"
    )
    methods = parser.add_argument_group("methods")
    methods.add_argument(
        "methods",
        nargs="+",
        metavar="METHOD",
        help="bicubic | ented:[name=]WEIGHTS | ented-blind:[name=]WEIGHTS (run without references) | gfpgan:[name=]WEIGHTS.pth | codeformer:[name=]WEIGHTS.pth",
    )
    methods.add_argument(
        "--codeformer-w", type=float, default=0.5, help="CodeFormer's fidelity weight w (default 0.5)"
    )
    methods.add_argument("--codeformer-repo", help="a clone of CodeFormer's repository to import it from")
    methods.add_argument(
        "--codeformer-network",
        default="codeformer",
        choices=("codeformer", "stand-in"),
        help="'stand-in': our test network behind CodeFormer's worker protocol (tests only)",
    )
    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--metrics",
        nargs="+",
        choices=ALL_METRICS,
        help=f"default: {' '.join(DEFAULT_METRICS)}, plus {' '.join(SIDECAR_METRICS)} when the gts have sidecars",
    )
    metrics.add_argument(
        "--lpips-net", default="alex", choices=("alex", "vgg", "squeeze"), help="LPIPS backbone"
    )
    metrics.add_argument(
        "--lpips-weights", help="LPIPS backbone weights (torchvision file); default: torch's hub cache"
    )
    metrics.add_argument("--arcface-weights", help="ArcFace backbone.pth for the identity metric")
    metrics.add_argument("--fid-reference", help="folder of real faces, or FID statistics (.npz/.pth)")
    metrics.add_argument("--fid-weights", help="FID Inception weights (pt_inception-2015-12-05-6726825d.pth)")
    metrics.add_argument(
        "--fid-dims", type=int, default=2048, choices=(64, 192, 768, 2048), help="FID feature size"
    )
    metrics.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="let metrics without weights use random networks (columns labelled; never report such numbers)",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--output", required=True, help="folder for the tables, grids, plot and cache")
    run.add_argument("--batch-size", type=int, default=4, help="faces per forward pass (default 4)")
    run.add_argument("--device", help="torch device (default: cuda when available)")
    run.add_argument("--grids", type=int, default=8, help="comparison grids of the first N faces (default 8)")
    run.add_argument(
        "--scatter-metric", help="the quality axis of the quality-vs-speed plot (default: LPIPS, else PSNR)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- data


def build_dataset(args):
    """The triplet dataset of ``args``, with sidecars when every gt has one."""
    from ented.data.reference_triplet_dataset import ENTEDReferenceTripletDataset
    from ented.data.sidecars import sidecar_path

    opt = {
        "name": "quality benchmark",
        "type": "ENTEDReferenceTripletDataset",
        "phase": "test",
        "layout": args.layout,
        "meta_info": args.meta_info,
        "dataroot_gt": args.gt_root,
        "dataroot_lq": args.lq_root
        or (os.path.dirname(os.path.abspath(args.meta_info)) if args.meta_info else None),
        "dataroot_ref": args.ref_root,
        "out_size": args.size,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "num_ref": args.num_ref,
        "seed": args.seed,
    }
    dataset = ENTEDReferenceTripletDataset(opt)
    if all(os.path.isfile(sidecar_path(dataset.resolve("gt", r.gt))) for r in dataset.records):
        dataset = ENTEDReferenceTripletDataset(dict(opt, sidecars=True))
    return dataset


def data_key(dataset) -> str:
    """Content hash of the test data: the dataset's options and every file it reads, in order."""
    digest = hashlib.sha256(
        json.dumps({k: v for k, v in dataset.opt.items() if k != "name"}, sort_keys=True).encode()
    )
    for index, record in enumerate(dataset.records):
        refs, role = dataset.references(index)
        files = [dataset.resolve("gt", record.gt)]
        files += [dataset.resolve("lq", record.lq)] if record.lq is not None else []
        files += [dataset.resolve(role, path) for path in refs]
        for path in files:
            digest.update(path.encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def batches(dataset, batch_size: int):
    """``(indices, lq (B, 3, S, S), refs (B, K, 3, S, S))`` over the dataset, in order."""
    import torch

    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        samples = [dataset[i] for i in indices]
        refs = [s["ref"] if s["ref"].dim() == 4 else s["ref"][None] for s in samples]
        yield indices, torch.stack([s["lq"] for s in samples]), torch.stack(refs)


# ----------------------------------------------------------------------------- metrics


class MetricRefused(ValueError):
    """A metric that cannot run as asked (no weights and no ``--allow-random-weights``, no sidecars)."""


@dataclass
class Metric:
    """One column of the table.

    Attributes:
        name: Key (``psnr``, ...).
        better: ``'higher'`` or ``'lower'``.
        random_weights: Scored with a random network (``--allow-random-weights``).
        options: What changes its values, for the cache key.
        per_image: False for set metrics (FID).
    """

    name: str
    better: str
    random_weights: bool = False
    options: dict = field(default_factory=dict)
    per_image: bool = True

    @property
    def label(self) -> str:
        return LABELS[self.name] + (" (random weights)" if self.random_weights else "")

    @property
    def cache_key(self) -> str:
        return json.dumps({"name": self.name, "random": self.random_weights, **self.options}, sort_keys=True)


def _with_weights(what: str, build, weights, allow_random: bool) -> bool:
    """Builds a metric's network; returns whether it is random. Refuses random weights unless allowed.

    ``build(allow_random_weights)`` raises ``ValueError`` when it finds no weights and may not use
    random ones. Weights that were given are never replaced by random ones.
    """
    try:
        build(False)
        return False
    except ValueError as error:
        if weights is not None or not allow_random:
            raise MetricRefused(f"{what}: {error}") from None
    build(True)
    return True


def prepare_metrics(args, names: list, device, has_sidecars: bool) -> list:
    """Builds the networks the metrics need, so that a refusal comes before any method runs.

    Raises:
        MetricRefused: a metric without weights and without ``--allow-random-weights``, a sidecar
            metric without sidecars, NIQE on faces smaller than its 96 px blocks, FID without reference.
    """
    metrics = []
    for name in names:
        better = "lower" if name in LOWER_IS_BETTER else "higher"
        if name in SIDECAR_METRICS and not has_sidecars:
            raise MetricRefused(
                f"{name} needs a sidecar (.json) beside every gt image (the synthetic set has them)"
            )
        if name == "lpips":
            from ented.metrics.lpips_metric import get_lpips_network

            random = _with_weights(
                "lpips",
                lambda allow: get_lpips_network(args.lpips_net, args.lpips_weights, device, allow),
                args.lpips_weights,
                args.allow_random_weights,
            )
            metrics.append(
                Metric(name, better, random, {"net": args.lpips_net, "weights": args.lpips_weights})
            )
        elif name == "identity":
            from ented.metrics.identity_metric import get_identity_encoder

            random = _with_weights(
                "identity",
                lambda allow: get_identity_encoder(
                    args.arcface_weights, device=device, allow_random_weights=allow
                ),
                args.arcface_weights,
                args.allow_random_weights,
            )
            metrics.append(Metric(name, better, random, {"weights": args.arcface_weights}))
        elif name == "fid":
            from ented.metrics.fid_metric import get_fid_inception

            if not args.fid_reference:
                raise MetricRefused("fid needs --fid-reference (a folder of real faces or FID statistics)")
            random = _with_weights(
                "fid",
                lambda allow: get_fid_inception(args.fid_weights, args.fid_dims, device, allow),
                args.fid_weights,
                args.allow_random_weights,
            )
            options = {
                "weights": args.fid_weights,
                "reference": os.path.abspath(args.fid_reference),
                "dims": args.fid_dims,
            }
            metrics.append(Metric(name, better, random, options, per_image=False))
        elif name == "niqe":
            if args.size < NIQE_BLOCK:
                raise MetricRefused(
                    f"niqe scores {NIQE_BLOCK}x{NIQE_BLOCK} blocks; the faces are {args.size} px"
                )
            metrics.append(Metric(name, better))
        elif name == "landmarks":
            from ented.restoration.face_detection import MTCNNDetector

            MTCNNDetector(device="cpu")  # facenet-pytorch present?
            metrics.append(Metric(name, better))
        else:
            metrics.append(Metric(name, better))
    return metrics


class Scorer:
    """Scores one output image against its sample with the per-image metrics."""

    def __init__(self, args, metrics: list, device):
        self.args, self.metrics, self.device = args, metrics, device
        self.gt_landmarks: dict = {}
        self.detector = None

    def score(self, metric: Metric, index: int, output, images: dict) -> float:
        """``output``, ``images['gt' | 'lq' | 'ref']``: (H, W, 3) BGR uint8; ``images`` also has the sidecar data."""
        from basicsr.metrics import calculate_niqe, calculate_psnr, calculate_ssim

        from ented.metrics import identity_detail_metric as detail

        gt = images["gt"]
        if metric.name == "psnr":
            return float(calculate_psnr(output, gt, crop_border=0))
        if metric.name == "ssim":
            return float(calculate_ssim(output, gt, crop_border=0))
        if metric.name == "lpips":
            from ented.metrics.lpips_metric import calculate_ented_lpips

            return calculate_ented_lpips(
                output,
                gt,
                net=self.args.lpips_net,
                weights_path=self.args.lpips_weights,
                device=self.device,
                allow_random_weights=metric.random_weights,
            )
        if metric.name == "identity":
            from ented.metrics.identity_metric import calculate_ented_identity_similarity

            return calculate_ented_identity_similarity(
                output,
                gt,
                weights_path=self.args.arcface_weights,
                device=self.device,
                allow_random_weights=metric.random_weights,
            )
        if metric.name == "niqe":
            return float(calculate_niqe(output, crop_border=0))
        if metric.name == "landmarks":
            return self.landmark_distance(index, output, gt)
        if metric.name == "face_psnr":
            return detail.calculate_ented_face_psnr(output, gt, face_mask=images["face_mask"])
        if metric.name == "face_detail":
            return detail.calculate_ented_face_detail(output, gt, face_mask=images["face_mask"])
        if metric.name == "erased_mark_recall":
            return detail.calculate_ented_mark_recall(
                output, gt, marks=images["marks"], lq=images["lq"], erased_only=True
            )
        raise ValueError(f"unknown metric {metric.name!r}")

    def _landmarks(self, image):
        from ented.restoration.face_detection import MTCNNDetector

        if self.detector is None:
            self.detector = MTCNNDetector(device="cpu")
        faces = self.detector.detect(image[:, :, ::-1].copy())
        return faces[0].landmarks if faces else None

    def landmark_distance(self, index: int, output, gt) -> float:
        """Mean distance of the five MTCNN landmarks of output and gt over the gt's inter-ocular distance.

        NaN when MTCNN finds no face in either image (the mean leaves such images out; the count says how many).
        """
        import numpy as np

        if index not in self.gt_landmarks:
            self.gt_landmarks[index] = self._landmarks(gt)
        reference, found = self.gt_landmarks[index], self._landmarks(output)
        if reference is None or found is None:
            return float("nan")
        inter_ocular = float(np.linalg.norm(reference[0] - reference[1]))
        return float(np.linalg.norm(found - reference, axis=1).mean() / inter_ocular)


def sample_images(sample: dict) -> dict:
    """The uint8 BGR images (and sidecar data) the metrics and grids need from a dataset sample."""
    from ented.reference_detail import bgr_image

    ref = sample["ref"] if sample["ref"].dim() == 3 else sample["ref"][0]
    images = {"gt": bgr_image(sample["gt"]), "lq": bgr_image(sample["lq"]), "ref": bgr_image(ref)}
    if "face_mask" in sample:
        images["face_mask"] = sample["face_mask"][0].numpy() > 0.5
        images["marks"] = sample["marks"].numpy()
    return images


# ----------------------------------------------------------------------------- the run


def _progress(iterable, enabled: bool, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="face", disable=not enabled, leave=False)


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, value) -> None:
    from ented.atomic_io import atomic_write_text

    atomic_write_text(path, json.dumps(value, indent=2, allow_nan=True) + "\n")


def run_method(runner, name: str, folder: str, dataset, args, device) -> dict:
    """Restores every face with ``runner`` into ``folder/images/<index>.png``; returns the run record."""
    from ented.atomic_io import atomic_imwrite
    from ented.reference_detail import bgr_image

    seconds = 0.0
    with _progress(None, not args.no_progress, len(dataset), name) as progress:
        for indices, lq, refs in batches(dataset, args.batch_size):
            start = time.perf_counter()
            out = runner.restore(lq, refs)
            seconds += time.perf_counter() - start
            for index, image in zip(indices, out):
                atomic_imwrite(bgr_image(image), output_path(folder, index))
            progress.update(len(indices))
    record = {"count": len(dataset), "seconds_per_image": seconds / len(dataset), "device": str(device)}
    _write_json(os.path.join(folder, "run.json"), record)  # written last: marks the run finished
    return record


def output_path(folder: str, index: int) -> str:
    return os.path.join(folder, "images", f"{index:05d}.png")


def score_methods(rows: list, metrics: list, dataset, args, device) -> None:
    """Fills ``row['metrics']`` for every finished method, from the cache where it has the values."""
    import cv2

    scorer = Scorer(args, metrics, device)
    todo = []  # (row, metric) pairs without cached values
    for row in rows:
        if row["status"] != "ok":
            continue
        cached = _read_json(os.path.join(row["folder"], "metrics.json")) or {}
        row["_metric_cache"] = cached
        for metric in metrics:
            if metric.cache_key in cached:
                row["values"][metric.name] = cached[metric.cache_key]
            elif metric.per_image:
                row["values"][metric.name] = []
                todo.append((row, metric))
    if todo:
        for index in _progress(range(len(dataset)), not args.no_progress, len(dataset), "metrics"):
            images = sample_images(dataset[index])
            outputs = {}
            for row, metric in todo:
                if row["name"] not in outputs:
                    outputs[row["name"]] = cv2.imread(output_path(row["folder"], index), cv2.IMREAD_COLOR)
                row["values"][metric.name].append(scorer.score(metric, index, outputs[row["name"]], images))
    for row in rows:
        if row["status"] != "ok":
            continue
        for metric in metrics:
            if not metric.per_image and metric.cache_key not in row["_metric_cache"]:
                row["values"][metric.name] = [fid_of(row["folder"], metric, args, device)]
        cache = row.pop("_metric_cache")
        cache.update({metric.cache_key: row["values"][metric.name] for metric in metrics})
        _write_json(os.path.join(row["folder"], "metrics.json"), cache)


def fid_of(folder: str, metric: Metric, args, device) -> float:
    from ented.metrics.fid_metric import calculate_ented_fid_folder

    return calculate_ented_fid_folder(
        os.path.join(folder, "images"),
        args.fid_reference,
        weights_path=args.fid_weights,
        dims=args.fid_dims,
        device=device,
        allow_random_weights=metric.random_weights,
    )


def summarize(values: list) -> dict:
    """Mean, sample std and count of the finite values (inf kept: identical images have PSNR inf)."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    if not kept:
        return {"mean": float("nan"), "std": float("nan"), "count": 0}
    mean = sum(kept) / len(kept)
    if len(kept) < 2 or math.isinf(mean):
        return {"mean": mean, "std": 0.0 if len(kept) < 2 else float("nan"), "count": len(kept)}
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1))
    return {"mean": mean, "std": std, "count": len(kept)}


def order_methods(specs: list) -> list:
    """bicubic, GFPGAN, CodeFormer, ENTED ..., keeping the command line's order within a kind."""
    return sorted(specs, key=lambda spec: METHOD_ORDER.index(spec.kind))


def run(args) -> int:
    """Runs the benchmark of ``args`` (see :func:`add_arguments`); returns the exit status."""
    from ented.benchmark import report
    from ented.benchmark.methods import build_runner, method_key, missing_weights, parse_methods
    from ented.hub_weights import resolve_device

    if args.layout != "identity_folders" and not args.meta_info:
        logger.error("--layout %s needs --list", args.layout)
        return 2
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        logger.error("%s", error)
        return 2
    try:
        specs = order_methods(
            parse_methods(
                args.methods,
                codeformer_w=args.codeformer_w,
                codeformer_network=args.codeformer_network,
                codeformer_repo=args.codeformer_repo,
            )
        )
        dataset = build_dataset(args)
        names = list(args.metrics or DEFAULT_METRICS + (SIDECAR_METRICS if dataset.sidecars else ()))
        metrics = prepare_metrics(args, names, device, dataset.sidecars)
    except (ValueError, FileNotFoundError, ImportError) as error:
        logger.error("%s", error)
        return 2
    key_of_data = data_key(dataset)
    rows = []
    for spec in specs:
        row = {
            "name": spec.name,
            "kind": spec.kind,
            "weights": spec.weights,
            "options": spec.options,
            "values": {},
        }
        rows.append(row)
        missing = missing_weights(spec)
        if missing:
            row.update(status="missing", message=missing)
            logger.error(
                "%s: %s; not run (no method is ever run with random weights in place of missing ones)",
                spec.name,
                missing,
            )
            continue
        row["key"] = method_key(spec, key_of_data)
        row["folder"] = os.path.join(args.output, "cache", row["key"][:16])
        record = _read_json(os.path.join(row["folder"], "run.json"))
        row["cached"] = record is not None
        if record is None:
            logger.info("%s: running on %d faces", spec.name, len(dataset))
            try:  # weights that do not fit, a CodeFormer that cannot be imported: that method's row says so
                runner = build_runner(spec, args.size, device, seed=args.seed)
            except (ValueError, OSError, ImportError, RuntimeError) as error:
                row.update(status="failed", message=f"{type(error).__name__}: {error}")
                logger.error("%s: %s", spec.name, row["message"])
                continue
            try:
                record = run_method(runner, spec.name, row["folder"], dataset, args, device)
            finally:
                runner.close()
        else:
            logger.info("%s: cached (%s)", spec.name, row["folder"])
        row.update(status="ok", seconds_per_image=record["seconds_per_image"])
    score_methods(rows, metrics, dataset, args, device)
    for row in rows:
        row["metrics"] = {name: summarize(values) for name, values in row["values"].items()}
    results = {
        "data": {
            "layout": args.layout,
            "list": args.meta_info,
            "gt_root": args.gt_root,
            "size": args.size,
            "faces": len(dataset),
        },
        "device": str(device),
        "metrics": [
            {"name": m.name, "label": m.label, "better": m.better, "random_weights": m.random_weights}
            for m in metrics
        ],
        "methods": [{k: v for k, v in row.items() if k != "folder"} for row in rows],
    }
    written = report.write_reports(results, args.output, scatter_metric=args.scatter_metric)
    if args.grids:
        written += report.write_grids(rows, dataset, args.output, args.grids, sample_images, output_path)
    logger.info("quality benchmark written: %s", ", ".join(written))
    return 0 if all(row["status"] == "ok" for row in rows) else 1
