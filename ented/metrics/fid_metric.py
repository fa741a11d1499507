"""FID of a folder of restored faces against a folder of real faces or precomputed statistics.

FID is a property of two sets of images, not of one image pair, so it is not in BasicSR's
METRIC_REGISTRY (whose metrics are averaged image by image): call
:func:`calculate_ented_fid_folder` after a test run, or use the command line::

    python -m ented.metrics.fid_metric results/restored datasets/ffhq_512 --weights pt_inception.pth

It uses BasicSR's FID pieces: the Inception-v3 variant of TensorFlow's FID (BasicSR's
``FIDInception*`` blocks, block split of ``basicsr.archs.inception.InceptionV3``) and
``basicsr.metrics.fid.calculate_fid`` for the Frechet distance. Images are read as RGB in
[-1, 1] and resized to 299x299 (bilinear), as BasicSR's ``calculate_fid_folder.py`` does.

Weights, in order: ``weights_path`` (``pt_inception-2015-12-05-6726825d.pth`` from pytorch-fid's
releases, a path or ``hf://`` spec); BasicSR's ``experiments/pretrained_models/`` copy of that
file; torch's hub cache (``$TORCH_HOME/hub/checkpoints/``). Without any of them the FID
refuses to run (``ValueError`` naming the file and where to get it), unless random weights
are asked for explicitly (``allow_random_weights=True``, ``--allow-random-weights``): the network
is then random (seeded, identical across runs), a warning says so and the command line prints
the value as ``FID ... (random weights)``. Such FIDs only compare folders scored in the same
set-up and must never be reported.

Folders are read with their sub-folders (the folder-per-identity layout), leaving out the
comparison grids ``ented-test`` writes next to its outputs.

Caching. Networks live in the module-level ``FID_INCEPTIONS`` dict keyed by
``(weights file or None, dims, device)``.
"""

import argparse
import logging
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from basicsr.archs import inception as basicsr_inception
from basicsr.metrics.fid import calculate_fid
from torch import nn

from ented.hub_weights import (
    UnsafeFileError,
    load_torch_file,
    load_weights_file,
    resolve_device,
    resolve_weights,
)
from ented.image_io import IMAGE_EXTENSIONS, load_image, to_network

logger = logging.getLogger(__name__)

FID_WEIGHTS_NAME = os.path.basename(basicsr_inception.FID_WEIGHTS_URL)
# ENTEDModel names its comparison grids ``<sample>_grid_<suffix>.png`` (``_visual_path``).
COMPARISON_GRID_MARK = "_grid_"

# (weights file or None, dims, device) -> FIDInceptionFeatures in eval mode.
FID_INCEPTIONS: dict = {}


class FIDInceptionFeatures(nn.Module):
    """TensorFlow-FID Inception-v3 cut after the block that gives ``dims`` features.

    Args:
        state_dict: Weights of the FID Inception (pytorch-fid's ``pt_inception`` file), or None
            for random weights.
        dims: 64, 192, 768 or 2048 (the standard FID uses 2048, the final average pool).

    Shapes:
        forward(x: (B, 3, H, W) RGB in [-1, 1]) -> (B, dims).
    """

    def __init__(self, state_dict: dict | None = None, dims: int = 2048):
        super().__init__()
        if dims not in basicsr_inception.InceptionV3.BLOCK_INDEX_BY_DIM:
            raise ValueError(
                f"dims must be one of {sorted(basicsr_inception.InceptionV3.BLOCK_INDEX_BY_DIM)}"
            )
        net = torchvision.models.inception_v3(
            weights=None, aux_logits=False, num_classes=1008, init_weights=False
        )
        net.Mixed_5b = basicsr_inception.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = basicsr_inception.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = basicsr_inception.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = basicsr_inception.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = basicsr_inception.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = basicsr_inception.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = basicsr_inception.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = basicsr_inception.FIDInceptionE_1(1280)
        net.Mixed_7c = basicsr_inception.FIDInceptionE_2(2048)
        if state_dict is not None:
            net.load_state_dict(state_dict)
        blocks = [
            [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(3, stride=2)],
            [net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(3, stride=2)],
            [net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d]
            + [net.Mixed_6e],
            [net.Mixed_7a, net.Mixed_7b, net.Mixed_7c],
        ]
        last = basicsr_inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
        self.blocks = nn.Sequential(*[nn.Sequential(*block) for block in blocks[: last + 1]])
        self.dims = dims
        self.random_weights = state_dict is None
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return F.adaptive_avg_pool2d(self.blocks(x), 1).flatten(1)


def get_fid_inception(
    weights_path: str | None = None, dims: int = 2048, device=None, allow_random_weights: bool = False
) -> FIDInceptionFeatures:
    """Returns the cached FID Inception for this configuration, building it on first use.

    Args:
        weights_path: ``pt_inception-2015-12-05-6726825d.pth`` path or ``hf://`` spec, or None
            to look in the usual places (see the module docstring).
        dims: Feature size: 2048 (standard), 768, 192 or 64.
        device: Where the network lives; default CUDA, then MPS, then the CPU.
        allow_random_weights: Use a random (seeded) network when no weights are found, instead
            of raising.

    Raises:
        ValueError: No weights were found and random weights were not allowed.
    """
    device = resolve_device(device)
    path = resolve_weights(weights_path) if weights_path is not None else _find_local_weights()
    # checked before the cache: a random network built earlier for a caller that allowed it must
    # not pass for a real one later
    if path is None and not allow_random_weights:
        raise ValueError(
            f"FID needs the Inception weights {FID_WEIGHTS_NAME}: give weights_path (--weights) or put "
            f"the file at {' or '.join(_local_weights_candidates())}; get it from "
            f"{basicsr_inception.FID_WEIGHTS_URL}. To score with a random network anyway (values "
            "comparable only within one set-up), set allow_random_weights (--allow-random-weights)"
        )
    key = (path, dims, str(device))
    if key not in FID_INCEPTIONS:
        if path is None:
            logger.warning(
                f"FID (random weights): no Inception weights ({FID_WEIGHTS_NAME} not given and not found "
                "locally); allow_random_weights is set: FID values only compare folders within this set-up, "
                "never report them"
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # the same random network in every run
                network = FIDInceptionFeatures(None, dims)
        else:
            network = _load_inception(path, dims)
        FID_INCEPTIONS[key] = network.to(device).eval()
    return FID_INCEPTIONS[key]


def _local_weights_candidates() -> tuple[str, str]:
    return (
        basicsr_inception.LOCAL_FID_WEIGHTS,
        os.path.join(torch.hub.get_dir(), "checkpoints", FID_WEIGHTS_NAME),
    )


def _find_local_weights() -> str | None:
    return next((path for path in _local_weights_candidates() if os.path.isfile(path)), None)


def _load_inception(path: str, dims: int) -> FIDInceptionFeatures:
    try:
        return FIDInceptionFeatures(load_weights_file(path), dims)
    except RuntimeError as error:
        raise ValueError(f"FID Inception weights {path} do not fit the FID Inception-v3: {error}") from error


def list_images(folder: str) -> list[str]:
    """Returns the sorted image files in ``folder`` and its sub-folders, comparison grids left out.

    Sub-folders are walked so that the project's folder-per-identity layout (``id0001/0.png``)
    works. ``ented-test`` writes LQ | reference | output | GT grids (``<name>_grid_<suffix>.png``,
    see ``ENTEDModel._visual_path``) next to the outputs; they are not faces and are skipped.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder} does not exist")
    paths = []
    for parent, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not is_comparison_grid(name):
                paths.append(os.path.join(parent, name))
    if not paths:
        raise ValueError(
            f"image folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}; sub-folders included, "
            "comparison grids excluded)"
        )
    return paths


def is_comparison_grid(file_name: str) -> bool:
    """Whether a file is one of ``ented-test``'s comparison grids (``<name>_grid_<suffix>.png``)."""
    return COMPARISON_GRID_MARK in os.path.splitext(os.path.basename(file_name))[0]


@torch.no_grad()
def folder_statistics(
    folder: str,
    weights_path: str | None = None,
    dims: int = 2048,
    batch_size: int = 16,
    device=None,
    allow_random_weights: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the Inception features of every image in a folder.

    Args:
        folder: Folder of images (any size; each is resized to 299x299), sub-folders included.
        weights_path, dims, device, allow_random_weights: See :func:`get_fid_inception`.
        batch_size: Images per forward pass.

    Returns:
        ``(mu, sigma)``: (dims,) and (dims, dims) float64 arrays.
    """
    device = resolve_device(device)
    network = get_fid_inception(weights_path, dims, device, allow_random_weights)
    paths = list_images(folder)
    features = []
    for start in range(0, len(paths), batch_size):
        batch = [_read_299(path, device) for path in paths[start : start + batch_size]]
        features.append(network(torch.cat(batch)).double().cpu())
    features = torch.cat(features).numpy()
    if len(features) < 2:
        raise ValueError(f"FID needs at least 2 images, {folder} has {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _read_299(path: str, device) -> torch.Tensor:
    tensor = to_network([load_image(path)], device)
    return F.interpolate(tensor, size=(299, 299), mode="bilinear", align_corners=False)


def load_statistics(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads FID statistics as data only, never running code from the file.

    Formats: pytorch-fid's ``.npz`` (``mu``, ``sigma``; object arrays refused), ``.safetensors``
    (``mu``/``sigma`` or ``mean``/``cov``), or BasicSR/GFPGAN's ``.pth`` (``mean``, ``cov``, as in
    ``inception_FFHQ_512.pth``), read with ``weights_only=True`` and only numpy's array
    reconstruction allowed. A ``.pth`` that needs anything more is refused: see
    :data:`CONVERT_HINT`.

    Raises:
        ValueError: naming ``path``: refused, unreadable, or without the two arrays.
    """
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as stats:
                arrays = {key: stats[key] for key in stats.files}
        except ValueError as error:  # numpy's "Object arrays cannot be loaded when allow_pickle=False"
            raise ValueError(
                f"FID statistics {path} were refused: {error} (object arrays need unpickling, which could "
                "run code); save mu and sigma as float arrays: np.savez(path, mu=mu, sigma=sigma)"
            ) from error
    elif path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        arrays = load_file(path)
    else:
        try:
            arrays = load_torch_file(path, "FID statistics", safe_globals=_numpy_array_globals())
        except UnsafeFileError as error:
            raise ValueError(f"{error}; {CONVERT_HINT.format(path=path)}") from error
    if not isinstance(arrays, dict):
        raise ValueError(f"FID statistics {path} hold a {type(arrays).__name__}, not a dict of arrays")
    for mean_key, cov_key in (("mean", "cov"), ("mu", "sigma")):
        if mean_key in arrays and cov_key in arrays:
            return _numeric_array(arrays[mean_key], path, mean_key), _numeric_array(
                arrays[cov_key], path, cov_key
            )
    raise ValueError(
        f"FID statistics {path} have neither 'mean'/'cov' nor 'mu'/'sigma' (keys: {list(arrays)})"
    )


CONVERT_HINT = (
    "if you trust the file, convert it once to .npz, which is read as data only: python -c "
    "\"import numpy as np, torch; s = torch.load('{path}', weights_only=False); "
    "np.savez('stats.npz', mu=np.asarray(s['mean']), sigma=np.asarray(s['cov']))\""
)


def _numpy_array_globals() -> list:
    """The globals numpy arrays inside a ``torch.save`` file need, under both numpy 1 and 2 names."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, whatever module holds it
    float_dtypes = [type(np.dtype(kind)) for kind in (np.float16, np.float32, np.float64)]
    return [
        np.ndarray,
        np.dtype,
        *float_dtypes,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
    ]


def _numeric_array(value, path: str, key: str) -> np.ndarray:
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"FID statistics {path}: {key!r} is a {array.dtype} array, not numbers")
    return array.astype(np.float64)


def save_statistics(path: str, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Writes FID statistics as pytorch-fid's ``.npz`` (``mu``, ``sigma``)."""
    np.savez(path, mu=mu, sigma=sigma)


def calculate_ented_fid_folder(
    folder_restored: str,
    folder_reference_or_stats: str,
    weights_path: str | None = None,
    dims: int = 2048,
    batch_size: int = 16,
    device=None,
    allow_random_weights: bool = False,
) -> float:
    """FID between a folder of restored faces and real faces (a folder or a statistics file).

    Args:
        folder_restored: Folder of restored images.
        folder_reference_or_stats: Folder of real images, or FID statistics (``.npz`` with
            ``mu``/``sigma``, or ``.pth`` with ``mean``/``cov``) computed with the same
            Inception weights and ``dims``.
        weights_path: Inception weights (see the module docstring); None = look locally.
        dims: Feature size: 2048 for a standard FID; smaller ones suit tiny folders.
        batch_size: Images per forward pass.
        device: Where to run; default CUDA, then MPS, then the CPU.
        allow_random_weights: Without weights, use a random network instead of raising.

    Returns:
        The Frechet distance (0 for identical feature statistics). With fewer images than
        ``dims`` the covariances are singular and the value is unreliable.
    """
    # The reference first: a statistics file of the wrong size fails before any forward pass.
    mu2, sigma2 = reference_statistics(
        folder_reference_or_stats, weights_path, dims, batch_size, device, allow_random_weights
    )
    mu1, sigma1 = folder_statistics(
        folder_restored, weights_path, dims, batch_size, device, allow_random_weights
    )
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def reference_statistics(
    folder_or_stats: str,
    weights_path: str | None = None,
    dims: int = 2048,
    batch_size: int = 16,
    device=None,
    allow_random_weights: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of a folder of images, or read from a statistics file (path or ``hf://`` spec)."""
    if os.path.isdir(folder_or_stats):
        return folder_statistics(
            folder_or_stats, weights_path, dims, batch_size, device, allow_random_weights
        )
    mu, sigma = load_statistics(resolve_weights(folder_or_stats))
    if mu.shape != (dims,):
        raise ValueError(f"FID statistics {folder_or_stats} have {mu.shape[0]} dims, not {dims}")
    return mu, sigma


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance of two Gaussians (BasicSR's ``calculate_fid``), clipped at 0 against round-off."""
    return max(0.0, float(calculate_fid(mu1, sigma1, mu2, sigma2)))


def main(argv: list[str] | None = None) -> float:
    """Command line: prints the FID of two folders (or a folder and a statistics file)."""
    parser = argparse.ArgumentParser(prog="python -m ented.metrics.fid_metric", description=main.__doc__)
    parser.add_argument("folder_restored")
    parser.add_argument("folder_reference_or_stats", help="folder of real images, or .npz/.pth statistics")
    parser.add_argument(
        "--weights", default=None, help=f"Inception weights ({FID_WEIGHTS_NAME}), path or hf://"
    )
    parser.add_argument("--dims", type=int, default=2048, choices=(64, 192, 768, 2048))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--save-stats", default=None, help="also write the restored folder's statistics (.npz)"
    )
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="without Inception weights, score with a random network (values marked 'random weights')",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    random_ok = args.allow_random_weights
    mu1, sigma1 = folder_statistics(
        args.folder_restored, args.weights, args.dims, args.batch_size, args.device, random_ok
    )
    if args.save_stats:
        save_statistics(args.save_stats, mu1, sigma1)
    mu2, sigma2 = reference_statistics(
        args.folder_reference_or_stats, args.weights, args.dims, args.batch_size, args.device, random_ok
    )
    fid = frechet_distance(mu1, sigma1, mu2, sigma2)
    random_network = get_fid_inception(args.weights, args.dims, args.device, random_ok).random_weights
    sys.stdout.write(f"FID {fid:.4f}{' (random weights)' if random_network else ''}\n")
    return fid


if __name__ == "__main__":
    # Run the copy ``import ented`` already registered (``-m`` executes this file a second time,
    # which also makes Python warn that the module was found in sys.modules: harmless here).
    from ented.metrics import fid_metric

    fid_metric.main()
