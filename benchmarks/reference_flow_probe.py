"""How well can the reference flow learn the known correspondences? The flow estimator alone, on the flow loss.

Trains E_lq, E_ref (the demo's channel plan) and :class:`~ented.archs.reference_flow.ReferenceFlow`
on :class:`~ented.losses.reference_flow_loss.ENTEDReferenceFlowLoss` only (no decoder: minutes,
not a full training run), on the train identities of a ``benchmarks/reference_detail.py`` workdir,
and prints the mean correspondence error (pixels, L1 over x and y) at each scale on the
validation identities every 100 steps, next to the error of no flow. This is how the flow's
design was chosen (docs/architecture.md)::

    python benchmarks/reference_detail.py --workdir bench_ref --prepare-only   # data seed 0
    python benchmarks/reference_flow_probe.py bench_ref --context 0
    python benchmarks/reference_flow_probe.py bench_ref --context 32
"""

import argparse
import json
import time
from pathlib import Path

import torch

from ented.archs.ented_arch import FeatureEncoder, channel_plan
from ented.archs.reference_flow import ReferenceFlow
from ented.data.reference_face_dataset import ENTEDReferenceFaceDataset
from ented.experiment import load_option_file
from ented.losses.reference_flow_loss import ENTEDReferenceFlowLoss


def datasets(workdir: Path, base: dict, **options) -> tuple:
    """(train, validation) training-style datasets of a workdir's inner split, with the demo's
    training options updated by ``options`` (validation: no flip)."""
    data = json.loads((workdir / "data.json").read_text())
    if "val_list" not in data:
        raise SystemExit(f"{workdir} has no validation split: prepare it with --val-identities > 0")
    validation_identities = Path(data["train_list"]).parent / "test.txt"  # the inner split's held-out part
    train_opt = dict(base["datasets"]["train"], phase="train", dataroot_gt=data["faces"], **options)
    for key in (
        "num_worker_per_gpu",
        "batch_size_per_gpu",
        "use_shuffle",
        "dataset_enlarge_ratio",
        "prefetch_mode",
    ):
        train_opt.pop(key, None)
    train = ENTEDReferenceFaceDataset(dict(train_opt, meta_info=data["train_list"]))
    val = ENTEDReferenceFaceDataset(dict(train_opt, meta_info=str(validation_identities), use_hflip=False))
    return train, val


def probe_parser(description: str, steps: int, batch: int) -> argparse.ArgumentParser:
    """The arguments every probe of a reference_detail.py workdir takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("workdir", type=Path, help="a benchmarks/reference_detail.py workdir (its data.json)")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def main() -> None:
    parser = probe_parser(__doc__.split("\n")[0], steps=600, batch=8)
    parser.add_argument("--context", type=int, default=32, help="global context size (0: local heads only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_option_file("demo_train_tiny.yml")
    train, val = datasets(args.workdir.resolve(), base, correspondences=True)
    torch.manual_seed(1000 + args.seed)  # the validation samples' degradations: the same for every run
    val_samples = [val[i] for i in range(len(val))]
    torch.manual_seed(args.seed)
    network = base["network_g"]
    channels = channel_plan(network["out_size"], network.get("width", 1.0), network["channels"])
    size = network["out_size"]
    encoders = torch.nn.ModuleDict({"lq": FeatureEncoder(channels), "ref": FeatureEncoder(channels)})
    flow = ReferenceFlow(channels, max(network["reference_attention"]), context=args.context)
    optimizer = torch.optim.Adam([*encoders.parameters(), *flow.parameters()], lr=args.lr, betas=(0.9, 0.99))
    loss = ENTEDReferenceFlowLoss(loss_weight=1.0)

    def flows_of(samples: list) -> tuple:
        lq, ref, rows = (torch.stack([s[k] for s in samples]) for k in ("lq", "ref", "correspondences"))
        by_res = [
            {f.shape[-1]: f for f in encoders[role](images)} for role, images in (("lq", lq), ("ref", ref))
        ]
        return {res: f[:, None] for res, f in flow(*by_res, num_refs=1).items()}, rows

    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        picks = torch.randint(0, len(train), (args.batch,))
        flows, rows = flows_of([train[int(i)] for i in picks])
        optimizer.zero_grad(set_to_none=True)
        loss(flows, rows, size).backward()
        optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                flows, rows = flows_of(val_samples)
                errors = {res: float(loss({res: f}, rows, size)) for res, f in flows.items()}
                none = float(loss({size: 0 * flows[size]}, rows, size))
            scales = ", ".join(f"{res}px {e:.2f}" for res, e in errors.items())
            print(
                f"context {args.context} step {step}: validation error {scales} (no flow {none:.2f}) "
                f"[{time.perf_counter() - started:.0f} s]",
                flush=True,
            )


if __name__ == "__main__":
    main()
