"""Loading and saving ENTED for restoration: BasicSR .pth, config + safetensors, the Hub cache."""

import json

import pytest
import torch
import yaml
from restoration_fixtures import TINY, face, forward, populate_hub_cache, tiny_net

from ented.cli.restore import main
from ented.restoration import CheckpointMismatchError, ENTEDRestorer, convert_basicsr_checkpoint
from ented.restoration import pretrained as pt

LQ, REF = face(1), face(2)


def same_outputs(net_a, net_b) -> bool:
    return torch.equal(forward(net_a, LQ, REF), forward(net_b, LQ, REF))


def write_experiment(root, params_ema=None, params=None, network=None):
    """A BasicSR experiment folder: <root>/models/net_g_10.pth and <root>/<name>.yml."""
    (root / "models").mkdir(parents=True)
    checkpoint = {}
    if params is not None:
        checkpoint["params"] = params.state_dict()
    if params_ema is not None:
        checkpoint["params_ema"] = params_ema.state_dict()
    torch.save(checkpoint, root / "models" / "net_g_10.pth")
    option = {"name": root.name, "network_g": {"type": "ENTED", **(network or TINY)}, "num_gpu": 0}
    (root / f"{root.name}.yml").write_text(yaml.safe_dump(option))
    return root / "models" / "net_g_10.pth"


def test_save_pretrained_round_trip(tmp_path):
    net = tiny_net(0)
    folder = ENTEDRestorer(net, device="cpu").save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config == net.config and config["out_size"] == TINY["out_size"]
    loaded = ENTEDRestorer.from_pretrained(folder, device="cpu")
    assert loaded.net.config == net.config
    assert same_outputs(loaded.net, net)
    # a .safetensors file with its config.json beside it
    assert same_outputs(pt.load_network(folder / "model.safetensors"), net)


def test_basicsr_checkpoint_prefers_ema_and_reads_the_experiment_option(tmp_path):
    ema, plain = tiny_net(0), tiny_net(1)
    checkpoint = write_experiment(tmp_path / "exp", params_ema=ema, params=plain)
    assert same_outputs(ENTEDRestorer.from_checkpoint(checkpoint, device="cpu").net, ema)
    assert same_outputs(
        ENTEDRestorer.from_checkpoint(checkpoint, param_key="params", device="cpu").net, plain
    )
    # the experiment folder itself, and the option file given explicitly
    assert same_outputs(ENTEDRestorer.load(tmp_path / "exp", device="cpu").net, ema)
    assert same_outputs(pt.load_basicsr_checkpoint(checkpoint, tmp_path / "exp" / "exp.yml"), ema)
    assert same_outputs(pt.load_basicsr_checkpoint(checkpoint, dict(TINY)), ema)


def test_basicsr_checkpoint_without_ema_falls_back_to_params(tmp_path, caplog):
    plain = tiny_net(1)
    checkpoint = write_experiment(tmp_path / "exp", params=plain)
    with caplog.at_level("INFO"):
        net = pt.load_basicsr_checkpoint(checkpoint)
    assert same_outputs(net, plain)
    assert "no 'params_ema'" in caplog.text
    with pytest.raises(KeyError, match="no 'params_x' entry"):
        pt.load_basicsr_checkpoint(checkpoint, param_key="params_x")


def test_checkpoint_without_architecture_asks_for_it(tmp_path):
    torch.save({"params": tiny_net(0).state_dict()}, tmp_path / "net_g_5.pth")
    with pytest.raises(ValueError, match="pass config="):
        pt.load_basicsr_checkpoint(tmp_path / "net_g_5.pth")


def test_mismatched_checkpoint_is_refused_with_the_keys(tmp_path):
    state = tiny_net(0).state_dict()
    first = next(iter(state))
    state.pop(first)
    state["extra.weight"] = torch.zeros(3)
    torch.save({"params_ema": state}, tmp_path / "net_g_1.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        pt.load_basicsr_checkpoint(tmp_path / "net_g_1.pth", dict(TINY))
    message = str(err.value)
    assert "1 missing key(s): " + first in message
    assert "1 unexpected key(s): extra.weight" in message
    assert err.value.missing == [first] and err.value.unexpected == ["extra.weight"]

    # another architecture: same keys, other shapes
    torch.save({"params_ema": tiny_net(0).state_dict()}, tmp_path / "net_g_2.pth")
    with pytest.raises(
        CheckpointMismatchError, match=r"shape mismatch\(es\) \(checkpoint vs network\)"
    ) as err:
        pt.load_basicsr_checkpoint(tmp_path / "net_g_2.pth", {**TINY, "width": 1 / 8})
    assert err.value.mismatched and "..." in str(err.value)  # lists a few, then says how many more


def test_convert_checkpoint_library_and_cli(tmp_path, capsys):
    ema = tiny_net(3)
    checkpoint = write_experiment(tmp_path / "exp", params_ema=ema, params=tiny_net(4))
    folder = convert_basicsr_checkpoint(checkpoint, tmp_path / "converted")
    assert same_outputs(pt.from_pretrained(folder), ema)

    assert main(["convert", str(checkpoint), str(tmp_path / "cli"), "--param-key", "params"]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    assert same_outputs(pt.from_pretrained(tmp_path / "cli"), tiny_net(4))
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x")]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_from_pretrained_through_a_local_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = tiny_net(5)
    folder = pt.save_pretrained(net, tmp_path / "upload")
    commit = "0123456789abcdef0123456789abcdef01234567"
    files = {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
    populate_hub_cache(tmp_path / "hub", "someone/ented-tiny", files, commit)

    loaded = ENTEDRestorer.from_pretrained("someone/ented-tiny", cache_dir=tmp_path / "hub", device="cpu")
    assert same_outputs(loaded.net, net)
    pinned = pt.from_pretrained("someone/ented-tiny", revision=commit, cache_dir=tmp_path / "hub")
    assert same_outputs(pinned, net)
    # one file by hf:// spec (the convention of ented.hub_weights), config.json taken beside it
    spec = f"hf://someone/ented-tiny/model.safetensors@{commit}"
    assert same_outputs(pt.load_network(spec, cache_dir=tmp_path / "hub"), net)
    with pytest.raises(FileNotFoundError, match="someone/other"):
        pt.from_pretrained("someone/other", cache_dir=tmp_path / "hub")


def test_push_to_hub_uploads_a_loadable_folder(tmp_path, monkeypatch):
    import huggingface_hub

    uploaded = {}

    def create_repo(self, repo_id, **kwargs):
        uploaded["repo"] = repo_id
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded["net"] = pt.from_pretrained(folder_path)
        uploaded["card"] = (tmp_path / "card.md").write_text(open(f"{folder_path}/README.md").read())
        return "commit-info"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    net = tiny_net(6)
    card = {"training_data": "FFHQ, 40 faces", "metrics": "PSNR 20.1 dB (measured)"}
    restorer = ENTEDRestorer(net, device="cpu")
    assert restorer.push_to_hub("me/ented-test", model_card_kwargs=card) == "commit-info"
    assert uploaded["repo"] == "me/ented-test"
    assert same_outputs(uploaded["net"], net)
    text = (tmp_path / "card.md").read_text()
    assert "library_name: ented" in text and "FFHQ, 40 faces" in text and "PSNR 20.1 dB" in text
