"""How the reference strength knob moves a trained ENTED from no reference to the full reference.

For a checkpoint trained by ``benchmarks/reference_detail.py`` (its run folder), scores the
held-out triplets of the pose-varied set at each strength ``s`` (``ENTED(lq, ref,
reference_strength=s)``: E_ref's features are ``(1 - s) E_ref(lq) + s E_ref(ref)``) with the true
reference and with another identity's, and writes a Markdown table and a plot (PNG)::

    python benchmarks/reference_strength.py bench_ref/runs/dense_seed0 --data bench_ref/data.json \\
        --split val --plot docs/images/reference_strength.png
"""

import argparse
import functools
import json
from pathlib import Path

from ented.experiment import load_run
from ented.reference_detail import CONDITIONS, METRICS, evaluate_conditions, markdown_table

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SCORED = ("true reference", "another identity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run folder of benchmarks/reference_detail.py")
    parser.add_argument("--data", type=Path, required=True, help="the benchmark's data.json")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--strengths", type=float, nargs="+", default=list(STRENGTHS))
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = parser.parse_args()
    import ented  # noqa: F401  (registers)

    opt, net = load_run(args.run)
    data = json.loads(args.data.read_text())
    size = opt["network_g"]["out_size"]
    conditions = {name: CONDITIONS[name] for name in SCORED}
    scores = {
        strength: evaluate_conditions(
            functools.partial(net, reference_strength=strength), data, args.split, size, conditions
        )
        for strength in args.strengths
    }
    rows = {
        f"s = {strength:g}: {name}": {metric: [scores[strength][name][metric]] for metric in METRICS}
        for strength in args.strengths
        for name in SCORED
    }
    print(f"{args.run}, {args.split} split\n")
    print(markdown_table(rows))
    if args.plot:
        plot(scores, args.strengths, args.plot)


def plot(scores: dict, strengths: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ented.atomic_io import atomic_write

    figure, axes = plt.subplots(1, 3, figsize=(10, 3))
    for axis, metric, label in zip(
        axes,
        ("face_psnr", "erased_mark_recall", "pasted_marks"),
        ("face PSNR (dB)", "erased-mark recall", "pasted marks"),
    ):
        for name in SCORED:
            axis.plot(strengths, [scores[s][name][metric] for s in strengths], marker="o", label=name)
        axis.set_xlabel("reference strength s")
        axis.set_title(label)
    axes[0].legend()
    figure.tight_layout()
    atomic_write(path, lambda tmp_path: figure.savefig(tmp_path, format="png", dpi=100))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
