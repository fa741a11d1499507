"""Reading a run of ``ented-benchmark speed``: its JSONL records, the docs' tables, the targets.

A record is one JSON object per line with ``record`` (its kind), ``run`` (the run's id) and
``env``. Kinds and their fields:

- ``network``: network, size, params_m, gflops_per_img
- ``cpu_latency``: network, size, batch, seconds, repeats, threads
- ``matmul_peak``: device, dtype, n, tflops
- ``throughput``: network, size, device, dtype, batch, compile, compile_backend, images_per_s,
  seconds_per_batch, peak_memory_gib, compile_s, repeats, peak_share
- ``train_step``: network, size, batch, device, images_per_s, seconds_per_step, min_seconds,
  peak_memory_gib, loss_terms, loss_networks, iters
- ``skipped``: network, measurement, reason

The targets (docs/performance.md) compare networks within one run, never across runs.
"""

import json
import os
from collections.abc import Iterable

TARGET_SIZE = 512
TRAIN_BATCH = 8
GPU_SPEEDUP = 2.0  # bf16 batch-16 images/s, ENTED over GFPGANv1Clean
GPU_PEAK_SHARE = 0.25  # of the card's measured bf16 matmul rate


def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of a JSONL file, in order.

    Raises:
        ValueError: naming the file and line when a line is not a JSON object.
    """
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{number} is not JSON ({err}); expected one record per line"
                ) from err
            if not isinstance(record, dict) or "record" not in record:
                raise ValueError(f"{path}:{number} is not a speed record (no 'record' key)")
            records.append(record)
    return records


def latest_run(records: list[dict]) -> list[dict]:
    """The records of the file's last run (a file normally holds one)."""
    if not records:
        return []
    run = records[-1].get("run")
    return [r for r in records if r.get("run") == run]


def _of(records: Iterable[dict], kind: str, **fields) -> list[dict]:
    return [r for r in records if r["record"] == kind and all(r.get(k) == v for k, v in fields.items())]


def _number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _short_commit(commit: str | None) -> str:
    if commit is None:
        return "unknown"
    return commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


def _markdown(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def tables(records: list[dict]) -> str:
    """Markdown tables of one run: networks and CPU latency, CUDA throughput, training steps."""
    parts = []
    env = records[0]["env"] if records else {}
    parts.append(
        f"torch {env.get('torch')}, {env.get('device_name')}, {env.get('threads')} CPU threads, "
        f"commit {_short_commit(env.get('commit'))}, {records[0].get('time') if records else '-'}"
        + (" (dry run: tiny networks)" if env.get("dry_run") else "")
    )
    latency = {r["network"]: r for r in _of(records, "cpu_latency")}
    rows = [
        [
            r["network"],
            _number(r["params_m"]),
            _number(r["gflops_per_img"]),
            _number(latency[r["network"]]["seconds"], 3) if r["network"] in latency else "-",
        ]
        for r in _of(records, "network")
    ]
    if rows:
        repeats = next(iter(latency.values()))["repeats"] if latency else "-"
        parts.append(
            _markdown(
                ["network", "params (M)", "GFLOPs/img", f"CPU b1 latency (s, median of {repeats})"], rows
            )
        )
    for r in _of(records, "matmul_peak"):
        parts.append(f"{r['dtype']} matmul ({r['n']}x{r['n']}) on {r['device']}: {r['tflops']:.1f} TFLOP/s")
    rows = [
        [
            r["network"],
            r["device"],
            r["dtype"],
            str(r["batch"]),
            r["compile_backend"] if r["compile"] else "off",
            _number(r["images_per_s"], 1),
            _number(None if r["peak_share"] is None else 100 * r["peak_share"], 1),
            _number(r["peak_memory_gib"]),
            _number(r["compile_s"], 1),
        ]
        for r in _of(records, "throughput")
    ]
    if rows:
        header = ["network", "device", "dtype", "batch", "compile", "img/s", "% of matmul peak", "peak GiB"]
        parts.append(_markdown([*header, "compile (s)"], rows, numeric_from=3))
    rows = [
        [
            r["network"],
            r["device"],
            str(r["batch"]),
            _number(r["images_per_s"]),
            _number(r["seconds_per_step"], 3),
            _number(r["peak_memory_gib"]),
            r["loss_networks"],
        ]
        for r in _of(records, "train_step")
    ]
    if rows:
        header = ["training step", "device", "batch", "img/s", "s/step (median)", "peak GiB", "loss networks"]
        parts.append(_markdown(header, rows, numeric_from=2))
    for r in _of(records, "skipped"):
        parts.append(f"skipped: {r['network']} {r['measurement']}: {r['reason']}")
    return "\n\n".join(parts)


def check_targets(records: list[dict]) -> list[tuple[str, str, str]]:
    """The targets of docs/performance.md on one run's records.

    Returns:
        [(status, target, detail)] with status 'PASS', 'FAIL' or 'not measured'.
    """
    results = []
    ented, gfpgan = f"ENTED-{TARGET_SIZE}", f"GFPGANv1Clean-{TARGET_SIZE}"

    target = f"CPU batch-1 latency: {ented} no slower than {gfpgan}"
    latency = {r["network"]: r["seconds"] for r in _of(records, "cpu_latency")}
    if ented in latency and gfpgan in latency:
        ratio = latency[gfpgan] / latency[ented]
        detail = f"{latency[ented]:.3f} s vs {latency[gfpgan]:.3f} s ({ratio:.2f}x)"
        results.append(("PASS" if latency[ented] <= latency[gfpgan] else "FAIL", target, detail))
    else:
        results.append(("not measured", target, f"no CPU latency of both at {TARGET_SIZE}"))

    cuda = _of(records, "throughput", device="cuda", dtype="bf16", batch=16)
    for compiled in (False, True):
        setting = "compile on" if compiled else "compile off"
        rates = {r["network"]: r for r in cuda if r["compile"] == compiled}
        target = f"CUDA bf16 batch 16, {setting}: {ented} >= {GPU_SPEEDUP:g}x {gfpgan} images/s"
        if ented in rates and gfpgan in rates:
            ratio = rates[ented]["images_per_s"] / rates[gfpgan]["images_per_s"]
            detail = f"{rates[ented]['images_per_s']:.1f} vs {rates[gfpgan]['images_per_s']:.1f} img/s ({ratio:.2f}x)"
            results.append(("PASS" if ratio >= GPU_SPEEDUP else "FAIL", target, detail))
        else:
            results.append(("not measured", target, "no CUDA bf16 batch-16 records of both"))
        target = f"CUDA bf16 batch 16, {setting}: {ented} >= {GPU_PEAK_SHARE:.0%} of the bf16 matmul rate"
        share = rates[ented]["peak_share"] if ented in rates else None
        if share is not None:
            results.append(("PASS" if share >= GPU_PEAK_SHARE else "FAIL", target, f"{share:.1%}"))
        else:
            results.append(("not measured", target, "no CUDA bf16 batch-16 record with a matmul peak"))

    steps = {r["network"]: r for r in _of(records, "train_step", size=TARGET_SIZE, batch=TRAIN_BATCH)}
    target = f"training step at {TARGET_SIZE} batch {TRAIN_BATCH}: ENTED faster than GFPGANv1Clean"
    if "ENTED" in steps and "GFPGANv1Clean" in steps:
        a, b = steps["ENTED"]["images_per_s"], steps["GFPGANv1Clean"]["images_per_s"]
        detail = f"{a:.2f} vs {b:.2f} img/s on {steps['ENTED']['device']} ({a / b:.2f}x)"
        results.append(("PASS" if a > b else "FAIL", target, detail))
    else:
        results.append(
            ("not measured", target, f"no training-step records at {TARGET_SIZE} batch {TRAIN_BATCH}")
        )
    return results


def format_targets(results: list[tuple[str, str, str]]) -> str:
    return "\n".join(f"{status:<12} {target}: {detail}" for status, target, detail in results)
