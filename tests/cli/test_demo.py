"""The demo runs end to end on a tiny budget, and its exit status follows its own table."""

import json

import pytest

from ented import reference_detail
from ented.cli import demo

WINNING = {
    "true reference": {"face_detail": 0.5, "erased_mark_recall": 0.8},
    "another identity": {"face_detail": 0.3, "erased_mark_recall": 0.1},
    "no reference": {"face_detail": 0.3, "erased_mark_recall": 0.1},
}


def test_true_reference_must_beat_both_rivals_on_both_metrics():
    rows = json.loads(json.dumps(WINNING))
    assert demo.true_reference_losses(rows) == []
    rows["no reference"]["face_detail"] = 0.5  # a tie is not a win
    assert demo.true_reference_losses(rows) == ["face_detail vs no reference"]
    rows["another identity"]["erased_mark_recall"] = 0.9
    assert demo.true_reference_losses(rows) == [
        "erased_mark_recall vs another identity",
        "face_detail vs no reference",
    ]


TINY = ["--iters", "2", "--identities", "6", "--test-identities", "2", "--images-per-identity", "3"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "work"
    status = demo.run(demo.parse_args(["--workdir", str(work), *TINY]))
    return work, status


def test_demo_runs_data_training_test_and_five_conditions(tiny_run, capsys):
    work, status = tiny_run
    rows = json.loads((work / "reference_conditions.json").read_text())
    assert list(rows) == list(reference_detail.CONDITIONS)
    # the exit status is the verdict on the table the demo measured, whatever the tiny run scored
    assert status == (0 if demo.true_reference_losses(rows) == [] else 1)
    assert (work / "experiments" / "ented_demo_tiny" / "models" / "net_g_latest.pth").exists()
    assert (work / "comparison.png").stat().st_size > 0
    grids = list(
        (work / "results" / "ented_demo_tiny_test" / "visualization" / "synthetic_test").glob("*grid*.png")
    )
    assert len(grids) == 4  # 2 test identities x 2 images


def test_demo_fails_when_the_reference_does_not_help(tmp_path, capsys, monkeypatch):
    losing = json.loads(json.dumps(WINNING))
    losing["true reference"]["erased_mark_recall"] = 0.0
    rows = {name: {**values, "face_psnr": 20.0, "pasted_marks": 0.0} for name, values in losing.items()}
    monkeypatch.setattr(reference_detail, "evaluate_conditions", lambda *args, **kwargs: rows)
    status = demo.run(demo.parse_args(["--workdir", str(tmp_path / "work"), *TINY]))
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED: the true reference is not better on erased_mark_recall vs another identity" in out
    for row in ("true reference", "another identity", "no reference"):
        assert row in out
