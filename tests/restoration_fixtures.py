"""Shared pieces for the tests of ``ented.restoration``: tiny networks, images, a Hub cache."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ented.archs.ented_arch import ENTED

TINY = {"out_size": 32, "width": 1 / 16}


def tiny_net(seed: int = 0, **overrides) -> ENTED:
    """A tiny ENTED with random (seeded) weights; ``alpha`` and biases perturbed so nothing is trivial."""
    torch.manual_seed(seed)
    net = ENTED(**{**TINY, **overrides})
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.01 * torch.randn_like(param))
    return net.eval()


def face(seed: int, size: int = 32) -> np.ndarray:
    """A smooth random RGB uint8 image (distinct per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3)).astype(np.float32)
    image = torch.nn.functional.interpolate(
        torch.from_numpy(small).permute(2, 0, 1)[None],
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )[0].permute(1, 2, 0)
    return image.clamp(0, 255).round().to(torch.uint8).numpy()


def save(image: np.ndarray, path: Path) -> Path:
    """Writes an image (creating its folder) and returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``: equal digests mean untouched files."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def forward(net, lq: np.ndarray, ref: np.ndarray | None) -> torch.Tensor:
    """The network's raw output on uint8 images, for equality checks."""

    def to_tensor(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1

    with torch.no_grad():
        return net(to_tensor(lq), None if ref is None else to_tensor(ref))


def populate_hub_cache(cache_dir: Path, repo_id: str, files: dict[str, Path], commit: str) -> None:
    """Lays ``files`` out in huggingface_hub's cache format, as a download of ``commit`` (on ``main``) would.

    ``models--<owner>--<name>/blobs/<sha256>`` holds the content, ``snapshots/<commit>/<file>`` links to
    it, and ``refs/main`` names the commit.
    """
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        shutil.copyfile(source, blob)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, target.parent), target)
    (repo_dir / "refs" / "main").write_text(commit)
