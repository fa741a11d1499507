"""The quality benchmark's outputs: Markdown, CSV and JSON tables, comparison grids, quality vs speed.

All take the ``results`` dict :func:`ented.benchmark.quality.run` builds::

    {"data": {...}, "device": "cpu",
     "metrics": [{"name": "psnr", "label": "PSNR", "better": "higher", "random_weights": False}, ...],
     "methods": [{"name": "bicubic", "kind": "bicubic", "status": "ok" | "missing" | "failed",
                  "message": "...", "seconds_per_image": 0.01,
                  "metrics": {"psnr": {"mean": ..., "std": ..., "count": ...}}, "values": {...}}, ...]}

Every file is written atomically (:mod:`ented.atomic_io`).
"""

import csv
import io
import json
import math
import os

from ented.atomic_io import atomic_imwrite, atomic_write, atomic_write_text

ARROWS = {"higher": "↑", "lower": "↓"}
DECIMALS = {"psnr": 2, "face_psnr": 2, "fid": 2, "niqe": 2}  # others: 4


def _format(metric: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{DECIMALS.get(metric, 4)}f}"


def best_rows(results: dict, metric: dict) -> set:
    """Names of the methods with the best mean of ``metric`` (ties: all of them)."""
    means = {
        row["name"]: row["metrics"][metric["name"]]["mean"]
        for row in results["methods"]
        if row["status"] == "ok" and not math.isnan(row["metrics"][metric["name"]]["mean"])
    }
    if not means:
        return set()
    best = (max if metric["better"] == "higher" else min)(means.values())
    return {name for name, mean in means.items() if mean == best}


def markdown_table(results: dict) -> str:
    """Methods by metrics, ``mean ± std`` over the faces, the best of each column in bold, then notes."""
    metrics = results["metrics"]
    header = ["method"] + [f"{m['label']} {ARROWS[m['better']]}" for m in metrics] + ["s/image"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    best = {m["name"]: best_rows(results, m) for m in metrics}
    notes = []
    for row in results["methods"]:
        if row["status"] != "ok":
            lines.append(f"| {row['name']} ({row['status']}) |" + " – |" * (len(header) - 1))
            message = " ".join(row["message"].split())  # a checkpoint mismatch spans lines
            notes.append(f"- {row['name']}: not run, {message}.")
            continue
        cells = [row["name"]]
        for metric in metrics:
            summary = row["metrics"][metric["name"]]
            text = _format(metric["name"], summary["mean"])
            if summary["count"] > 1:
                text += f" ± {_format(metric['name'], summary['std'])}"
            cells.append(f"**{text}**" if row["name"] in best[metric["name"]] else text)
        cells.append(f"{row['seconds_per_image']:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    data = results["data"]
    notes.insert(
        0,
        f"{data['faces']} faces of {data['size']} px; mean ± std over the faces (a face a metric cannot score "
        f"is left out); best in bold; s/image: forward time per face on {results['device']}.",
    )
    if any(m["random_weights"] for m in metrics):
        notes.append(
            "Columns marked (random weights) were scored with a random network (--allow-random-weights): "
            "they compare methods within this run only and are not that metric."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def csv_table(results: dict) -> str:
    """One row per method: status, seconds/image, and mean, std, count of every metric."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [f"{m['name']}_{part}" for m in results["metrics"] for part in ("mean", "std", "count")]
    writer.writerow(
        ["method", "kind", "status", "weights", "random_weight_metrics", "seconds_per_image"] + columns
    )
    random = " ".join(m["name"] for m in results["metrics"] if m["random_weights"])
    for row in results["methods"]:
        cells = [
            row["name"],
            row["kind"],
            row["status"],
            row["weights"] or "",
            random,
            row.get("seconds_per_image", ""),
        ]
        for metric in results["metrics"]:
            summary = row["metrics"].get(metric["name"], {})
            cells += [summary.get("mean", ""), summary.get("std", ""), summary.get("count", "")]
        writer.writerow(cells)
    return buffer.getvalue()


def _strict(value):
    """NaN -> None, infinities -> "inf"/"-inf", so that the JSON is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict(item) for item in value]
    return value


def write_reports(results: dict, folder: str, scatter_metric: str | None = None) -> list:
    """Writes ``quality.md``, ``quality.csv``, ``quality.json`` and ``quality_vs_speed.png``; returns their paths."""
    paths = [os.path.join(folder, name) for name in ("quality.md", "quality.csv", "quality.json")]
    atomic_write_text(paths[0], markdown_table(results))
    atomic_write_text(paths[1], csv_table(results))
    atomic_write_text(paths[2], json.dumps(_strict(results), indent=2, ensure_ascii=False) + "\n")
    plot = os.path.join(folder, "quality_vs_speed.png")
    if scatter_plot(results, plot, scatter_metric):
        paths.append(plot)
    return paths


def scatter_plot(results: dict, path: str, metric_name: str | None = None) -> bool:
    """Quality (a metric's mean ± std) against seconds per image, one labelled point per method.

    Returns False (nothing written) when no method ran. Default metric: LPIPS, else PSNR, else the first.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m["name"] for m in results["metrics"]]
    if metric_name is None:
        metric_name = next((n for n in ("lpips", "psnr") if n in names), names[0] if names else None)
    if metric_name not in names:
        raise ValueError(f"scatter metric {metric_name!r} is not among the metrics {names}")
    metric = results["metrics"][names.index(metric_name)]
    rows = [
        r
        for r in results["methods"]
        if r["status"] == "ok" and math.isfinite(r["metrics"][metric_name]["mean"])
    ]
    if not rows:
        return False
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    for row in rows:
        summary = row["metrics"][metric_name]
        seconds = max(row["seconds_per_image"], 1e-6)
        std = summary["std"] if math.isfinite(summary["std"]) else 0.0
        axes.errorbar(seconds, summary["mean"], yerr=std, fmt="o", capsize=3)
        axes.annotate(
            row["name"], (seconds, summary["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    axes.set_xscale("log")
    axes.set_xlabel(f"seconds per image ({results['device']})")
    axes.set_ylabel(f"{metric['label']} ({metric['better']} is better)")
    axes.set_title(
        f"quality vs speed, {results['data']['faces']} faces of {results['data']['size']} px", fontsize=10
    )
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"), suffix=".png")
    plt.close(figure)
    return True


def write_grids(rows: list, dataset, folder: str, count: int, sample_images, output_path) -> list:
    """``grids/<index>.png`` for the first ``count`` faces: input | each method | GT | reference."""
    import cv2

    from ented.visualization import side_by_side

    ran = [row for row in rows if row["status"] == "ok"]
    paths = []
    for index in range(min(count, len(dataset))):
        images = sample_images(dataset[index])
        panels = [images["lq"]] + [
            cv2.imread(output_path(row["folder"], index), cv2.IMREAD_COLOR) for row in ran
        ]
        panels += [images["gt"], images["ref"]]
        labels = ["input"] + [row["name"] for row in ran] + ["GT", "reference"]
        path = os.path.join(folder, "grids", f"{index:05d}.png")
        atomic_imwrite(side_by_side(panels, labels, gap=2), path)
        paths.append(path)
    return paths[:1] + ([f"... {len(paths) - 1} more grids"] if len(paths) > 1 else [])
