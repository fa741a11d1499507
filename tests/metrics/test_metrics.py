"""LPIPS, identity similarity and folder FID, offline with random or tiny networks (CPU).

Random networks are opt-in (``allow_random_weights``): the tests that use them say so.
"""

import logging
import os

import cv2
import lpips
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_metric
from basicsr.utils.registry import METRIC_REGISTRY
from skimage import data as skimage_data
from torchvision import models

from ented.archs.arcface_arch import TINY_CONFIG, ENTEDArcFace
from ented.identity import IdentityEncoder
from ented.image_io import bgr_image_to_tensor
from ented.metrics import fid_metric, identity_metric, lpips_metric


@pytest.fixture(scope="module")
def face():
    """A real photo (public domain), BGR uint8 64x64, as BasicSR hands images to metrics."""
    rgb = cv2.resize(skimage_data.astronaut()[:256, 128:384], (64, 64), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb[..., ::-1])


def noisy(img, sigma, seed=0):
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------- LPIPS
def test_lpips_is_zero_for_identical_and_grows_with_noise(face):
    opt = {"type": "calculate_ented_lpips", "better": "lower", "allow_random_weights": True}
    assert calculate_metric({"img": face, "img2": face.copy()}, opt) == 0.0
    distances = [calculate_metric({"img": noisy(face, sigma), "img2": face}, opt) for sigma in (3, 15, 60)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_lpips_crop_border_ignores_the_border(face):
    changed = face.copy()
    changed[:4] = 255
    assert lpips_metric.calculate_ented_lpips(changed, face, allow_random_weights=True) > 0
    assert lpips_metric.calculate_ented_lpips(changed, face, crop_border=4, allow_random_weights=True) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        lpips_metric.calculate_ented_lpips(face, face[:32], allow_random_weights=True)


def test_lpips_network_is_built_once(face, monkeypatch, caplog):
    built = []
    original_lpips = lpips.LPIPS

    def counting_lpips(*args, **kwargs):
        built.append(kwargs.get("net"))
        return original_lpips(*args, **kwargs)

    monkeypatch.setattr(lpips, "LPIPS", counting_lpips)
    monkeypatch.setattr(lpips_metric, "LPIPS_NETWORKS", {})
    with caplog.at_level(logging.WARNING, logger="ented.metrics.lpips_metric"):
        for sigma in (5, 10, 20, 40):
            lpips_metric.calculate_ented_lpips(noisy(face, sigma), face, ref=face, allow_random_weights=True)
    assert built == ["alex"]
    assert caplog.text.count("LPIPS (random weights)") == 1
    assert list(lpips_metric.LPIPS_NETWORKS) == [("alex", None, "cpu")]


@pytest.mark.parametrize("prefix", ["features.", ""])
def test_lpips_backbone_loads_from_torchvision_file(tmp_path, face, prefix, monkeypatch):
    monkeypatch.setattr(lpips_metric, "LPIPS_NETWORKS", {})
    torch.manual_seed(1)
    alexnet = models.alexnet(weights=None)
    state = alexnet.state_dict() if prefix else alexnet.features.state_dict()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    network = lpips_metric.get_lpips_network("alex", str(path), "cpu")
    backbone = network.net.state_dict()
    torch.testing.assert_close(backbone["slice1.0.weight"], alexnet.features[0].weight)
    torch.testing.assert_close(backbone["slice5.10.bias"], alexnet.features[10].bias)
    assert lpips_metric.calculate_ented_lpips(face, face, weights_path=str(path)) == 0.0


def test_lpips_uses_backbone_from_torch_hub_cache(tmp_path, monkeypatch):
    """A backbone torchvision already downloaded is used offline, with no weights_path."""
    monkeypatch.setattr(lpips_metric, "LPIPS_NETWORKS", {})
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        torch.manual_seed(2)
        alexnet = models.alexnet(weights=None)
        (tmp_path / "checkpoints").mkdir()
        torch.save(alexnet.state_dict(), tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth")
        network = lpips_metric.get_lpips_network("alex", None, "cpu")
    finally:
        torch.hub.set_dir(previous)
    torch.testing.assert_close(network.net.state_dict()["slice2.3.weight"], alexnet.features[3].weight)


def test_lpips_backbone_mismatch_names_file(tmp_path):
    path = tmp_path / "not_alexnet.pth"
    torch.save(models.squeezenet1_1(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="not_alexnet.pth"):
        lpips_metric.get_lpips_network("alex", str(path), "cpu")


# --------------------------------------------------------------------- identity similarity
@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    arcface = ENTEDArcFace(**TINY_CONFIG).eval()
    path = tmp_path / "backbone.pth"
    torch.save(arcface.state_dict(), path)
    return str(path), arcface


def test_identity_similarity_through_basicsr(face, tiny_weights, monkeypatch):
    monkeypatch.setattr(identity_metric, "IDENTITY_ENCODERS", {})
    path, arcface = tiny_weights
    other = np.ascontiguousarray(face[::-1])  # upside down: a different "face"
    opt = {"type": "calculate_ented_identity_similarity", "weights_path": path, "better": "higher"}
    same = calculate_metric({"img": face, "img2": face.copy()}, opt)
    assert same == pytest.approx(1.0, abs=1e-5)
    different = calculate_metric({"img": face, "img2": other}, opt)
    expected = IdentityEncoder(arcface).cosine_similarity(
        bgr_image_to_tensor(face), bgr_image_to_tensor(other)
    )
    assert different == pytest.approx(float(expected), abs=1e-5)
    assert different < 0.9999


def test_identity_similarity_against_ref_uses_ref(face, tiny_weights, monkeypatch):
    monkeypatch.setattr(identity_metric, "IDENTITY_ENCODERS", {})
    path, _ = tiny_weights
    other = np.ascontiguousarray(face[:, ::-1][::-1])
    data = {"img": face, "img2": other, "ref": face.copy()}
    to_ref = calculate_metric(
        data, {"type": "calculate_ented_identity_similarity", "against": "ref", "weights_path": path}
    )
    to_gt = calculate_metric(
        data, {"type": "calculate_ented_identity_similarity", "against": "gt", "weights_path": path}
    )
    assert to_ref == pytest.approx(1.0, abs=1e-5)
    assert to_gt < 0.9999
    with pytest.raises(ValueError, match="'ref'"):
        identity_metric.calculate_ented_identity_similarity(
            face, other, against="ref", weights_path=path, ref=None
        )


def test_identity_encoder_is_built_once(face, monkeypatch):
    monkeypatch.setattr(identity_metric, "IDENTITY_ENCODERS", {})
    opt = {
        "type": "calculate_ented_identity_similarity",
        "arch": dict(TINY_CONFIG, layers=[1, 1, 1, 1]),
        "allow_random_weights": True,
    }
    encoders = set()
    for sigma in (5, 10, 20):
        calculate_metric({"img": noisy(face, sigma), "img2": face}, opt)
        encoders.add(id(next(iter(identity_metric.IDENTITY_ENCODERS.values()))))
    assert len(identity_metric.IDENTITY_ENCODERS) == 1 and len(encoders) == 1


# ------------------------------------------------------------------------------------ FID
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Eight blurred noise images, and the same images brightened."""
    root = tmp_path_factory.mktemp("fid")
    original, shifted = root / "original", root / "shifted"
    original.mkdir()
    shifted.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        img = cv2.GaussianBlur((rng.random((32, 32, 3)) * 200).astype(np.uint8), (5, 5), 2)
        cv2.imwrite(str(original / f"{i}.png"), img)
        cv2.imwrite(str(shifted / f"{i}.png"), np.clip(img.astype(int) + 50, 0, 255).astype(np.uint8))
    return str(original), str(shifted)


def test_fid_folder_against_itself_and_shifted(folders, tmp_path):
    original, shifted = folders
    itself = fid_metric.calculate_ented_fid_folder(
        original, original, dims=64, device="cpu", allow_random_weights=True
    )
    moved = fid_metric.calculate_ented_fid_folder(
        original, shifted, dims=64, device="cpu", allow_random_weights=True
    )
    assert abs(itself) < 1e-6
    assert moved > 1000 * max(abs(itself), 1e-9)
    mu, sigma = fid_metric.folder_statistics(shifted, dims=64, device="cpu", allow_random_weights=True)
    stats = tmp_path / "shifted.npz"
    fid_metric.save_statistics(str(stats), mu, sigma)
    from_stats = fid_metric.calculate_ented_fid_folder(
        original, str(stats), dims=64, device="cpu", allow_random_weights=True
    )
    assert from_stats == pytest.approx(moved, rel=1e-6)
    basicsr_stats = tmp_path / "inception_shifted.pth"  # BasicSR/GFPGAN's format: numpy mean/cov
    torch.save({"name": "shifted", "mean": mu, "cov": sigma}, basicsr_stats)
    assert (
        fid_metric.calculate_ented_fid_folder(
            original, str(basicsr_stats), dims=64, device="cpu", allow_random_weights=True
        )
        == from_stats
    )
    with pytest.raises(ValueError, match="2048"):
        fid_metric.calculate_ented_fid_folder(
            original, str(stats), dims=2048, device="cpu", allow_random_weights=True
        )


def test_fid_cli_and_cached_network(folders, tmp_path, capsys):
    original, shifted = folders
    network = fid_metric.get_fid_inception(None, 64, "cpu", allow_random_weights=True)
    stats = tmp_path / "original.npz"
    fid = fid_metric.main(
        [
            original,
            shifted,
            "--dims",
            "64",
            "--device",
            "cpu",
            "--save-stats",
            str(stats),
            "--allow-random-weights",
        ]
    )
    assert f"FID {fid:.4f} (random weights)" in capsys.readouterr().out
    # FID is symmetric: the saved statistics of the restored folder stand in for that folder.
    from_stats = fid_metric.calculate_ented_fid_folder(
        shifted, str(stats), dims=64, device="cpu", allow_random_weights=True
    )
    assert fid == pytest.approx(from_stats)
    assert fid_metric.get_fid_inception(None, 64, "cpu", allow_random_weights=True) is network


def test_fid_rejects_missing_or_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fid_metric.list_images(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no images"):
        fid_metric.list_images(str(tmp_path))


def test_registered_metric_names():
    for name in ("calculate_ented_lpips", "calculate_ented_identity_similarity"):
        assert name in METRIC_REGISTRY
    assert "calculate_psnr" in METRIC_REGISTRY  # BasicSR's own stay available by name


# --------------------------------------------------------- random weights only when asked for
@pytest.fixture
def no_cached_weights(tmp_path, monkeypatch):
    """An empty torch hub cache and a working directory without experiments/pretrained_models."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lpips_metric, "LPIPS_NETWORKS", {})
    monkeypatch.setattr(fid_metric, "FID_INCEPTIONS", {})
    monkeypatch.setattr(identity_metric, "IDENTITY_ENCODERS", {})
    yield
    torch.hub.set_dir(previous)


def test_lpips_without_weights_refuses_unless_random_weights_allowed(face, no_cached_weights, caplog):
    opt = {"type": "calculate_ented_lpips", "better": "lower"}
    with pytest.raises(
        ValueError, match=r"(?s)alexnet-owt-7be5be79\.pth.*download\.pytorch\.org.*allow_random_weights"
    ):
        calculate_metric({"img": face, "img2": face}, opt)
    assert not lpips_metric.LPIPS_NETWORKS
    with caplog.at_level(logging.WARNING, logger="ented.metrics.lpips_metric"):
        assert calculate_metric({"img": face, "img2": face}, opt | {"allow_random_weights": True}) == 0.0
    assert "LPIPS (random weights)" in caplog.text
    with pytest.raises(ValueError, match="allow_random_weights"):  # the cached random network is not reused
        calculate_metric({"img": face, "img2": face}, opt)


def test_identity_without_weights_refuses_unless_random_weights_allowed(face, no_cached_weights, caplog):
    opt = {"type": "calculate_ented_identity_similarity", "arch": dict(TINY_CONFIG, layers=[1, 1, 1, 1])}
    with pytest.raises(ValueError, match=r"(?s)weights_path.*backbone\.pth.*allow_random_weights"):
        calculate_metric({"img": face, "img2": face}, opt)
    with caplog.at_level(logging.WARNING, logger="ented.metrics.identity_metric"):
        same = calculate_metric({"img": face, "img2": face}, opt | {"allow_random_weights": True})
    assert same == pytest.approx(1.0, abs=1e-5)
    assert "identity similarity (random weights)" in caplog.text


def test_fid_without_weights_refuses_unless_random_weights_allowed(folders, no_cached_weights, capsys):
    original, shifted = folders
    with pytest.raises(
        ValueError, match=r"(?s)pt_inception-2015-12-05-6726825d\.pth.*github\.com.*allow_random_weights"
    ):
        fid_metric.calculate_ented_fid_folder(original, shifted, dims=64, device="cpu")
    with pytest.raises(ValueError, match="--allow-random-weights"):
        fid_metric.main([original, shifted, "--dims", "64", "--device", "cpu"])
    fid_metric.main([original, shifted, "--dims", "64", "--device", "cpu", "--allow-random-weights"])
    assert capsys.readouterr().out.rstrip().endswith("(random weights)")
    with pytest.raises(ValueError, match="allow_random_weights"):  # the cached random network is not reused
        fid_metric.calculate_ented_fid_folder(original, shifted, dims=64, device="cpu")


def test_validation_log_labels_metrics_that_allow_random_weights():
    from types import SimpleNamespace

    from ented.models.ented_model import ENTEDModel

    metrics = {
        "psnr": {"type": "calculate_psnr"},
        "lpips": {"type": "calculate_ented_lpips", "allow_random_weights": True},
    }
    model = SimpleNamespace(
        opt={"val": {"metrics": metrics}},
        metric_results={"psnr": 20.0, "lpips": 0.25},
        best_metric_results={"val": {m: {"val": v, "iter": 1} for m, v in (("psnr", 20.0), ("lpips", 0.25))}},
    )
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    basicsr_logger = logging.getLogger("basicsr")
    level = basicsr_logger.level
    basicsr_logger.addHandler(handler)
    basicsr_logger.setLevel(logging.INFO)
    try:
        ENTEDModel._log_validation_metric_values(model, 1, "val", None)
    finally:
        basicsr_logger.removeHandler(handler)
        basicsr_logger.setLevel(level)
    text = "\n".join(record.getMessage() for record in records)
    assert "# lpips (random weights allowed): 0.2500" in text
    assert "# psnr: 20.0000" in text


# ------------------------------------------------------- FID on ented's own folder layouts
def test_fid_reads_identity_folders_and_skips_comparison_grids(folders, tmp_path):
    """``ented-test`` writes ``<sample>_output_<suffix>.png`` and ``<sample>_grid_<suffix>.png``."""
    from types import SimpleNamespace

    from ented.models.ented_model import ENTEDModel

    original, _ = folders
    results = tmp_path / "visualization"
    model = SimpleNamespace(opt={"val": {"suffix": None}, "path": {"visualization": str(results)}})
    layout = tmp_path / "by_identity"
    for i, name in enumerate(sorted(os.listdir(original))):
        img = cv2.imread(os.path.join(original, name))
        identity = layout / f"id{i % 3:04d}"
        identity.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(identity / name), img)
        output = ENTEDModel._visual_path(model, "test", f"id{i:04d}_0", 5, "output")
        grid = ENTEDModel._visual_path(model, "test", f"id{i:04d}_0", 5, "grid")
        os.makedirs(os.path.dirname(output), exist_ok=True)
        cv2.imwrite(output, img)
        cv2.imwrite(grid, np.concatenate([img, 255 - img, img, img], axis=1))

    assert len(fid_metric.list_images(str(layout))) == 8
    listed = fid_metric.list_images(str(results))
    assert len(listed) == 8 and not any("_grid_" in path for path in listed)
    assert len(list(results.rglob("*_grid_*.png"))) == 8
    kwargs = {"dims": 64, "device": "cpu", "allow_random_weights": True}
    assert fid_metric.calculate_ented_fid_folder(str(layout), original, **kwargs) < 1e-6
    assert fid_metric.calculate_ented_fid_folder(str(results), original, **kwargs) < 1e-6
