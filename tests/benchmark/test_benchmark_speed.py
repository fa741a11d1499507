"""``ented-benchmark speed`` and ``benchmarks/gpu_suite.sh``, on CPU with tiny networks.

The suite's own command lines run with ``ENTED_BENCHMARK_DRY_RUN=1``: the GPU code paths
(autocast in every dtype, ``torch.compile`` with the eager backend, the matmul peak, the
training steps, the records, the tables and the targets) run on CPU, so that the first GPU
run does not fail on a typo. Inductor itself is not compiled here (about a minute per tiny
network on a 2-core CPU); the GPU suite uses it.
"""

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ented.benchmark import speed, speed_report

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "benchmarks" / "gpu_suite.sh"


def parse(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    speed.add_arguments(parser)
    return parser.parse_args(argv)


def test_gpu_suite_is_valid_bash():
    subprocess.run(["bash", "-n", str(SUITE)], check=True)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """The GPU suite's commands, dry run (tiny networks on CPU); returns (outdir, completed process)."""
    outdir = tmp_path_factory.mktemp("gpu_suite")
    env = {**os.environ, "ENTED_BENCHMARK_DRY_RUN": "1", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SUITE), str(outdir)], env=env, capture_output=True, text=True, cwd=REPO
    )
    return outdir, done


def test_gpu_suite_dry_run_measures_everything(suite_run):
    outdir, done = suite_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = speed_report.read_records(outdir / "speed.jsonl")
    assert len({r["run"] for r in records}) == 1
    assert all(r["env"]["dry_run"] and r["env"]["device"] == "cpu" for r in records)
    kinds = {r["record"] for r in records}
    assert {"network", "cpu_latency", "matmul_peak", "throughput", "train_step", "skipped"} <= kinds
    throughput = speed_report._of(records, "throughput")
    assert {r["dtype"] for r in throughput if not r["compile"]} == {"fp32", "fp16", "bf16"}
    compiled = [r for r in throughput if r["compile"]]
    assert compiled and all(r["compile_backend"] == "eager" and r["compile_s"] > 0 for r in compiled)
    assert all(r["images_per_s"] > 0 and r["peak_share"] > 0 for r in throughput)
    steps = {r["network"]: r for r in speed_report._of(records, "train_step")}
    assert set(steps) == {"ENTED", "GFPGANv1Clean"}
    assert {"l_g_percep", "l_g_identity", "l_g_attention", "l_d_real"} <= set(steps["ENTED"]["loss_terms"])
    assert "| ENTED-64 |" in (outdir / "speed_tables.md").read_text()
    assert "not measured" in (outdir / "targets.txt").read_text()
    assert "gpu_suite:" in done.stdout


def _record(kind: str, **fields) -> dict:
    return {"record": kind, "run": "r1", "time": "t", "env": {"dry_run": False}, **fields}


def _gpu_records(ented_ips: float, share: float) -> list:
    common = {"size": 512, "device": "cuda", "dtype": "bf16", "batch": 16, "compile": False}
    return [
        _record("cpu_latency", network="ENTED-512", seconds=2.0, repeats=3),
        _record("cpu_latency", network="GFPGANv1Clean-512", seconds=3.0, repeats=3),
        _record("throughput", network="ENTED-512", images_per_s=ented_ips, peak_share=share, **common),
        _record("throughput", network="GFPGANv1Clean-512", images_per_s=100.0, peak_share=0.1, **common),
        _record("train_step", network="ENTED", size=512, batch=8, device="cuda", images_per_s=5.0),
        _record("train_step", network="GFPGANv1Clean", size=512, batch=8, device="cuda", images_per_s=4.0),
    ]


def test_targets_pass_fail_and_not_measured():
    results = speed_report.check_targets(_gpu_records(ented_ips=250.0, share=0.3))
    statuses = {target: status for status, target, _ in results}
    assert [s for t, s in statuses.items() if "compile off" in t] == ["PASS", "PASS"]
    assert [s for t, s in statuses.items() if "compile on" in t] == ["not measured"] * 2
    assert statuses[next(t for t in statuses if t.startswith("CPU"))] == "PASS"
    assert statuses[next(t for t in statuses if t.startswith("training"))] == "PASS"
    results = speed_report.check_targets(_gpu_records(ented_ips=150.0, share=0.2))
    assert [s for s, t, _ in results if "compile off" in t] == ["FAIL", "FAIL"]


def test_targets_exit_status_only_fails_with_strict(tmp_path, capsys):
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _gpu_records(ented_ips=150.0, share=0.2)))
    assert speed.run(parse(["--targets", str(path)])) == 0
    assert speed.run(parse(["--targets", str(path), "--strict"])) == 1
    assert "FAIL" in capsys.readouterr().out


def test_table_of_a_file_and_bad_lines(tmp_path, capsys):
    recorder = speed.Recorder(str(tmp_path / "r.jsonl"), {"torch": "x", "threads": 2, "commit": "abc"})
    recorder.add("network", network="ENTED-512", size=512, params_m=46.7, gflops_per_img=284.0)
    recorder.add("cpu_latency", network="ENTED-512", size=512, batch=1, seconds=2.03, repeats=3, threads=2)
    assert speed.run(parse(["--table", str(tmp_path / "r.jsonl")])) == 0
    assert "| ENTED-512 | 46.70 | 284.00 | 2.030 |" in capsys.readouterr().out
    (tmp_path / "bad.jsonl").write_text('{"record": "network"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        speed_report.read_records(tmp_path / "bad.jsonl")


FAKE_CODEFORMER = '''
import torch
from torch import nn


class CodeFormer(nn.Module):
    """A test double with CodeFormer's constructor keywords and call signature."""

    def __init__(self, dim_embd, codebook_size, n_head, n_layers, connect_list):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, w=0, adain=False):
        return self.conv(x), None, None
'''


def test_codeformer_runs_in_a_child_process(tmp_path):
    """A clone's ``basicsr`` (a test double here) is imported in a child, never in this process."""
    archs = tmp_path / "clone" / "basicsr" / "archs"
    archs.mkdir(parents=True)
    (tmp_path / "clone" / "basicsr" / "__init__.py").write_text("")
    (archs / "__init__.py").write_text("")
    (archs / "codeformer_arch.py").write_text(textwrap.dedent(FAKE_CODEFORMER))
    args = parse(
        ["--dry-run", "--device", "cuda", "--codeformer-repo", str(tmp_path / "clone"), "--dtypes", "bf16"]
    )
    settings = speed._settings(args)
    recorder = speed.Recorder(None, {"dry_run": True})
    speed._codeformer(settings, args, matmul=1.0, recorder=recorder)
    kinds = [r["record"] for r in recorder.records]
    assert kinds == ["network", "cpu_latency", "throughput", "throughput"]
    assert all(r["network"] == "CodeFormer-64" for r in recorder.records)
    assert "clone" in recorder.records[0]["note"]
    assert {r["compile"] for r in recorder.records[2:]} == {False, True}


def test_autocast_and_compile_path_on_cpu():
    """timing.throughput, the function the CUDA runs use, with autocast and torch.compile on CPU."""
    from ented.benchmark.networks import build_ented
    from ented.benchmark.timing import throughput

    net = build_ented(64, tiny=True).eval()
    result = throughput(net, 64, 1, "bf16", torch.device("cpu"), "eager", repeats=1, warmup=1)
    assert result["images_per_s"] > 0 and result["compile_s"] > 0 and result["peak_memory_gib"] is None


def test_budget_skips_compiled_runs_and_records_why():
    args = parse(["--dry-run", "--device", "cuda", "--dtypes", "bf16", "--compile", "on"])
    settings = speed._settings(args)
    recorder = speed.Recorder(None, {})
    nets = {"ENTED-64": torch.nn.Identity()}  # never called: the budget is spent
    speed._throughput_runs(nets, {"ENTED-64": 1.0}, 1.0, settings, ["eager"], recorder, speed.Budget(0.0))
    (record,) = recorder.records
    assert record["record"] == "skipped" and record["reason"].startswith("time budget")
