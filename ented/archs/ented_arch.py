"""ENTED generator: reference-based blind face restoration (Lau et al., WACV 2024) [abstract].

Layout (see docs/architecture.md for the sources of every choice)::

    ref ──E_ref──> 16x16 tokens ─────────────────────┐
          └─ extraction at 16..256 ─> textures ──┐   │
    lq ───E_lq──> z ──VQ──> z_q ──refinement(z_q, ref tokens)──> z_r, styles
                  └──────── alpha * z ──────────────(+)──> z_dec
    z_dec ──decoder(styles; distribution of textures after each conv)──> out
"""

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from einops import rearrange
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ented.archs.latent_refinement import LatentRefinement
from ented.archs.reference_attention import DenseReferenceAttention
from ented.archs.reference_flow import ReferenceFlow, warp
from ented.archs.reference_gate import ReferenceGate, keep_references
from ented.archs.stylegan2_layers import EqualConv2d, EqualLinear, FusedLeakyReLU, ModulatedConv2d, ToRGB
from ented.archs.texture_ops import TextureDistribution, TextureExtraction
from ented.archs.vector_quantizer import VectorQuantizer

# NTED's channel plan for a 512 generator, extended to 1024 the StyleGAN2 way [NTED]
NTED_CHANNELS = {1024: 32, 512: 64, 256: 128, 128: 256, 64: 512, 32: 512, 16: 512}
# labels k of the extraction/distribution operations per scale [NTED]
NTED_LABELS = {16: 16, 32: 32, 64: 32, 128: 64, 256: 64}
LATENT_SIZE = 16


def channel_plan(out_size: int, width: float, channels: dict | None) -> dict[int, int]:
    """{res: channels} for res = 16..out_size: NTED's plan, overridden by ``channels``, times ``width``."""
    plan = dict(NTED_CHANNELS)
    plan.update({int(k): int(v) for k, v in (channels or {}).items()})
    sizes = [LATENT_SIZE * 2**i for i in range(int(math.log2(out_size // LATENT_SIZE)) + 1)]
    missing = [s for s in sizes if s not in plan]
    if missing:
        raise ValueError(f"no channel count for resolutions {missing}; pass them in `channels`")
    return {s: max(1, int(round(plan[s] * width))) for s in sizes}


def key_scales(res: int) -> list[int]:
    """The E_ref scales whose features key the reference attention at ``res``: it and the two
    coarser ones (down to the 16x16 latent), for context."""
    return [s for s in (res, res // 2, res // 4) if s >= LATENT_SIZE]


def check_out_size(out_size: int, low: int = 32, high: int = 1024) -> None:
    if not isinstance(out_size, int) or out_size < low or out_size > high or out_size & (out_size - 1):
        raise ValueError(f"out_size must be a power of two between {low} and {high}, got {out_size!r}")


class FeatureEncoder(nn.Module):
    """A 1x1 stem at full resolution, then one blurred stride-2 conv per scale down to 16x16 [NTED].

    Args:
        channels: {res: channels} for res = 16..out_size.
    """

    def __init__(self, channels: dict[int, int]):
        super().__init__()
        sizes = sorted(channels, reverse=True)
        self.stem = EqualConv2d(3, channels[sizes[0]], 1, activation=True)
        self.downs = nn.ModuleList(
            EqualConv2d(channels[hi], channels[lo], 3, downsample=True, activation=True)
            for hi, lo in zip(sizes[:-1], sizes[1:])
        )
        self.sizes = sizes[1:]  # resolution after each down conv

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        """img: (B, 3, S, S) -> feature maps at S, S/2, ..., 16 (the stem's, then one per down conv;
        the last is the 16x16 latent)."""
        x = self.stem(img)
        feats = [x]
        for down in self.downs:
            x = down(x)
            feats.append(x)
        return feats


class StyledConv(nn.Module):
    """Decoder conv: (modulated) conv, optional texture distribution, then bias + leaky ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        style_dim: Style size, or None for a plain equalized conv (NTED's decoder).
        upsample: Transposed conv + blur, x2.
        num_labels: Labels of the distribution operation, 0 for none.
        attention_kernel_size: ``m`` of the distribution logits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int | None,
        upsample: bool,
        num_labels: int,
        attention_kernel_size: int,
    ):
        super().__init__()
        if style_dim is None:
            self.conv = EqualConv2d(in_channels, out_channels, 3, bias=False, upsample=upsample)
        else:
            self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.distribution = (
            TextureDistribution(out_channels, num_labels, attention_kernel_size) if num_labels else None
        )
        self.act = FusedLeakyReLU(out_channels)

    def forward(
        self, x: torch.Tensor, style: torch.Tensor | None, textures: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, C_in, h, w); style: (B, style_dim) or None; textures: (B, K*k, C_out) or None.

        Returns the activations (B, C_out, h', w') and the distribution attention (or None).
        """
        if style is None:
            x, demod = self.conv(x), None
        else:
            x, demod = self.conv(x, style, defer_demodulation=True)
        if self.distribution is None:
            return self.act(x, demod), None
        if demod is not None:
            x = x * demod.to(x.dtype)[:, :, None, None]
        x, attn = self.distribution(x, textures)
        return self.act(x), attn


class StyleMapping(nn.Module):
    """Styles without the refinement module: an MLP on the pooled latent plus a learned offset per conv.

    [default] used when ``use_refinement=False`` and ``modulated=True``, so the decoder stays
    modulated by the input image's content.
    """

    def __init__(self, dim: int, num_styles: int, style_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(
            EqualLinear(dim, style_dim, activation=True), EqualLinear(style_dim, style_dim)
        )
        self.offsets = nn.Parameter(torch.zeros(1, num_styles, style_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, D, h, w) -> styles (B, num_styles, style_dim)."""
        return self.mlp(z.mean(dim=(2, 3)))[:, None] + self.offsets


def _resolution_map(value: dict) -> dict[str, int]:
    """``{res: count}`` as JSON has it (``channels``, ``num_labels``); loading turns keys back into ints."""
    return {str(int(k)): int(v) for k, v in value.items()}


# The config is the constructor arguments, captured by PyTorchModelHubMixin. JSON has no int keys
# and no tuples: ENTED's only dict arguments map resolutions to counts, its only tuples list
# resolutions, so they are saved with str keys / as lists and read back as int-keyed dicts / tuples.
CONFIG_CODERS = {
    dict: (_resolution_map, lambda value: {int(k): int(v) for k, v in value.items()}),
    tuple: (lambda value: [int(r) for r in value], tuple),
}
MODEL_CARD_TEMPLATE = (Path(__file__).parent / "ented_model_card.md").read_text(encoding="utf-8")


@ARCH_REGISTRY.register()
class ENTED(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="ented",
    license="apache-2.0",
    pipeline_tag="image-to-image",
    tags=["face-restoration", "reference-based", "basicsr"],
    model_card_template=MODEL_CARD_TEMPLATE,
    coders=CONFIG_CODERS,
):
    """ENTED generator: restores ``lq`` with textures and style codes taken from ``ref``.

    Args:
        out_size: Image size, a power of two in 32..1024 (the latent is always 16x16).
        width: Channel multiplier of the channel plan (e.g. 1/16 for unit tests).
        channels: Optional {res: channels} overriding entries of NTED's plan
            ``{1024: 32, 512: 64, 256: 128, 128: 256, 64: 512, 32: 512, 16: 512}``; the result
            is multiplied by ``width``. Keys may be strings (JSON).
        num_labels: Optional {res: k} overriding NTED's labels ``{16: 16, 32: 32, 64: 32,
            128: 64, 256: 64}``; 0 removes the textures at that scale. Only scales below
            ``out_size`` get textures.
        style_dim: Size of the style vectors of the modulated convs [default: 512, StyleGAN2].
        use_vq: VQ dictionary on the latent [abstract].
        use_refinement: Cross-attention refinement of the latent + style codes [abstract].
        identity_residual: ``z_dec = z_refined + alpha * z`` with learnable alpha (init 1) [abstract; form default].
        modulated: Modulated/demodulated decoder convs [default]; False gives NTED's plain convs.
        codebook_size: Code words N [default: 1024].
        code_dim: Code word size [default: 256].
        vq_beta: Commitment weight [default: 0.25, VQ-VAE].
        refinement_depth: Cross-attention blocks L [default: 2].
        refinement_heads: Attention heads [default: 8].
        mlp_ratio: MLP width of the attention blocks [default: 4, ViT].
        attention_kernel_size: ``m`` of the extraction/distribution logits above 16x16 [NTED: 3;
            1 at 16x16].
        value_kernel_size: Kernel of the extraction values conv [eq: 1; NTED uses ``m``].
        rgb_kernel_size: Kernel of the ToRGB convs [NTED: 3].
        channels_last: Run the convolutions on channels-last activations [default, speed only:
            about 2x faster on CPU (oneDNN) and what GPU tensor cores want]. Inputs may have any
            layout; the output is returned contiguous.
        lq_skips: Extra identity residuals: resolutions (32..out_size/2) at which ``E_lq``'s
            features, through a 1x1 conv, are added to the decoder after the scale's first conv
            [default: none; the spec's optional "further encoder->decoder residuals at 32..128"].
            Needs ``identity_residual=True``.
        reference_attention: Resolutions (16..out_size) at which the decoder, after the scale's
            first conv, attends to ``E_ref``'s features of the same scale (at out_size: its stem's),
            matched by those and the two coarser scales' features
            (:mod:`ented.archs.reference_attention`) [not in the paper; default: none = faithful
            ENTED]. This is what carries spatially precise detail (moles, scars) from the
            reference; e.g. ``(32,)`` for a 64 px model, ``(64, 128)`` at 512.
        reference_attention_dim: Query/key size per head of the reference attention [default: 32].
        reference_attention_heads: Heads of the reference attention [default: 1].
        reference_attention_window: Window radius of the reference attention, in positions of its
            scale [default: 4: each 8x8 block reads a 16x16 reference window].
        reference_attention_sigma: Initial width (positions) of the reference attention's learned
            Gaussian prior on the displacement between a position and what it reads [default: 1].
        reference_flow: Warp the reference's features onto the input's pose before the reference
            attention reads them, by a flow estimated coarse to fine from both encoders' features
            (:mod:`ented.archs.reference_flow`; GFRNet / ASFFNet warp the reference likewise) [not
            in the paper; default: 0, off]. The value is the finest resolution (16..the largest
            ``reference_attention`` scale) at which the flow is estimated; finer attention scales
            read it bilinearly upsampled.
        reference_gate: Judge each reference by whether it shows the input's person, and read
            only those that do (:mod:`ented.archs.reference_gate`) [not in the paper; default: off].
            Train it with ``ENTEDReferenceGateLoss`` on data where some references are another
            person's (the dataset's ``mismatched_reference_prob``).

    ``ref=None`` uses ``lq`` itself as the reference ("self reference"): the network still runs,
    but its textures then come from the degraded image. A reference of another person supplies
    that person's textures (skin, eyes, hair) and steers the styles; the geometry follows
    ``lq`` (decoder input and distribution logits are computed from it), but identity cues in
    the texture may drift towards the reference: use a reference of the same person.

    The constructor arguments are the config (:attr:`config`, ``config.json``):
    ``net.save_pretrained(folder)``, ``ENTED.from_pretrained(folder or "owner/repo")`` and
    ``net.push_to_hub("owner/repo")`` come from ``huggingface_hub``'s ``PyTorchModelHubMixin``
    (:mod:`ented.restoration.pretrained` also reads BasicSR checkpoints).
    """

    def __init__(
        self,
        out_size: int = 512,
        width: float = 1.0,
        channels: dict | None = None,
        num_labels: dict | None = None,
        style_dim: int = 512,
        use_vq: bool = True,
        use_refinement: bool = True,
        identity_residual: bool = True,
        modulated: bool = True,
        codebook_size: int = 1024,
        code_dim: int = 256,
        vq_beta: float = 0.25,
        refinement_depth: int = 2,
        refinement_heads: int = 8,
        mlp_ratio: float = 4.0,
        attention_kernel_size: int = 3,
        value_kernel_size: int = 1,
        rgb_kernel_size: int = 3,
        channels_last: bool = True,
        lq_skips: tuple = (),
        reference_attention: tuple = (),
        reference_attention_dim: int = 32,
        reference_attention_heads: int = 1,
        reference_attention_window: int = 4,
        reference_attention_sigma: float = 1.0,
        reference_flow: int = 0,
        reference_gate: bool = False,
    ):
        super().__init__()
        check_out_size(out_size)
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.out_size = out_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        ch = channel_plan(out_size, width, channels)
        labels = dict(NTED_LABELS)
        labels.update({int(k): int(v) for k, v in (num_labels or {}).items()})
        self.labels = {res: labels.get(res, 0) for res in ch if res < out_size and labels.get(res, 0) > 0}
        self.channels = ch
        latent_dim = ch[LATENT_SIZE]
        sizes = sorted(ch)  # 16, 32, ..., out_size
        num_styles = 3 * len(sizes) if modulated else 0  # conv1, conv2, to_rgb per scale
        style = style_dim if modulated else None

        def kernel(res):
            return 1 if res == LATENT_SIZE else attention_kernel_size  # NTED

        self.ref_encoder = FeatureEncoder(ch)
        self.extractions = nn.ModuleDict(
            {
                str(res): nn.ModuleList(
                    TextureExtraction(ch[res], ch[res], k, kernel(res), value_kernel_size) for _ in range(2)
                )
                for res, k in self.labels.items()
            }
        )
        self.lq_encoder = FeatureEncoder(ch)
        self.quantizer = VectorQuantizer(latent_dim, code_dim, codebook_size, vq_beta) if use_vq else None
        if use_refinement:
            self.refinement = LatentRefinement(
                latent_dim, num_styles, style_dim, refinement_depth, refinement_heads, mlp_ratio, LATENT_SIZE
            )
        else:
            self.refinement = None
        self.style_mapping = (
            StyleMapping(latent_dim, num_styles, style_dim) if (modulated and not use_refinement) else None
        )
        self.identity_alpha = nn.Parameter(torch.ones(())) if identity_residual else None
        bad = [r for r in self.config["lq_skips"] if r not in ch or r in (LATENT_SIZE, out_size)]
        if bad:
            raise ValueError(f"lq_skips must be resolutions between 32 and {out_size // 2}, got {bad}")
        if lq_skips and not identity_residual:
            raise ValueError("lq_skips are identity residuals: they need identity_residual=True")
        self.lq_skips = nn.ModuleDict(
            {str(r): EqualConv2d(ch[r], ch[r], 1) for r in sorted(self.config["lq_skips"])}
        )
        bad = [r for r in self.config["reference_attention"] if r not in ch]
        if bad:
            raise ValueError(f"reference_attention must be resolutions between 16 and {out_size}, got {bad}")
        self.reference_attention = nn.ModuleDict(
            {
                str(r): DenseReferenceAttention(
                    ch[r],
                    ch[r],
                    sum(ch[s] for s in key_scales(r)),
                    reference_attention_dim,
                    reference_attention_heads,
                    reference_attention_window,
                    sigma=reference_attention_sigma,
                )
                for r in sorted(self.config["reference_attention"])
            }
        )
        if reference_flow:
            if not self.config["reference_attention"]:
                raise ValueError(
                    "reference_flow warps what the reference attention reads: it needs reference_attention"
                )
            largest = max(self.config["reference_attention"])
            if isinstance(reference_flow, bool) or not LATENT_SIZE <= reference_flow <= largest:
                raise ValueError(
                    f"reference_flow must be 0 (off) or a resolution from {LATENT_SIZE} to the largest "
                    f"reference_attention scale {largest}, got {reference_flow!r}"
                )
        self.reference_flow = ReferenceFlow(ch, reference_flow) if reference_flow else None
        self.reference_gate = ReferenceGate(out_size) if reference_gate else None
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for i, res in enumerate(sizes):
            c_in = ch[sizes[i - 1]] if i else latent_dim
            k = self.labels.get(res, 0)
            self.convs.append(StyledConv(c_in, ch[res], style, i > 0, k, kernel(res)))
            self.convs.append(StyledConv(ch[res], ch[res], style, False, k, kernel(res)))
            self.to_rgbs.append(ToRGB(ch[res], style, rgb_kernel_size, upsample_skip=i > 0))
        self.sizes = sizes

    @property
    def config(self) -> dict:
        """The constructor arguments as ``config.json`` holds them (a copy: editing it changes nothing)."""
        return copy.deepcopy(self._hub_mixin_config)

    @classmethod
    def _is_jsonable(cls, value) -> bool:
        """PyTorchModelHubMixin's check of each argument; it would leave a non-JSON one out of the config."""
        if not super()._is_jsonable(value):
            raise TypeError(f"ENTED's arguments are its saved config and must be JSON values, got {value!r}")
        return True

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str = "cpu",
        **model_kwargs,
    ):
        """PyTorchModelHubMixin's loading step: checks ``config`` (all of ``config.json``), builds the
        network from ``model_kwargs`` (its constructor arguments) and loads ``model.safetensors`` strictly."""
        from ented.restoration.pretrained import load_pretrained_weights

        hub = {"revision": revision, "cache_dir": cache_dir, "force_download": force_download, "token": token}
        net = load_pretrained_weights(
            cls, model_id, config, model_kwargs, local_files_only=local_files_only, **hub
        )
        return net.to(map_location).eval()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split into 'attention' (extraction/distribution convs, refinement, VQ,
        and the variant's reference attention, flow and gate; they get ``train.attention_lr``,
        default 1e-4) and 'base' (everything else). Only parameters with
        ``requires_grad`` are listed, each exactly once."""
        attention_types = (
            TextureExtraction,
            TextureDistribution,
            LatentRefinement,
            VectorQuantizer,
            DenseReferenceAttention,
            ReferenceFlow,
            ReferenceGate,
        )
        attention_ids = {
            id(p) for m in self.modules() if isinstance(m, attention_types) for p in m.parameters()
        }
        groups = {"base": [], "attention": []}
        for p in self.parameters():
            if p.requires_grad:
                groups["attention" if id(p) in attention_ids else "base"].append(p)
        return groups

    def freeze_codebook(self, frozen: bool = True) -> None:
        """Stops (or resumes) training of the VQ code words (stage 2); the state dict is unchanged."""
        if self.quantizer is None:
            raise ValueError("freeze_codebook() needs use_vq=True")
        self.quantizer.freeze_codebook(frozen)

    @torch.no_grad()
    def init_codebook_(self, images: torch.Tensor) -> None:
        """Initialises the VQ code words from the projected latents of ``images`` (B, 3, S, S) in [-1, 1].

        Call once before stage 1 with a batch of HQ faces (B * 256 >= codebook_size is best);
        with random code words nearly every position picks the same word.
        """
        if self.quantizer is None:
            raise ValueError("init_codebook_() needs use_vq=True")
        z = self.lq_encoder(images.contiguous(memory_format=self.memory_format))[-1]
        self.quantizer.init_codebook_(self.quantizer.proj_in(z))

    def _references(self, lq: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """Validates the inputs; returns the references as (B, K, 3, S, S)."""
        size = self.out_size
        if lq.ndim != 4 or lq.shape[1] != 3 or lq.shape[2] != size or lq.shape[3] != size:
            raise ValueError(f"lq must be (B, 3, {size}, {size}); got {tuple(lq.shape)}")
        if ref is None:
            return lq[:, None]
        if ref.ndim == 4:
            ref = ref[:, None]
        if ref.ndim != 5 or ref.shape[2] != 3 or ref.shape[3] != size or ref.shape[4] != size:
            raise ValueError(
                f"ref must be (B, 3, {size}, {size}) or (B, K, 3, {size}, {size}); got {tuple(ref.shape)}"
            )
        if ref.shape[0] != lq.shape[0]:
            raise ValueError(f"ref has batch size {ref.shape[0]} but lq has {lq.shape[0]}")
        return ref

    def forward(
        self,
        lq: torch.Tensor,
        ref: torch.Tensor | None = None,
        return_aux: bool = False,
        reference_strength: float = 1.0,
        reference_match: torch.Tensor | None = None,
    ):
        """Restores ``lq`` using ``ref``.

        Args:
            lq: (B, 3, S, S) in [-1, 1], S = out_size.
            ref: None (self reference: ``lq`` is used), (B, 3, S, S) or (B, K, 3, S, S) in [-1, 1].
            return_aux: Also return the attention maps and VQ statistics.
            reference_strength: ``s`` in [0, 1], how much of the reference the network reads: every
                path from the reference (texture extraction, the refinement's tokens, the dense
                reference attention) reads E_ref's features, which become ``(1 - s) E_ref(lq) +
                s E_ref(ref)`` per scale. 0 gives exactly the no-reference output (``ref=None``),
                1 the reference's [default]; the lq path is unchanged [not in the paper].
            reference_match: (B, K) training targets of ``reference_gate``, 1 where the reference
                shows the input's person: when given, they decide which references are read,
                instead of the gate (default: the gate decides; without a gate all are read).

        Returns:
            out (B, 3, S, S) (no tanh); with ``return_aux`` also a dict:
            'texture_attention': one (extraction (B, K, k, h, w), distribution (B, K*k, h, w))
            pair per distribution layer, decoder order; 'vq': {'loss', 'indices' (B, 16, 16),
            'perplexity', 'used_fraction'} when ``use_vq``; 'reference_attention': {res: (B * blocks,
            heads, b*b, K*(b+2w)^2)} for each dense reference attention (8x8 blocks ``b``, each
            position over its block's haloed window in every reference); 'reference_flow': {res:
            (B, K, 2, r, r)} with ``reference_flow``: the offset, in grid_sample's normalised
            coordinates, from each position to the point it shows in each reference (16..``reference_flow``);
            'reference_gate': (B, K) same-person logits with ``reference_gate`` and a ``ref``.
        """
        if not 0.0 <= reference_strength <= 1.0:
            raise ValueError(f"reference_strength must be in [0, 1], got {reference_strength}")
        refs = self._references(lq, ref)
        batch, num_refs = refs.shape[:2]
        aux = {}
        if reference_match is not None and tuple(reference_match.shape) != (batch, num_refs):
            raise ValueError(
                f"reference_match must be (B, K) = {(batch, num_refs)}; got {tuple(reference_match.shape)}"
            )
        if self.reference_gate is not None and ref is not None:
            aux["reference_gate"] = self.reference_gate(lq, refs)
            keep = aux["reference_gate"] >= 0 if reference_match is None else reference_match > 0.5
            refs = keep_references(lq, refs, keep)
        elif reference_match is not None:
            raise ValueError("reference_match needs a network with reference_gate and a ref")
        refs = rearrange(refs, "b k c h w -> (b k) c h w").contiguous(memory_format=self.memory_format)
        ref_feats = self.ref_encoder(refs)
        if ref is not None and reference_strength < 1.0:
            own_feats = self.ref_encoder(lq.contiguous(memory_format=self.memory_format))
            ref_feats = [
                torch.lerp(own.repeat_interleave(num_refs, 0), feats, reference_strength)
                for own, feats in zip(own_feats, ref_feats)
            ]
        ref_by_res = {int(f.shape[-1]): f for f in ref_feats}
        textures, extraction_maps = {}, {}
        for res, ops in self.extractions.items():
            for j, op in enumerate(ops):
                tex, attn = op(ref_by_res[int(res)])
                textures[(int(res), j)] = rearrange(tex, "(b k) l c -> b (k l) c", b=batch)
                if return_aux:
                    extraction_maps[(int(res), j)] = rearrange(attn, "(b k) l h w -> b k l h w", b=batch)

        lq_feats = self.lq_encoder(lq.contiguous(memory_format=self.memory_format))
        z = lq_feats[-1]
        lq_by_res = {f.shape[-1]: f for f in lq_feats}
        z_dec = z
        if self.quantizer is not None:
            z_dec, aux["vq"] = self.quantizer(z)
        styles = None
        if self.refinement is not None:
            z_dec, styles = self.refinement(
                z_dec, rearrange(ref_feats[-1], "(b k) d h w -> b k d h w", b=batch)
            )
        if self.identity_alpha is not None:
            z_dec = z_dec + self.identity_alpha * z
        if self.style_mapping is not None:
            styles = self.style_mapping(z_dec)

        flows = {}
        if self.reference_flow is not None:
            flows = self.reference_flow(lq_by_res, ref_by_res, num_refs)
        texture_attention, reference_attention = [], {}
        x, rgb = z_dec, None
        for i, res in enumerate(self.sizes):
            for j in range(2):
                style = None if styles is None else styles[:, 3 * i + j]
                x, dist = self.convs[2 * i + j](x, style, textures.get((res, j)))
                if j == 0 and str(res) in self.lq_skips:
                    x = x + self.lq_skips[str(res)](lq_by_res[res])
                if j == 0 and str(res) in self.reference_attention:
                    values = ref_by_res[res]
                    keys = torch.cat(
                        [values]
                        + [
                            F.interpolate(ref_by_res[s], size=res, mode="bilinear", align_corners=False)
                            for s in key_scales(res)[1:]
                        ],
                        1,
                    )
                    if flows:
                        flow = flows.get(res)
                        if flow is None:  # finer than the flow's finest scale
                            flow = F.interpolate(
                                flows[max(flows)], size=res, mode="bilinear", align_corners=False
                            )
                        values, keys = warp(values, flow), warp(keys, flow)
                    x, attention = self.reference_attention[str(res)](
                        x,
                        rearrange(values, "(b k) c h w -> b k c h w", b=batch),
                        rearrange(keys, "(b k) c h w -> b k c h w", b=batch),
                        return_aux,
                    )
                    if return_aux:
                        reference_attention[res] = attention
                if return_aux and dist is not None:
                    texture_attention.append((extraction_maps[(res, j)], dist))
            rgb = self.to_rgbs[i](x, None if styles is None else styles[:, 3 * i + 2], rgb)
        rgb = rgb.contiguous()
        if not return_aux:
            return rgb
        aux["texture_attention"] = texture_attention
        aux["reference_attention"] = reference_attention
        aux["reference_flow"] = {
            res: rearrange(flow, "(b k) xy h w -> b k xy h w", b=batch) for res, flow in flows.items()
        }
        return rgb, aux
