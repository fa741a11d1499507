"""ENTEDModel: training and evaluation of ENTED inside BasicSR's runners."""

import math
import os
from collections import OrderedDict
from copy import deepcopy
from os import path as osp

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.archs.vgg_arch import VGG_PRETRAIN_PATH
from basicsr.losses import build_loss
from basicsr.losses.gan_loss import r1_penalty
from basicsr.metrics import calculate_metric
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import ARCH_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ented.archs.reference_gate import keep_references
from ented.atomic_io import atomic_imwrite, atomic_torch_save
from ented.hub_weights import is_hub_spec, load_torch_file
from ented.metrics.lpips_metric import _TORCHVISION_WEIGHTS as LPIPS_BACKBONE_WEIGHTS
from ented.options import (
    BASICSR_PATH_KEYS,
    BASICSR_TOP_LEVEL_KEYS,
    BASICSR_TRAIN_KEYS,
    BASICSR_VAL_KEYS,
    check_known_keys,
    parameter_names,
)
from ented.visualization import comparison_grid

# NTED: EMA decay 0.5 ** (32 / 10000), i.e. a half-life of 10k images at batch 32.
DEFAULT_EMA_DECAY = 0.5 ** (32 / 10000)

# The option keys ENTEDModel reads, beside BasicSR's own (ented.options); any other key is an error.
TOP_LEVEL_OPTIONS = BASICSR_TOP_LEVEL_KEYS | {"network_g", "network_d"}
TRAIN_OPTIONS = BASICSR_TRAIN_KEYS | {
    "stage",
    "freeze_codebook",
    "attention_lr",
    "vq_weight",
    "codebook_init",
    "r1_gamma",
    "r1_interval",
    "pixel_opt",
    "perceptual_opt",
    "attention_opt",
    "identity_opt",
    "gan_opt",
    "flow_opt",
    "gate_opt",
}
VAL_OPTIONS = BASICSR_VAL_KEYS | {"suffix", "grids"}
# what the model passes to every metric as data (nondist_validation); not options
METRIC_DATA_KEYS = frozenset({"img", "img2", "ref", "lq", "face_mask", "marks"})
# read by BaseModel (better) and by calculate_metric (type) rather than by the metric function
METRIC_OPTIONS = frozenset({"type", "better"})

# Where to get the weight files a recipe names (messages of check_weight_files).
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
ARCFACE_SOURCE = (
    "insightface's ArcFace iresnet50 backbone.pth (ms1mv3_arcface_r50_fp16, linked from "
    "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch)"
)


@MODEL_REGISTRY.register()
class ENTEDModel(BaseModel):
    """Reference-based face restoration model: ENTED generator, optional discriminator.

    Option tree (see ``options/*.yml`` for commented examples):

    - ``network_g`` (required), ``network_d`` (optional: without it there is no GAN term).
    - ``train.stage``: 1 trains the code book and the autoencoding path with the HQ face as
      the generator's input; 2 (default) restores ``lq``. ``train.freeze_codebook`` (default:
      true in stage 2 when ``network_g`` has a code book) stops the code words training.
    - ``train.optim_g`` (Adam; its ``lr`` is the base rate), ``train.attention_lr``
      (default 1e-4, for ``net_g.parameter_groups()['attention']``), ``train.optim_d``.
    - Loss terms, each optional: ``pixel_opt``, ``perceptual_opt`` (BasicSR's
      ``PerceptualLoss``, giving perceptual and Gram style terms), ``attention_opt``,
      ``identity_opt``, ``gan_opt``, ``flow_opt`` (``ENTEDReferenceFlowLoss``: needs
      ``network_g.reference_flow`` and a dataset with ``correspondences: true``), ``gate_opt``
      (``ENTEDReferenceGateLoss``: needs ``network_g.reference_gate`` and a dataset with
      ``mismatched_reference_prob`` > 0, whose ``reference_match`` then also decides which
      references the network reads in training); ``vq_weight``
      scales the network's VQ loss;
      ``r1_gamma`` / ``r1_interval`` set the lazy R1 penalty.
    - ``train.codebook_init``: ``data`` (default) sets the code words from the first batch's
      latents when the code book trains from scratch (no pretrained weights, not resuming);
      ``random`` keeps the initial words (they tend to collapse onto a few).
    - ``train.ema_decay``: EMA of the generator (0 disables it).
    - ``val``: ``metrics`` (BasicSR metric options; they receive ``img`` (output), ``img2`` (gt),
      ``ref`` and ``lq`` as uint8 BGR images, and ``face_mask`` / ``marks`` when the dataset reads
      sidecars; a metric's NaN means "nothing to score" and the mean is over the other images),
      ``save_img`` writes outputs, ``grids`` (default true) writes LQ | reference | output | GT
      comparison grids.

    Images are expected in [-1, 1] (datasets with ``mean``/``std`` 0.5).

    Checked at construction, before any network is built: option keys that neither this model
    nor BasicSR reads (:func:`check_options`), weight files the options name
    (:func:`check_weight_files`), and metrics that compare with a reference on a dataset with
    ``reference: none`` (:func:`check_metrics_fit_dataset`).
    """

    def __init__(self, opt):
        super().__init__(opt)
        check_options(opt)
        train_opt = opt.get("train") or {}
        self.stage = int(train_opt.get("stage", 2))
        if self.stage not in (1, 2):
            raise ValueError(f"train.stage must be 1 or 2, got {self.stage}")
        check_weight_files(opt, self.stage)
        for dataset_name, dataset_opt in (opt.get("datasets") or {}).items():
            if dataset_name.split("_")[0] in ("val", "test"):
                check_metrics_fit_dataset(opt, dataset_opt)
        net_g = build_network(opt["network_g"])
        if self.is_train and self._freeze_codebook(net_g, train_opt):
            net_g.freeze_codebook()  # before DDP wraps it: DDP tracks the parameters that train
        self.net_g = self.model_to_device(net_g)
        self.print_network(self.net_g)

        path_opt = opt["path"]
        resuming = bool(path_opt.get("resume_state"))
        load_path = path_opt.get("pretrain_network_g")
        if load_path is not None:
            param_key = "params" if resuming else path_opt.get("param_key_g", "params_ema")
            self.load_network(self.net_g, load_path, path_opt.get("strict_load_g", True), param_key)

        if self.is_train:
            self.init_training_settings()

    # ------------------------------------------------------------------ set-up
    def _freeze_codebook(self, net_g, train_opt: dict) -> bool:
        """``train.freeze_codebook``; by default true in stage 2 when the network has a code book."""
        has_codebook = getattr(net_g, "quantizer", None) is not None
        freeze = train_opt.get("freeze_codebook")
        if freeze and not has_codebook:
            raise ValueError(
                "train.freeze_codebook: true, but network_g has no code book (use_vq: false); "
                "drop freeze_codebook or set network_g.use_vq: true"
            )
        return bool(freeze) if freeze is not None else self.stage == 2 and has_codebook

    def init_training_settings(self) -> None:
        train_opt = self.opt["train"]
        path_opt = self.opt["path"]
        self.net_g.train()

        self.ema_decay = float(train_opt.get("ema_decay", DEFAULT_EMA_DECAY))
        if self.ema_decay > 0:
            self.net_g_ema = build_network(self.opt["network_g"]).to(self.device).eval()
            self.net_g_ema.requires_grad_(False)
            load_path = path_opt.get("pretrain_network_g")
            if load_path is not None:
                # On resume the EMA comes back from its own key, not from the trained weights.
                self.load_network(
                    self.net_g_ema, load_path, path_opt.get("strict_load_g", True), "params_ema"
                )
            else:
                self.model_ema(0)

        self.net_d = None
        if self.opt.get("network_d") is not None:
            self.net_d = self.model_to_device(build_network(self.opt["network_d"]))
            self.print_network(self.net_d)
            load_path = path_opt.get("pretrain_network_d")
            if load_path is not None:
                self.load_network(self.net_d, load_path, path_opt.get("strict_load_d", True), "params")
            self.net_d.train()

        self.losses = torch.nn.ModuleDict()
        for name in ("pixel", "perceptual", "attention", "identity", "gan", "flow", "gate"):
            loss_opt = train_opt.get(f"{name}_opt")
            if loss_opt is not None:
                self.losses[name] = build_loss(loss_opt).to(self.device)
        if "gan" in self.losses and self.net_d is None:
            raise ValueError("train.gan_opt is set but there is no network_d to train against")
        has_gate = getattr(self.get_bare_model(self.net_g), "reference_gate", None) is not None
        if has_gate != ("gate" in self.losses):
            raise ValueError(
                "network_g.reference_gate and train.gate_opt go together: the gate learns only from "
                "ENTEDReferenceGateLoss" + ("" if has_gate else ", and the loss needs the gate")
            )
        self.vq_weight = float(train_opt.get("vq_weight", 1.0))
        codebook_init = train_opt.get("codebook_init", "data")
        if codebook_init not in ("data", "random"):
            raise ValueError(f"train.codebook_init must be 'data' or 'random', got {codebook_init!r}")
        bare_g = self.get_bare_model(self.net_g)
        self.codebook_pending_init = (
            codebook_init == "data"
            and getattr(bare_g, "quantizer", None) is not None
            and bare_g.quantizer.codebook.weight.requires_grad
            and path_opt.get("pretrain_network_g") is None
        )
        self.r1_gamma = float(train_opt.get("r1_gamma", 10.0))
        self.r1_interval = int(train_opt.get("r1_interval", 16))

        self.setup_optimizers()
        self.setup_schedulers()
        self.log_dict = OrderedDict()

    def setup_optimizers(self) -> None:
        train_opt = self.opt["train"]
        optim_g = _optimizer_options(train_opt["optim_g"])
        groups = self.get_bare_model(self.net_g).parameter_groups()
        base_lr = optim_g.pop("lr")
        attention_lr = float(train_opt.get("attention_lr", 1e-4))  # default, paper silent
        param_groups = [
            {"params": [p for p in groups["base"] if p.requires_grad], "lr": base_lr},
            {"params": [p for p in groups["attention"] if p.requires_grad], "lr": attention_lr},
        ]
        self.optimizer_g = self.get_optimizer(optim_g.pop("type"), param_groups, base_lr, **optim_g)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_d = _optimizer_options(train_opt["optim_d"])
            self.optimizer_d = self.get_optimizer(
                optim_d.pop("type"), self.net_d.parameters(), optim_d.pop("lr"), **optim_d
            )
            self.optimizers.append(self.optimizer_d)

    def setup_schedulers(self) -> None:
        """BasicSR's schedulers; without ``train.scheduler`` the learning rate stays constant (NTED)."""
        if self.opt["train"].get("scheduler"):
            super().setup_schedulers()

    def model_to_device(self, net):
        """Like BasicSR's, but DistributedDataParallel also works on CPU (gloo)."""
        net = net.to(self.device)
        if self.opt["dist"]:
            device_ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None
            find_unused = self.opt.get("find_unused_parameters", False)
            net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)
        elif self.opt["num_gpu"] > 1:
            net = torch.nn.DataParallel(net)
        return net

    def model_ema(self, decay: float = DEFAULT_EMA_DECAY) -> None:
        """EMA of the generator's parameters; buffers are copied."""
        net_g = self.get_bare_model(self.net_g)
        ema_params = dict(self.net_g_ema.named_parameters())
        with torch.no_grad():
            for name, param in net_g.named_parameters():
                ema_params[name].mul_(decay).add_(param, alpha=1 - decay)
            ema_buffers = dict(self.net_g_ema.named_buffers())
            for name, buffer in net_g.named_buffers():
                ema_buffers[name].copy_(buffer)

    # --------------------------------------------------------------- training
    def feed_data(self, data: dict) -> None:
        """Takes a batch: ``lq``, ``ref`` (optional) and ``gt`` (optional), all in [-1, 1]."""
        self.lq = data["lq"].to(self.device)
        self.ref = data["ref"].to(self.device) if "ref" in data else None
        self.gt = data["gt"].to(self.device) if "gt" in data else None
        self.correspondences = data["correspondences"].to(self.device) if "correspondences" in data else None
        self.reference_match = data["reference_match"].to(self.device) if "reference_match" in data else None

    @property
    def generator_input(self) -> torch.Tensor:
        """Stage 1 autoencodes the HQ face; stage 2 restores the degraded one."""
        return self.gt if self.stage == 1 and self.gt is not None else self.lq

    @property
    def references_read(self) -> torch.Tensor:
        """The references the generator reads in training: ``ref``, less those that
        ``reference_match`` rejects (the input itself in their place, as the gate does)."""
        if "gate" not in self.losses:
            return self.ref
        refs = self.ref if self.ref.ndim == 5 else self.ref[:, None]
        refs = keep_references(self.generator_input, refs, self.reference_match > 0.5)
        return refs if self.ref.ndim == 5 else refs[:, 0]

    def init_codebook_from_batch(self) -> None:
        """Sets the code words from this batch's HQ latents; every process gets rank 0's words."""
        net_g = self.get_bare_model(self.net_g)
        net_g.init_codebook_(self.gt if self.gt is not None else self.lq)
        if self.opt["dist"]:
            torch.distributed.broadcast(net_g.quantizer.codebook.weight.data, src=0)
        if self.ema_decay > 0:
            self.model_ema(0)
        self.codebook_pending_init = False

    def optimize_parameters(self, current_iter: int) -> None:
        if self.codebook_pending_init:
            self.init_codebook_from_batch()
        self.optimizer_g.zero_grad(set_to_none=True)
        if self.net_d is not None:
            self.net_d.requires_grad_(False)
        if "gate" in self.losses and self.reference_match is None:
            raise ValueError(
                "train.gate_opt needs reference_match in the batch: set mismatched_reference_prob > 0 "
                "on the training dataset (the gate must see references of other people)"
            )
        gate = {"reference_match": self.reference_match} if "gate" in self.losses else {}
        output, aux = self.net_g(self.generator_input, self.ref, return_aux=True, **gate)
        self.output = output
        terms = self._generator_loss_terms(output, aux)
        total = sum(terms.values())
        self._check_finite(terms, current_iter)
        total.backward()
        self.optimizer_g.step()
        if self.ema_decay > 0:
            self.model_ema(self.ema_decay)

        if self.net_d is not None and "gan" in self.losses:
            terms.update(self._discriminator_step(output.detach(), current_iter))
        if "vq" in aux:
            terms["vq_perplexity"] = aux["vq"]["perplexity"].detach()
        self.log_dict = self.reduce_loss_dict(OrderedDict((k, v.detach()) for k, v in terms.items()))

    def _generator_loss_terms(self, output: torch.Tensor, aux: dict) -> "OrderedDict[str, torch.Tensor]":
        terms = OrderedDict()
        if "pixel" in self.losses:
            terms["l_g_pix"] = self.losses["pixel"](output, self.gt)
        if "perceptual" in self.losses:
            percep, style = self.losses["perceptual"](output, self.gt)
            if percep is not None:
                terms["l_g_percep"] = percep
            if style is not None:
                terms["l_g_style"] = style
        if "attention" in self.losses and self.ref is not None:
            terms["l_g_attention"] = self.losses["attention"](
                aux["texture_attention"], self.references_read, self.gt
            )
        if "flow" in self.losses:
            if self.correspondences is None:
                raise ValueError(
                    "train.flow_opt needs correspondences in the batch: set correspondences: true on the "
                    "training dataset (it reads them from the pose-varied synthetic set's sidecars)"
                )
            terms["l_g_flow"] = self.losses["flow"](
                aux["reference_flow"], self.correspondences, self.gt.shape[-1]
            )
        if "gate" in self.losses:
            terms["l_g_gate"] = self.losses["gate"](aux["reference_gate"], self.reference_match)
        if "identity" in self.losses:
            terms["l_g_identity"] = self.losses["identity"](output, self.gt)
        if "vq" in aux and self.vq_weight > 0:
            terms["l_g_vq"] = self.vq_weight * aux["vq"]["loss"]
        if "gan" in self.losses:
            terms["l_g_gan"] = self.losses["gan"](self.net_d(output), True, is_disc=False)
        if not terms:
            raise ValueError("no generator loss is configured: set at least one train.*_opt")
        return terms

    def _discriminator_step(self, fake: torch.Tensor, current_iter: int) -> "OrderedDict[str, torch.Tensor]":
        self.net_d.requires_grad_(True)
        self.optimizer_d.zero_grad(set_to_none=True)
        real_pred = self.net_d(self.gt)
        fake_pred = self.net_d(fake)
        terms = OrderedDict(
            l_d_real=self.losses["gan"](real_pred, True, is_disc=True),
            l_d_fake=self.losses["gan"](fake_pred, False, is_disc=True),
        )
        self._check_finite(terms, current_iter)
        (terms["l_d_real"] + terms["l_d_fake"]).backward()
        if self.r1_gamma > 0 and current_iter % self.r1_interval == 0:
            # Lazy R1 (StyleGAN2): every r1_interval steps, scaled by the interval.
            real = self.gt.detach().requires_grad_(True)
            real_pred = self.net_d(real)
            penalty = r1_penalty(real_pred, real)
            terms["l_d_r1"] = self.r1_gamma / 2 * penalty * self.r1_interval + 0 * real_pred[0].sum()
            self._check_finite(terms, current_iter)
            terms["l_d_r1"].backward()
        self.optimizer_d.step()
        return terms

    @staticmethod
    def _check_finite(terms: dict, current_iter: int) -> None:
        bad = {
            name: float(value.detach()) for name, value in terms.items() if not torch.isfinite(value).all()
        }
        if bad:
            listed = ", ".join(f"{name}={value}" for name, value in bad.items())
            raise FloatingPointError(f"non-finite loss at iteration {current_iter}: {listed}")

    # ------------------------------------------------------------- evaluation
    def test(self) -> None:
        net = self.net_g_ema if getattr(self, "net_g_ema", None) is not None else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = net(self.generator_input, self.ref)
        net.train(was_training)

    def get_current_visuals(self) -> "OrderedDict[str, torch.Tensor]":
        visuals = OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu())
        if self.ref is not None:
            visuals["ref"] = self.ref.detach().cpu()
        if self.gt is not None:
            visuals["gt"] = self.gt.detach().cpu()
        return visuals

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt["rank"] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Restores every sample, averages the metrics, writes outputs and comparison grids."""
        dataset_name = dataloader.dataset.opt["name"]
        check_metrics_fit_dataset(self.opt, dataloader.dataset.opt)
        val_opt = self.opt["val"]
        metric_opts = val_opt.get("metrics") or {}
        scores = {metric: [] for metric in metric_opts}
        if metric_opts:
            self._initialize_best_metric_results(dataset_name)
        write_grids = val_opt.get("grids", True)
        for val_data in tqdm(dataloader, desc=f"validating {dataset_name}", unit="image", leave=False):
            name = _sample_name(val_data["lq_path"][0])
            self.feed_data(val_data)
            self.test()
            images = {key: _to_image(tensor) for key, tensor in self.get_current_visuals().items()}
            if save_img:
                atomic_imwrite(
                    images["result"], self._visual_path(dataset_name, name, current_iter, "output")
                )
            if write_grids:
                grid = comparison_grid(images["lq"], images.get("ref"), images["result"], images.get("gt"))
                atomic_imwrite(grid, self._visual_path(dataset_name, name, current_iter, "grid"))
            if metric_opts and "gt" in images:
                data = {
                    "img": images["result"],
                    "img2": images["gt"],
                    "ref": images.get("ref"),
                    "lq": images["lq"],
                }
                data.update(_sidecar_data(val_data))
                for metric, metric_opt in metric_opts.items():
                    scores[metric].append(float(calculate_metric(data, metric_opt)))
        if metric_opts:
            if not any(scores.values()):
                get_root_logger().warning(f"{dataset_name}: no sample has a gt; metrics were not computed")
                return
            self.metric_results = {
                metric: _mean_of_scored(metric, values) for metric, values in scores.items()
            }
            for metric, value in self.metric_results.items():
                self._update_best_metric_result(dataset_name, metric, value, current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _visual_path(self, dataset_name: str, name: str, current_iter, kind: str) -> str:
        suffix = self.opt["val"].get("suffix") or current_iter
        return osp.join(self.opt["path"]["visualization"], dataset_name, f"{name}_{kind}_{suffix}.png")

    def _log_validation_metric_values(self, current_iter, dataset_name: str, tb_logger) -> None:
        best = self.best_metric_results[dataset_name]
        lines = [f"Validation {dataset_name}"]
        metric_opts = self.opt["val"].get("metrics") or {}
        for metric, value in self.metric_results.items():
            # A metric allowed to fall back to random weights says so next to its value.
            random_ok = (metric_opts.get(metric) or {}).get("allow_random_weights", False)
            label = f"{metric} (random weights allowed)" if random_ok else metric
            lines.append(
                f"\t # {label}: {value:.4f}\tBest: {best[metric]['val']:.4f} @ {best[metric]['iter']} iter"
            )
            if tb_logger:
                tb_logger.add_scalar(f"metrics/{dataset_name}/{metric}", value, current_iter)
        get_root_logger().info("\n".join(lines))

    # ------------------------------------------------------------------ saving
    def load_network(self, net, load_path, strict=True, param_key="params"):
        """BasicSR's ``load_network``, reading the file as data only, whatever torch's default.

        An unreadable, truncated or unsafe file raises ``UnreadableFileError`` naming it; weights
        that do not fit raise a ``RuntimeError`` naming it.
        """
        net = self.get_bare_model(net)
        checkpoint = load_torch_file(load_path, "network checkpoint")
        if param_key is not None:
            if param_key not in checkpoint and "params" in checkpoint:
                param_key = "params"
            if param_key not in checkpoint:
                raise KeyError(
                    f"network checkpoint {load_path} has no {param_key!r} (keys: {list(checkpoint)})"
                )
            checkpoint = checkpoint[param_key]
        get_root_logger().info(
            f"Loading {type(net).__name__} model from {load_path}, with param key: [{param_key}]."
        )
        state_dict = {name.removeprefix("module."): tensor for name, tensor in checkpoint.items()}
        self._print_different_keys_loading(net, state_dict, strict)
        try:
            net.load_state_dict(state_dict, strict=strict)
        except RuntimeError as error:
            raise RuntimeError(
                f"network checkpoint {load_path} does not fit {type(net).__name__}: {error}"
            ) from error

    def save(self, epoch: int, current_iter: int) -> None:
        if getattr(self, "net_g_ema", None) is not None:
            self.save_network([self.net_g, self.net_g_ema], "net_g", current_iter, ["params", "params_ema"])
        else:
            self.save_network(self.net_g, "net_g", current_iter)
        if getattr(self, "net_d", None) is not None:
            self.save_network(self.net_d, "net_d", current_iter)
        self.save_training_state(epoch, current_iter)

    def save_network(self, net, net_label, current_iter, param_key="params"):
        """BasicSR's checkpoint layout, written atomically (a kill never leaves a corrupt file)."""
        if self.opt["rank"] != 0:
            return
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        checkpoint = {
            key: {name: tensor.cpu() for name, tensor in self.get_bare_model(n).state_dict().items()}
            for n, key in zip(nets, keys)
        }
        label = "latest" if current_iter == -1 else current_iter
        atomic_torch_save(checkpoint, osp.join(self.opt["path"]["models"], f"{net_label}_{label}.pth"))

    def save_training_state(self, epoch, current_iter):
        """Optimizer and scheduler states, written atomically after the networks."""
        if self.opt["rank"] != 0 or current_iter == -1:
            return
        state = {
            "epoch": epoch,
            "iter": current_iter,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }
        os.makedirs(self.opt["path"]["training_states"], exist_ok=True)
        atomic_torch_save(state, osp.join(self.opt["path"]["training_states"], f"{current_iter}.state"))


def check_options(opt: dict) -> None:
    """Fails on an option key that neither ENTEDModel nor BasicSR reads, naming it and the closest
    known one: the top level, ``path``, ``train``, ``val``, each ``val.metrics`` entry (against its
    function's parameters) and the networks (against their constructors' parameters)."""
    check_known_keys("the option file's top level", opt, TOP_LEVEL_OPTIONS)
    check_known_keys("path", opt.get("path") or {}, BASICSR_PATH_KEYS)
    check_known_keys("train", opt.get("train") or {}, TRAIN_OPTIONS)
    val_opt = opt.get("val") or {}
    check_known_keys("val", val_opt, VAL_OPTIONS)
    for metric, metric_opt in (val_opt.get("metrics") or {}).items():
        function = METRIC_REGISTRY.get(metric_opt["type"])
        known = (parameter_names(function) - METRIC_DATA_KEYS) | METRIC_OPTIONS
        check_known_keys(f"val.metrics.{metric} ({metric_opt['type']})", metric_opt, known)
    for key in ("network_g", "network_d"):
        if opt.get(key) is not None:
            arch = ARCH_REGISTRY.get(opt[key]["type"])
            check_known_keys(f"{key} ({opt[key]['type']})", opt[key], parameter_names(arch) | {"type"})


def check_metrics_fit_dataset(opt: dict, dataset_opt: dict) -> None:
    """Fails when a metric compares with the reference (``against: ref``) on a dataset that has
    none (``reference: none``), before any image is restored."""
    if dataset_opt.get("reference", "matched") != "none":
        return
    metrics = (opt.get("val") or {}).get("metrics") or {}
    for metric, metric_opt in metrics.items():
        if metric_opt.get("against") == "ref":
            raise ValueError(
                f"val.metrics.{metric} compares with the reference (against: ref), but dataset "
                f"{dataset_opt.get('name')!r} has reference: none, so there is none to compare with; "
                f"use against: gt, drop {metric} from val.metrics, or give the dataset references "
                "(reference: matched)"
            )


def check_weight_files(opt: dict, stage: int) -> None:
    """Fails before any network is built when a weight file the options name is absent, listing
    every missing file and where to get it; nothing is downloaded during a run.

    Checks ``path.pretrain_network_g`` / ``_d``, and in training BasicSR's VGG19 file for
    ``train.perceptual_opt`` and the ArcFace file of ``train.identity_opt``; in every mode, the
    ``weights_path`` of each ``val.metrics`` entry. ``hf://`` specs are left to the Hub client.
    """
    missing = []
    path_opt = opt.get("path") or {}
    if not opt.get("is_train"):
        g_source = "the generator to evaluate: ented-train writes experiments/<name>/models/net_g_latest.pth"
    elif stage == 2:
        g_source = (
            "stage 2 starts from stage 1's generator: run `ented-train -opt options/train_ented_stage1_512.yml` "
            "first; it writes experiments/ented_stage1_512/models/net_g_latest.pth"
        )
    else:
        g_source = "a generator checkpoint written by ented-train; set ~ to start from scratch"
    sources = {
        "g": g_source,
        "d": "a discriminator checkpoint written by ented-train; set ~ to start from scratch",
    }
    for net, source in sources.items():
        path = path_opt.get(f"pretrain_network_{net}")
        if path is not None and not is_hub_spec(path) and not osp.isfile(path):
            missing.append(f"path.pretrain_network_{net}: {path} ({source})")
    train_opt = (opt.get("train") or {}) if opt.get("is_train") else {}
    perceptual = train_opt.get("perceptual_opt")
    if perceptual is not None and perceptual.get("type") == "PerceptualLoss":
        vgg_type = perceptual.get("vgg_type", "vgg19")
        if vgg_type != "vgg19":
            raise ValueError(
                f"train.perceptual_opt.vgg_type {vgg_type!r}: ented checks and documents only vgg19's weights "
                f"({VGG19_URL}); use vgg_type: vgg19"
            )
        cached = osp.join(torch.hub.get_dir(), "checkpoints", osp.basename(VGG19_URL))
        if not osp.isfile(VGG_PRETRAIN_PATH) and not osp.isfile(cached):
            missing.append(
                f"train.perceptual_opt: {VGG_PRETRAIN_PATH} (torchvision's VGG19: download {VGG19_URL} "
                "to that path, relative to the folder you train in)"
            )
    identity = train_opt.get("identity_opt")
    if identity is not None:
        path = identity.get("weights_path")
        if path is not None and not is_hub_spec(path) and not osp.isfile(path):
            missing.append(f"train.identity_opt.weights_path: {path} ({ARCFACE_SOURCE})")
    for metric, metric_opt in ((opt.get("val") or {}).get("metrics") or {}).items():
        path = metric_opt.get("weights_path")
        if path is not None and not is_hub_spec(path) and not osp.isfile(path):
            if metric_opt["type"] == "calculate_ented_lpips":
                source = (
                    f"torchvision's backbone: {LPIPS_BACKBONE_WEIGHTS[metric_opt.get('net', 'alex')].url}"
                )
            elif metric_opt["type"] == "calculate_ented_identity_similarity":
                source = ARCFACE_SOURCE
            else:
                source = "see docs/metrics.md"
            missing.append(f"val.metrics.{metric}.weights_path: {path} ({source})")
    if missing:
        raise FileNotFoundError(
            "weight file(s) named by the options are missing:\n  - " + "\n  - ".join(missing)
        )


def _sidecar_data(val_data: dict) -> dict:
    """The gt's sidecar data of a batch of one, as the identity-detail metrics take it."""
    data = {}
    if "face_mask" in val_data:
        data["face_mask"] = val_data["face_mask"][0, 0].numpy() > 0.5
    if "marks" in val_data:
        data["marks"] = val_data["marks"][0].numpy()
    return data


def _mean_of_scored(metric: str, values: list) -> float:
    """Mean over the images a metric could score (NaN marks one with nothing to score)."""
    scored = [v for v in values if not math.isnan(v)]
    if len(scored) < len(values):
        get_root_logger().info(
            f"{metric}: nothing to score on {len(values) - len(scored)} of {len(values)} images"
        )
    return sum(scored) / len(scored) if scored else float("nan")


def _sample_name(lq_path: str) -> str:
    """``<folder>_<stem>`` of the lq file, unique across identity folders (``id0001/0.png`` ->
    ``id0001_0``); the stem alone when it already starts with the folder's name
    (``id0001/id0001_0.png`` -> ``id0001_0``, as ``ented-prepare testset`` names them)."""
    folder, file_name = osp.split(lq_path)
    folder, stem = osp.basename(folder), osp.splitext(file_name)[0]
    return stem if folder and stem.startswith(f"{folder}_") else f"{folder}_{stem}"


def _optimizer_options(optim_opt: dict) -> dict:
    """A copy of an optimizer's options; YAML's ``betas: [0, 0.99]`` becomes floats, as Adam requires."""
    optim_opt = deepcopy(optim_opt)
    if "betas" in optim_opt:
        optim_opt["betas"] = tuple(float(beta) for beta in optim_opt["betas"])
    return optim_opt


def _to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (1, K, 3, H, W) in [-1, 1] -> uint8 BGR (H, W, 3) (the first reference)."""
    if tensor.dim() == 5:
        tensor = tensor[:, 0]
    return tensor2img(tensor, rgb2bgr=True, min_max=(-1, 1))
