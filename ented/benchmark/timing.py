"""Timing primitives of ``ented-benchmark speed``: FLOPs, latency, throughput, matmul rate.

Pure PyTorch, nothing from ``ented`` or BasicSR, so that the CodeFormer child process (which
imports CodeFormer's own ``basicsr``) can load this file by path and time its network with
the same functions. Every function takes the device as an argument: the CPU runs the very
code the GPU runs (autocast, ``torch.compile``), only smaller, so a typo fails on CPU first.

Networks are called as ``net(lq, ref)``; wrap those that take one input.
"""

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

# names on the command line and in the records -> torch dtypes (fp32: no autocast)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def random_faces(batch: int, size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, 3, size, size) uniform in [-1, 1], contiguous NCHW.

    Contiguous on purpose: GFPGANv1Clean calls ``.view`` and fails on channels-last inputs,
    while ENTED converts to channels-last inside.
    """
    return torch.rand(batch, 3, size, size, device=device) * 2 - 1


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str):
    """Autocast to ``dtype`` ('fp16'/'bf16') on the device; 'fp32' is a disabled autocast."""
    return torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")


def count_gflops(net: torch.nn.Module, size: int) -> float:
    """GFLOPs of one batch-1 forward (2 FLOPs per multiply-add), counted on CPU in fp32.

    ``FlopCounterMode``'s module tracker does not work under ``inference_mode``: ``no_grad``.
    """
    x = random_faces(1, size, next(net.parameters()).device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(x, x)
    return counter.get_total_flops() / 1e9


def cpu_latency(nets: dict, size: int, repeats: int, warmup: int) -> dict:
    """Median batch-1 seconds per network on CPU, the networks timed in turn within each repeat
    (a busy machine then slows them alike).

    Args:
        nets: {name: module in eval mode, on CPU}.
        size: Image size.
        repeats: Timed runs per network.
        warmup: Untimed runs per network first.

    Returns:
        {name: median seconds}.
    """
    x = random_faces(1, size)
    times = {name: [] for name in nets}
    with torch.inference_mode():
        for _ in range(warmup):
            for net in nets.values():
                net(x, x)
        for _ in range(repeats):
            for name, net in nets.items():
                start = time.perf_counter()
                net(x, x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def throughput(
    net: torch.nn.Module,
    size: int,
    batch: int,
    dtype: str,
    device: torch.device,
    compile_backend: str | None,
    repeats: int,
    warmup: int = 2,
) -> dict:
    """Images per second of ``net`` at one batch size, dtype and compile setting.

    The first warm-up call compiles (when ``compile_backend`` is set) and is timed apart.
    Peak memory is CUDA's allocator peak over the timed runs (None on CPU).

    Args:
        net: Module in eval mode, on ``device``.
        size: Image size.
        batch: Batch size.
        dtype: 'fp32', 'fp16' or 'bf16' (autocast).
        device: Where ``net`` lives.
        compile_backend: ``torch.compile`` backend ('inductor', 'eager', ...) or None.
        repeats: Timed calls.
        warmup: Untimed calls first (at least 1).

    Returns:
        {'images_per_s', 'seconds_per_batch', 'peak_memory_gib', 'compile_s'}.
    """
    if compile_backend is not None:
        torch._dynamo.reset()  # every measurement compiles afresh; no cache limit is reached
        net = torch.compile(net, backend=compile_backend)
    x = random_faces(batch, size, device)
    with torch.inference_mode(), autocast(device, dtype):
        synchronize(device)
        start = time.perf_counter()
        net(x, x)
        synchronize(device)
        first_call_s = time.perf_counter() - start
        for _ in range(max(warmup, 1) - 1):
            net(x, x)
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(repeats):
            net(x, x)
        synchronize(device)
        elapsed = time.perf_counter() - start
    return {
        "images_per_s": batch * repeats / elapsed,
        "seconds_per_batch": elapsed / repeats,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "compile_s": first_call_s if compile_backend is not None else None,
    }


def matmul_tflops(device: torch.device, dtype: str = "bf16", n: int = 8192, repeats: int = 20) -> float:
    """Measured dense (n x n) @ (n x n) rate in TFLOP/s: the card's practical peak for ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def step_rate(step, batch: int, iters: int, device: torch.device, warmup: int = 1) -> dict:
    """Images per second of a training step ``step(i)`` (called with i = 1, 2, ...).

    Returns:
        {'images_per_s' (from the median step), 'seconds_per_step' (median), 'min_seconds',
        'peak_memory_gib' (CUDA, else None)}.
    """
    for i in range(1, warmup + 1):
        step(i)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + 1, warmup + iters + 1):
        start = time.perf_counter()
        step(i)
        synchronize(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "images_per_s": batch / median,
        "seconds_per_step": median,
        "min_seconds": min(times),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
