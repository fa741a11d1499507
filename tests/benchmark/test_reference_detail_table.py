"""benchmarks/reference_detail.py's table: only runs of the asked iterations and overrides count."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reference_detail.py"


def load_script():
    spec = importlib.util.spec_from_file_location("reference_detail_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(results: Path, seed: int, iters: int, recall: float, overrides=None) -> None:
    scores = {
        "no reference": {
            "face_psnr": 20.0,
            "face_detail": 0.5,
            "erased_mark_recall": recall,
            "pasted_marks": 0.0,
        }
    }
    record = {"overrides": overrides or {}, "iters": iters, "train_seconds": 1.0, "scores": scores}
    (results / f"blind_seed{seed}.json").write_text(json.dumps(record))


def test_table_leaves_out_runs_of_other_iterations_or_overrides(tmp_path, capsys, caplog):
    results = tmp_path / "results" / "test"
    results.mkdir(parents=True)
    (tmp_path / "data.json").write_text("{}")
    write_run(results, 0, 3000, 0.25)
    write_run(results, 1, 3000, 0.75)
    write_run(results, 2, 1500, 0.0)  # another length of training
    write_run(results, 3, 3000, 0.0, {"network_g.width": 0.5})  # other settings
    argv = [
        "--workdir",
        str(tmp_path),
        "--split",
        "test",
        "--variants",
        "blind",
        "--seeds",
        "0",
        "1",
        "2",
        "3",
    ]
    load_script().main(argv + ["--iters", "3000", "--table-only"])
    table = capsys.readouterr().out
    assert "seeds per variant {'blind': 2}" in table
    assert "| blind: no reference | 20.000 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.354 | 0.000 ± 0.000 |" in table
    assert sum("left out" in r.getMessage() for r in caplog.records) == 2
