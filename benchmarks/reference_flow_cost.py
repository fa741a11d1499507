"""What the reference flow costs a training step: the demo's network with and without it, on CPU.

Times forward + backward of ``options/demo_train_tiny.yml``'s network (batch 8, 64 px) with no
flow, with the flow estimated up to 32 px (the demo's setting) and up to 64 px; median of
``--repeats`` steps after two warm-up steps, one thread by default::

    python benchmarks/reference_flow_cost.py
"""

import argparse
import statistics
import time

import torch

from ented.archs.ented_arch import ENTED
from ented.experiment import load_option_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    network = {k: v for k, v in load_option_file("demo_train_tiny.yml")["network_g"].items() if k != "type"}
    size = network["out_size"]
    lq, ref = torch.randn(args.batch, 3, size, size), torch.randn(args.batch, 3, size, size)
    for flow in (0, 32, 64):
        net = ENTED(**{**network, "reference_flow": flow})
        times = []
        for step in range(2 + args.repeats):
            started = time.perf_counter()
            net(lq, ref).mean().backward()
            if step >= 2:
                times.append(time.perf_counter() - started)
        print(
            f"reference_flow {flow}: {statistics.median(times):.3f} s per step (batch {args.batch}, {size} px)"
        )


if __name__ == "__main__":
    main()
