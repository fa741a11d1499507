"""ArcFace backbone, identity encoder, identity loss and weights resolution (tiny configs, CPU)."""

import logging
import os

import pytest
import torch
from basicsr.losses import build_loss
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY
from safetensors.torch import save_file

from ented.archs.arcface_arch import TINY_CONFIG, ENTEDArcFace
from ented.hub_weights import load_weights_file, resolve_weights
from ented.identity import FFHQ_ARCFACE_CROP, IdentityEncoder

# Key names of insightface's arcface_torch iresnet ``backbone.pth`` files.
INSIGHTFACE_KEYS = [
    "conv1.weight",
    "bn1.weight",
    "bn1.running_var",
    "prelu.weight",
    "layer1.0.bn1.weight",
    "layer1.0.conv1.weight",
    "layer1.0.bn2.weight",
    "layer1.0.prelu.weight",
    "layer1.0.conv2.weight",
    "layer1.0.bn3.weight",
    "layer1.0.downsample.0.weight",
    "layer1.0.downsample.1.weight",
    "layer4.0.conv2.weight",
    "bn2.weight",
    "fc.weight",
    "fc.bias",
    "features.weight",
    "features.running_mean",
]


@pytest.fixture
def tiny_arcface():
    torch.manual_seed(0)
    return ENTEDArcFace(**TINY_CONFIG).eval()


def faces(batch=2, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


def test_arcface_is_registered_and_keeps_its_config():
    net = ARCH_REGISTRY.get("ENTEDArcFace")(**TINY_CONFIG)
    assert net.config["layers"] == tuple(TINY_CONFIG["layers"])
    rebuilt = ENTEDArcFace(**net.config)
    assert rebuilt.state_dict().keys() == net.state_dict().keys()


def test_arcface_default_is_iresnet50_with_insightface_keys():
    net = ENTEDArcFace()
    keys = net.state_dict().keys()
    assert set(INSIGHTFACE_KEYS) <= keys
    assert "layer3.13.conv2.weight" in keys and "layer3.14.conv2.weight" not in keys
    assert net.fc.in_features == 512 * 7 * 7
    # insightface's iresnet50 has 43.6 M parameters.
    assert 43.5e6 < sum(p.numel() for p in net.parameters()) < 43.7e6


def test_arcface_forward_backward_and_input_check(tiny_arcface):
    size = TINY_CONFIG["input_size"]
    x = faces(2, size).requires_grad_(True)
    tiny_arcface.train()
    out = tiny_arcface(x)
    assert out.shape == (2, TINY_CONFIG["embedding_dim"])
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="IdentityEncoder"):
        tiny_arcface(faces(1, size + 16))


def test_encoder_embeddings_are_unit_and_any_size(tiny_arcface):
    encoder = IdentityEncoder(tiny_arcface)
    for size in (48, 100):
        emb = encoder(faces(3, size))
        assert emb.shape == (3, TINY_CONFIG["embedding_dim"])
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    x, y = faces(2, 64, seed=1), faces(2, 64, seed=2)
    torch.testing.assert_close(encoder.cosine_similarity(x, x), torch.ones(2))
    assert (encoder.cosine_similarity(x, y) < 0.9999).all()


def test_encoder_crop_uses_only_the_face_box(tiny_arcface):
    encoder = IdentityEncoder(tiny_arcface, crop=FFHQ_ARCFACE_CROP)
    x = faces(1, 128)
    border_changed = x.clone()
    border_changed[..., :8, :] = 1.0  # above the crop's top (0.1195 * 128 = 15)
    torch.testing.assert_close(encoder(x), encoder(border_changed))
    whole = IdentityEncoder(tiny_arcface, crop=None)
    assert not torch.allclose(whole(x), whole(border_changed))
    with pytest.raises(ValueError, match="outside"):
        IdentityEncoder(tiny_arcface, crop=(0.5, 0.0, 0.6, 0.5))


def test_encoder_is_frozen_and_stays_in_eval(tiny_arcface):
    encoder = IdentityEncoder(tiny_arcface)
    encoder.train()
    assert not tiny_arcface.training
    assert not any(p.requires_grad for p in encoder.parameters())
    before = tiny_arcface.bn1.running_mean.clone()
    encoder(faces(2, 64))
    torch.testing.assert_close(tiny_arcface.bn1.running_mean, before)


@pytest.mark.parametrize("suffix, nest", [(".pth", None), (".pth", "params"), (".safetensors", None)])
def test_from_path_round_trip(tmp_path, tiny_arcface, suffix, nest):
    state = {k: v.clone() for k, v in tiny_arcface.state_dict().items()}
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({nest: state} if nest else state, path)
    encoder = IdentityEncoder.from_path(str(path))  # architecture read from the file
    assert encoder.arcface.config["layers"] == TINY_CONFIG["layers"]
    for key in INSIGHTFACE_KEYS:
        torch.testing.assert_close(encoder.arcface.state_dict()[key], state[key])
    x = faces(2, 64)
    torch.testing.assert_close(encoder(x), IdentityEncoder(tiny_arcface)(x))


def test_from_path_mismatch_names_file_and_keys(tmp_path, tiny_arcface):
    state = dict(tiny_arcface.state_dict())
    del state["fc.bias"]
    state["head.weight"] = torch.zeros(1)
    path = tmp_path / "wrong_backbone.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        IdentityEncoder.from_path(str(path), **TINY_CONFIG)
    message = str(error.value)
    assert str(path) in message and "fc.bias" in message and "head.weight" in message

    torch.save(tiny_arcface.state_dict(), path)
    with pytest.raises(ValueError) as error:
        IdentityEncoder.from_path(str(path), **{**TINY_CONFIG, "base_channels": 16})
    message = str(error.value)
    assert "conv1.weight: file (8, 3, 3, 3) vs network (16, 3, 3, 3)" in message
    assert "looks like" in message and "'base_channels': 8" in message


def test_from_path_none_warns_random(caplog):
    with caplog.at_level(logging.WARNING, logger="ented.identity"):
        encoder = IdentityEncoder.from_path(None, **TINY_CONFIG)
    assert "random weights" in caplog.text
    assert not any(p.requires_grad for p in encoder.parameters())


def test_identity_loss_gradient_reaches_output_only(tiny_arcface, tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save(tiny_arcface.state_dict(), path)
    loss_fn = build_loss({"type": "ENTEDIdentityLoss", "loss_weight": 10.0, "weights_path": str(path)})
    assert LOSS_REGISTRY.get("ENTEDIdentityLoss") is type(loss_fn)
    gt = faces(2, 64, seed=3)
    same = loss_fn(gt.clone(), gt)
    assert same.abs() < 1e-5
    out = faces(2, 64, seed=4).requires_grad_(True)
    loss = loss_fn(out, gt)
    expected = 10.0 * (1 - loss_fn.encoder.cosine_similarity(out, gt)).mean()
    torch.testing.assert_close(loss, expected)
    assert loss > 0
    loss.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.encoder.parameters())


def test_resolve_weights_local_path(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"params": {"module.a": torch.ones(2)}}, path)
    assert resolve_weights(str(path)) == str(path)
    torch.testing.assert_close(load_weights_file(path)["a"], torch.ones(2))
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        resolve_weights(str(missing))


def _fill_hub_cache(cache_dir, repo_id, filename, payload):
    """Lays a file out the way the Hub cache stores it: refs/main -> snapshots/<commit>/<file>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_folder = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    target = repo_folder / "snapshots" / commit / filename
    target.parent.mkdir(parents=True)
    torch.save(payload, target)
    return target


def test_resolve_weights_hub_spec_from_offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hub"
    target = _fill_hub_cache(cache, "someone/arcface", "r50/backbone.pth", {"x": torch.arange(3)})
    for resolved in (
        resolve_weights("hf://someone/arcface/r50/backbone.pth", cache_dir=cache),
        resolve_weights(repo_id="someone/arcface", filename="r50/backbone.pth", cache_dir=cache),
    ):
        assert os.path.samefile(resolved, target)
        torch.testing.assert_close(load_weights_file(resolved)["x"], torch.arange(3))
    with pytest.raises(FileNotFoundError, match="other.pth"):
        resolve_weights("hf://someone/arcface/other.pth", cache_dir=cache)
    with pytest.raises(ValueError, match="hf://owner/repo/filename"):
        resolve_weights("hf://only-owner/file.pth")


def test_one_state_dict_reader_for_every_weights_file(tmp_path):
    from ented.hub_weights import read_state_dict
    from ented.restoration.pretrained import read_basicsr_state_dict

    checkpoint = tmp_path / "net_g_1.pth"
    torch.save({"params": {"module.w": torch.ones(1)}}, checkpoint)
    assert read_basicsr_state_dict(checkpoint) == ({"w": torch.ones(1)}, "params")  # no EMA: params
    state, used = read_state_dict(checkpoint, ("params_ema", "params"), "checkpoint")
    assert used == "params" and list(state) == ["w"]
    with pytest.raises(KeyError, match="checkpoint .* has no 'params_ema' entry"):
        read_state_dict(checkpoint, ("params_ema",), "checkpoint", require_key=True)
    bare = tmp_path / "bare.pth"
    torch.save({"w": torch.zeros(2)}, bare)
    assert read_state_dict(bare, ())[1] == "(bare state dict)"
    with pytest.raises(ValueError, match="not a state dict of tensors"):
        read_state_dict(checkpoint, ())
