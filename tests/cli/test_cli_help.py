"""Every console script answers ``--help`` and usage errors before torch loads; ENTED still registers.

Each script runs in a fresh interpreter exactly as its console-script wrapper does (import the entry
point named in setup.py, call it), and reports which heavy modules it imported: a behaviour check,
not a timing one.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "basicsr", "cv2")
# "ented-train=_ented_launcher:train" in setup.py's console_scripts
SCRIPTS = dict(
    (name, (module, function))
    for name, module, function in re.findall(
        r'"(ented-[\w-]+)=([\w.]+):(\w+)"', (REPO / "setup.py").read_text(encoding="utf-8")
    )
)

PROBE = """
import json, sys
from {module} import {function} as command
sys.argv = [{script!r}, *{args!r}]
try:
    code = command()
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}), file=sys.stderr)
"""


def run_script(script: str, *args: str, env: dict | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Runs console script ``script`` with ``args``; returns its report (exit code, heavy modules
    imported) and the finished process."""
    module, function = SCRIPTS[script]
    code = PROBE.format(module=module, function=function, script=script, args=list(args), heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1]), result


def test_every_console_script_goes_through_the_launcher():
    assert set(SCRIPTS) == {
        "ented-train",
        "ented-test",
        "ented-demo",
        "ented-prepare",
        "ented-restore",
        "ented-benchmark",
    }
    assert {module for module, _ in SCRIPTS.values()} == {"_ented_launcher"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_imports_neither_torch_nor_basicsr(script):
    report, result = run_script(script, "--help")
    assert report["code"] == 0
    assert "usage:" in result.stdout
    assert report["heavy"] == []


@pytest.mark.parametrize(
    "script, args",
    [
        ("ented-benchmark", ["quality", "--help"]),
        ("ented-benchmark", ["speed", "--help"]),
        ("ented-benchmark", ["train", "--help"]),
        ("ented-prepare", ["synthetic", "--help"]),
        ("ented-restore", ["convert", "--help"]),
        ("ented-restore", ["export-onnx", "--help"]),
    ],
)
def test_subcommand_help_imports_neither_torch_nor_basicsr(script, args):
    report, result = run_script(script, *args)
    assert report["code"] == 0
    assert "usage:" in result.stdout
    assert report["heavy"] == []


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("ented-train", [], "the following arguments are required: -opt"),
        ("ented-test", ["-opt", "x.yml", "--launcher", "mpi"], "invalid choice: 'mpi'"),
        ("ented-prepare", ["synthetic", "root", "--renderer", "cubist"], "invalid choice: 'cubist'"),
        ("ented-benchmark", ["fastness"], "invalid choice: 'fastness'"),
        ("ented-demo", ["--iters", "many"], "invalid int value: 'many'"),
    ],
)
def test_usage_errors_exit_2_before_torch_loads(script, args, message):
    report, result = run_script(script, *args)
    assert report["code"] == 2
    assert message in result.stderr
    assert report["heavy"] == []


def test_launcher_parses_before_torch_then_registers_before_main(tmp_path):
    (tmp_path / "fake_command.py").write_text(
        "import sys\n"
        "def parse_args(argv):\n"
        "    print('parsed, torch loaded:', 'torch' in sys.modules, argv)\n"
        "def main():\n"
        "    from basicsr.utils.registry import ARCH_REGISTRY\n"
        "    print('main, ENTED registered:', 'ENTED' in ARCH_REGISTRY)\n"
        "    return 3\n",
        encoding="utf-8",
    )
    code = "import sys, _ented_launcher; sys.argv = ['fake', '-x']; sys.exit(_ented_launcher.launch('fake_command'))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == [
        "parsed, torch loaded: False ['-x']",
        "main, ENTED registered: True",
    ]


def test_launcher_defers_registration_for_its_own_import_only():
    code = (
        "import os, sys, _ented_launcher\n"
        "_ented_launcher._import_deferred('ented.cli.prepare')\n"
        "print('torch' in sys.modules, 'ENTED_DEFER_REGISTRATION' in os.environ)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]  # child processes register as usual


def test_deferred_import_registers_nothing_until_register():
    code = (
        "import sys, ented\n"
        "print('torch' in sys.modules, 'basicsr' in sys.modules)\n"
        "ented.register()\n"
        "ented.register()\n"
        "from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY\n"
        "print('ENTED' in ARCH_REGISTRY, 'ENTEDModel' in MODEL_REGISTRY)\n"
    )
    env = {**os.environ, "ENTED_DEFER_REGISTRATION": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True", "True"]


def test_module_entry_point_still_works():
    result = subprocess.run(
        [sys.executable, "-m", "ented.cli.prepare", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: ented-prepare" in result.stdout


def test_prepare_renderers_match_the_library():
    from ented.cli import prepare
    from ented.data.synthetic_faces import RENDERERS

    assert prepare.RENDERERS == RENDERERS
