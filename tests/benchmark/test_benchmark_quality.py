"""``ented-benchmark quality`` end to end on a tiny synthetic set, its metrics on known answers, and the
CodeFormer worker protocol with our stand-in network."""

import argparse
import json
import math

import cv2
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_psnr
from tiny_configs import TINY_ENTED_64

from ented.benchmark import quality
from ented.benchmark.codeformer_worker import StandInCodeFormer
from ented.benchmark.methods import CodeFormerRunner, method_key, parse_method
from ented.cli import benchmark as cli

SIZE = 64


def _save_stand_in(path, weight: torch.Tensor, bias: torch.Tensor) -> str:
    net = StandInCodeFormer()
    with torch.no_grad():
        net.mix.weight.copy_(weight[:, :, None, None])
        net.mix.bias.copy_(bias)
    torch.save({"params_ema": net.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A 64 px posed test set (4 triplets, with sidecars) and random-weight methods saved to files."""
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    from ented.archs.ented_arch import ENTED
    from ented.reference_detail import prepare_posed_data

    root = tmp_path_factory.mktemp("bench")
    data = prepare_posed_data(
        root,
        num_identities=4,
        images_per_identity=3,
        size=SIZE,
        num_val=0,
        num_test=2,
        seed=0,
        degradation={"downsample_range": [2, 4]},
    )
    torch.manual_seed(0)
    for name in ("ented_a", "ented_b"):
        ENTED(**TINY_ENTED_64).save_pretrained(str(root / name))
    gfpgan = GFPGANv1Clean(
        out_size=SIZE,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    torch.save({"params_ema": gfpgan.state_dict()}, root / "gfpgan_random.pth")
    _save_stand_in(root / "stand_in.pth", torch.eye(3), torch.zeros(3))  # output = input
    return {"root": root, **data}


def _argv(bench, out, *methods, random=True):
    argv = ["quality", "--list", bench["test_list"], "--gt-root", bench["faces"], "--size", str(SIZE)]
    argv += ["--output", str(out), "--codeformer-network", "stand-in", "--no-progress", "--device", "cpu"]
    argv += ["--batch-size", "4", "--grids", "2"] + (["--allow-random-weights"] if random else [])
    return argv + list(methods)


def _methods(bench):
    root = bench["root"]
    return [
        f"ented:a={root / 'ented_a'}",
        "bicubic",
        f"gfpgan:(random weights)={root / 'gfpgan_random.pth'}",
        f"codeformer:stand-in={root / 'stand_in.pth'}",
        f"gfpgan:v1.4={root / 'missing' / 'GFPGANv1.4.pth'}",
    ]


@pytest.fixture(scope="module")
def first_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = cli.main(_argv(bench, out, *_methods(bench)))
    with open(out / "quality.json", encoding="utf-8") as f:
        return {"code": code, "out": out, "results": json.load(f)}


def _rows(results):
    return {row["name"]: row for row in results["methods"]}


def test_table_rows_and_columns(first_run):
    assert first_run["code"] == 1  # a method was missing
    table = (first_run["out"] / "quality.md").read_text(encoding="utf-8")
    header = table.splitlines()[0]
    for column in ("PSNR ↑", "SSIM ↑", "LPIPS (random weights) ↓", "face PSNR ↑", "erased-mark recall ↑"):
        assert column in header
    names = [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("| ")]
    # the grids' order: bicubic, GFPGAN, CodeFormer, ENTED
    assert names == [
        "bicubic",
        "GFPGAN (random weights)",
        "GFPGAN v1.4 (missing)",
        "CodeFormer stand-in",
        "ENTED a",
    ]
    assert "random network" in table
    assert "**" in table  # best in bold
    csv_lines = (first_run["out"] / "quality.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == 6 and csv_lines[0].startswith("method,kind,status")
    assert (first_run["out"] / "quality_vs_speed.png").stat().st_size > 0
    grid = cv2.imread(str(first_run["out"] / "grids" / "00000.png"))
    assert grid.shape[1] >= 7 * SIZE  # input, 4 methods, GT, reference


def test_bicubic_psnr_is_the_direct_computation(first_run, bench):
    direct = []
    for line in open(bench["test_list"], encoding="utf-8"):
        gt, lq = line.split()[:2]
        gt_image = cv2.imread(f"{bench['faces']}/{gt}")
        lq_image = cv2.imread(f"{bench['test_root']}/{lq}")
        direct.append(calculate_psnr(lq_image, gt_image, crop_border=0))
    rows = _rows(first_run["results"])
    assert rows["bicubic"]["values"]["psnr"] == pytest.approx(direct, abs=1e-9)
    assert rows["bicubic"]["metrics"]["psnr"]["mean"] == pytest.approx(np.mean(direct), abs=1e-9)
    # the stand-in behind CodeFormer's worker protocol, with identity weights, returns its input
    assert rows["CodeFormer stand-in"]["values"]["psnr"] == pytest.approx(direct, abs=1e-9)


def test_missing_weights_are_reported_not_replaced(first_run):
    row = _rows(first_run["results"])["GFPGAN v1.4"]
    assert row["status"] == "missing" and "GFPGANv1.4.pth not found" in row["message"]
    assert row["metrics"] == {} and "key" not in row
    assert "GFPGAN v1.4: not run" in (first_run["out"] / "quality.md").read_text(encoding="utf-8")


def test_rerun_runs_only_the_new_method(first_run, bench):
    root = bench["root"]
    methods = [m for m in _methods(bench) if "missing" not in m] + [f"ented:b={root / 'ented_b'}"]
    assert cli.main(_argv(bench, first_run["out"], *methods)) == 0
    results = json.loads((first_run["out"] / "quality.json").read_text(encoding="utf-8"))
    cached = {row["name"]: row["cached"] for row in results["methods"]}
    assert cached == {
        "bicubic": True,
        "GFPGAN (random weights)": True,
        "CodeFormer stand-in": True,
        "ENTED a": True,
        "ENTED b": False,
    }
    before = _rows(first_run["results"])["ENTED a"]["values"]
    assert _rows(results)["ENTED a"]["values"] == before


def test_fid_column_on_cached_outputs(first_run, bench):
    argv = _argv(bench, first_run["out"], "bicubic")
    argv += ["--metrics", "psnr", "fid", "--fid-reference", bench["faces"], "--fid-dims", "64"]
    assert cli.main(argv) == 0
    results = json.loads((first_run["out"] / "quality.json").read_text(encoding="utf-8"))
    assert [m["label"] for m in results["metrics"]] == ["PSNR", "FID (random weights)"]
    row = results["methods"][0]
    assert row["cached"] and math.isfinite(row["metrics"]["fid"]["mean"])


def test_cache_key_follows_weight_bytes_and_data(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"one")
    spec = parse_method(f"gfpgan:{weights}")
    key = method_key(spec, "data-1")
    assert (
        method_key(parse_method(f"gfpgan:other-label={weights}"), "data-1") == key
    )  # the label is not content
    assert method_key(spec, "data-2") != key
    weights.write_bytes(b"two")
    assert method_key(spec, "data-1") != key


def test_metric_needing_weights_refuses_without_flag(bench, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_home"))  # no LPIPS backbone in the hub cache
    out = tmp_path / "out"
    assert cli.main(_argv(bench, out, "bicubic", random=False)) == 2
    assert "allow_random_weights" in caplog.text and "lpips" in caplog.text
    assert not (out / "quality.md").exists()


# ----------------------------------------------------------------------------- metrics, known answers


def _scorer(names):
    args = argparse.Namespace(lpips_net="alex", lpips_weights=None, arcface_weights=None)
    metrics = [quality.Metric(name, "higher", random_weights=name == "lpips") for name in names]
    return quality.Scorer(args, metrics, torch.device("cpu")), {m.name: m for m in metrics}


def test_identical_images_score_perfectly():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[16:48, 16:48] = True
    scorer, metrics = _scorer(["psnr", "ssim", "lpips", "face_psnr", "face_detail"])
    images = {"gt": gt, "face_mask": mask}
    score = {name: scorer.score(metric, 0, gt.copy(), images) for name, metric in metrics.items()}
    assert math.isinf(score["psnr"]) and math.isinf(score["face_psnr"])
    assert score["ssim"] == pytest.approx(1.0)
    assert score["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert score["face_detail"] == pytest.approx(1.0)
    assert quality.summarize([score["psnr"], score["psnr"]])["mean"] == math.inf


def test_known_offset_gives_known_psnr():
    gt = np.full((SIZE, SIZE, 3), 100, np.uint8)
    output = gt + 10  # MSE 100 everywhere
    expected = 10 * math.log10(255**2 / 100)
    scorer, metrics = _scorer(["psnr", "face_psnr"])
    images = {"gt": gt, "face_mask": np.ones((SIZE, SIZE), bool)}
    assert scorer.score(metrics["psnr"], 0, output, images) == pytest.approx(expected)
    assert scorer.score(metrics["face_psnr"], 0, output, images) == pytest.approx(expected)


def test_identity_of_identical_faces_is_one():
    face = np.random.default_rng(2).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    args = argparse.Namespace(arcface_weights=None)
    metric = quality.Metric("identity", "higher", random_weights=True)
    scorer = quality.Scorer(args, [metric], torch.device("cpu"))
    assert scorer.score(metric, 0, face, {"gt": face.copy()}) == pytest.approx(1.0, abs=1e-5)


def test_landmark_distance_known_shift(monkeypatch):
    gt_points = np.array([[20.0, 20], [40, 20], [30, 30], [22, 40], [38, 40]])  # eyes 20 px apart
    scorer, _ = _scorer([])
    found = iter([gt_points, gt_points + [3.0, 4.0], None])  # gt, a 5 px shift, then no face
    monkeypatch.setattr(scorer, "_landmarks", lambda image: next(found))
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    assert scorer.landmark_distance(0, image, image) == pytest.approx(5 / 20)
    assert math.isnan(scorer.landmark_distance(0, image, image))  # gt landmarks cached, none in the output


def test_metrics_refuse_what_they_cannot_score():
    args = argparse.Namespace(size=64, fid_reference=None, allow_random_weights=True)
    with pytest.raises(quality.MetricRefused, match="96"):
        quality.prepare_metrics(args, ["niqe"], torch.device("cpu"), has_sidecars=False)
    with pytest.raises(quality.MetricRefused, match="fid-reference"):
        quality.prepare_metrics(args, ["fid"], torch.device("cpu"), has_sidecars=False)
    with pytest.raises(quality.MetricRefused, match="sidecar"):
        quality.prepare_metrics(args, ["face_psnr"], torch.device("cpu"), has_sidecars=False)


def test_summary_leaves_out_nan():
    assert quality.summarize([1.0, float("nan"), 3.0]) == {
        "mean": 2.0,
        "std": pytest.approx(math.sqrt(2)),
        "count": 2,
    }


# ----------------------------------------------------------------------------- CodeFormer worker protocol


def test_codeformer_worker_protocol_with_stand_in(tmp_path):
    weights = _save_stand_in(tmp_path / "zero.pth", torch.zeros(3, 3), torch.zeros(3))  # mix(x) = 0
    faces = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 3, 16, 16), dtype=np.uint8))
    lq = faces.float() / 127.5 - 1
    runner = CodeFormerRunner(weights, w=0.5, network="stand-in")
    try:
        first, second = runner.restore(lq[:2]), runner.restore(lq[2:])
    finally:
        runner.close()
    expected = ((lq * 0.5 + 1) * 127.5).round() / 127.5 - 1  # (1 - w) * x, through uint8 files
    assert torch.allclose(torch.cat([first, second]), expected, atol=1e-6)


def test_codeformer_worker_says_what_is_missing(tmp_path):
    weights = _save_stand_in(tmp_path / "w.pth", torch.eye(3), torch.zeros(3))
    with pytest.raises(RuntimeError, match="codeformer-repo|not a clone"):
        CodeFormerRunner(weights, network="codeformer", repo=str(tmp_path))


# ----------------------------------------------------------------------------- the command line


def test_top_level_help_imports_no_subcommand(monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_subcommand", lambda name: pytest.fail(f"imported {name} for --help"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "quality" in capsys.readouterr().out


def test_absent_subcommand_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, "later", ("ented.benchmark.not_written_yet", "not yet", None))
    with pytest.raises(SystemExit, match="no ented.benchmark.not_written_yet module"):
        cli.main(["later"])
