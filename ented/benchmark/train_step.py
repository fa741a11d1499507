"""Training-step throughput: ENTEDModel's G+D step of the 512 recipe next to GFPGAN's equivalent.

ENTED: the real ``ENTEDModel.optimize_parameters`` (generator step, EMA, discriminator step)
built from ``options/train_ented_stage2_512.yml`` with random weights and random data, so data
loading is not measured. GFPGAN: GFPGANv1Clean + its discriminator shape (StyleGAN2, channel
multiplier 1), Adam as in GFPGAN's recipe, L1 + GAN (wgan_softplus) terms, EMA, lazy R1.

The loss networks need weights that are not available offline. ``loss_networks``:

- ``'random'``: VGG19 (perceptual + style) and ArcFace (identity) with random weights, used by
  both steps: the arithmetic of the recipe's terms, meaningless loss values.
- ``'off'``: no perceptual and no identity term in either step.

GFPGAN's facial-component discriminators and pyramid loss are left out of its step.
Steps are numbered from 1; lazy R1 runs every 16th step in both (the median step has none).
"""

import copy
import logging
import os
import tempfile
from contextlib import contextmanager

import torch
from basicsr.losses import build_loss

from ented.benchmark.networks import build_gfpgan, build_gfpgan_discriminator
from ented.benchmark.timing import random_faces
from ented.experiment import load_option_file

RECIPE = "train_ented_stage2_512.yml"
LOSS_NETWORKS = ("random", "off")
VGG19_FILE = "experiments/pretrained_models/vgg19-dcbb9e9d.pth"  # where BasicSR's VGG loader looks


@contextmanager
def loss_network_folder(loss_networks: str):
    """Runs the block in a temporary folder; with 'random', BasicSR finds a random VGG19 there."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)
        try:
            if loss_networks == "random":
                from torchvision.models import vgg19

                os.makedirs(os.path.dirname(VGG19_FILE))
                torch.save(vgg19(weights=None).state_dict(), VGG19_FILE)
            yield
        finally:
            os.chdir(cwd)


def recipe_options(size: int, device: str, loss_networks: str, width: float = 1.0) -> dict:
    """The 512 recipe's networks and training options at ``size``, nothing loaded from disk.

    Raises:
        ValueError: ``loss_networks`` is not 'random' or 'off'.
    """
    if loss_networks not in LOSS_NETWORKS:
        raise ValueError(f"loss_networks must be one of {LOSS_NETWORKS}, got {loss_networks!r}")
    recipe = load_option_file(RECIPE)
    train = copy.deepcopy(recipe["train"])
    if loss_networks == "off":
        train.pop("perceptual_opt", None)
        train.pop("identity_opt", None)
    elif train.get("identity_opt"):
        train["identity_opt"]["weights_path"] = None  # random ArcFace, same arithmetic
    return {
        "name": "speed_train_step",
        "model_type": "ENTEDModel",
        "num_gpu": 1 if device == "cuda" else 0,
        "is_train": True,
        "dist": False,
        "rank": 0,
        "world_size": 1,
        "network_g": {**recipe["network_g"], "out_size": size, "width": width},
        "network_d": {**recipe["network_d"], "out_size": size, "width": width},
        "path": {},
        "train": train,
    }


class ENTEDStep:
    """``step(i)``: one ENTEDModel.optimize_parameters on a fixed random batch."""

    def __init__(self, model, batch: int, size: int):
        self.model = model
        data = {k: random_faces(batch, size) for k in ("lq", "gt", "ref")}
        model.feed_data(data)

    def __call__(self, i: int) -> None:
        self.model.optimize_parameters(i)

    @property
    def loss_terms(self) -> list:
        return sorted(self.model.log_dict)


class GFPGANStep:
    """``step(i)``: GFPGANv1Clean's G step (L1 + GAN, plus ``extra_losses``), EMA, D step with lazy R1.

    Args:
        size: Image size.
        batch: Batch size.
        device: Where to train.
        extra_losses: {name: loss(out, gt)} added to the generator's terms (the shared random
            perceptual and identity networks); a loss returning a tuple has its terms summed.
        tiny: Narrow networks (dry runs).
    """

    # GFPGAN's train_gfpgan_v1.yml
    PIXEL_WEIGHT = 0.1
    GAN_WEIGHT = 0.1
    LR = 2e-3
    BETAS = (0.0, 0.99)
    EMA_DECAY = 0.5 ** (32 / (10 * 1000))
    R1_GAMMA = 10.0
    R1_INTERVAL = 16

    def __init__(self, size: int, batch: int, device: torch.device, extra_losses: dict, tiny: bool = False):
        self.net_g = build_gfpgan(size, tiny).to(device).train()
        self.net_g_ema = copy.deepcopy(self.net_g).eval().requires_grad_(False)
        self.net_d = build_gfpgan_discriminator(size, tiny).to(device).train()
        self.optimizer_g = torch.optim.Adam(self.net_g.parameters(), lr=self.LR, betas=self.BETAS)
        self.optimizer_d = torch.optim.Adam(self.net_d.parameters(), lr=self.LR, betas=self.BETAS)
        self.gan = build_loss(
            {"type": "GANLoss", "gan_type": "wgan_softplus", "loss_weight": self.GAN_WEIGHT}
        ).to(device)
        self.extra_losses = extra_losses
        self.lq = random_faces(batch, size, device)
        self.gt = random_faces(batch, size, device)
        self.loss_terms = ["l_g_pix", "l_g_gan", *sorted(extra_losses), "l_d_real", "l_d_fake", "l_d_r1"]

    def __call__(self, i: int) -> None:
        from basicsr.losses.gan_loss import r1_penalty

        self.optimizer_g.zero_grad(set_to_none=True)
        self.net_d.requires_grad_(False)
        out = self.net_g(self.lq)
        total = self.PIXEL_WEIGHT * torch.nn.functional.l1_loss(out, self.gt)
        total = total + self.gan(self.net_d(out), True, is_disc=False)
        for loss in self.extra_losses.values():
            value = loss(out, self.gt)
            total = total + (sum(v for v in value if v is not None) if isinstance(value, tuple) else value)
        total.backward()
        self.optimizer_g.step()
        with torch.no_grad():
            for ema, param in zip(self.net_g_ema.parameters(), self.net_g.parameters()):
                ema.mul_(self.EMA_DECAY).add_(param, alpha=1 - self.EMA_DECAY)

        self.net_d.requires_grad_(True)
        self.optimizer_d.zero_grad(set_to_none=True)
        fake = out.detach()
        loss_d = self.gan(self.net_d(self.gt), True, is_disc=True) + self.gan(
            self.net_d(fake), False, is_disc=True
        )
        loss_d.backward()
        if i % self.R1_INTERVAL == 0:
            real = self.gt.detach().requires_grad_(True)
            penalty = r1_penalty(self.net_d(real), real)
            (self.R1_GAMMA / 2 * penalty * self.R1_INTERVAL).backward()
        self.optimizer_d.step()


def build_steps(size: int, batch: int, device: torch.device, loss_networks: str, tiny: bool = False) -> dict:
    """{'ENTED': ENTEDStep, 'GFPGANv1Clean': GFPGANStep} sharing the random loss networks.

    Call inside :func:`loss_network_folder` (BasicSR reads the VGG19 file while building).
    """
    from basicsr.models import build_model

    import ented  # noqa: F401  (registers ENTEDModel, its losses and networks in BasicSR)
    from ented.benchmark.networks import ENTED_TINY_WIDTH

    opt = recipe_options(size, device.type, loss_networks, width=ENTED_TINY_WIDTH if tiny else 1.0)
    basicsr_logger = logging.getLogger("basicsr")
    level = basicsr_logger.level
    basicsr_logger.setLevel(logging.WARNING)  # BaseModel.print_network logs every layer
    try:
        model = build_model(opt)
    finally:
        basicsr_logger.setLevel(level)
    ented_step = ENTEDStep(model, batch, size)  # feed_data moves the batch to the model's device
    shared = {name: model.losses[name] for name in ("perceptual", "identity") if name in model.losses}
    return {"ENTED": ented_step, "GFPGANv1Clean": GFPGANStep(size, batch, device, shared, tiny)}
