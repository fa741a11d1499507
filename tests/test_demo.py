"""The demo runs end to end on a tiny budget, and its verdict follows the table."""

from ented import demo

BETTER = {"psnr": "higher", "lpips": "lower"}


def test_true_reference_must_win_every_metric():
    rows = {
        "matched": {"psnr": 20.0, "lpips": 0.10},
        "mismatched": {"psnr": 19.0, "lpips": 0.12},
        "none": {"psnr": 18.0, "lpips": 0.11},
    }
    assert demo.true_reference_wins(rows, BETTER) == []
    rows["none"]["lpips"] = 0.09
    assert demo.true_reference_wins(rows, BETTER) == ["lpips"]
    rows["mismatched"]["psnr"] = 20.0  # a tie is not a win
    assert demo.true_reference_wins(rows, BETTER) == ["psnr", "lpips"]


def test_demo_runs_data_training_test_and_three_reference_modes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = demo.parse_args(
        ["--workdir", str(tmp_path / "work"), "--iters", "2", "--identities", "6", "--test-identities", "2",
         "--images-per-identity", "3"]
    )  # fmt: skip
    status = demo.run(args)
    out = capsys.readouterr().out
    for row in ("true reference", "another identity", "no reference"):
        assert row in out
    assert status in (0, 1) and ("OK:" in out) == (status == 0)
    work = tmp_path / "work"
    assert (work / "experiments" / "ented_demo_tiny" / "models" / "net_g_latest.pth").exists()
    grids = list(
        (work / "results" / "ented_demo_tiny_test" / "visualization" / "synthetic_test").glob("*grid*.png")
    )
    assert len(grids) == 4  # 2 test identities x 2 images
