"""The methods the quality benchmark compares, and one interface to run them all.

A method is given on the command line as ``kind[:[name=]weights]``:

- ``bicubic``: the aligned input, upsampled (bicubic) to the test size when it is smaller: the floor.
  The triplet datasets already bring every input to the test size, so at present this is the input.
- ``ented:<weights>``: an ENTED network, anything :func:`ented.restoration.pretrained.load_network`
  reads (a pretrained folder, a BasicSR ``.pth`` with its option YAML, an experiment folder, a
  ``.safetensors`` file, ``hf://`` specs). Several may be given, e.g. ``ented:dense=a ented:sparse=b``.
- ``ented-blind:<weights>``: an ENTED network run without references (``ref=None``: it reads its own
  input as reference), e.g. one trained blind (``reference: none``).
- ``gfpgan:<weights.pth>``: ``gfpgan.archs.gfpganv1_clean_arch.GFPGANv1Clean`` in GFPGAN v1.3/v1.4's
  released configuration (``params_ema`` of e.g. ``GFPGANv1.4.pth``), built at the test size; or a
  BasicSR checkpoint of :class:`~ented.archs.gfpgan_baseline_arch.ENTEDGFPGANv1Clean` with its option
  YAML in the experiment folder (``ented-benchmark train``), built as that YAML says.
- ``codeformer:<weights.pth>``: CodeFormer in a worker process
  (:mod:`ented.benchmark.codeformer_worker`), fidelity weight ``w`` from ``--codeformer-w``.

Every runner has ``restore(lq, refs) -> out``: ``lq`` (B, 3, S, S) RGB in [-1, 1], ``refs``
(B, K, 3, S, S) or None, ``out`` (B, 3, S, S) in [-1, 1]. Blind methods ignore ``refs``. A method
whose weights are missing is reported as such (:func:`missing_weights`), never run with random
weights.
"""

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ented.hub_weights import is_hub_spec, read_state_dict

logger = logging.getLogger(__name__)

KINDS = ("bicubic", "ented", "ented-blind", "gfpgan", "codeformer")
DISPLAY = {
    "bicubic": "bicubic",
    "ented": "ENTED",
    "ented-blind": "ENTED (no reference)",
    "gfpgan": "GFPGAN",
    "codeformer": "CodeFormer",
}
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "codeformer_worker.py")
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass
class MethodSpec:
    """One method of the benchmark.

    Attributes:
        kind: One of :data:`KINDS`.
        name: The row label.
        weights: Weights path or Hub spec (None for bicubic).
        options: What else changes the outputs (CodeFormer's ``w``, ``network``, ``repo``).
    """

    kind: str
    name: str
    weights: str | None = None
    options: dict = field(default_factory=dict)

    def identity(self) -> dict:
        """What determines the outputs, the label left out."""
        return {"kind": self.kind, "weights": self.weights, "options": self.options}


def parse_method(
    text: str, codeformer_w: float = 0.5, codeformer_network: str = "codeformer", codeformer_repo=None
) -> MethodSpec:
    """Parses ``kind[:[name=]weights]`` (see the module docstring).

    Raises:
        ValueError: an unknown kind, bicubic with weights, or a network kind without weights.
    """
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise ValueError(f"method {text!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    name, weights = None, rest or None
    if rest and "=" in rest.split(os.sep)[0] and not is_hub_spec(rest):
        label, weights = rest.split("=", 1)
        name = f"{DISPLAY[kind]} {label}" if kind != "bicubic" else label
    if kind == "bicubic":
        if weights:
            raise ValueError(f"method {text!r}: bicubic takes no weights")
        return MethodSpec("bicubic", name or "bicubic")
    if not weights:
        raise ValueError(f"method {text!r}: {kind} needs weights, e.g. {kind}:path/to/weights")
    options = {}
    if kind == "codeformer":
        options = {"w": float(codeformer_w), "network": codeformer_network}
        if codeformer_repo:
            options["repo"] = os.path.abspath(codeformer_repo)
    if name is None:
        stem = os.path.splitext(os.path.basename(weights.rstrip("/\\")))[0]
        name = f"{DISPLAY[kind]} {stem}" + (f" w={codeformer_w:g}" if kind == "codeformer" else "")
    return MethodSpec(kind, name, weights, options)


def parse_methods(texts: list, **codeformer) -> list:
    """Parses every method; two methods with one label are an error."""
    specs = [parse_method(text, **codeformer) for text in texts]
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"two methods are labelled {repeated[0]!r}; name them: kind:name=weights")
    return specs


def missing_weights(spec: MethodSpec) -> str | None:
    """Why the method cannot run for lack of weights (a message), or None when they are there."""
    if spec.weights is None or is_hub_spec(spec.weights) or os.path.exists(spec.weights):
        return None
    if spec.kind in ("ented", "ented-blind") and _HUB_REPO_ID.match(spec.weights):
        return None  # a Hub repo id: load_network reads the Hub cache (errors are reported there)
    return f"weights {spec.weights} not found"


def _digest_path(path: str, digest) -> None:
    if os.path.isfile(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return
    for parent, folders, names in os.walk(path):
        folders.sort()
        for file_name in sorted(names):
            full = os.path.join(parent, file_name)
            digest.update(os.path.relpath(full, path).encode("utf-8") + b"\0")
            _digest_path(full, digest)


def method_key(spec: MethodSpec, data_key: str) -> str:
    """Content hash of a method's run: its spec, its weights' bytes and the test data's key.

    Local weights are hashed file by file (a folder: every file, with its relative name); a Hub
    spec or repo id by its text, since its cache may not be local yet.
    """
    digest = hashlib.sha256(json.dumps(spec.identity(), sort_keys=True).encode("utf-8"))
    digest.update(data_key.encode("utf-8"))
    if spec.weights is not None and os.path.exists(spec.weights):
        _digest_path(spec.weights, digest)
    if spec.kind == "codeformer" and spec.options.get("network") == "stand-in":
        _digest_path(WORKER_SCRIPT, digest)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- runners


class BicubicRunner:
    """The aligned input, bicubic-upsampled to ``size`` when smaller."""

    def __init__(self, size: int):
        self.size = size

    def restore(self, lq: torch.Tensor, refs: torch.Tensor | None = None) -> torch.Tensor:
        if lq.shape[-2:] == (self.size, self.size):
            return lq.clone()
        return F.interpolate(lq, size=(self.size, self.size), mode="bicubic", align_corners=False).clamp(
            -1, 1
        )

    def close(self) -> None:
        pass


class NetworkRunner:
    """An in-process network called as ``forward(lq, refs)``."""

    def __init__(self, net: torch.nn.Module, device, uses_reference: bool, seed: int = 0):
        self.net = net.eval().to(device)
        self.device = device
        self.uses_reference = uses_reference
        self.seed = seed
        self.batches = 0

    @torch.no_grad()
    def restore(self, lq: torch.Tensor, refs: torch.Tensor | None = None) -> torch.Tensor:
        lq = lq.to(self.device)
        refs = None if refs is None or not self.uses_reference else refs.to(self.device)
        devices = [self.device] if torch.device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # GFPGAN draws noise: the same on every run
            torch.manual_seed(self.seed + self.batches)
            self.batches += 1
            out = self.net(lq, refs) if self.uses_reference else self.net(lq)
        return out.clamp(-1, 1).cpu()

    def close(self) -> None:
        pass


def build_gfpgan(weights: str, size: int) -> torch.nn.Module:
    """GFPGANv1Clean at ``size``, weights loaded strictly: a checkpoint of ``ENTEDGFPGANv1Clean`` with
    its option YAML (``ented-benchmark train``) as that YAML says, else GFPGAN v1.3/v1.4's released
    configuration."""
    from ented.benchmark import networks
    from ented.restoration.pretrained import find_option_file, load_network, load_weights

    if os.path.isfile(weights) and find_option_file(weights) is not None:
        from ented.archs.gfpgan_baseline_arch import ENTEDGFPGANv1Clean

        net = load_network(weights)
        if not isinstance(net, ENTEDGFPGANv1Clean):
            raise ValueError(
                f"GFPGAN weights {weights}: its option YAML builds {type(net).__name__}, not GFPGAN"
            )
        if net.config["out_size"] != size:
            raise ValueError(
                f"GFPGAN weights {weights} are for {net.config['out_size']} px faces; this test set is {size} px"
            )
        return net

    model = networks.build_gfpgan(size)
    state, used = read_state_dict(weights, nested_keys=("params_ema", "params"), what="GFPGAN weights")
    hint = (
        ""
        if size == 512
        else f" (GFPGAN's released weights are for 512 px faces; this test set is {size} px)"
    )
    load_weights(model.net, state, f"GFPGAN weights {weights} ({used}){hint}")
    return model


class CodeFormerRunner:
    """CodeFormer in a worker process (:mod:`ented.benchmark.codeformer_worker`), spoken to in files and JSON.

    Args:
        weights: CodeFormer's ``codeformer.pth`` (or the stand-in's weights).
        w: CodeFormer's fidelity weight (0: quality, 1: fidelity).
        network: ``'codeformer'``, or ``'stand-in'`` (ours, for tests).
        repo: A clone of CodeFormer's repository to import it from (None: an installed package).
        device: Where the worker runs the network.

    Raises:
        RuntimeError: the worker could not build the network (its message is kept).
    """

    def __init__(self, weights: str, w: float = 0.5, network: str = "codeformer", repo=None, device="cpu"):
        self.folder = tempfile.TemporaryDirectory(prefix="ented-codeformer-")
        self.process = subprocess.Popen(
            [sys.executable, WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        setup = {
            "network": network,
            "weights": os.path.abspath(weights),
            "w": w,
            "repo": repo,
            "device": str(device),
        }
        reply = self._ask(setup)
        if "error" in reply:
            self.close()
            raise RuntimeError(f"CodeFormer worker: {reply['error']}")
        logger.info("CodeFormer worker ready: %s", reply["source"])
        self.batches = 0

    def _ask(self, message: dict) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(
                f"CodeFormer worker exited with status {code} without answering (see its stderr)"
            )
        return json.loads(line)

    def restore(self, lq: torch.Tensor, refs: torch.Tensor | None = None) -> torch.Tensor:
        faces = ((lq.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        source = os.path.join(self.folder.name, f"in_{self.batches}.npy")
        target = os.path.join(self.folder.name, f"out_{self.batches}.npy")
        self.batches += 1
        np.save(source, np.ascontiguousarray(faces), allow_pickle=False)
        reply = self._ask({"input": source, "output": target})
        if "error" in reply:
            raise RuntimeError(f"CodeFormer worker: {reply['error']}")
        out = np.load(target, allow_pickle=False)
        os.remove(source)
        os.remove(target)
        if out.shape != faces.shape:
            raise RuntimeError(
                f"CodeFormer worker returned faces of shape {out.shape}, expected {faces.shape}"
            )
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(127.5).sub(1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self.process.stdout.close()
        self.folder.cleanup()


def build_runner(spec: MethodSpec, size: int, device, seed: int = 0):
    """The runner of ``spec`` (see the module docstring); its weights must be there."""
    if spec.kind == "bicubic":
        return BicubicRunner(size)
    if spec.kind in ("ented", "ented-blind"):
        from ented.restoration.pretrained import load_network

        uses_reference = spec.kind == "ented"
        return NetworkRunner(load_network(spec.weights), device, uses_reference=uses_reference, seed=seed)
    if spec.kind == "gfpgan":
        return NetworkRunner(build_gfpgan(spec.weights, size), device, uses_reference=False, seed=seed)
    return CodeFormerRunner(spec.weights, device=device, **spec.options)


def spec_record(spec: MethodSpec) -> dict:
    """A JSON-able description of the method, for the report."""
    return asdict(spec)
