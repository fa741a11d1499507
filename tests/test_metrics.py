"""LPIPS, identity similarity and folder FID, offline with random or tiny networks (CPU)."""

import logging

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
from ented.metrics import fid_metric, identity_metric, lpips_metric
from ented.metrics.image_convert import bgr_image_to_tensor


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
    opt = {"type": "calculate_ented_lpips", "better": "lower"}
    assert calculate_metric({"img": face, "img2": face.copy()}, opt) == 0.0
    distances = [calculate_metric({"img": noisy(face, sigma), "img2": face}, opt) for sigma in (3, 15, 60)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_lpips_crop_border_ignores_the_border(face):
    changed = face.copy()
    changed[:4] = 255
    assert lpips_metric.calculate_ented_lpips(changed, face) > 0
    assert lpips_metric.calculate_ented_lpips(changed, face, crop_border=4) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        lpips_metric.calculate_ented_lpips(face, face[:32])


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
            lpips_metric.calculate_ented_lpips(noisy(face, sigma), face, ref=face)
    assert built == ["alex"]
    assert caplog.text.count("random backbone") == 1
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
    opt = {"type": "calculate_ented_identity_similarity", "arch": dict(TINY_CONFIG, layers=[1, 1, 1, 1])}
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
    itself = fid_metric.calculate_ented_fid_folder(original, original, dims=64, device="cpu")
    moved = fid_metric.calculate_ented_fid_folder(original, shifted, dims=64, device="cpu")
    assert abs(itself) < 1e-6
    assert moved > 1000 * max(abs(itself), 1e-9)
    mu, sigma = fid_metric.folder_statistics(shifted, dims=64, device="cpu")
    stats = tmp_path / "shifted.npz"
    fid_metric.save_statistics(str(stats), mu, sigma)
    from_stats = fid_metric.calculate_ented_fid_folder(original, str(stats), dims=64, device="cpu")
    assert from_stats == pytest.approx(moved, rel=1e-6)
    basicsr_stats = tmp_path / "inception_shifted.pth"  # BasicSR/GFPGAN's format: numpy mean/cov
    torch.save({"name": "shifted", "mean": mu, "cov": sigma}, basicsr_stats)
    assert (
        fid_metric.calculate_ented_fid_folder(original, str(basicsr_stats), dims=64, device="cpu")
        == from_stats
    )
    with pytest.raises(ValueError, match="2048"):
        fid_metric.calculate_ented_fid_folder(original, str(stats), dims=2048, device="cpu")


def test_fid_cli_and_cached_network(folders, tmp_path, capsys):
    original, shifted = folders
    network = fid_metric.get_fid_inception(None, 64, "cpu")
    stats = tmp_path / "original.npz"
    fid = fid_metric.main([original, shifted, "--dims", "64", "--device", "cpu", "--save-stats", str(stats)])
    assert f"FID {fid:.4f}" in capsys.readouterr().out
    # FID is symmetric: the saved statistics of the restored folder stand in for that folder.
    from_stats = fid_metric.calculate_ented_fid_folder(shifted, str(stats), dims=64, device="cpu")
    assert fid == pytest.approx(from_stats)
    assert fid_metric.get_fid_inception(None, 64, "cpu") is network


def test_fid_rejects_missing_or_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fid_metric.list_images(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no images"):
        fid_metric.list_images(str(tmp_path))


def test_registered_metric_names():
    for name in ("calculate_ented_lpips", "calculate_ented_identity_similarity"):
        assert name in METRIC_REGISTRY
    assert "calculate_psnr" in METRIC_REGISTRY  # BasicSR's own stay available by name
