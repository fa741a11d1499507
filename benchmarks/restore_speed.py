"""Seconds per aligned face through ``ENTEDRestorer.restore`` (batch 1), default ENTED, random weights.

Usage::

    python benchmarks/restore_speed.py [--size 512] [--repeats 3] [--threads 2] [--device cpu]
        [--precision fp32] [--references 1] [--reference-check off]

Times the whole ``restore()`` call on uint8 images -- conversion, the network, clamping and
conversion back -- after one warm-up call. Prints wall-clock and process CPU seconds per face
(process CPU time adds up all threads) and peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="out_size of ENTED (default 512)")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--references", type=int, default=1, help="references per face")
    parser.add_argument("--reference-check", default="off", choices=("off", "warn"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    import ented  # noqa: F401  (registers ENTED)
    from ented.archs.ented_arch import ENTED
    from ented.restoration import ENTEDRestorer

    torch.manual_seed(0)
    net = ENTED(out_size=args.size, width=args.width)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    restorer = ENTEDRestorer(
        net, device=args.device, precision=args.precision, batch_size=1, reference_check=args.reference_check
    )
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    refs = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.references)]

    restorer.restore(face, refs)  # warm-up
    walls, cpus = [], []
    for _ in range(args.repeats):
        if restorer.device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        restorer.restore(face, refs)
        if restorer.device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"ENTED out_size={args.size} width={args.width} ({params:.1f}M parameters), "
        f"{args.references} reference(s), device={restorer.device}, precision={args.precision}, "
        f"threads={args.threads}"
    )
    print(
        f"restore() batch 1: {statistics.median(walls):.2f} s wall per face (median of {args.repeats}; "
        f"min {min(walls):.2f}), {statistics.median(cpus):.2f} s process CPU; peak RSS {peak_gb:.1f} GB"
    )


if __name__ == "__main__":
    main()
