"""ENTED through huggingface_hub's PyTorchModelHubMixin: the config is the constructor arguments."""

import inspect
import json

import pytest
import torch
from huggingface_hub import ModelCard
from restoration_fixtures import populate_hub_cache
from safetensors.torch import save_file
from tiny_configs import TINY_ENTED_64 as TINY_64

from ented.archs.ented_arch import ENTED
from ented.hub_weights import UnreadableFileError, UnsafeFileError
from ented.restoration import CheckpointMismatchError
from ented.restoration import pretrained as pt

# TINY_ENTED_64 of tests/archs/test_archs.py, with the arguments JSON cannot hold as they are: int keys, tuples
ARGUMENTS = dict(TINY_64, channels={64: 256, 32: 384}, lq_skips=(32,), reference_attention=(32,))


def tiny(seed: int = 0, **arguments) -> ENTED:
    torch.manual_seed(seed)
    net = ENTED(**(arguments or ARGUMENTS))
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.01 * torch.randn_like(param))
    return net.eval()


def outputs(net: ENTED) -> torch.Tensor:
    torch.manual_seed(7)
    lq, ref = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        return net(lq, ref)


@pytest.fixture(scope="module")
def net():
    return tiny()


@pytest.fixture(scope="module")
def saved(net, tmp_path_factory):
    return pt.save_pretrained(net, tmp_path_factory.mktemp("saved"))


def test_save_then_load_gives_the_identical_network(net, saved):
    loaded = ENTED.from_pretrained(saved)
    assert not loaded.training
    assert torch.equal(outputs(loaded), outputs(net))
    assert loaded.channels == net.channels and loaded.config == net.config
    assert sorted(loaded.lq_skips) == ["32"] and sorted(loaded.reference_attention) == ["32"]


def test_config_json_holds_the_constructor_arguments(net, saved):
    config = json.loads((saved / "config.json").read_text())
    parameters = list(inspect.signature(ENTED).parameters)
    assert sorted(config) == sorted(parameters)  # every argument, nothing else
    assert config == net.config
    assert config["channels"] == {"64": 256, "32": 384} and config["lq_skips"] == [32]
    assert config["width"] == 1 / 16 and config["reference_attention_sigma"] == 1.0
    # the config rebuilds the network; so do int keys and tuples (what the caller passed)
    assert ENTED(**config).config == ENTED(**ARGUMENTS).config == config


def test_an_argument_json_cannot_hold_is_refused_when_building():
    with pytest.raises(TypeError, match="must be JSON values"):
        ENTED(**TINY_64, channels_last=object())


def test_model_card_front_matter_and_sections(net, saved, tmp_path):
    card = ModelCard.load(saved / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.library_name == "ented"
    assert card.data.pipeline_tag == "image-to-image"
    assert {"face-restoration", "reference-based"} <= set(card.data.tags)
    for section in ("## Training data", "## Metrics", "## Usage", "no official ENTED code or weights exist"):
        assert section in card.text
    assert "[Not measured]" in card.text and "ENTED.from_pretrained(" in card.text

    filled = {
        "training_data": "FFHQ 512, 10k iterations",
        "metrics": "| LPIPS | 0.31 |",
        "repo_id": "me/ented",
    }
    net.save_pretrained(tmp_path, model_card_kwargs=filled)
    text = (tmp_path / "README.md").read_text()
    assert "FFHQ 512, 10k iterations" in text and "| LPIPS | 0.31 |" in text and "[Not measured]" not in text
    assert 'ENTED.from_pretrained("me/ented")' in text


def test_a_folder_of_the_format_before_the_mixin_loads(net, tmp_path):
    """config.json with ``_class_name`` / ``_ented_version``, str keys, lists; safetensors with metadata."""
    old = {"_class_name": "ENTED", "_ented_version": "0.0.9", **json.loads(json.dumps(ARGUMENTS))}
    old.pop("reference_attention_sigma", None)  # an argument missing from an old folder takes its default
    (tmp_path / "config.json").write_text(json.dumps(old, indent=2, sort_keys=True))
    tensors = {key: value.contiguous().clone() for key, value in net.state_dict().items()}
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})

    expected = outputs(net)
    assert torch.equal(outputs(ENTED.from_pretrained(tmp_path)), expected)
    assert torch.equal(outputs(pt.from_pretrained(tmp_path)), expected)
    assert torch.equal(outputs(pt.load_network(tmp_path / "model.safetensors")), expected)

    (tmp_path / "config.json").write_text(json.dumps({**old, "_class_name": "ENTEDDiscriminator"}))
    with pytest.raises(ValueError, match="config.json is for ENTEDDiscriminator, not ENTED"):
        ENTED.from_pretrained(tmp_path)


def test_a_basicsr_checkpoint_loads_as_data_only(net, tmp_path):
    torch.save({"params_ema": net.state_dict(), "params": tiny(1).state_dict()}, tmp_path / "net_g_5.pth")
    loaded = pt.load_network(tmp_path / "net_g_5.pth", config={"type": "ENTED", **ARGUMENTS})
    assert torch.equal(outputs(loaded), outputs(net))

    class Payload:  # unpickling this would call code
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"params_ema": net.state_dict(), "extra": Payload()}, tmp_path / "hostile.pth")
    with pytest.raises(UnsafeFileError, match="hostile.pth was refused"):
        pt.load_basicsr_checkpoint(tmp_path / "hostile.pth", dict(ARGUMENTS))


def test_bad_weights_are_refused_naming_the_file(net, saved, tmp_path):
    # weights of another architecture under a valid config
    folder = tmp_path / "mismatch"
    tiny(0, **TINY_64).save_pretrained(folder)
    (folder / "config.json").write_text((saved / "config.json").read_text())
    with pytest.raises(CheckpointMismatchError, match=str(folder / "model.safetensors")) as err:
        ENTED.from_pretrained(folder)
    assert err.value.missing and err.value.mismatched

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((saved / "config.json").read_text())
    (truncated / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes()[:500])
    with pytest.raises(UnreadableFileError, match="model.safetensors is not a readable safetensors file"):
        pt.from_pretrained(truncated)

    (truncated / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        ENTED.from_pretrained(truncated)
    (truncated / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        ENTED.from_pretrained(truncated)


def test_from_pretrained_offline_from_the_hub_cache(net, saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    files = {name: saved / name for name in ("config.json", "model.safetensors", "README.md")}
    populate_hub_cache(tmp_path / "hub", "someone/ented-64", files, commit)

    loaded = ENTED.from_pretrained("someone/ented-64", cache_dir=tmp_path / "hub")
    assert torch.equal(outputs(loaded), outputs(net))
    pinned = pt.from_pretrained("someone/ented-64", revision=commit, cache_dir=tmp_path / "hub")
    assert torch.equal(outputs(pinned), outputs(net))
    with pytest.raises(FileNotFoundError, match="someone/missing"):
        pt.from_pretrained("someone/missing", cache_dir=tmp_path / "hub")
    with pytest.raises(FileNotFoundError, match="not a Hugging Face Hub repo id"):
        pt.from_pretrained(tmp_path / "no" / "such" / "folder")
