"""Saving and loading ENTED networks: config + safetensors folders, BasicSR checkpoints, the Hub.

A *pretrained folder* (diffusers style) holds two files:

- ``config.json``: the network's constructor arguments (``net.config``) plus ``_class_name`` (the
  BasicSR architecture name, ``"ENTED"``) and ``_ented_version``;
- ``model.safetensors``: the state dict.

``ENTED(**config)`` then ``load_state_dict`` gives back the identical network. The same folder can
live on the Hugging Face Hub; :func:`resolve_pretrained` fetches it through the ordinary Hub
cache (``HF_HUB_OFFLINE=1`` and ``local_files_only`` are honoured).

A *BasicSR checkpoint* is ``torch.save({'params': ..., 'params_ema': ...})``; it carries no
architecture, which comes from a dict, an option YAML (``network_g``), or the option YAML that
BasicSR copied into the experiment folder (``experiments/<name>/<name>.yml`` next to
``experiments/<name>/models/net_g_<iter>.pth``).
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ented.atomic_io import atomic_write

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DEFAULT_CLASS_NAME = "ENTED"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class CheckpointMismatchError(ValueError):
    """Weights that do not fit the architecture; the message lists the keys that differ.

    Attributes:
        missing: Keys the network has and the weights lack.
        unexpected: Keys the weights have and the network lacks.
        mismatched: ``(key, weights_shape, network_shape)`` for keys present on both sides.
    """

    def __init__(self, source: str, missing: list, unexpected: list, mismatched: list, show: int = 5):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"{source} does not match the architecture:"]
        if missing:
            lines.append(f"  {len(missing)} missing key(s): {_first(missing, show)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected key(s): {_first(unexpected, show)}")
        if mismatched:
            shown = ", ".join(f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in mismatched[:show])
            more = f", ... (+{len(mismatched) - show} more)" if len(mismatched) > show else ""
            lines.append(f"  {len(mismatched)} shape mismatch(es) (checkpoint vs network): {shown}{more}")
        lines.append("  Is the config (or option file) the one this checkpoint was trained with?")
        super().__init__("\n".join(lines))


def _first(keys: list, show: int) -> str:
    more = f", ... (+{len(keys) - show} more)" if len(keys) > show else ""
    return ", ".join(keys[:show]) + more


# ----------------------------------------------------------------------------- building


def build_network(config: dict[str, Any], source: str = "the config") -> nn.Module:
    """Builds a network from a saved config (``_class_name`` picks the BasicSR architecture).

    Args:
        config: Constructor arguments, plus ``_class_name`` (or ``type``); other ``_`` keys are ignored.
        source: Where the config came from (a file name), for messages.

    Raises:
        ValueError: Unknown architecture, unknown keys (each named, with the closest known key), or
            values the architecture refuses; the message starts with ``source``.
    """
    # Importing any ented module has run ented/__init__.py, which registers ENTED in this registry.
    from basicsr.utils.registry import ARCH_REGISTRY

    config = dict(config)
    class_name = config.pop("_class_name", None) or config.pop("type", None) or DEFAULT_CLASS_NAME
    kwargs = {key: value for key, value in config.items() if not key.startswith("_")}
    try:
        arch = ARCH_REGISTRY.get(class_name)
    except KeyError:
        raise ValueError(f"{source}: unknown architecture {class_name!r}") from None
    _check_arguments(arch, kwargs, f"{source} ({class_name})")
    try:
        return arch(**kwargs)
    except (TypeError, ValueError) as err:  # a value of the wrong type or range in a user's file
        raise ValueError(f"{source}: cannot build {class_name} from it: {err}") from err


def _check_arguments(arch: type, kwargs: dict[str, Any], what: str) -> None:
    """Refuses keys that ``arch``'s constructor does not take, suggesting the closest known ones."""
    parameters = inspect.signature(arch).parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return
    known = [
        parameter.name
        for parameter in parameters
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    problems = []
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            problems.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if problems:
        keys = "key" if len(problems) == 1 else "keys"
        raise ValueError(f"{what}: unknown {keys} {', '.join(problems)}; known keys: {', '.join(known)}")


def network_config(net: nn.Module) -> dict[str, Any]:
    """The JSON-serialisable config that rebuilds ``net`` (its ``config`` plus ``_class_name``)."""
    config = getattr(net, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(net).__name__} has no `config` dict of its constructor arguments")
    from ented.version import __version__

    saved = {"_class_name": type(net).__name__, "_ented_version": __version__}
    saved.update(json.loads(json.dumps(dict(config))))
    return saved


def load_weights(net: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Loads ``state_dict`` into ``net`` strictly, or raises :class:`CheckpointMismatchError`."""
    expected = net.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        (key, tuple(value.shape), tuple(expected[key].shape))
        for key, value in state_dict.items()
        if key in expected and tuple(value.shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, missing, unexpected, mismatched)
    net.load_state_dict(state_dict, strict=True)
    return net


# ----------------------------------------------------------------------------- config + safetensors


def save_pretrained(net: nn.Module, save_directory: str | os.PathLike) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` for ``net`` into ``save_directory``.

    Each file is written to a temporary name first and moved into place.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    config = network_config(net)
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in net.state_dict().items()}
    atomic_write(folder / WEIGHTS_NAME, lambda path: save_file(tensors, path, metadata={"format": "pt"}))
    atomic_write(
        folder / CONFIG_NAME,
        lambda path: Path(path).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"),
    )
    return folder


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a ``config.json``."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return config


def load_safetensors(
    weights_file: str | os.PathLike,
    config: dict[str, Any] | None = None,
    config_source: str = "the given config",
) -> nn.Module:
    """Builds the network from ``config`` (default: ``config.json`` beside the file) and loads the weights.

    Args:
        weights_file: The ``.safetensors`` file.
        config: The architecture (see :func:`build_network`); None reads ``config.json`` beside the file.
        config_source: Where ``config`` came from, for messages.

    Raises:
        FileNotFoundError: A file is missing.
        ValueError: The config is invalid or the file is not readable safetensors (both named).
        CheckpointMismatchError: The weights do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_file = Path(weights_file)
    if not weights_file.is_file():
        raise FileNotFoundError(f"weights file not found: {weights_file}")
    if config is None:
        config_file = weights_file.with_name(CONFIG_NAME)
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{weights_file} has no {CONFIG_NAME} beside it; pass the network config explicitly"
            )
        config, config_source = read_config(config_file), str(config_file)
    net = build_network(config, config_source)
    try:
        state_dict = load_file(str(weights_file))
    except SafetensorError as err:
        raise ValueError(f"{weights_file} is not a readable safetensors file: {err}") from None
    return load_weights(net, state_dict, str(weights_file))


# ----------------------------------------------------------------------------- the Hub


def looks_like_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub repo id (``owner/name``) rather than a local path."""
    return bool(_REPO_ID.match(name)) and not os.path.exists(name)


def resolve_pretrained(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    subfolder: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """The local folder holding ``config.json`` + ``model.safetensors`` for a folder or a Hub repo id.

    A Hub repo is fetched (or found in the cache) with ``hf_hub_download`` -- just the two files.
    """
    path = Path(name_or_path)
    if subfolder:
        path = path / subfolder
    if path.is_dir():
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a pretrained ENTED folder: {name} is missing")
        return path
    name = str(name_or_path)
    if not looks_like_repo_id(name):
        raise FileNotFoundError(f"{name}: no such folder, and not a Hugging Face Hub repo id (owner/name)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    files = {}
    for file_name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            files[file_name] = hf_hub_download(
                name,
                file_name,
                subfolder=subfolder,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                force_download=force_download,
            )
        except LocalEntryNotFoundError as err:
            raise FileNotFoundError(
                f"{name}: {file_name} is not in the local Hub cache and cannot be downloaded "
                f"(offline or local_files_only): {err}"
            ) from None
        except (RepositoryNotFoundError, EntryNotFoundError) as err:
            raise FileNotFoundError(f"{name}: {file_name} not found on the Hub: {err}") from None
    folder = Path(files[WEIGHTS_NAME]).parent
    if Path(files[CONFIG_NAME]).parent != folder:  # cannot happen with one snapshot, but be exact
        raise RuntimeError(f"{name}: config and weights resolved to different folders")
    return folder


def from_pretrained(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    subfolder: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> nn.Module:
    """Loads a network from a pretrained folder, a ``.safetensors`` file, or a Hub repo id."""
    path = Path(name_or_path)
    if path.is_file() and path.suffix == ".safetensors":
        return load_safetensors(path)
    folder = resolve_pretrained(
        name_or_path, revision, cache_dir, subfolder, token, local_files_only, force_download
    )
    return load_safetensors(folder / WEIGHTS_NAME)  # with the config.json beside it


def push_to_hub(
    net: nn.Module,
    repo_id: str,
    commit_message: str = "Upload ENTED weights",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    model_card: str | None = None,
) -> Any:
    """Uploads ``config.json`` + ``model.safetensors`` (and a ``README.md`` card) to a Hub model repo.

    The repo is created if needed. Returns ``huggingface_hub``'s commit info.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(net, tmp)
        Path(tmp, "README.md").write_text(model_card or _default_model_card(net), encoding="utf-8")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            repo_type="model",
        )


def _default_model_card(net: nn.Module) -> str:
    config = json.dumps(network_config(net), indent=2, sort_keys=True)
    return (
        "---\nlibrary_name: ented\ntags:\n- face-restoration\n- reference-based\n---\n\n"
        f"# {type(net).__name__} weights\n\n"
        "Reference-based blind face restoration with `ented`.\n\n"
        "```python\nfrom ented.restoration import ENTEDRestorer\n\n"
        'restorer = ENTEDRestorer.from_pretrained("<this repo id>")\n'
        "restored = restorer.restore(face, reference)\n```\n\n"
        f"Config:\n\n```json\n{config}\n```\n"
    )


# ----------------------------------------------------------------------------- BasicSR checkpoints


def read_basicsr_state_dict(
    checkpoint: str | os.PathLike, param_key: str | None = "params_ema"
) -> tuple[dict[str, torch.Tensor], str]:
    """Reads a BasicSR checkpoint's state dict.

    Args:
        checkpoint: ``net_g_<iter>.pth``.
        param_key: Which entry to use. ``"params_ema"`` (default) falls back to ``"params"`` when the
            checkpoint has no EMA weights; any other key is required. ``None`` takes the file as a
            bare state dict.

    Returns:
        ``(state_dict, key_used)``; a DDP ``module.`` prefix is stripped.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{checkpoint} is not a readable PyTorch checkpoint: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{checkpoint} does not hold a dict of weights")
    bare = all(isinstance(value, torch.Tensor) for value in data.values())
    if param_key is None or (bare and param_key == "params_ema"):
        if not bare:
            raise ValueError(f"{checkpoint} is not a bare state dict; its keys are {sorted(data)}")
        state, used = data, "(bare state dict)"
    elif param_key in data:
        state, used = data[param_key], param_key
    elif param_key == "params_ema" and "params" in data:
        logger.info("%s has no 'params_ema'; using 'params'", checkpoint)
        state, used = data["params"], "params"
    else:
        raise KeyError(f"{checkpoint} has no {param_key!r} entry; it has {sorted(data)}")
    return {key.removeprefix("module."): value for key, value in state.items()}, used


def network_config_from_option(option_file: str | os.PathLike, network_key: str = "network_g") -> dict:
    """The architecture config (``type`` -> ``_class_name``) from a BasicSR option YAML."""
    import yaml

    option_file = Path(option_file)
    try:
        with open(option_file, encoding="utf-8") as f:
            option = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"option file not found: {option_file}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{option_file} is not valid YAML: {err}") from None
    network = (option or {}).get(network_key) if isinstance(option, dict) else None
    if not isinstance(network, dict) or "type" not in network:
        raise ValueError(f"{option_file} has no '{network_key}' section with a 'type'")
    config = dict(network)
    config["_class_name"] = config.pop("type")
    return config


def find_option_file(checkpoint: str | os.PathLike, network_key: str = "network_g") -> Path | None:
    """The BasicSR option YAML of a checkpoint's experiment, if exactly one config is found.

    Looks in the checkpoint's folder and, for ``experiments/<name>/models/x.pth``, in
    ``experiments/<name>/``. Several YAML files are fine as long as their ``network_g`` agree.
    """
    folder = Path(checkpoint).resolve().parent
    candidates = [folder, folder.parent] if folder.name == "models" else [folder]
    for candidate in candidates:
        found = {}
        for yml in sorted(candidate.glob("*.yml")) + sorted(candidate.glob("*.yaml")):
            try:
                found[yml] = network_config_from_option(yml, network_key)
            except (ValueError, OSError):
                continue
        configs = {json.dumps(config, sort_keys=True) for config in found.values()}
        if len(configs) > 1:
            raise ValueError(
                f"option files with different '{network_key}' next to {checkpoint}: "
                f"{[str(path) for path in found]}; pass the option file explicitly"
            )
        if found:
            return next(iter(found))
    return None


def load_basicsr_checkpoint(
    checkpoint: str | os.PathLike,
    config: dict[str, Any] | str | os.PathLike | None = None,
    param_key: str | None = "params_ema",
) -> nn.Module:
    """Builds the network and loads a BasicSR checkpoint into it.

    Args:
        checkpoint: ``net_g_<iter>.pth``.
        config: The architecture: a dict of constructor arguments (``type``/``_class_name`` optional,
            default ``ENTED``), a path to a BasicSR option YAML (``network_g`` is read) or to a
            ``config.json``. Default: the option YAML in the checkpoint's experiment folder.
        param_key: See :func:`read_basicsr_state_dict`.
    """
    arch_config, source = _architecture(checkpoint, config)
    state, used = read_basicsr_state_dict(checkpoint, param_key)
    net = build_network(arch_config, source)
    return load_weights(net, state, f"{checkpoint} ({used})")


def resolve_architecture(
    checkpoint: str | os.PathLike, config: dict[str, Any] | str | os.PathLike | None
) -> dict[str, Any]:
    """The architecture config for a checkpoint, from ``config`` or the experiment's option file."""
    return _architecture(checkpoint, config)[0]


def _architecture(
    checkpoint: str | os.PathLike, config: dict[str, Any] | str | os.PathLike | None
) -> tuple[dict[str, Any], str]:
    """:func:`resolve_architecture`, and where the config came from (for messages)."""
    if isinstance(config, dict):
        return dict(config), "the given config"
    if config is not None:
        path = Path(config)
        if path.suffix == ".json":
            return read_config(path), str(path)
        return network_config_from_option(path), f"{path} (network_g)"
    option_file = find_option_file(checkpoint)
    if option_file is None:
        raise ValueError(
            f"{checkpoint}: a BasicSR checkpoint does not record its architecture, and no option "
            "file (*.yml with network_g) was found in its experiment folder; pass config= (a dict, "
            "an option YAML or a config.json)"
        )
    logger.info("architecture of %s read from %s", checkpoint, option_file)
    return network_config_from_option(option_file), f"{option_file} (network_g)"


def convert_basicsr_checkpoint(
    checkpoint: str | os.PathLike,
    save_directory: str | os.PathLike,
    config: dict[str, Any] | str | os.PathLike | None = None,
    param_key: str | None = "params_ema",
) -> Path:
    """Converts a BasicSR ``.pth`` into a pretrained folder (``config.json`` + ``model.safetensors``).

    The checkpoint is loaded into the architecture first, so a mismatch is refused before anything is
    written. Returns the folder.
    """
    net = load_basicsr_checkpoint(checkpoint, config, param_key)
    return save_pretrained(net, save_directory)


def find_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest ``net_g_*.pth`` of a BasicSR experiment folder (``net_g_latest.pth`` wins)."""
    folder = Path(folder)
    models = folder / "models" if (folder / "models").is_dir() else folder
    latest = models / "net_g_latest.pth"
    if latest.is_file():
        return latest
    numbered = []
    for path in models.glob("net_g_*.pth"):
        match = re.fullmatch(r"net_g_(\d+)\.pth", path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    return max(numbered)[1] if numbered else None


def load_network(
    weights: str | os.PathLike,
    config: dict[str, Any] | str | os.PathLike | None = None,
    param_key: str | None = "params_ema",
    **hub_kwargs,
) -> nn.Module:
    """Loads a network from whatever ``weights`` is.

    - a ``.pth``/``.pt``/``.ckpt``/``.bin`` file: a BasicSR checkpoint (``config`` / ``param_key`` apply);
    - a ``.safetensors`` file: with ``config`` or the ``config.json`` beside it;
    - a folder with ``config.json``: a pretrained folder;
    - a BasicSR experiment folder (``models/net_g_*.pth``): its newest checkpoint;
    - ``hf://owner/repo/path/file[@revision]``: one file of a Hub repo, read as above (a
      ``.safetensors`` file takes the ``config.json`` beside it in the repo unless ``config`` is given);
    - otherwise a Hub repo id (``hub_kwargs``: revision, cache_dir, subfolder, token, local_files_only).
    """
    from ented.hub_weights import is_hub_spec

    if is_hub_spec(weights):
        return _load_hub_file(str(weights), config, param_key, hub_kwargs.get("cache_dir"))
    path = Path(weights)
    if path.is_file():
        if path.suffix == ".safetensors":
            if config is None:
                return load_safetensors(path)
            return load_safetensors(path, *_architecture(path, config))
        if path.suffix in CHECKPOINT_SUFFIXES:
            return load_basicsr_checkpoint(path, config, param_key)
        raise ValueError(f"{path}: unknown weights format (expected .pth or .safetensors)")
    if path.is_dir() and not (path / CONFIG_NAME).is_file():
        checkpoint = find_checkpoint(path)
        if checkpoint is None:
            raise FileNotFoundError(
                f"{path} holds neither {CONFIG_NAME} + {WEIGHTS_NAME} nor BasicSR net_g_*.pth checkpoints"
            )
        logger.info("using checkpoint %s", checkpoint)
        return load_basicsr_checkpoint(checkpoint, config, param_key)
    return from_pretrained(weights, **hub_kwargs)


def _load_hub_file(spec: str, config, param_key: str | None, cache_dir) -> nn.Module:
    """Loads ``hf://owner/repo/path/file[@revision]`` (see :func:`load_network`)."""
    from ented.hub_weights import parse_hub_spec, resolve_weights

    repo_id, filename, revision = parse_hub_spec(spec)
    local = Path(resolve_weights(spec, cache_dir=cache_dir))
    if local.suffix == ".safetensors":
        if config is None:
            config_name = str(Path(filename).with_name(CONFIG_NAME).as_posix())
            config_spec = f"hf://{repo_id}/{config_name}" + (f"@{revision}" if revision else "")
            return load_safetensors(
                local, read_config(resolve_weights(config_spec, cache_dir=cache_dir)), config_spec
            )
        return load_safetensors(local, *_architecture(local, config))
    return load_basicsr_checkpoint(local, config, param_key)
