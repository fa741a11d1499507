"""`import ented` patches BasicSR for torchvision, registers prefixed names, coexists with GFPGAN."""

import subprocess
import sys

import pytest
from basicsr.utils.registry import (
    ARCH_REGISTRY,
    DATASET_REGISTRY,
    LOSS_REGISTRY,
    METRIC_REGISTRY,
    MODEL_REGISTRY,
)

import ented

REGISTRIES = {
    "arch": ARCH_REGISTRY,
    "dataset": DATASET_REGISTRY,
    "loss": LOSS_REGISTRY,
    "metric": METRIC_REGISTRY,
    "model": MODEL_REGISTRY,
}


def ented_names(registry) -> list[str]:
    return [name for name, obj in registry._obj_map.items() if obj.__module__.startswith("ented.")]


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_registered_name_is_prefixed(kind):
    names = ented_names(REGISTRIES[kind])
    assert names, f"ented registers no {kind}"
    for name in names:
        assert name.upper().startswith("ENTED") or name.startswith("calculate_ented"), name


def test_core_names_are_registered():
    assert "ENTED" in ARCH_REGISTRY
    assert "ENTEDDiscriminator" in ARCH_REGISTRY
    assert "ENTEDModel" in MODEL_REGISTRY


def test_version_is_a_string():
    assert ented.__version__.count(".") == 2


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_basicsr_imports_alone_through_the_startup_hook():
    """The installed .pth serves torchvision's removed module to any process, before ented loads."""
    result = run_python("import basicsr.data.degradations, sys; print('ented' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("order", ["gfpgan, ented", "ented, gfpgan", "realesrgan, ented, gfpgan"])
def test_imports_beside_gfpgan_and_realesrgan_in_any_order(order):
    result = run_python(
        f"import {order}; from basicsr.utils.registry import ARCH_REGISTRY; print(len(ARCH_REGISTRY._obj_map))"
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0


def test_import_ented_leaves_optional_heavy_packages_alone():
    heavy = ("lpips", "facexlib", "gfpgan", "onnx", "onnxruntime", "dlib", "matplotlib")
    result = run_python(f"import ented, sys; print([m for m in {heavy!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # each is imported by the function that needs it
