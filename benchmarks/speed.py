"""Speed and size of the ENTED generator next to GFPGANv1Clean (and CodeFormer when importable).

For each network: parameters, GFLOPs per image (``torch.utils.flop_counter.FlopCounterMode``,
batch 1, 2 FLOPs per multiply-add), and

- on CPU: batch-1 latency under ``torch.inference_mode`` (warm-up, then the median of
  ``--repeats`` runs; the networks are timed in turn within each repeat, so that a busy
  machine slows them alike);
- on CUDA: images/s in fp32, fp16 and bf16 (autocast) at batch 1 and 16, with peak memory.

All networks have random weights. Usage::

    python benchmarks/speed.py --size 512 --device cpu --repeats 5
    python benchmarks/speed.py --device cuda --batch-sizes 1 16
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import ented  # noqa: E402, F401  (torchvision shim before gfpgan/basicsr imports)
from ented.archs.ented_arch import ENTED  # noqa: E402


class _GFPGANWrapper(torch.nn.Module):
    """GFPGANv1Clean returns (image, intermediates); keep the image."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, lq, ref=None):
        return self.net(lq, return_rgb=False)[0]


def build_networks(size: int, skip: set) -> tuple[dict, list]:
    """Returns ({name: module}, [messages about skipped networks])."""
    nets, notes = {}, []
    nets[f"ENTED-{size}"] = ENTED(out_size=size)
    if "gfpgan" not in skip:
        try:
            from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

            # GFPGAN v1.3/v1.4's released configuration
            gfpgan = GFPGANv1Clean(
                out_size=size,
                num_style_feat=512,
                channel_multiplier=2,
                decoder_load_path=None,
                fix_decoder=False,
                num_mlp=8,
                input_is_latent=True,
                different_w=True,
                narrow=1,
                sft_half=True,
            )
            nets[f"GFPGANv1Clean-{size}"] = _GFPGANWrapper(gfpgan)
        except ImportError as err:
            notes.append(f"GFPGANv1Clean skipped: {err}")
    if "codeformer" not in skip:
        try:
            from basicsr.archs.codeformer_arch import CodeFormer  # only in CodeFormer's own basicsr

            codeformer = CodeFormer(dim_embd=512, codebook_size=1024, n_head=8, n_layers=9)
            nets["CodeFormer-512"] = _CodeFormerWrapper(codeformer)
        except ImportError as err:
            notes.append(
                "CodeFormer skipped: not importable in this process (it bundles its own basicsr, "
                f"which cannot share a process with PyPI basicsr): {err}"
            )
    return nets, notes


class _CodeFormerWrapper(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, lq, ref=None):
        return self.net(lq, w=0.5, adain=True)[0]


def count_gflops(net: torch.nn.Module, size: int) -> float:
    x = torch.rand(1, 3, size, size) * 2 - 1
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:  # FlopCounterMode's module tracker does not work under inference_mode
        net(x, x)
    return counter.get_total_flops() / 1e9


def cpu_latency(nets: dict, size: int, repeats: int, warmup: int) -> dict:
    """Median batch-1 seconds per network, the networks interleaved within each repeat.

    Inputs are contiguous (NCHW): GFPGANv1Clean fails on channels-last inputs (it calls .view),
    while ENTED converts to channels-last inside by default.
    """
    x = torch.rand(1, 3, size, size) * 2 - 1
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


def cuda_throughput(net: torch.nn.Module, size: int, batch: int, dtype: torch.dtype, repeats: int) -> tuple:
    """(images/s, peak GiB) on CUDA under autocast (fp32: no autocast)."""
    x = (torch.rand(batch, 3, size, size, device="cuda") * 2 - 1).contiguous(
        memory_format=torch.channels_last
    )
    autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32)
    with torch.inference_mode(), autocast:
        for _ in range(3):
            net(x, x)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(repeats):
            net(x, x)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return batch * repeats / elapsed, torch.cuda.max_memory_allocated() / 2**30


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image size (GFPGAN/CodeFormer: 512)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per network")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per network first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="CUDA batch sizes")
    parser.add_argument("--skip", nargs="*", default=[], choices=["gfpgan", "codeformer"])
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets, notes = build_networks(args.size, set(args.skip))
    for net in nets.values():
        net.eval()
    for note in notes:
        print(note)
    rows = {
        name: {"params (M)": sum(p.numel() for p in net.parameters()) / 1e6} for name, net in nets.items()
    }
    if not args.no_flops:
        for name, net in nets.items():
            rows[name]["GFLOPs/img"] = count_gflops(net, args.size)
    if args.device == "cpu":
        print(f"CPU: {torch.get_num_threads()} threads, batch 1, median of {args.repeats}")
        latency = cpu_latency(nets, args.size, args.repeats, args.warmup)
        for name, seconds in latency.items():
            rows[name]["CPU b1 latency (s)"] = seconds
    else:
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device available")
        print(f"CUDA: {torch.cuda.get_device_name()}")
        for name, net in nets.items():
            net.cuda()
            for dtype, label in ((torch.float32, "fp32"), (torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                for batch in args.batch_sizes:
                    ips, peak = cuda_throughput(net, args.size, batch, dtype, max(args.repeats, 5))
                    rows[name][f"{label} b{batch} img/s"] = ips
                    rows[name][f"{label} b{batch} peak GiB"] = peak
            net.cpu()
            torch.cuda.empty_cache()
    print_table(rows)


def print_table(rows: dict) -> None:
    columns = list(dict.fromkeys(col for row in rows.values() for col in row))
    name_width = max(len("network"), *(len(n) for n in rows))
    widths = [max(len(c), 8) for c in columns]
    print(
        "| "
        + " | ".join(["network".ljust(name_width)] + [c.rjust(w) for c, w in zip(columns, widths)])
        + " |"
    )
    print("|" + "|".join(["-" * (name_width + 2)] + ["-" * (w + 1) + ":" for w in widths]) + "|")
    for name, row in rows.items():
        cells = [f"{row[c]:.2f}" if c in row else "-" for c in columns]
        print(
            "| " + " | ".join([name.ljust(name_width)] + [c.rjust(w) for c, w in zip(cells, widths)]) + " |"
        )


if __name__ == "__main__":
    main()
