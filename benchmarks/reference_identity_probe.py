"""Can the network's own encoders tell whether a reference shows the input's person?

A network that should not paste a stranger's marks (issue 9: another identity's reference must
not beat no reference) has to tell, from the degraded input and the reference, whether they show
one person. This probe trains what ENTED has for it -- E_lq and E_ref (the demo's channel plan)
-- with a small verification head on their 16x16 features (average-pooled, then an MLP on
``[a ; b ; a * b ; |a - b|]``) on pairs of the train identities, half of them with another
person's reference (``mismatched_reference_prob: 0.5``), by binary cross-entropy, and prints every
100 steps how well it separates the validation identities' pairs (192 fixed pairs): accuracy at
0.5, ROC AUC, and the shares of confident answers (p > 0.9 for the same person, p < 0.1 for
another). ``--probe gate`` trains the reference gate instead
(:class:`~ented.archs.reference_gate.ReferenceGate`: both images side by side into one small CNN).
docs/architecture.md quotes both::

    python benchmarks/reference_detail.py --workdir bench_ref --prepare-only   # data seed 0
    python benchmarks/reference_identity_probe.py bench_ref --steps 2400
    python benchmarks/reference_identity_probe.py bench_ref --steps 2400 --probe gate
"""

import os
import time

import torch
import torch.nn.functional as F
from reference_flow_probe import datasets, probe_parser
from torch import nn

from ented.archs.ented_arch import FeatureEncoder, channel_plan
from ented.archs.reference_gate import ReferenceGate
from ented.experiment import load_option_file

VALIDATION_PAIRS = 192


def identity_of(path: str) -> str:
    """The identity folder an image of the synthetic set lives in."""
    return os.path.basename(os.path.dirname(path))


class VerificationProbe(nn.Module):
    """(lq, ref) (B, 3, S, S) each -> same-person logit (B,), from fresh E_lq / E_ref encoders."""

    def __init__(self, channels: dict[int, int]):
        super().__init__()
        self.lq_encoder, self.ref_encoder = FeatureEncoder(channels), FeatureEncoder(channels)
        width = channels[min(channels)]
        self.head = nn.Sequential(nn.Linear(4 * width, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))

    def forward(self, lq: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        a = self.lq_encoder(lq)[-1].mean((2, 3))
        b = self.ref_encoder(ref)[-1].mean((2, 3))
        return self.head(torch.cat([a, b, a * b, (a - b).abs()], 1))[:, 0]


class GateProbe(nn.Module):
    """(lq, ref) (B, 3, S, S) each -> same-person logit (B,), from a fresh reference gate."""

    def __init__(self, size: int):
        super().__init__()
        self.gate = ReferenceGate(size)

    def forward(self, lq: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.gate(lq, ref[:, None])[:, 0]


def batch_of(samples: list) -> tuple:
    """Stacked lq, ref and the same-person labels (1.0 / 0.0) of training samples."""
    lq, ref = (torch.stack([s[k] for s in samples]) for k in ("lq", "ref"))
    same = torch.tensor([float(identity_of(s["gt_path"]) == identity_of(s["ref_path"])) for s in samples])
    return lq, ref, same


def main() -> None:
    parser = probe_parser(__doc__.split("\n")[0], steps=2400, batch=16)
    parser.add_argument("--probe", choices=("encoders", "gate"), default="encoders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_option_file("demo_train_tiny.yml")
    train, val = datasets(args.workdir.resolve(), base, mismatched_reference_prob=0.5)
    torch.manual_seed(1000)  # the validation pairs: the same for every run
    lq_val, ref_val, same_val = batch_of([val[i % len(val)] for i in range(VALIDATION_PAIRS)])
    torch.manual_seed(args.seed)
    network = base["network_g"]
    if args.probe == "gate":
        probe = GateProbe(network["out_size"])
    else:
        probe = VerificationProbe(
            channel_plan(network["out_size"], network.get("width", 1.0), network["channels"])
        )
    optimizer = torch.optim.Adam(probe.parameters(), lr=args.lr, betas=(0.9, 0.99))
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        picks = torch.randint(0, len(train), (args.batch,))
        lq, ref, same = batch_of([train[int(i)] for i in picks])
        optimizer.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(probe(lq, ref), same).backward()
        optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                p = torch.sigmoid(probe(lq_val, ref_val))
            positive, negative = p[same_val == 1], p[same_val == 0]
            accuracy = float(((p > 0.5).float() == same_val).float().mean())
            auc = float((positive[:, None] > negative[None, :]).float().mean())
            print(
                f"step {step}: validation accuracy {accuracy:.3f}, AUC {auc:.3f}, same person p > 0.9: "
                f"{float((positive > 0.9).float().mean()):.2f}, another p < 0.1: "
                f"{float((negative < 0.1).float().mean()):.2f} [{time.perf_counter() - started:.0f} s]",
                flush=True,
            )


if __name__ == "__main__":
    main()
