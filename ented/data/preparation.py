"""Preparing reference-face data: identity-disjoint splits, fixed test triplets, lmdb packing.

Every file is written atomically (temporary file, then ``os.replace``), so an interrupted run
leaves either the previous file or the new one, never half of one. Inputs are checked before
anything is written: names that a list cannot hold, colliding output names, unreadable, missing or
oversized images and an unwritable output folder are refused with a message naming the file. Every
output path is derived from a safe transform of the identity and stays inside its output folder.
The command line is ``ented-prepare`` (:mod:`ented.cli.prepare`).
"""

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile

import numpy as np

from ented.atomic_io import atomic_write_text
from ented.data.degradation import DEGRADATION_DEFAULTS, FaceDegradation
from ented.data.layouts import read_list_file, scan_identity_folders
from ented.image_io import read_image_file, read_image_header, write_image_atomic

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


# Characters a field of our list files cannot hold besides whitespace (which separates fields):
# ``#`` starts a comment, and ``,;|`` separate references in a triplet list.
_IDENTITY_LIST_FORBIDDEN = "#"
_TRIPLET_LIST_FORBIDDEN = "#,;|"


def _check_list_field(value: str, what: str, source: str, forbidden: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} {value!r} (from {source}) is not valid UTF-8 (a file or folder name with "
            "undecodable bytes); rename it"
        ) from None
    if any(c.isspace() or c in forbidden for c in value):
        raise ValueError(
            f"{what} {value!r} (from {source}) cannot be written to a list file: list fields hold no "
            f"whitespace or any of {forbidden!r}; rename it"
        )


def safe_name(text: str, source: str) -> str:
    """``text`` as one file-name component: runs of characters other than letters, digits, ``_``,
    ``.`` and ``-`` become ``_``, and leading or trailing ``.`` / ``_`` are dropped, so ``../..``
    or ``a/b`` can never name a folder outside the output folder.

    Raises:
        ValueError: nothing usable is left (``..``, ``/``), naming ``source``.
    """
    name = re.sub(r"[^\w.-]+", "_", text).strip("._")
    if not name:
        raise ValueError(f"{text!r} (from {source}) gives no usable file name; rename it")
    return name


def inside(folder: str, relative: str) -> str:
    """``folder/relative``, refused with ``ValueError`` if it would lie outside ``folder``."""
    path = os.path.join(folder, relative)
    base = os.path.realpath(folder)
    if os.path.commonpath([base, os.path.realpath(path)]) != base:
        raise ValueError(f"output {path} would lie outside the output folder {folder}; refusing")
    return path


def check_output_folder(folder: str) -> None:
    """Raises ``ValueError`` naming ``folder`` when it cannot be created or written: a file is in
    the way, or the nearest existing folder above it is not writable."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"output folder {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {folder}: {existing} is not writable (permission denied)")


def _identity_records(root: str, identity_list: str | None, forbidden: str) -> list:
    records = read_list_file(identity_list) if identity_list else scan_identity_folders(root)
    if any(r.refs is not None for r in records):
        raise ValueError(
            f"{identity_list} is a triplet list; expected an identity list ('identity image_path')"
        )
    for record in records:
        _check_list_field(record.identity, "identity", record.source, forbidden)
        _check_list_field(record.gt, "image", record.source, forbidden)
    return records


def load_identities(
    root: str, identity_list: str | None = None, forbidden: str = _IDENTITY_LIST_FORBIDDEN
) -> dict:
    """``{identity: [image paths relative to root]}`` from identity folders or an identity list.

    Identities and paths are checked to be writable into a list file (UTF-8, no whitespace or
    characters of ``forbidden``); the error names the list line or folder.
    """
    groups = group_by_identity(_identity_records(root, identity_list, forbidden))
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
    check_output_folder(out_dir)
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


def lq_name(identity: str, gt: str, source: str = "") -> str:
    """``<identity>/<identity>_<gt name>.png``: the lq file of a gt, with a base name unique across
    identities (BasicSR names validation results after the lq file's base name). Both parts pass
    through :func:`safe_name`, so the result is a relative path of two plain components."""
    folder = safe_name(identity, source or identity)
    gt_name = os.path.basename(gt) if os.path.isabs(gt) else gt
    stem = safe_name(os.path.splitext(gt_name)[0].replace("/", "_").replace("\\", "_"), source or gt)
    flat = stem if stem.startswith(folder) else f"{folder}_{stem}"
    return f"{folder}/{flat}.png"


def _lq_names(jobs: list, sources: dict) -> list:
    """The lq names of ``jobs``; refuses two gts whose lq files would share a base name."""
    names, owner = [], {}
    for identity, gt, _ in jobs:
        name = lq_name(identity, gt, sources[(identity, gt)])
        base = os.path.basename(name)
        if base in owner:
            raise ValueError(
                f"images {owner[base]} and {gt} (from {sources[(identity, gt)]}) would both be degraded "
                f"to lq/.../{base} (same name apart from the extension or characters a file name "
                "cannot hold); rename one"
            )
        owner[base] = gt
        names.append(name)
    return names


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
    max_pixels: int | None = None,
) -> str:
    """Writes fixed, seeded test triplets: lq images and a triplet list.

    For every identity (of ``identity_list``, or every folder of ``root``) with at least two
    images, each of its images (or the first ``images_per_identity``) becomes a gt; its lq is the
    gt degraded with ``np.random.default_rng([seed, n])`` (n: the triplet's number), written to
    ``out_dir/lq/<identity>/<identity>_<name>.png`` (a base name unique across identities; both
    parts made safe by :func:`safe_name`); its references are a seeded choice of ``num_ref`` other
    images of the identity. Single-image identities are skipped with a warning.

    Everything is checked before the first file is written: names that the list cannot hold, two
    gts that would give the same lq name (``1.png`` and ``1.jpg``), images that are missing, not
    images or larger than ``max_pixels``, and an unwritable ``out_dir``.

    The list (``out_dir/<list_name>``) has lines ``gt_path lq_path ref[,ref...] identity``; gt and
    references relative to ``root`` (use it as ``dataroot_gt``), lq relative to ``out_dir`` (use it
    as ``dataroot_lq``).

    Args:
        root: identity folders with the HQ images.
        out_dir: output folder.
        identity_list: restrict to this identity list (e.g. ``test.txt`` of :func:`prepare_split`).
        num_ref: references per triplet (distinct when the identity has enough images), >= 1.
        images_per_identity: at most this many triplets per identity (None: all images).
        seed: the degradation and reference seed.
        size: resize gt to this square size before degrading (None: keep the file's size).
        degradation: degradation options (keys of ``DEGRADATION_DEFAULTS``); defaults GFPGAN's.
        list_name: the list file's name (a plain file name).
        progress: show a tqdm progress bar.
        max_pixels: largest gt image (width x height); default :func:`~ented.image_io.max_image_pixels`.

    Returns:
        The list file's path.
    """
    for value, what in ((num_ref, "num_ref"), (images_per_identity, "images_per_identity"), (size, "size")):
        if value is not None and value < 1:
            raise ValueError(f"{what} must be at least 1, got {value}")
    if not list_name or os.path.basename(list_name) != list_name or list_name in (".", ".."):
        raise ValueError(f"list_name must be a plain file name, got {list_name!r}")
    records = _identity_records(root, identity_list, _TRIPLET_LIST_FORBIDDEN)
    sources = {(r.identity, r.gt): r.source for r in records}
    groups = group_by_identity(records)
    if not groups:
        raise ValueError(f"no images found in {identity_list or root}")
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
    lq_names = _lq_names(jobs, sources)
    lq_paths = [inside(out_dir, f"lq/{name}") for name in lq_names]
    list_path = inside(out_dir, list_name)
    for image in sorted({p for identity, _, _ in jobs for p in groups[identity]}):
        path = os.path.join(root, image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image {path} does not exist")
        read_image_header(path, path, max_pixels)
    check_output_folder(out_dir)
    lines = []
    for n, (identity, gt, others) in enumerate(_progress(jobs, progress, len(jobs), "test triplets")):
        rng = np.random.default_rng([seed, n])
        picks = rng.choice(len(others), size=num_ref, replace=len(others) < num_ref)
        refs = [others[int(i)] for i in picks]
        img = read_image_file(os.path.join(root, gt), size, max_pixels=max_pixels)
        lq, _ = degrade(img, rng)
        write_image_atomic(lq_paths[n], lq)
        lines.append(f"{gt} lq/{lq_names[n]} {','.join(refs)} {identity}")
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


def stored_lq_paths(list_path: str) -> list:
    """The stored lq files a triplet list names (``lq/<identity>/...``), sorted: what to pack into
    an lmdb used as ``dataroot_lq``.

    Raises:
        ValueError: the list names no stored lq file, or an absolute one (an lmdb key is relative).
    """
    records = read_list_file(list_path)
    for record in records:
        if record.lq is not None and os.path.isabs(record.lq):
            raise ValueError(
                f"{record.source}: lq path {record.lq} is absolute; an lmdb key must be relative"
            )
    paths = sorted({record.lq for record in records if record.lq is not None})
    if not paths:
        raise ValueError(f"{list_path} names no stored lq file (its lq column is empty or '-')")
    return paths


def pack_lmdb(
    root: str,
    lmdb_path: str,
    paths: list | None = None,
    map_size: int | None = None,
    compress_level: int = 1,
    progress: bool = False,
    max_pixels: int | None = None,
) -> str:
    """Packs images of ``root`` into an lmdb (BasicSR's format) keyed by relative path without
    extension (``id0001/3``), so the identity layouts and lists read it unchanged.

    The lmdb is built in a temporary folder beside ``lmdb_path`` and renamed when complete. Every
    image is checked first, so a bad file fails before anything is written.

    Args:
        root: image folder.
        lmdb_path: output, must end with ``.lmdb`` and not exist.
        paths: images relative to ``root`` (default: the images of ``root/<identity>/``, found by
            :func:`~ented.data.layouts.scan_identity_folders`, the scanner the datasets use, so
            the lmdb holds exactly the images the disk dataset of ``root`` reads).
        map_size: lmdb map size in bytes; default 10x the files' size, at least 1 GiB (BasicSR
            would size it from the first image only).
        compress_level: PNG compression level inside the lmdb.
        progress: let BasicSR show its progress bar; its printed messages go to this module's
            logger (debug level) either way.
        max_pixels: largest image (width x height); default :func:`~ented.image_io.max_image_pixels`.

    Returns:
        ``lmdb_path``.
    """
    import lmdb
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    if not lmdb_path.endswith(".lmdb"):
        raise ValueError(f"lmdb path must end with .lmdb, got {lmdb_path}")
    if os.path.exists(lmdb_path):
        raise FileExistsError(f"{lmdb_path} already exists; remove it or choose another path")
    if paths is None:
        paths = [record.gt for record in scan_identity_folders(root)]
    if not paths:
        raise ValueError(f"no images to pack under {root} (expected {root}/<identity>/<image>)")
    keys, owner, total = [], {}, 0
    for path in paths:
        full = os.path.join(root, path)
        key = os.path.splitext(path)[0]
        if not key.isascii() or any(c.isspace() for c in key):
            raise ValueError(f"image {full}: lmdb keys must be ASCII without spaces, got {key!r}")
        if key in owner:
            raise ValueError(
                f"images {os.path.join(root, owner[key])} and {full} would share the lmdb key {key!r} "
                "(same name, different extension); rename one"
            )
        owner[key] = path
        read_image_file(full, max_pixels=max_pixels)  # names the file if missing, truncated, too large
        total += os.path.getsize(full)
        keys.append(key)
    map_size = map_size or max(1 << 30, 10 * total)
    parent = os.path.dirname(os.path.abspath(lmdb_path))
    check_output_folder(parent)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".pack-", dir=parent)
    tmp_lmdb = os.path.join(tmp_dir, "tmp.lmdb")
    printed = io.StringIO()
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with contextlib.redirect_stdout(printed), quiet:
            make_lmdb_from_imgs(root, tmp_lmdb, paths, keys, compress_level=compress_level, map_size=map_size)
        os.replace(tmp_lmdb, lmdb_path)
    except lmdb.MapFullError:
        raise ValueError(
            f"lmdb map size {map_size} bytes is too small for the {len(paths)} images of {root} "
            f"({total} bytes as files); leave --map-size out or raise it"
        ) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        for line in printed.getvalue().splitlines():
            if line.strip():
                logger.debug("basicsr: %s", line.strip())
    logger.info("packed %d images of %s into %s", len(paths), root, lmdb_path)
    return lmdb_path
