"""What the docs and option files say matches what exists (issue 12, items 19 and 21)."""

import re
from pathlib import Path

import pytest
import yaml

import ented.restoration.face_detection as face_detection

ROOT = Path(__file__).resolve().parents[1]
OPTION_FILES = sorted((ROOT / "options").glob("*.yml"))
WEIGHTED_METRICS = ("calculate_ented_lpips", "calculate_ented_identity_similarity")


def test_restoring_install_line_builds_without_isolation():
    text = (ROOT / "docs" / "restoring.md").read_text(encoding="utf-8")
    installs = [line for line in text.splitlines() if re.match(r"pip install .*-e ", line)]
    assert installs and all("--no-build-isolation" in line for line in installs), installs


def test_face_detector_docs_do_not_promise_downloads():
    assert "downloaded at first use" not in face_detection.__doc__
    sources = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "ented").rglob("*.py"))
    assert "allow downloading" not in sources  # no flag of that name exists


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_files_cite_only_files_in_the_repository(path):
    for cited in re.findall(r"\b([\w./-]+\.md)\b", path.read_text(encoding="utf-8")):
        assert (ROOT / cited).is_file() or (ROOT / "docs" / cited).is_file(), f"{path.name} cites {cited}"


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_file_metrics_name_weights_or_opt_into_random_ones(path):
    metrics = (yaml.safe_load(path.read_text(encoding="utf-8")).get("val") or {}).get("metrics") or {}
    weighted = {name: opt for name, opt in metrics.items() if opt["type"] in WEIGHTED_METRICS}
    for name, opt in weighted.items():
        if path.name.startswith("demo_"):
            assert opt.get("allow_random_weights") is True, f"{path.name}: {name}"
        else:  # the 512 recipes are for numbers people report: real weights, named
            assert opt.get("weights_path") and not opt.get("allow_random_weights"), f"{path.name}: {name}"
