"""Preparing reference-face data: identity-disjoint splits, fixed test triplets, lmdb packing.

Every file is written atomically (temporary file, then ``os.replace``), so an interrupted run
leaves either the previous file or the new one, never half of one. The command line is
``ented-prepare`` (:mod:`ented.prepare`).
"""

import logging
import os
import shutil
import tempfile

import numpy as np

from ented.atomic_io import atomic_write_text
from ented.data.degradation import DEGRADATION_DEFAULTS, FaceDegradation
from ented.data.image_io import read_image_file, write_image_atomic
from ented.data.layouts import is_image_file, read_list_file, scan_identity_folders

logger = logging.getLogger(__name__)


def _progress(items, enabled: bool, total: int, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="image")


def group_by_identity(records: list) -> dict:
    """``{identity: [image paths]}`` from identity records, identities and images sorted."""
    groups: dict = {}
    for record in records:
        groups.setdefault(record.identity, []).append(record.gt)
    return {identity: sorted(groups[identity]) for identity in sorted(groups)}


def load_identities(root: str, identity_list: str | None = None) -> dict:
    """``{identity: [image paths relative to root]}`` from identity folders or an identity list."""
    records = read_list_file(identity_list) if identity_list else scan_identity_folders(root)
    if any(r.refs is not None for r in records):
        raise ValueError(
            f"{identity_list} is a triplet list; expected an identity list ('identity image_path')"
        )
    groups = group_by_identity(records)
    if not groups:
        raise ValueError(f"no images found in {identity_list or root}")
    return groups


def split_identities(
    identities, test_fraction: float = 0.1, num_test: int | None = None, seed: int = 0
) -> tuple:
    """Splits identities (never images) into train and test, reproducibly.

    Args:
        identities: identity names (any iterable; order does not matter).
        test_fraction: share of identities for test, used when ``num_test`` is None.
        num_test: exact number of test identities.
        seed: the split's seed.

    Returns:
        (train identities, test identities), each sorted; disjoint, together all identities.
    """
    names = sorted(set(identities))
    if len(names) < 2:
        raise ValueError(f"need at least two identities to split, got {len(names)}")
    if num_test is None:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        num_test = max(1, int(round(test_fraction * len(names))))
    if not 0 < num_test < len(names):
        raise ValueError(f"num_test must be in [1, {len(names) - 1}], got {num_test}")
    order = np.random.default_rng(seed).permutation(len(names))
    test = sorted(names[i] for i in order[:num_test])
    train = sorted(names[i] for i in order[num_test:])
    return train, test


def write_identity_list(path: str, groups: dict, identities) -> str:
    """Writes ``identity image_path`` lines for ``identities`` (the ``list`` layout)."""
    lines = [f"{identity} {image}" for identity in identities for image in groups[identity]]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def prepare_split(
    root: str,
    out_dir: str,
    test_fraction: float = 0.1,
    num_test: int | None = None,
    seed: int = 0,
    identity_list: str | None = None,
) -> dict:
    """Writes ``out_dir/train.txt`` and ``out_dir/test.txt``: identity lists of a disjoint split.

    Args:
        root: identity folders (``root/<identity>/<image>``); paths in the lists are relative to it.
        out_dir: where the lists go.
        test_fraction, num_test, seed: as in :func:`split_identities`.
        identity_list: read identities from this list instead of scanning ``root``.

    Returns:
        ``{"train": path, "test": path, "train_identities": [...], "test_identities": [...]}``.
    """
    groups = load_identities(root, identity_list)
    train, test = split_identities(groups, test_fraction, num_test, seed)
    result = {
        "train": write_identity_list(os.path.join(out_dir, "train.txt"), groups, train),
        "test": write_identity_list(os.path.join(out_dir, "test.txt"), groups, test),
        "train_identities": train,
        "test_identities": test,
    }
    logger.info(
        "split %d identities of %s: %d train, %d test (seed %d)",
        len(groups),
        root,
        len(train),
        len(test),
        seed,
    )
    return result


def lq_name(identity: str, gt: str) -> str:
    """``<identity>/<identity>_<gt name>.png``: the lq file of a gt, with a base name unique across
    identities (BasicSR names validation results after the lq file's base name)."""
    stem = os.path.splitext(os.path.basename(gt) if os.path.isabs(gt) else gt)[0].replace("/", "_")
    flat = stem if stem.startswith(identity) else f"{identity}_{stem}"
    return f"{identity}/{flat}.png"


def prepare_test_set(
    root: str,
    out_dir: str,
    identity_list: str | None = None,
    num_ref: int = 1,
    images_per_identity: int | None = None,
    seed: int = 0,
    size: int | None = None,
    degradation: dict | None = None,
    list_name: str = "test_list.txt",
    progress: bool = False,
) -> str:
    """Writes fixed, seeded test triplets: lq images and a triplet list.

    For every identity (of ``identity_list``, or every folder of ``root``) with at least two
    images, each of its images (or the first ``images_per_identity``) becomes a gt; its lq is the
    gt degraded with ``np.random.default_rng([seed, n])`` (n: the triplet's number), written to
    ``out_dir/lq/<identity>/<identity>_<name>.png`` (a base name unique across identities); its
    references are a seeded choice of ``num_ref`` other images of the identity. Single-image
    identities are skipped with a warning.

    The list (``out_dir/<list_name>``) has lines ``gt_path lq_path ref[,ref...] identity``; gt and
    references relative to ``root`` (use it as ``dataroot_gt``), lq relative to ``out_dir`` (use it
    as ``dataroot_lq``).

    Args:
        root: identity folders with the HQ images.
        out_dir: output folder.
        identity_list: restrict to this identity list (e.g. ``test.txt`` of :func:`prepare_split`).
        num_ref: references per triplet (distinct when the identity has enough images).
        images_per_identity: at most this many triplets per identity (None: all images).
        seed: the degradation and reference seed.
        size: resize gt to this square size before degrading (None: keep the file's size).
        degradation: degradation options (keys of ``DEGRADATION_DEFAULTS``); defaults GFPGAN's.
        list_name: the list file's name.
        progress: show a tqdm progress bar.

    Returns:
        The list file's path.
    """
    groups = load_identities(root, identity_list)
    unknown = set(degradation or {}) - set(DEGRADATION_DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown degradation option(s) {sorted(unknown)}; known: {sorted(DEGRADATION_DEFAULTS)}"
        )
    degrade = FaceDegradation.from_opt(degradation or {})
    jobs, single = [], []
    for identity, images in groups.items():
        if len(images) < 2:
            single.append(identity)
            continue
        for gt in images[:images_per_identity] if images_per_identity else images:
            jobs.append((identity, gt, [p for p in images if p != gt]))
    if single:
        logger.warning(
            "test set: skipping %d identities with a single image (e.g. %s)", len(single), single[0]
        )
    if not jobs:
        raise ValueError(f"no identity in {identity_list or root} has two images; cannot build triplets")
    lines = []
    for n, (identity, gt, others) in enumerate(_progress(jobs, progress, len(jobs), "test triplets")):
        rng = np.random.default_rng([seed, n])
        picks = rng.choice(len(others), size=num_ref, replace=len(others) < num_ref)
        refs = [others[int(i)] for i in picks]
        img = read_image_file(os.path.join(root, gt), size)
        lq, _ = degrade(img, rng)
        lq_rel = lq_name(identity, gt)
        write_image_atomic(os.path.join(out_dir, "lq", lq_rel), lq)
        lines.append(f"{gt} lq/{lq_rel} {','.join(refs)} {identity}")
    list_path = os.path.join(out_dir, list_name)
    atomic_write_text(list_path, "\n".join(lines) + "\n")
    logger.info(
        "test set: %d triplets of %d identities in %s (seed %d; %s)",
        len(lines),
        len(groups) - len(single),
        list_path,
        seed,
        degrade.describe(),
    )
    return list_path


def pack_lmdb(
    root: str,
    lmdb_path: str,
    paths: list | None = None,
    map_size: int | None = None,
    compress_level: int = 1,
) -> str:
    """Packs images of ``root`` into an lmdb (BasicSR's format) keyed by relative path without
    extension (``id0001/3``), so the identity layouts and lists read it unchanged.

    The lmdb is built in a temporary folder beside ``lmdb_path`` and renamed when complete. Every
    image is checked first, so a bad file fails before anything is written.

    Args:
        root: image folder.
        lmdb_path: output, must end with ``.lmdb`` and not exist.
        paths: images relative to ``root`` (default: every image below ``root``).
        map_size: lmdb map size in bytes; default 10x the files' size, at least 1 GiB (BasicSR
            would size it from the first image only).
        compress_level: PNG compression level inside the lmdb.

    Returns:
        ``lmdb_path``.
    """
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    if not lmdb_path.endswith(".lmdb"):
        raise ValueError(f"lmdb path must end with .lmdb, got {lmdb_path}")
    if os.path.exists(lmdb_path):
        raise FileExistsError(f"{lmdb_path} already exists; remove it or choose another path")
    if paths is None:
        paths = sorted(
            os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            for folder, _, names in os.walk(root)
            for name in names
            if is_image_file(name)
        )
    if not paths:
        raise ValueError(f"no images to pack under {root}")
    keys, total = [], 0
    for path in paths:
        full = os.path.join(root, path)
        key = os.path.splitext(path)[0]
        if not key.isascii() or " " in key:
            raise ValueError(f"image {full}: lmdb keys must be ASCII without spaces, got {key!r}")
        read_image_file(full)  # fails naming the file if it is missing, truncated or not an image
        total += os.path.getsize(full)
        keys.append(key)
    if len(set(keys)) != len(keys):
        raise ValueError(f"two images under {root} share a key (same name, different extension)")
    map_size = map_size or max(1 << 30, 10 * total)
    parent = os.path.dirname(os.path.abspath(lmdb_path))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".pack-", dir=parent)
    tmp_lmdb = os.path.join(tmp_dir, "tmp.lmdb")
    try:
        make_lmdb_from_imgs(root, tmp_lmdb, paths, keys, compress_level=compress_level, map_size=map_size)
        os.replace(tmp_lmdb, lmdb_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("packed %d images of %s into %s", len(paths), root, lmdb_path)
    return lmdb_path
