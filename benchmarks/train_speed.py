"""Training speed of ENTEDModel: seconds per iteration and peak memory, with random data and weights.

Runs the model's real ``optimize_parameters`` (generator step with the 512 recipe's losses,
discriminator step with lazy R1, EMA) on random tensors, so data loading is not measured.
The perceptual/style term needs VGG19 weights: give ``--vgg-weights`` (BasicSR's
``vgg19-dcbb9e9d.pth``) to include it; without it the term is left out and the table says so.

    python benchmarks/train_speed.py --size 512 --batch 1 --iters 3            # CPU
    python benchmarks/train_speed.py --size 512 --batch 8 --device cuda --iters 10
"""

import argparse
import os
import resource
import shutil
import tempfile
import time

import torch

import ented  # noqa: F401  (registers ENTED in BasicSR)


def options(size: int, batch: int, device: str, vgg_weights: str | None) -> dict:
    train = {
        "stage": 2,
        "optim_g": {"type": "Adam", "lr": 2e-3, "betas": [0, 0.99]},
        "optim_d": {"type": "Adam", "lr": 1.882e-3, "betas": [0, 0.9905]},
        "attention_lr": 1e-4,
        "attention_opt": {"type": "ENTEDAttentionReconstructionLoss", "loss_weight": 15.0},
        "gan_opt": {"type": "GANLoss", "gan_type": "wgan_softplus", "loss_weight": 1.5},
        "identity_opt": {"type": "ENTEDIdentityLoss", "loss_weight": 10.0},
        "r1_interval": 16,
    }
    if vgg_weights:
        train["perceptual_opt"] = {
            "type": "PerceptualLoss",
            "layer_weights": {f"relu{i}_1": 1.0 for i in range(1, 6)},
            "vgg_type": "vgg19",
            "range_norm": True,
            "perceptual_weight": 1.0,
            "style_weight": 1000.0,
            "criterion": "l1",
        }
    return {
        "name": "train_speed",
        "model_type": "ENTEDModel",
        "num_gpu": 1 if device == "cuda" else 0,
        "is_train": True,
        "dist": False,
        "rank": 0,
        "world_size": 1,
        "network_g": {"type": "ENTED", "out_size": size},
        "network_d": {"type": "ENTEDDiscriminator", "out_size": size},
        "path": {},
        "train": train,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations, after one warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--vgg-weights", help="BasicSR's vgg19-dcbb9e9d.pth, to include the perceptual term")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from basicsr.models import build_model

    workdir = tempfile.mkdtemp()
    cwd = os.getcwd()
    try:
        os.chdir(
            workdir
        )  # BasicSR's VGG loader looks for experiments/pretrained_models/vgg19-dcbb9e9d.pth here
        if args.vgg_weights:
            os.makedirs("experiments/pretrained_models")
            os.symlink(
                os.path.abspath(os.path.join(cwd, args.vgg_weights)),
                "experiments/pretrained_models/vgg19-dcbb9e9d.pth",
            )
        model = build_model(options(args.size, args.batch, args.device, args.vgg_weights))
        data = {k: torch.rand(args.batch, 3, args.size, args.size) * 2 - 1 for k in ("lq", "gt", "ref")}
        times = []
        for step in range(1, args.iters + 2):
            model.feed_data(data)
            if args.device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            model.optimize_parameters(step)  # lazy R1 every 16 steps: the median is the common step
            if args.device == "cuda":
                torch.cuda.synchronize()
            if step > 1:
                times.append(time.perf_counter() - started)
    finally:
        os.chdir(cwd)
        shutil.rmtree(workdir)
    params_g = sum(p.numel() for p in model.net_g.parameters()) / 1e6
    params_d = sum(p.numel() for p in model.net_d.parameters()) / 1e6
    peak = (
        f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (CUDA)"
        if args.device == "cuda"
        else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process RSS)"
    )
    terms = ", ".join(sorted(model.log_dict))
    print(
        f"ENTEDModel training step at {args.size} px, batch {args.batch}, {args.device}, {args.threads} threads"
    )
    print(f"  generator {params_g:.1f}M parameters, discriminator {params_d:.1f}M")
    print(
        f"  loss terms: {terms}" + ("" if args.vgg_weights else "  (no perceptual/style: no --vgg-weights)")
    )
    print(
        f"  seconds per iteration: median {sorted(times)[len(times) // 2]:.2f}, min {min(times):.2f} over {len(times)}"
    )
    print(f"  images per second: {args.batch / sorted(times)[len(times) // 2]:.2f}")
    print(f"  peak memory: {peak}")


if __name__ == "__main__":
    main()
