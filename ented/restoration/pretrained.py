"""Loading ENTED networks: pretrained folders (``PyTorchModelHubMixin``), BasicSR checkpoints, Hub files.

A *pretrained folder* is what ``net.save_pretrained(folder)`` writes (``huggingface_hub``'s
``PyTorchModelHubMixin``, which :class:`~ented.archs.ented_arch.ENTED` inherits): ``config.json``
(the constructor arguments), ``model.safetensors`` and a ``README.md`` model card.
``ENTED.from_pretrained`` reads it back from a folder or a Hub repo (``HF_HUB_OFFLINE=1`` and
``local_files_only`` honoured); folders of older versions, whose ``config.json`` also holds
``_class_name`` and ``_ented_version``, load the same way. This module adds what the mixin does
not do: strict loading whose errors name the file and the keys, and BasicSR checkpoints.

A *BasicSR checkpoint* is ``torch.save({'params': ..., 'params_ema': ...})``, read as data only; it
carries no architecture, which comes from a dict, an option YAML (``network_g``), or the option
YAML that BasicSR copied into the experiment folder (``experiments/<name>/<name>.yml`` next to
``experiments/<name>/models/net_g_<iter>.pth``).
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ented.hub_weights import is_hub_spec, load_weights_file, parse_hub_spec, read_state_dict, resolve_weights

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DEFAULT_CLASS_NAME = "ENTED"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# the keyword arguments of from_pretrained that say where and how to fetch
HUB_ARGUMENTS = ("revision", "cache_dir", "subfolder", "token", "local_files_only", "force_download")
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


# ----------------------------------------------------------------------------- building


def build_network(config: dict[str, Any], source: str = "the config") -> nn.Module:
    """Builds a network from a config (``_class_name`` or ``type`` picks the BasicSR architecture).

    Args:
        config: Constructor arguments, plus ``_class_name`` (or ``type``; default ``ENTED``); other
            ``_`` keys (``_ented_version``) are ignored.
        source: Where the config came from (a file name), for messages.

    Raises:
        ValueError: Unknown architecture, unknown keys (each named, with the closest known key), or
            values the architecture refuses; the message starts with ``source``.
    """
    # Importing any ented module has run ented/__init__.py, which registers ENTED in this registry.
    from basicsr.utils.registry import ARCH_REGISTRY

    class_name = config.get("_class_name") or config.get("type") or DEFAULT_CLASS_NAME
    try:
        arch = ARCH_REGISTRY.get(class_name)
    except KeyError:
        raise ValueError(f"{source}: unknown architecture {class_name!r}") from None
    kwargs = {key: value for key, value in config.items() if not key.startswith("_") and key != "type"}
    _check_arguments(arch, kwargs, f"{source} ({class_name})")
    return _construct(arch, kwargs, source)


def _construct(arch: type, kwargs: dict[str, Any], source: str) -> nn.Module:
    try:
        return arch(**kwargs)
    except (TypeError, ValueError) as err:  # a value of the wrong type or range in a user's file
        raise ValueError(f"{source}: cannot build {arch.__name__} from it: {err}") from err


def _check_arguments(arch: type, kwargs: dict[str, Any], what: str) -> None:
    """Refuses keys that ``arch``'s constructor does not take, suggesting the closest known ones."""
    parameters = inspect.signature(arch).parameters.values()
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


# ----------------------------------------------------------------------------- pretrained folders


def load_pretrained_weights(
    arch: type, model_id: str, config: dict | None, model_kwargs: dict, **hub_kwargs
) -> nn.Module:
    """The loading step of ``ENTED.from_pretrained`` (``PyTorchModelHubMixin._from_pretrained``).

    Args:
        arch: The class being loaded.
        model_id: A local folder or a Hub repo id.
        config: All of ``config.json`` as the mixin read it (None: there is none).
        model_kwargs: The constructor arguments the mixin took from it (and the caller's overrides).
        hub_kwargs: For :func:`ented.hub_weights.resolve_weights` (revision, cache_dir, token, ...).
    """
    local = os.path.isdir(model_id)
    source = os.path.join(model_id, CONFIG_NAME) if local else f"{CONFIG_NAME} of Hub repo {model_id}"
    if config is None:
        raise FileNotFoundError(f"{model_id} has no {CONFIG_NAME}: not a pretrained {arch.__name__}")
    class_name = config.get("_class_name", arch.__name__)  # written by versions before the mixin
    if class_name != arch.__name__:
        raise ValueError(f"{source} is for {class_name}, not {arch.__name__}")
    # the mixin passes on only the keys the constructor takes: a misspelt one would be dropped
    saved = {key: value for key, value in config.items() if not key.startswith("_")}
    _check_arguments(arch, saved, f"{source} ({arch.__name__})")
    net = _construct(arch, model_kwargs, source)
    if local:
        weights = os.path.join(model_id, WEIGHTS_NAME)
    else:
        hub_kwargs["local_files_only"] = hub_kwargs.get("local_files_only") or None  # None: HF_HUB_OFFLINE
        weights = resolve_weights(repo_id=model_id, filename=WEIGHTS_NAME, **hub_kwargs)
    return load_weights(net, load_weights_file(weights), weights)


def save_pretrained(net: nn.Module, save_directory: str | os.PathLike, **kwargs) -> Path:
    """``net.save_pretrained`` (config, weights, model card; ``kwargs`` go to it); returns the folder."""
    net.save_pretrained(save_directory, **kwargs)
    return Path(save_directory)


def push_to_hub(net: nn.Module, repo_id: str, **kwargs) -> Any:
    """``net.push_to_hub`` (``model_card_kwargs={"training_data": ..., "metrics": ...}`` fill the card)."""
    return net.push_to_hub(repo_id, **kwargs)


def from_pretrained(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    subfolder: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> nn.Module:
    """``ENTED.from_pretrained`` for a pretrained folder or Hub repo id; also takes a ``.safetensors`` file.

    ``subfolder`` is for local folders only (the mixin has no subfolder on the Hub).
    """
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    from ented.archs.ented_arch import ENTED

    path = Path(name_or_path) / (subfolder or "")
    if path.is_file() and path.suffix == ".safetensors":
        return load_safetensors(path)
    name = str(path if path.is_dir() else name_or_path)
    if not path.is_dir():
        if path.exists() or not _REPO_ID.match(name):
            raise FileNotFoundError(
                f"{name}: not a pretrained folder, and not a Hugging Face Hub repo id (owner/name)"
            )
        if subfolder:
            raise ValueError(f"{name}: subfolder={subfolder!r} works for local folders only")
    hub = {"revision": revision, "cache_dir": cache_dir, "token": token, "force_download": force_download}
    try:
        return ENTED.from_pretrained(name, local_files_only=local_files_only, **hub)
    except (EntryNotFoundError, RepositoryNotFoundError) as err:  # config.json, which the mixin fetches
        raise FileNotFoundError(
            f"{name}: {CONFIG_NAME} is neither in the Hub cache nor on the Hub: {err}"
        ) from None


def load_safetensors(
    weights_file: str | os.PathLike,
    config: dict[str, Any] | None = None,
    config_source: str = "the given config",
) -> nn.Module:
    """Builds the network from ``config`` (default: ``config.json`` beside the file) and loads the weights."""
    weights_file = Path(weights_file)
    if config is None:
        config_file = weights_file.with_name(CONFIG_NAME)
        if not config_file.is_file():
            raise FileNotFoundError(f"{weights_file} has no {CONFIG_NAME} beside it; pass the network config")
        config, config_source = read_config(config_file), str(config_file)
    net = build_network(config, config_source)
    return load_weights(net, load_weights_file(weights_file), str(weights_file))


# ----------------------------------------------------------------------------- BasicSR checkpoints


def read_basicsr_state_dict(
    checkpoint: str | os.PathLike, param_key: str | None = "params_ema"
) -> tuple[dict[str, torch.Tensor], str]:
    """Reads a BasicSR checkpoint's state dict, as data only (:func:`ented.hub_weights.read_state_dict`).

    Args:
        checkpoint: ``net_g_<iter>.pth``.
        param_key: Which entry to use. ``"params_ema"`` (default) falls back to ``"params"`` when the
            checkpoint has no EMA weights; any other key is required. ``None`` takes the file as a
            bare state dict.

    Returns:
        ``(state_dict, key_used)``; a DDP ``module.`` prefix is stripped.
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    keys = (
        () if param_key is None else ("params_ema", "params") if param_key == "params_ema" else (param_key,)
    )
    state, used = read_state_dict(
        checkpoint, keys, "checkpoint", require_key=param_key not in (None, "params_ema")
    )
    if used == "params" and param_key == "params_ema":
        logger.info("%s has no 'params_ema'; using 'params'", checkpoint)
    return state, used


def network_config_from_option(option_file: str | os.PathLike, network_key: str = "network_g") -> dict:
    """The architecture config (``type`` -> ``_class_name``) from a BasicSR option YAML."""
    import yaml

    try:
        with open(option_file, encoding="utf-8") as f:
            option = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"option file not found: {option_file}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{option_file} is not valid YAML: {err}") from None
    network = option.get(network_key) if isinstance(option, dict) else None
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
        if len({json.dumps(config, sort_keys=True) for config in found.values()}) > 1:
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
    return load_weights(build_network(arch_config, source), state, f"{checkpoint} ({used})")


def _architecture(
    checkpoint: str | os.PathLike, config: dict[str, Any] | str | os.PathLike | None
) -> tuple[dict[str, Any], str]:
    """The architecture config for a checkpoint and where it came from (for messages)."""
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
    """Converts a BasicSR ``.pth`` into a pretrained folder; a mismatch is refused before anything is written."""
    return save_pretrained(load_basicsr_checkpoint(checkpoint, config, param_key), save_directory)


def find_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest ``net_g_*.pth`` of a BasicSR experiment folder (``net_g_latest.pth`` wins)."""
    models = Path(folder) / "models" if (Path(folder) / "models").is_dir() else Path(folder)
    if (models / "net_g_latest.pth").is_file():
        return models / "net_g_latest.pth"
    numbered = [
        (int(match.group(1)), path)
        for path in models.glob("net_g_*.pth")
        if (match := re.fullmatch(r"net_g_(\d+)\.pth", path.name))
    ]
    return max(numbered)[1] if numbered else None


# ----------------------------------------------------------------------------- whatever it is


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
    - otherwise a Hub repo id (``hub_kwargs``: see :func:`from_pretrained`).
    """
    if is_hub_spec(weights):
        return _load_hub_file(str(weights), config, param_key, hub_kwargs.get("cache_dir"))
    path = Path(weights)
    if path.is_file():
        if path.suffix == ".safetensors":
            return (
                load_safetensors(path)
                if config is None
                else load_safetensors(path, *_architecture(path, config))
            )
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
    repo_id, filename, revision = parse_hub_spec(spec)
    local = Path(resolve_weights(spec, cache_dir=cache_dir))
    if local.suffix != ".safetensors":
        return load_basicsr_checkpoint(local, config, param_key)
    if config is not None:
        return load_safetensors(local, *_architecture(local, config))
    config_spec = f"hf://{repo_id}/{Path(filename).with_name(CONFIG_NAME).as_posix()}"
    config_spec += f"@{revision}" if revision else ""
    return load_safetensors(
        local, read_config(resolve_weights(config_spec, cache_dir=cache_dir)), config_spec
    )


class RestorerWeights:
    """The weights half of ``ENTEDRestorer``: building one from saved weights, and saving its network.

    The class methods take the constructor's arguments (device, precision, ...) as keywords.
    """

    net: nn.Module

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        """A pretrained folder, ``.safetensors`` file or Hub repo (:func:`from_pretrained`; its
        ``HUB_ARGUMENTS`` go there, the other ``kwargs`` to the constructor)."""
        hub = {key: kwargs.pop(key) for key in HUB_ARGUMENTS if key in kwargs}
        return cls(from_pretrained(name_or_path, **hub), **kwargs)

    @classmethod
    def from_checkpoint(cls, checkpoint, config=None, param_key: str | None = "params_ema", **kwargs: Any):
        """A BasicSR checkpoint (``net_g_<iter>.pth``); see :func:`load_basicsr_checkpoint`."""
        return cls(load_basicsr_checkpoint(checkpoint, config, param_key), **kwargs)

    @classmethod
    def load(cls, weights, config=None, param_key: str | None = "params_ema", **kwargs: Any):
        """Whatever ``weights`` is (:func:`load_network`; ``revision``, ``cache_dir``, ``local_files_only``
        go there, the other ``kwargs`` to the constructor)."""
        hub = {key: kwargs.pop(key) for key in ("revision", "cache_dir", "local_files_only") if key in kwargs}
        return cls(load_network(weights, config, param_key, **hub), **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Writes ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` loads them back."""
        return save_pretrained(self.net, save_directory)

    def push_to_hub(self, repo_id: str, **kwargs: Any):
        """Uploads the network to a Hub model repo; see :func:`push_to_hub`."""
        return push_to_hub(self.net, repo_id, **kwargs)
