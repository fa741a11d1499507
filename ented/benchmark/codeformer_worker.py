"""The CodeFormer side of the quality benchmark: a worker process that restores aligned faces.

CodeFormer ships its own modified copy of BasicSR, which cannot share a process with the PyPI
``basicsr`` that ``ented`` registers into. So the benchmark (:class:`ented.benchmark.methods.CodeFormerRunner`)
starts this file as a script -- never as ``ented.benchmark.codeformer_worker``, since importing
anything under ``ented`` imports PyPI ``basicsr`` -- and talks to it through files and JSON lines,
never pickle:

1. The parent writes one JSON line to the worker's stdin, the set-up::

       {"network": "codeformer" | "stand-in", "weights": "/path/codeformer.pth", "w": 0.5,
        "repo": "/path/to/CodeFormer clone" | null, "device": "cpu"}

   The worker answers one JSON line on stdout, ``{"ready": true, "source": "<where the network
   came from>"}``, or ``{"error": "..."}`` and exits with status 1.
2. For each batch the parent writes ``(B, H, W, 3)`` uint8 RGB aligned faces to a ``.npy`` file
   and sends ``{"input": "in.npy", "output": "out.npy"}``; the worker writes the restored faces,
   same shape and dtype, to ``output`` and answers ``{"done": "out.npy", "seconds": <network
   time>}`` (or ``{"error": "..."}``). Files are read with ``allow_pickle=False``.
3. The parent closes stdin; the worker exits with status 0.

Everything else the worker prints goes to stderr. Networks:

- ``codeformer``: ``CodeFormer`` (dim_embd 512, codebook_size 1024, n_head 8, n_layers 9,
  connect_list 32/64/128/256: the released model) from ``basicsr.archs.codeformer_arch`` of a
  clone of CodeFormer's repository (``repo``, put first on ``sys.path``) or of an installed package
  that ships it (``codeformer.basicsr.archs.codeformer_arch``, or a CodeFormer-patched ``basicsr``);
  weights ``params_ema`` of ``codeformer.pth``, read with ``weights_only=True``; called as
  ``net(x, w=w, adain=True)[0]`` on (B, 3, 512, 512) RGB in [-1, 1].
- ``stand-in``: :class:`StandInCodeFormer`, a network of ours with CodeFormer's call signature, so
  that the tests run this protocol where CodeFormer is not installed.
"""

import importlib
import json
import os
import sys
import time

# Run as a script, Python puts this file's folder (ented/benchmark) first on sys.path; its modules
# are not meant to be imported from here.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

CODEFORMER_MODULES = ("basicsr.archs.codeformer_arch", "codeformer.basicsr.archs.codeformer_arch")
# CodeFormer's released configuration (its inference_codeformer.py).
CODEFORMER_CONFIG = dict(
    dim_embd=512, codebook_size=1024, n_head=8, n_layers=9, connect_list=["32", "64", "128", "256"]
)


class StandInCodeFormer(nn.Module):
    """A stand-in with CodeFormer's interface: ``forward(x, w, adain) -> (out, logits, lq_feat)``.

    ``out = w * mix(x) + (1 - w) * x``, ``mix`` a 1x1 convolution whose weights come from the
    weights file like CodeFormer's (``params_ema``). With identity weights the output is the input,
    which the tests use as a known answer.
    """

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor, w: float = 0.5, adain: bool = True):
        return w * self.mix(x) + (1 - w) * x, None, None


def load_codeformer_class(repo: str | None):
    """CodeFormer's architecture class, from the clone ``repo`` or an installed package; returns (class, source)."""
    if repo is not None:
        if not os.path.isfile(os.path.join(repo, "basicsr", "archs", "codeformer_arch.py")):
            raise FileNotFoundError(
                f"{repo} is not a clone of CodeFormer's repository (no basicsr/archs/codeformer_arch.py)"
            )
        sys.path.insert(0, os.path.abspath(repo))
    problems = []
    for name in CODEFORMER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            problems.append(f"{name}: {error}")
            continue
        if hasattr(module, "CodeFormer"):
            return module.CodeFormer, f"{name} ({module.__file__})"
        problems.append(f"{name}: no CodeFormer class")
    raise ImportError(
        "CodeFormer's architecture is not importable; pass the path of a clone of "
        "https://github.com/sczhou/CodeFormer with --codeformer-repo. Tried: " + "; ".join(problems)
    )


def build_network(setup: dict) -> tuple:
    """The network of a set-up line, weights loaded, in eval mode; returns (network, source)."""
    weights = setup["weights"]
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"CodeFormer weights {weights} do not exist")
    if setup["network"] == "stand-in":
        net, source = StandInCodeFormer(), "stand-in (ented.benchmark.codeformer_worker.StandInCodeFormer)"
    elif setup["network"] == "codeformer":
        arch, source = load_codeformer_class(setup.get("repo"))
        net = arch(**CODEFORMER_CONFIG)
    else:
        raise ValueError(f"unknown network {setup['network']!r}; expected 'codeformer' or 'stand-in'")
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    for key in ("params_ema", "params"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    net.load_state_dict(checkpoint, strict=True)
    return net.eval().to(setup.get("device", "cpu")), source


@torch.no_grad()
def restore_file(net: nn.Module, request: dict, w: float, device: str) -> float:
    """Restores the faces of ``request['input']`` into ``request['output']``; returns the network seconds."""
    faces = np.load(request["input"], allow_pickle=False)
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3:
        raise ValueError(f"{request['input']}: expected (B, H, W, 3) uint8, got {faces.shape} {faces.dtype}")
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
    start = time.perf_counter()
    out = net(x, w=w, adain=True)[0]
    seconds = time.perf_counter() - start
    out = ((out.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    np.save(request["output"], np.ascontiguousarray(out), allow_pickle=False)
    return seconds


def serve(requests, replies) -> int:
    """Reads the set-up, then batch requests, from ``requests``; answers on ``replies`` (JSON lines)."""

    def answer(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        setup = json.loads(requests.readline())
        net, source = build_network(setup)
    except (OSError, ImportError, ValueError, RuntimeError, KeyError) as error:
        answer({"error": f"{type(error).__name__}: {error}"})
        return 1
    answer({"ready": True, "source": source})
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            seconds = restore_file(net, request, float(setup.get("w", 0.5)), setup.get("device", "cpu"))
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            answer({"error": f"{type(error).__name__}: {error}"})
            continue
        answer({"done": request["output"], "seconds": seconds})
    return 0


def main() -> int:
    replies = sys.stdout
    sys.stdout = sys.stderr  # whatever CodeFormer's code prints must not mix with the replies
    return serve(sys.stdin, replies)


if __name__ == "__main__":
    sys.exit(main())
