"""The CodeFormer side of ``ented-benchmark speed``: a child process that times CodeFormer.

CodeFormer ships its own copy of BasicSR, which cannot share a process with the PyPI
``basicsr`` that ``ented`` registers into, so :mod:`ented.benchmark.speed` starts this file as a
script (never as a module of ``ented``) with one argument, a JSON set-up::

    {"repo": "/path/to/CodeFormer clone", "size": 512, "device": "cuda", "cpu_repeats": 3,
     "warmup": 1, "flops": true, "dtypes": ["fp32", "bf16"], "batch_sizes": [1, 16],
     "compile_backends": [null, "inductor"], "repeats": 10}

It answers with one JSON line on stdout: ``{"params_m", "gflops_per_img", "cpu_latency_s",
"throughput": [{"dtype", "batch", "compile_backend", <timing.throughput's fields>}], "source"}``.
Everything else goes to stderr. CodeFormer is found and configured by
:mod:`ented.benchmark.codeformer_worker` (the quality benchmark's worker) and timed by
:mod:`ented.benchmark.timing`, both loaded from this folder by path, with random weights.
"""

import importlib.util
import json
import os
import sys

# Run as a script, Python puts this folder first on sys.path; its modules are loaded by path below.
HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0]) == HERE:
    sys.path.pop(0)

import torch  # noqa: E402


def load_sibling(name: str):
    """A module of this folder, loaded by path under a private name (not as ``ented.benchmark``)."""
    spec = importlib.util.spec_from_file_location(f"_ented_speed_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CodeFormerImage(torch.nn.Module):
    """CodeFormer as ``net(lq, ref=None) -> image``, fidelity weight 0.5 with AdaIN (its inference)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, lq: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(lq, w=0.5, adain=True)[0]


def measure(setup: dict) -> dict:
    """Times CodeFormer as the set-up asks (see the module docstring)."""
    worker = load_sibling("codeformer_worker")
    timing = load_sibling("timing")
    arch, source = worker.load_codeformer_class(setup["repo"])
    net = CodeFormerImage(arch(**worker.CODEFORMER_CONFIG)).eval()
    size = setup["size"]
    result = {"params_m": sum(p.numel() for p in net.parameters()) / 1e6, "source": source}
    result["gflops_per_img"] = timing.count_gflops(net, size) if setup["flops"] else None
    result["cpu_latency_s"] = None
    if setup["cpu_repeats"] > 0:
        latency = timing.cpu_latency({"CodeFormer": net}, size, setup["cpu_repeats"], setup["warmup"])
        result["cpu_latency_s"] = latency["CodeFormer"]
    device = torch.device(setup["device"])
    net.to(device)
    result["throughput"] = [
        {
            "dtype": dtype,
            "batch": batch,
            "compile_backend": backend,
            **timing.throughput(net, size, batch, dtype, device, backend, setup["repeats"]),
        }
        for backend in setup["compile_backends"]
        for dtype in setup["dtypes"]
        for batch in setup["batch_sizes"]
    ]
    return result


def main() -> int:
    replies = sys.stdout
    sys.stdout = sys.stderr  # whatever CodeFormer's code prints must not mix with the answer
    result = measure(json.loads(sys.argv[1]))
    replies.write(json.dumps(result) + "\n")
    replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
