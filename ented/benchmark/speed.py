"""Speed and size of ENTED next to GFPGANv1Clean (and CodeFormer): JSONL records, tables, targets.

For each network, random weights: parameters, GFLOPs per image (``FlopCounterMode``, batch 1,
2 FLOPs per multiply-add), CPU batch-1 latency (median of ``--cpu-repeats``, the networks timed
in turn within each repeat); on ``--device`` for each ``--dtypes`` (autocast) x
``--batch-sizes`` x ``--compile`` setting: images/s, peak memory and the share of the bf16
matmul rate measured in the same run (FLOPs/img x images/s / matmul FLOP/s);
``--train-step``: images/s of ENTEDModel's G+D step of the 512 recipe next to GFPGAN's
(:mod:`ented.benchmark.train_step`). CodeFormer runs in a child process when
``--codeformer-repo`` names a clone of its repository.

Every record is a JSON line in ``--out``, rewritten atomically after each measurement.
``--table FILE`` prints the Markdown tables of a file; ``--targets FILE`` checks the targets
of docs/performance.md on it (a measuring run checks its own records at the end).
``--dry-run`` runs every code path on CPU with tiny networks in seconds. Examples::

    ented-benchmark speed --size 512 --threads 2 --out cpu.jsonl
    ented-benchmark speed --device cuda --train-step --out gpu.jsonl --budget-s 240
    ented-benchmark speed --table gpu.jsonl
"""

import json
import logging
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ented  # noqa: E402, F401  (the torchvision shim before gfpgan/basicsr imports)
from ented.atomic_io import atomic_write_text  # noqa: E402
from ented.benchmark import speed_report, timing  # noqa: E402
from ented.benchmark.networks import build_networks, count_parameters  # noqa: E402
from ented.benchmark.speed_options import add_arguments  # noqa: E402
from ented.version import __version__  # noqa: E402

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CODEFORMER_SCRIPT = Path(__file__).with_name("codeformer_speed.py")
# first guess of one torch.compile's duration, before any was measured (budgeting)
COMPILE_GUESS_S = 90.0
# throughput runs in this order, so that a budget cut keeps the runs the targets compare
DTYPE_ORDER = ["bf16", "fp16", "fp32"]
# --dry-run: tiny networks at this size, one batch size, compiled runs in the first dtype only
DRY_RUN = {"size": 64, "repeats": 1, "cpu_repeats": 1, "matmul_n": 128, "train_batch": 2, "train_iters": 1}


class Recorder:
    """Collects a run's records and rewrites ``out`` (JSONL) atomically after each one."""

    def __init__(self, out: str | None, env: dict):
        self.out = out
        self.env = env
        self.run = uuid.uuid4().hex[:12]
        self.records = []

    def add(self, kind: str, **fields) -> dict:
        record = {
            "record": kind,
            **fields,
            "run": self.run,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "env": self.env,
        }
        self.records.append(record)
        if self.out:
            atomic_write_text(self.out, "".join(json.dumps(r) + "\n" for r in self.records))
        return record


class Budget:
    """Wall-clock budget of a run: does a step of ``estimate_s`` still fit?"""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, estimate_s: float) -> bool:
        return self.seconds is None or self.elapsed + estimate_s <= self.seconds


def environment(device: torch.device, dry_run: bool) -> dict:
    """Versions, device, threads and the git commit, stored with every record."""
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = _cpu_name()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "ented": __version__,
        "commit": _git_commit(),
        "device": device.type,
        "device_name": device_name,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "dry_run": dry_run,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """HEAD of the clone ented runs from, '+dirty' when tracked files differ; None outside a clone."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _settings(args) -> dict:
    """The run's effective settings: defaults by device, and the dry run's tiny sizes."""
    device = "cpu" if args.dry_run else args.device
    if args.device == "cuda" and not args.dry_run and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda: torch sees no CUDA device (use --dry-run to check the command on CPU)"
        )
    dtypes = (
        args.dtypes
        if args.dtypes is not None
        else (["fp32", "fp16", "bf16"] if args.device == "cuda" else [])
    )
    compile_setting = args.compile or ("both" if args.device == "cuda" else "off")
    backend = args.compile_backend
    if args.dry_run and backend == "inductor":
        backend = "eager"  # inductor on a busy 2-core CPU takes about a minute per tiny network
    compile_backends = {"off": [None], "on": [backend], "both": [None, backend]}[compile_setting]
    settings = {
        "device": torch.device(device),
        "size": args.size,
        "dtypes": dtypes,
        "batch_sizes": args.batch_sizes,
        "compile_backends": compile_backends,
        "repeats": args.repeats,
        "cpu_repeats": args.cpu_repeats,
        "matmul_n": args.matmul_n,
        "train_batch": args.train_batch,
        "train_iters": args.train_iters,
        "compiled_dtypes": dtypes,
    }
    if args.dry_run:
        settings.update(DRY_RUN, cpu_repeats=min(args.cpu_repeats, DRY_RUN["cpu_repeats"]))
        settings["batch_sizes"] = [DRY_RUN["train_batch"]]
        settings["compiled_dtypes"] = sorted(dtypes, key=DTYPE_ORDER.index)[:1]
    return settings


def run(args) -> int:
    """Measures (or, with ``--table`` / ``--targets``, reads a file); returns the exit status."""
    if args.table or args.targets:
        status = 0
        if args.table:
            sys.stdout.write(
                speed_report.tables(speed_report.latest_run(speed_report.read_records(args.table))) + "\n"
            )
        if args.targets:
            status = _report_targets(
                speed_report.latest_run(speed_report.read_records(args.targets)), args.strict
            )
        return status
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = _settings(args)
    torch.manual_seed(0)
    recorder = Recorder(args.out, environment(settings["device"], args.dry_run))
    budget = Budget(None if args.dry_run else args.budget_s)  # a dry run's timings mean nothing
    measure(settings, args, recorder, budget)
    sys.stdout.write(speed_report.tables(recorder.records) + "\n\n")
    return _report_targets(recorder.records, args.strict)


def _report_targets(records: list, strict: bool) -> int:
    results = speed_report.check_targets(records)
    sys.stdout.write(speed_report.format_targets(results) + "\n")
    return 1 if strict and any(status == "FAIL" for status, _, _ in results) else 0


def measure(settings: dict, args, recorder: Recorder, budget: Budget) -> None:
    """All measurements of a run, cheapest and most important first; compiled runs last."""
    size, device = settings["size"], settings["device"]
    nets = build_networks(size, tiny=args.dry_run)
    for net in nets.values():
        net.eval()
    gflops = {}
    for name, net in nets.items():
        gflops[name] = None if args.no_flops else timing.count_gflops(net, size)
        recorder.add(
            "network",
            network=name,
            size=size,
            params_m=count_parameters(net) / 1e6,
            gflops_per_img=gflops[name],
        )
    if settings["cpu_repeats"] > 0:
        logger.info(
            "CPU batch-1 latency, %d threads, median of %d", torch.get_num_threads(), settings["cpu_repeats"]
        )
        latency = timing.cpu_latency(nets, size, settings["cpu_repeats"], args.warmup)
        for name, seconds in latency.items():
            recorder.add(
                "cpu_latency",
                network=name,
                size=size,
                batch=1,
                seconds=seconds,
                repeats=settings["cpu_repeats"],
                threads=torch.get_num_threads(),
            )
    matmul = None
    if settings["dtypes"]:
        matmul = timing.matmul_tflops(device, "bf16", settings["matmul_n"])
        recorder.add("matmul_peak", device=device.type, dtype="bf16", n=settings["matmul_n"], tflops=matmul)
        for net in nets.values():
            net.to(device)
        eager = [b for b in settings["compile_backends"] if b is None]
        _throughput_runs(nets, gflops, matmul, settings, eager, recorder, budget)
    if args.train_step:
        _train_steps(settings, args, recorder, budget)
    if settings["dtypes"]:
        compiled = [b for b in settings["compile_backends"] if b is not None]
        _throughput_runs(nets, gflops, matmul, settings, compiled, recorder, budget)
    for net in nets.values():
        net.cpu()
    if args.codeformer_repo:
        _codeformer(settings, args, matmul, recorder)
    else:
        recorder.add(
            "skipped",
            network=f"CodeFormer-{size}",
            measurement="all",
            reason="no --codeformer-repo: CodeFormer bundles its own basicsr and is timed only from a clone, "
            "in a child process",
        )
    logger.info("measured in %.0f s", budget.elapsed)


def _throughput_runs(nets, gflops, matmul, settings, backends, recorder, budget) -> None:
    """Throughput records for each backend x dtype x batch x network; bf16 and big batches first,
    so that a budget cut keeps the runs the targets compare."""
    device, size = settings["device"], settings["size"]
    compile_s = {}
    for backend in backends:
        dtypes = settings["compiled_dtypes"] if backend else settings["dtypes"]
        for dtype in sorted(dtypes, key=DTYPE_ORDER.index):
            for batch in sorted(settings["batch_sizes"], reverse=True):
                for name, net in nets.items():
                    estimate = compile_s.get(name, COMPILE_GUESS_S) if backend else 0.0
                    if not budget.fits(estimate):
                        recorder.add(
                            "skipped",
                            network=name,
                            measurement=f"throughput {dtype} batch {batch} compile {backend or 'off'}",
                            reason=f"time budget: {budget.elapsed:.0f} s of {budget.seconds:.0f} s spent, "
                            f"this run was estimated at {estimate:.0f} s",
                        )
                        continue
                    logger.info("%s %s batch %d compile %s", name, dtype, batch, backend or "off")
                    result = timing.throughput(net, size, batch, dtype, device, backend, settings["repeats"])
                    if backend:
                        compile_s[name] = max(compile_s.get(name, 0.0), result["compile_s"])
                    share = (
                        gflops[name] * 1e9 * result["images_per_s"] / (matmul * 1e12)
                        if gflops[name] is not None and matmul
                        else None
                    )
                    recorder.add(
                        "throughput",
                        network=name,
                        size=size,
                        device=device.type,
                        dtype=dtype,
                        batch=batch,
                        compile=backend is not None,
                        compile_backend=backend,
                        repeats=settings["repeats"],
                        peak_share=share,
                        **result,
                    )
                    if device.type == "cuda":
                        torch.cuda.empty_cache()


def _train_steps(settings, args, recorder, budget) -> None:
    """Training-step records of ENTED and GFPGAN at the run's size and ``--train-batch``."""
    from ented.benchmark import train_step

    size, device, batch = settings["size"], settings["device"], settings["train_batch"]
    if not budget.fits(COMPILE_GUESS_S / 3):
        for network in ("ENTED", "GFPGANv1Clean"):
            recorder.add(
                "skipped",
                network=network,
                measurement="train_step",
                reason=f"time budget: {budget.elapsed:.0f} s spent",
            )
        return
    with train_step.loss_network_folder(args.loss_networks):
        steps = train_step.build_steps(size, batch, device, args.loss_networks, tiny=args.dry_run)
        for network, step in steps.items():
            logger.info("training step %s, batch %d", network, batch)
            result = timing.step_rate(step, batch, settings["train_iters"], device)
            recorder.add(
                "train_step",
                network=network,
                size=size,
                batch=batch,
                device=device.type,
                iters=settings["train_iters"],
                loss_terms=step.loss_terms,
                loss_networks=args.loss_networks,
                precision="fp32 (the recipe's)",
                **result,
            )
            del step
        del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _codeformer(settings, args, matmul, recorder) -> None:
    """CodeFormer's records, measured by :mod:`ented.benchmark.codeformer_speed` in a child process.

    Raises:
        RuntimeError: the child failed; its stderr's end is in the message.
    """
    size, name = settings["size"], f"CodeFormer-{settings['size']}"
    setup = {
        "repo": os.path.abspath(args.codeformer_repo),
        "size": size,
        "device": settings["device"].type,
        "cpu_repeats": settings["cpu_repeats"],
        "warmup": args.warmup,
        "flops": not args.no_flops,
        "dtypes": settings["dtypes"],
        "batch_sizes": settings["batch_sizes"],
        "compile_backends": settings["compile_backends"],
        "repeats": settings["repeats"],
    }
    logger.info("CodeFormer in a child process (%s)", args.codeformer_repo)
    child = subprocess.run(
        [sys.executable, str(CODEFORMER_SCRIPT), json.dumps(setup)], capture_output=True, text=True
    )
    if child.returncode != 0:
        raise RuntimeError(
            f"CodeFormer's timing process failed (status {child.returncode}):\n{child.stderr[-3000:]}"
        )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    note = f"own process ({result['source']}); CPU latency not interleaved with the other networks"
    recorder.add(
        "network",
        network=name,
        size=size,
        params_m=result["params_m"],
        gflops_per_img=result["gflops_per_img"],
        note=note,
    )
    if result["cpu_latency_s"] is not None:
        recorder.add(
            "cpu_latency",
            network=name,
            size=size,
            batch=1,
            seconds=result["cpu_latency_s"],
            repeats=settings["cpu_repeats"],
            threads=torch.get_num_threads(),
            note=note,
        )
    for row in result["throughput"]:
        backend = row.pop("compile_backend")
        share = (
            result["gflops_per_img"] * 1e9 * row["images_per_s"] / (matmul * 1e12)
            if result["gflops_per_img"] is not None and matmul
            else None
        )
        recorder.add(
            "throughput",
            network=name,
            size=size,
            device=settings["device"].type,
            compile=backend is not None,
            compile_backend=backend,
            repeats=settings["repeats"],
            peak_share=share,
            note=note,
            **row,
        )


def main(argv: list | None = None) -> int:
    """``python -m ented.benchmark.speed``: the same as ``ented-benchmark speed``."""
    import argparse

    parser = argparse.ArgumentParser(prog="ented-benchmark speed", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
