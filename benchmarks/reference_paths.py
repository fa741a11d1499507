"""Where does the reference go in a trained ENTED? Measures on held-out triplets of the pose-varied set.

For a checkpoint trained by ``benchmarks/reference_detail.py`` (its run folder), prints:

- ``reference effect``: mean absolute change of the face (grey levels, 0-255) when the true
  reference is replaced by none (the input as its own reference), next to the change when the
  input is replaced by another photo's input with the same reference -- which path carries the
  output;
- ``labels on marks``: for every extraction operation, how much more attention its most
  mark-seeking label puts on mole pixels than a label spread evenly over the face would (1 = no
  preference; a label that locked onto the moles would score far above 1);
- ``alpha``: the identity residual's weight;
- for networks with reference attention, the learned width of its displacement prior (sigma, in
  positions of its scale);
- ``erased-mark recall by displacement``: the true reference's erased-mark recall (the metric's
  definition, mark by mark) split by how far each mark sits in the reference from its place in the
  ground truth (pixels, both FFHQ-aligned) -- does the network follow the pose or copy by position?
- for networks with a reference flow, its error at each scale: the mean distance (pixels, L1 over
  x and y) between where the flow sends each known point of the ground truth and where the
  reference shows it (:mod:`ented.data.correspondences`), next to the error of no flow at all.

Example: ``python benchmarks/reference_paths.py bench_ref/runs/faithful/seed0 --data bench_ref/data.json``
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ented.data.correspondences import correspondence_rows
from ented.data.sidecars import read_sidecar
from ented.experiment import load_run
from ented.losses.reference_flow_loss import ENTEDReferenceFlowLoss
from ented.metrics.identity_detail_metric import calculate_ented_mark_recall
from ented.reference_detail import bgr_image, triplet_options

DISPLACEMENT_BINS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, float("inf")))  # pixels
HIDDEN = "hidden"  # erased marks the reference does not show


def mark_map(marks: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) bool: pixels inside the visible marks (x, y, r, visible rows)."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = torch.zeros(size, size, dtype=torch.bool)
    for x, y, r, visible in marks.tolist():
        if visible > 0.5:
            inside |= (xx - x - 0.5) ** 2 + (yy - y - 0.5) ** 2 <= max(r, 0.75) ** 2
    return inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run folder: runs/<variant>/seed<N>")
    parser.add_argument("--data", type=Path, required=True, help="the benchmark's data.json")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    args = parser.parse_args()
    from basicsr.data import build_dataset

    import ented  # noqa: F401  (registers)

    opt, net = load_run(args.run)
    data = json.loads(args.data.read_text())
    size = opt["network_g"]["out_size"]
    dataset = build_dataset(triplet_options(data, args.split, size))
    reference_effect, input_effect, mark_preference = [], [], {}
    recalled_by_bin = {bin_: [] for bin_ in DISPLACEMENT_BINS + (HIDDEN,)}
    flow_error, flow_loss = {}, ENTEDReferenceFlowLoss(loss_weight=1.0)
    with torch.no_grad():
        for index in range(len(dataset)):
            sample = dataset[index]
            other = dataset[(index + 2) % len(dataset)]  # another identity's input (2 photos each)
            lq, ref = sample["lq"][None], sample["ref"][None]
            out, aux = net(lq, ref, return_aux=True)
            face = sample["face_mask"][0] > 0.5
            grey = lambda t: torch.from_numpy(bgr_image(t[0]).astype(np.float32).mean(-1))  # noqa: E731
            reference_effect.append((grey(out) - grey(net(lq, None)))[face].abs().mean().item())
            input_effect.append((grey(out) - grey(net(other["lq"][None], ref)))[face].abs().mean().item())
            rows = _correspondences(sample, size)
            for res, flow in aux["reference_flow"].items():
                flow_error.setdefault(res, []).append(float(flow_loss({res: flow[:, :1]}, rows, size)))
            if aux["reference_flow"]:
                no_flow = 0 * next(iter(aux["reference_flow"].values()))[:, :1]
                flow_error.setdefault("none", []).append(float(flow_loss({16: no_flow}, rows, size)))
            for bin_, recalled in _recall_by_displacement(sample, out).items():
                recalled_by_bin[bin_] += recalled
            ref_marks = mark_map(_ref_marks(sample), size)
            ref_face = F.interpolate(face[None, None].float(), size=size)[0, 0] > 0.5
            for layer, (extraction, _) in enumerate(aux["texture_attention"]):
                h = extraction.shape[-1]
                marks_h = F.adaptive_avg_pool2d(ref_marks[None, None].float(), h)[0, 0]
                face_h = F.adaptive_avg_pool2d(ref_face[None, None].float(), h)[0, 0]
                share = (extraction[0, 0] * marks_h).sum((-1, -2)) / extraction[0, 0].sum((-1, -2))
                even = marks_h.sum() / face_h.sum().clamp(min=1)
                mark_preference.setdefault(f"layer {layer} ({h}px)", []).append((share.max() / even).item())
    print(f"{args.run}: {len(dataset)} {args.split} triplets")
    print(f"reference effect (true reference -> none): {np.mean(reference_effect):.2f} grey levels")
    print(f"input effect (another photo's input, same reference): {np.mean(input_effect):.2f} grey levels")
    for layer, values in mark_preference.items():
        print(
            f"labels on marks, {layer}: most mark-seeking label x{np.median(values):.2f} (median over images)"
        )
    for bin_, recalled in recalled_by_bin.items():
        recall = f"{np.mean(recalled):.2f}" if recalled else "-"
        where = (
            "the reference does not show"
            if bin_ == HIDDEN
            else f"{bin_[0]:g}-{bin_[1]:g} px away in the reference"
        )
        print(f"erased-mark recall, marks {where}: {recall} ({len(recalled)} marks)")
    if net.identity_alpha is not None:
        print(f"identity residual alpha: {net.identity_alpha.item():.3f}")
    for res, module in net.reference_attention.items():
        print(f"reference attention at {res}px: sigma {module.log_sigma.exp().tolist()}")
    for res, errors in sorted(flow_error.items(), key=lambda item: item[0] == "none"):
        what = "no flow" if res == "none" else f"the reference flow at {res}px"
        print(f"correspondence error of {what}: {np.mean(errors):.2f} px (mean over points and images)")


def _correspondences(sample: dict, size: int) -> torch.Tensor:
    """(1, 1, N, 5) known correspondences between the gt and the (first) reference."""
    import os

    ref_path = sample["ref_path"].split(os.pathsep)[0]
    rows = correspondence_rows(read_sidecar(sample["gt_path"]), read_sidecar(ref_path), size)
    return torch.from_numpy(rows)[None, None]


def _recall_by_displacement(sample: dict, out: torch.Tensor) -> dict:
    """{bin: [1.0 / 0.0 per erased mark]}: whether the output shows each erased mark (as
    ``calculate_ented_mark_recall`` scores it), binned by its displacement between gt and reference."""
    gt, lq, output = bgr_image(sample["gt"]), bgr_image(sample["lq"]), bgr_image(out[0])
    ref_marks = _ref_marks(sample).numpy()
    marks = sample["marks"].numpy()[: len(ref_marks)]  # sidecar order: the same mark in every photo
    binned = {bin_: [] for bin_ in DISPLACEMENT_BINS + (HIDDEN,)}
    for mark, ref_mark in zip(marks, ref_marks):
        recalled = calculate_ented_mark_recall(output, gt, marks=mark[None], lq=lq, erased_only=True)
        if np.isnan(recalled):
            continue  # not visible, too faint, or not erased
        if ref_mark[3] < 0.5:
            binned[HIDDEN].append(recalled)  # the reference does not show it
            continue
        shift = float(np.hypot(*(mark[:2] - ref_mark[:2])))
        binned[next(b for b in DISPLACEMENT_BINS if b[0] <= shift < b[1])].append(recalled)
    return binned


def _ref_marks(sample: dict) -> torch.Tensor:
    """The marks of the sample's (first) reference, from its sidecar."""
    import os

    from ented.data.sidecars import read_sidecar

    sidecar = read_sidecar(sample["ref_path"].split(os.pathsep)[0])
    return torch.tensor([[m["x"], m["y"], m["radius"], float(m["visible"])] for m in sidecar["marks"]])


if __name__ == "__main__":
    main()
