"""Does the reference bring back the person's own detail? Data, evaluation and tables for that question.

The protocol (used by ``ented-demo`` and ``benchmarks/reference_detail.py``):

1. :func:`prepare_posed_data`: the pose-varied synthetic set (:mod:`ented.data.posed_faces`), split
   by identity into train / validation / test, and fixed, seeded validation and test triplets
   (stored lq, four references per row) written by ``ented-prepare``'s functions.
2. A model is trained on the train identities (with references, or blind: ``reference: none``).
3. :func:`evaluate_conditions`: the same checkpoint on the held-out triplets under several
   conditions: the true reference, 2 and 4 true references, another identity's reference, no
   reference. Per condition: face PSNR and face detail correlation
   (:mod:`ented.metrics.identity_detail_metric`), **erased-mark recall** (the share of the ground
   truth's marks that the degraded input lost and the output shows at their place), and
   **pasted marks**: the share of the *other* identity's marks, projected onto this face's
   surface and pose (away from its own marks), that the output shows -- another person's moles
   pasted on. The true-reference rows are also split by the yaw difference between reference
   and ground truth.
"""

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from ented.data.posed_faces import decode_face_mask, project_marks
from ented.data.sidecars import read_sidecar
from ented.metrics.identity_detail_metric import (
    calculate_ented_face_detail,
    calculate_ented_face_psnr,
    calculate_ented_mark_recall,
    mark_contrasts,
)

logger = logging.getLogger(__name__)

# name -> triplet dataset options
CONDITIONS = {
    "true reference": {"reference": "matched", "num_ref": 1},
    "2 true references": {"reference": "matched", "num_ref": 2},
    "4 true references": {"reference": "matched", "num_ref": 4},
    "another identity": {"reference": "mismatched", "num_ref": 1},
    "no reference": {"reference": "none"},
}
METRICS = ("face_psnr", "face_detail", "erased_mark_recall", "pasted_marks")
LARGE_YAW_DIFFERENCE = 25.0  # degrees, the "reference's yaw differs from the input's by 25°"


def prepare_posed_data(
    workdir: Path,
    num_identities: int,
    images_per_identity: int,
    size: int,
    num_val: int,
    num_test: int,
    seed: int,
    degradation: dict,
    renderer: str = "posed",
) -> dict:
    """Writes the set, an identity-disjoint train / val / test split and the val and test triplets.

    With ``num_val=0`` there is no validation split (the demo, whose settings were chosen on the
    benchmark's validation split).

    Returns:
        ``{"faces", "train_list", "test_root", "test_list"}`` paths, and ``"val_root"``,
        ``"val_list"`` with a validation split.
    """
    from ented.data.preparation import prepare_split, prepare_test_set
    from ented.data.synthetic_faces import write_synthetic_identity_set

    faces = workdir / "faces"
    write_synthetic_identity_set(
        str(faces),
        num_identities,
        images_per_identity,
        size=size,
        seed=seed,
        progress=True,
        renderer=renderer,
    )
    outer = prepare_split(str(faces), str(workdir / "lists" / "outer"), num_test=num_test, seed=seed)
    data = {"faces": str(faces), "train_list": outer["train"]}
    held_out = [("test", outer["test"])]
    if num_val:
        inner = prepare_split(
            str(faces),
            str(workdir / "lists" / "inner"),
            num_test=num_val,
            seed=seed,
            identity_list=outer["train"],
        )
        data["train_list"] = inner["train"]
        held_out.insert(0, ("val", inner["test"]))
    for role, identity_list in held_out:
        root = workdir / f"{role}set"
        data[f"{role}_root"] = str(root)
        data[f"{role}_list"] = prepare_test_set(
            str(faces),
            str(root),
            identity_list=identity_list,
            num_ref=min(4, images_per_identity - 1),
            images_per_identity=2,
            seed=seed + (1 if role == "val" else 2),
            size=size,
            degradation=degradation,
            progress=True,
        )
    return data


def triplet_options(data: dict, role: str, size: int, **extra) -> dict:
    """Options of an ``ENTEDReferenceTripletDataset`` over the ``role`` (val / test) triplets, with sidecars."""
    return {
        "name": f"{role}_{extra.get('reference', 'matched')}",
        "type": "ENTEDReferenceTripletDataset",
        "phase": "test",
        "dataroot_gt": data["faces"],
        "dataroot_lq": data[f"{role}_root"],
        "layout": "list",
        "meta_info": data[f"{role}_list"],
        "out_size": size,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "sidecars": True,
        **extra,
    }


def bgr_image(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8 BGR, as BasicSR hands images to metrics."""
    from basicsr.utils import tensor2img

    return tensor2img(tensor, rgb2bgr=True, min_max=(-1, 1))


def pasted_marks(output: np.ndarray, gt: np.ndarray, gt_sidecar: dict, other_sidecar: dict) -> float:
    """Share of another identity's marks, projected into this face, that ``output`` shows.

    Only marks that land on the face mask, facing the camera, and at least 3 radii + 3 px from every
    mark of the face's own are scored; "shows" means a contrast of at least half the median contrast
    of the face's own marks in the ground truth. NaN when no mark qualifies.
    """
    own = np.array([[m["x"], m["y"], m["radius"]] for m in gt_sidecar["marks"] if m["visible"]])
    own_contrast = mark_contrasts(gt, own) if len(own) else np.array([])
    own_contrast = own_contrast[np.isfinite(own_contrast)]
    if not len(own_contrast):
        return float("nan")
    mask = decode_face_mask(gt_sidecar)
    foreign = project_marks(other_sidecar["surface_marks"], gt_sidecar)
    keep = []
    for x, y, r in foreign:
        row, col = int(round(y)), int(round(x))
        on_face = r > 0 and 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and mask[row, col]
        apart = not len(own) or np.hypot(own[:, 0] - x, own[:, 1] - y).min() > 3 * max(r, own[:, 2].max()) + 3
        keep.append(bool(on_face and apart))
    foreign = foreign[np.array(keep, bool)] if keep else foreign[:0]
    if not len(foreign):
        return float("nan")
    contrast = mark_contrasts(output, foreign)
    scored = np.isfinite(contrast)
    if not scored.any():
        return float("nan")
    return float((contrast[scored] >= 0.5 * np.median(own_contrast)).mean())


@torch.no_grad()
def evaluate_conditions(net, data: dict, role: str, size: int, conditions=CONDITIONS) -> dict:
    """Scores ``net`` on the ``role`` triplets under each condition.

    Returns:
        ``{condition: {metric: mean over images}}`` plus, under ``"true reference"``,
        ``erased_mark_recall@yaw>=25`` and ``...@yaw<25`` (the yaw difference of reference and gt)
        and ``images@yaw>=25``, and, for a network with ``reference_gate``, ``references_read``
        under each condition with references (the share its gate accepts). Means leave out
        images a metric cannot score (NaN).
    """
    from basicsr.data import build_dataset

    datasets = {
        name: build_dataset(triplet_options(data, role, size, **opt)) for name, opt in conditions.items()
    }
    mismatched = datasets.get("another identity") or build_dataset(
        triplet_options(data, role, size, reference="mismatched")
    )
    per_image = {name: {metric: [] for metric in METRICS} for name in conditions}
    yaw_difference = []
    for index in range(len(mismatched)):
        other = mismatched[index]
        gt_sidecar = read_sidecar(other["gt_path"])
        other_sidecar = read_sidecar(other["ref_path"].split(os.pathsep)[0])
        gt, lq = bgr_image(other["gt"]), bgr_image(other["lq"])
        marks = other["marks"].numpy()
        face_mask = other["face_mask"][0].numpy() > 0.5
        for name, dataset in datasets.items():
            sample = dataset[index]
            ref = sample.get("ref")
            output = bgr_image(net(sample["lq"][None], None if ref is None else ref[None])[0])
            scores = per_image[name]
            if getattr(net, "reference_gate", None) is not None and ref is not None:
                refs = ref[None] if ref.ndim == 4 else ref[None, None]
                accepted = net.reference_gate(sample["lq"][None], refs) >= 0
                scores.setdefault("references_read", []).append(float(accepted.float().mean()))
            scores["face_psnr"].append(calculate_ented_face_psnr(output, gt, face_mask=face_mask))
            scores["face_detail"].append(calculate_ented_face_detail(output, gt, face_mask=face_mask))
            scores["erased_mark_recall"].append(
                calculate_ented_mark_recall(output, gt, marks=marks, lq=lq, erased_only=True)
            )
            scores["pasted_marks"].append(pasted_marks(output, gt, gt_sidecar, other_sidecar))
            if name == "true reference":
                ref_sidecar = read_sidecar(sample["ref_path"].split(os.pathsep)[0])
                yaw_difference.append(abs(ref_sidecar["pose"]["yaw"] - gt_sidecar["pose"]["yaw"]))
    results = {
        name: {metric: nanmean(values) for metric, values in scores.items()}
        for name, scores in per_image.items()
    }
    if "true reference" in results:
        recall = np.array(per_image["true reference"]["erased_mark_recall"])
        large = np.array(yaw_difference) >= LARGE_YAW_DIFFERENCE
        results["true reference"][f"erased_mark_recall@yaw>={LARGE_YAW_DIFFERENCE:g}"] = nanmean(
            recall[large]
        )
        results["true reference"][f"erased_mark_recall@yaw<{LARGE_YAW_DIFFERENCE:g}"] = nanmean(
            recall[~large]
        )
        results["true reference"][f"images@yaw>={LARGE_YAW_DIFFERENCE:g}"] = int(large.sum())
    return results


def nanmean(values) -> float:
    finite = [float(v) for v in values if not math.isnan(float(v))]
    return sum(finite) / len(finite) if finite else float("nan")


def mean_and_std(runs: list) -> tuple:
    """(mean, sample std) of per-seed values, NaNs left out; std is 0 for one value."""
    finite = np.array([v for v in runs if not math.isnan(v)], np.float64)
    if not len(finite):
        return float("nan"), float("nan")
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0


def markdown_table(rows: dict, columns=METRICS) -> str:
    """``rows``: {row label: {metric: [per-seed values]}} -> a Markdown table of mean ± std (the
    value alone where there is one)."""
    header = "| | " + " | ".join(columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for label, metrics in rows.items():
        cells = []
        for column in columns:
            values = metrics.get(column, [])
            mean, std = mean_and_std(values)
            if math.isnan(mean):
                cells.append("-")
            else:
                cells.append(f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
