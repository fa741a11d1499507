"""Weights in: a local path or Hugging Face Hub spec to a file, a state dict read safely, the device to run on.

Every network that takes pretrained weights in ``ented`` (ArcFace, LPIPS backbones, the FID
Inception) accepts either form:

- a local file: ``"experiments/pretrained_models/backbone.pth"`` (``~`` is expanded);
- a Hub file: ``"hf://owner/repo/path/in/repo.pth"``, optionally pinned with
  ``"hf://owner/repo/path/in/repo.pth@<revision>"``; it is fetched with
  ``huggingface_hub.hf_hub_download`` into the usual Hub cache. With ``HF_HUB_OFFLINE=1`` (or
  ``local_files_only=True``) nothing is downloaded and a file already in the cache is used.
"""

from __future__ import annotations

import os
import pickle

HUB_PREFIX = "hf://"


def is_hub_spec(path_or_hub_spec) -> bool:
    """Returns whether the argument names a Hub file (``hf://owner/repo/filename``)."""
    return isinstance(path_or_hub_spec, str) and path_or_hub_spec.startswith(HUB_PREFIX)


def parse_hub_spec(spec: str) -> tuple[str, str, str | None]:
    """Splits ``hf://owner/repo/path/file[@revision]`` into ``(repo_id, filename, revision)``."""
    body = spec[len(HUB_PREFIX) :]
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"Hub weights spec {spec!r} must look like 'hf://owner/repo/filename[@revision]'")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision


def resolve_weights(
    path_or_hub_spec: str | os.PathLike | None = None,
    *,
    repo_id: str | None = None,
    filename: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
) -> str:
    """Returns a local path for a weights file given by path, by Hub spec, or by repo_id + filename.

    Args:
        path_or_hub_spec: A local file path, or ``"hf://owner/repo/filename[@revision]"``.
            Leave it None to give ``repo_id`` and ``filename`` instead.
        repo_id: Hub repository (``"owner/repo"``), with ``filename``.
        filename: File inside the Hub repository.
        revision: Branch, tag or commit of the Hub repository (default: ``main``).
        cache_dir: Hub cache folder (default: huggingface_hub's, ``HF_HUB_CACHE``).
        local_files_only: Use only the Hub cache. None follows ``HF_HUB_OFFLINE``.
        token: Hub token (default: the saved login, ``HF_TOKEN``).
        force_download: Download again even if the file is in the cache.

    Returns:
        The path of an existing local file.

    Raises:
        FileNotFoundError: The local file does not exist, or the Hub file is neither in the cache
            nor downloadable; the message names what was asked for.
    """
    if path_or_hub_spec is not None and (repo_id is not None or filename is not None):
        raise ValueError("give either path_or_hub_spec or repo_id + filename, not both")
    if path_or_hub_spec is None:
        if repo_id is None or filename is None:
            raise ValueError("resolve_weights needs a path, an 'hf://' spec, or both repo_id and filename")
        return _download(repo_id, filename, revision, cache_dir, local_files_only, token, force_download)
    if is_hub_spec(path_or_hub_spec):
        repo_id, filename, spec_revision = parse_hub_spec(path_or_hub_spec)
        revision = spec_revision or revision
        return _download(repo_id, filename, revision, cache_dir, local_files_only, token, force_download)

    path = os.path.expanduser(os.fspath(path_or_hub_spec))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist (from {os.fspath(path_or_hub_spec)!r})")
    return path


def _download(repo_id, filename, revision, cache_dir, local_files_only, token, force_download) -> str:
    from huggingface_hub import constants, hf_hub_download

    if local_files_only is None:
        local_files_only = constants.is_offline_mode()
    try:
        return hf_hub_download(
            repo_id=repo_id,
            filename=filename,
            revision=revision,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
        )
    except Exception as error:  # the hub raises many types (offline, 404, gated, connection)
        where = "the local Hub cache" if local_files_only else "the Hub or the local Hub cache"
        raise FileNotFoundError(
            f"weights file {filename!r} of Hub repository {repo_id!r} (revision {revision or 'main'}) "
            f"is not in {where} ({cache_dir or constants.HF_HUB_CACHE}): {type(error).__name__}: {error}"
        ) from error


def load_weights_file(path: str | os.PathLike, nested_keys: tuple = ("params", "state_dict")) -> dict:
    """Reads a state dict from a ``.safetensors`` or ``torch.save`` file, on the CPU.

    Args:
        path: A local file (resolve Hub specs with :func:`resolve_weights` first).
        nested_keys: If the file holds a dict with one of these keys (BasicSR's ``'params'``,
            Lightning's ``'state_dict'``), the state dict is taken from there.

    Returns:
        Name -> tensor, with a DataParallel ``'module.'`` prefix removed.
    """
    return read_state_dict(path, nested_keys)[0]


def read_state_dict(
    path: str | os.PathLike,
    nested_keys: tuple = ("params", "state_dict"),
    what: str = "weights file",
    require_key: bool = False,
) -> tuple[dict, str]:
    """The one state-dict reader: ``.safetensors`` or ``torch.save`` (as data only), on the CPU.

    Args:
        path: A local file.
        nested_keys: Entries tried in order (BasicSR's ``params_ema`` / ``params``, Lightning's
            ``state_dict``); the first that holds a dict is the state dict. Without any, the file
            itself must be a state dict (name -> tensor).
        what: What the file is, for messages (``"checkpoint"``, ``"RetinaFace weights"``).
        require_key: Refuse a bare state dict: one of ``nested_keys`` must be there.

    Returns:
        ``(state_dict, key_used)``: name -> tensor, a DataParallel ``'module.'`` prefix removed;
        ``key_used`` is ``"(bare state dict)"`` when the file is one.

    Raises:
        FileNotFoundError, UnreadableFileError: naming the file.
        KeyError: none of ``nested_keys`` is there, and the file is no bare state dict (or
            ``require_key``).
        ValueError: the file holds no state dict.
    """
    import torch

    path = os.fspath(path)
    data = load_safetensors_file(path) if path.endswith(".safetensors") else load_torch_file(path, what)
    if not isinstance(data, dict):
        verb = "hold" if what.endswith("s") else "holds"
        raise ValueError(f"{what} {path} {verb} a {type(data).__name__}, not a state dict")
    used = next((key for key in nested_keys if isinstance(data.get(key), dict)), None)
    state = data[used] if used is not None else data
    bare = all(isinstance(value, torch.Tensor) for value in state.values())
    if used is None and nested_keys and (require_key or not bare):
        raise KeyError(f"{what} {path} has no {nested_keys[0]!r} entry; it has {sorted(data)}")
    if not bare:
        entries = f"; its keys are {sorted(data)}" if used is None else f" in {used!r}"
        raise ValueError(f"{what} {path} is not a state dict of tensors{entries}")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state, used or "(bare state dict)"


class UnreadableFileError(ValueError):
    """A weights file that is corrupt, truncated, or (``torch.save``) holds more than data (refused)."""


def load_safetensors_file(path: str | os.PathLike) -> dict:
    """Reads a ``.safetensors`` file onto the CPU, naming the file if it is missing or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        return load_file(path, device="cpu")
    except SafetensorError as error:
        raise UnreadableFileError(f"{path} is not a readable safetensors file: {error}") from error


class UnsafeFileError(UnreadableFileError):
    """A ``torch.save`` file refused because unpickling it would call more than data types."""


def load_torch_file(path: str | os.PathLike, what: str = "file", safe_globals: list | None = None):
    """``torch.load`` onto the CPU as data only (``weights_only=True``), naming the file on failure.

    A file whose unpickling would call anything outside tensors, plain containers and the
    ``safe_globals`` given is refused instead of loaded: such a file could run code.

    Args:
        path: A local ``torch.save`` file.
        what: What the file is, for messages (``"training state"``, ``"network checkpoint"``).
        safe_globals: Extra globals (or ``(global, "module.name")`` pairs) the file may use.

    Raises:
        UnreadableFileError: naming ``path`` and why: corrupt or truncated, or (``UnsafeFileError``)
            unsafe content.
        FileNotFoundError: ``path`` does not exist.
    """
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with torch.serialization.safe_globals(list(safe_globals or [])):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(
            f"{what} {path} was refused: it holds objects other than tensors and plain containers, "
            f"and loading it could run code ({_unpickling_reason(error)})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise UnreadableFileError(
            f"{what} {path} cannot be read (corrupt or truncated?): {type(error).__name__}: {_first_line(error)}"
        ) from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _unpickling_reason(error: pickle.UnpicklingError) -> str:
    """The line of torch's long weights-only message that names the refused global."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line]
    return (named or lines or [type(error).__name__])[0]


def resolve_device(device=None):
    """The ``torch.device`` a network runs on: ``None`` or ``"auto"`` picks CUDA, then Apple MPS, then the CPU.

    Args:
        device: None, ``"auto"``, or anything ``torch.device`` takes (``"cuda:1"``, ``"cpu"``, a device).

    Raises:
        ValueError: CUDA or MPS was asked for and is not available.
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but it is not available")
    return device
