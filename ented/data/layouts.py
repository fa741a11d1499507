"""Reads the on-disk layouts of reference-face data into one form: a list of :class:`FaceRecord`.

Layouts (option ``layout``):

``identity_folders``
    ``root/<identity>/<image>.png|jpg|...``, one folder per person (CelebRef-HQ). With the lmdb
    backend, the keys of ``root/meta_info.txt`` play the same role: ``<identity>/<image>``.
``list`` (``meta_info`` names the file; ``#`` starts a comment; blank lines are skipped)
    *identity list*, two fields per line: ``identity image_path``; or
    *triplet list*, three or four fields: ``gt_path lq_path ref_path[,ref_path...] [identity]``,
    where ``-`` stands for "none" (no lq: degrade on the fly; no reference; no gt for real-world
    inputs). A file holds one kind or the other.
``ffhq_ref_csv`` (``meta_info`` names the file)
    comma-separated, one target per row. With a header row (a column named ``gt``, ``gt_path``,
    ``target``, ``hq``, ``lq`` or ``lq_path``): columns ``gt`` (absent for real-world inputs),
    optional ``lq`` / ``lq_path``, optional ``identity`` /
    ``id``, and one or more reference columns whose names start with ``ref``; a reference cell may
    hold several paths separated by ``;`` or ``|`` (a ``['a.png', 'b.png']`` list also works).
    Without a header (FFHQ-Ref's reference mapping): ``gt_path,ref_path,ref_path,...``.

List and CSV files are UTF-8 text; a byte-order mark is ignored. A line repeated exactly is an
error naming both lines (it would count a sample twice).

Paths are relative to the dataset roots (absolute paths are kept); a path without an extension
gets ``.png``. Rows without an identity are grouped by shared images: two rows that share a gt or a
reference belong to the same person (connected components), which is what "mismatched"
references need.
"""

import csv
import logging
import os
import re
from dataclasses import dataclass

from ented.image_io import is_image_file

logger = logging.getLogger(__name__)

LAYOUTS = ("identity_folders", "list", "ffhq_ref_csv")
NONE_FIELD = "-"


@dataclass
class FaceRecord:
    """One sample's files, as written in the layout (relative paths or lmdb keys).

    Attributes:
        gt: high-quality target, or None (real-world inputs).
        lq: stored low-quality input, or None (synthesize from gt).
        refs: explicit references, or None (any other image of ``identity``).
        identity: the person.
        source: where it was read, ``file:line`` or a folder, for messages.
    """

    gt: str | None
    lq: str | None
    refs: list | None
    identity: str
    source: str


def _with_extension(path: str) -> str:
    return path if os.path.splitext(path)[1] else path + ".png"


def _optional(value: str) -> str | None:
    value = value.strip()
    return None if value in ("", NONE_FIELD) else _with_extension(value)


def _split_refs(cell: str) -> list:
    cell = cell.strip().strip("[]")
    parts = re.split(r"[;|,]", cell)
    return [_with_extension(p.strip().strip("'\"").strip()) for p in parts if p.strip().strip("'\"").strip()]


def scan_identity_folders(root: str) -> list:
    """One record per image of ``root/<identity>/``, identity-major and sorted by name.

    The one scanner of the ``identity_folders`` layout: the datasets, ``ented-prepare split`` /
    ``testset`` and ``ented-prepare lmdb`` all read a root through it, so they see the same images.
    It does not descend further: folders inside an identity folder (such as the ``lq/<identity>/``
    tree ``ented-prepare testset`` writes) are ignored, with a warning.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    records, stray, nested = [], [], []
    for identity in sorted(os.listdir(root)):
        folder = os.path.join(root, identity)
        if not os.path.isdir(folder):
            if is_image_file(identity):
                stray.append(identity)
            continue
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            if os.path.isdir(os.path.join(folder, name)):
                nested.append(f"{identity}/{name}")
            elif is_image_file(name):
                records.append(FaceRecord(f"{identity}/{name}", None, None, identity, folder))
    if nested:
        logger.warning(
            "%s: ignoring %d folder(s) inside identity folders (e.g. %s); the identity_folders layout "
            "is root/<identity>/<image> and does not descend further",
            root,
            len(nested),
            nested[0],
        )
    if stray:
        logger.warning(
            "%s: ignoring %d image(s) outside identity folders (e.g. %s); the identity_folders layout "
            "expects root/<identity>/<image>",
            root,
            len(stray),
            stray[0],
        )
    return records


def read_lmdb_identities(lmdb_root: str) -> list:
    """Records from an lmdb's ``meta_info.txt`` whose keys are ``<identity>/<image>``."""
    meta = os.path.join(lmdb_root, "meta_info.txt")
    if not os.path.isfile(meta):
        raise FileNotFoundError(f"lmdb {lmdb_root} has no meta_info.txt")
    records = []
    for lineno, line in _text_lines(meta):
        if not line.strip():
            continue
        name = line.split()[0]
        key = os.path.splitext(name)[0]
        if "/" not in key:
            raise ValueError(
                f"{meta}:{lineno}: key {key!r} has no identity; expected '<identity>/<image>' "
                "(pack identity folders with `ented-prepare lmdb`)"
            )
        records.append(FaceRecord(name, None, None, key.split("/", 1)[0], f"{meta}:{lineno}"))
    return records


def _text_lines(path: str) -> list:
    """``[(line number, line)]`` of a UTF-8 text file, a byte-order mark dropped.

    Raises:
        ValueError: naming ``path`` and the line, when the file is not UTF-8.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        lineno = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{lineno}: not UTF-8 text (byte {data[error.start : error.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None
    return list(enumerate(text.replace("\r\n", "\n").split("\n"), 1))


def _content_lines(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file {path} does not exist")
    for lineno, line in _text_lines(path):
        text = line.split("#", 1)[0].strip()
        if text:
            yield lineno, text


def _refuse_repeats(records: list, path: str) -> None:
    """Raises ``ValueError`` naming both lines when two records of ``path`` are identical."""
    seen: dict = {}
    for record in records:
        key = (record.gt, record.lq, tuple(record.refs or ()), record.identity)
        if key in seen:
            raise ValueError(
                f"{record.source}: repeats {seen[key]}; every line of {path} must be unique "
                "(a repeated line would count its sample twice)"
            )
        seen[key] = record.source


def read_list_file(path: str) -> list:
    """Reads an identity list or a triplet list (see the module docstring).

    Raises:
        ValueError: naming the file and line of a malformed line, or if the kinds are mixed.
    """
    records, kind = [], None
    for lineno, text in _content_lines(path):
        fields = text.split()
        where = f"{path}:{lineno}"
        line_kind = "identity" if len(fields) == 2 else "triplet" if len(fields) in (3, 4) else None
        if line_kind is None:
            raise ValueError(
                f"{where}: expected 'identity image_path' or 'gt_path lq_path ref_path[,ref_path...] "
                f"[identity]', got {len(fields)} field(s): {text!r}"
            )
        if kind is not None and line_kind != kind:
            raise ValueError(f"{where}: {line_kind} line in a list of {kind} lines; one file holds one kind")
        kind = line_kind
        if kind == "identity":
            identity, image = fields
            records.append(FaceRecord(_with_extension(image), None, None, identity, where))
            continue
        gt, lq = _optional(fields[0]), _optional(fields[1])
        refs = None if fields[2] == NONE_FIELD else _split_refs(fields[2])
        if gt is None and lq is None:
            raise ValueError(f"{where}: neither a gt nor an lq path: {text!r}")
        identity = fields[3] if len(fields) == 4 else ""
        records.append(FaceRecord(gt, lq, refs if refs is not None else [], identity, where))
    if not records:
        raise ValueError(f"list file {path} has no entries")
    _refuse_repeats(records, path)
    if kind == "triplet":
        group_by_shared_images(records)
    return records


_GT_NAMES = ("gt", "gt_path", "target", "hq")
_LQ_NAMES = ("lq", "lq_path")
_ID_NAMES = ("identity", "id", "identity_id")


def read_ffhq_ref_csv(path: str) -> list:
    """Reads an FFHQ-Ref style CSV (see the module docstring) into records with explicit refs.

    Raises:
        ValueError: naming the file and line of a row without a gt path, or an empty file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV file {path} does not exist")
    lines = [line for _, line in _text_lines(path)]
    rows = [(lineno, row) for lineno, row in enumerate(csv.reader(lines), 1) if any(c.strip() for c in row)]
    if not rows:
        raise ValueError(f"CSV file {path} has no rows")
    header = [c.strip().lower() for c in rows[0][1]]
    has_header = any(name in _GT_NAMES + _LQ_NAMES for name in header)
    records = []
    if has_header:
        gt_col = next((i for i, n in enumerate(header) if n in _GT_NAMES), None)
        lq_col = next((i for i, n in enumerate(header) if n in _LQ_NAMES), None)
        id_col = next((i for i, n in enumerate(header) if n in _ID_NAMES), None)
        ref_cols = [i for i, n in enumerate(header) if n.startswith("ref")]
        if not ref_cols:
            logger.warning("%s: the header names no reference column (ref...); rows have no references", path)
        rows = rows[1:]
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        if has_header:
            if len(row) != len(header):
                raise ValueError(f"{where}: {len(row)} columns, the header has {len(header)}: {row}")
            gt = _optional(row[gt_col]) if gt_col is not None else None
            lq = _optional(row[lq_col]) if lq_col is not None else None
            identity = row[id_col].strip() if id_col is not None else ""
            refs = [p for i in ref_cols for p in _split_refs(row[i])]
        else:
            gt, identity = _optional(row[0]), ""
            lq = None
            refs = [p for cell in row[1:] for p in _split_refs(cell)]
        if gt is None and lq is None:
            raise ValueError(f"{where}: no gt or lq path in row {row}")
        records.append(FaceRecord(gt, lq, refs, identity, where))
    if not records:
        raise ValueError(f"CSV file {path} has a header but no rows")
    _refuse_repeats(records, path)
    group_by_shared_images(records)
    return records


def group_by_shared_images(records: list) -> None:
    """Gives every record without an identity the name of its connected component: records that
    share a gt or reference image are the same person. Named records keep their identity, and
    lend it to unnamed records of their component."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for record in records:
        images = [p for p in [record.gt, *(record.refs or [])] if p is not None]
        if record.identity:
            images.append(f"identity:{record.identity}")
        for image in images[1:]:
            parent[find(images[0])] = find(image)
        if images:
            find(images[0])
    names = {find(f"identity:{r.identity}"): r.identity for r in records if r.identity}
    for record in records:
        if record.identity:
            continue
        anchor = record.gt if record.gt is not None else (record.refs or [record.lq])[0]
        root = find(anchor)
        names.setdefault(root, f"group{len(names):05d}")
        record.identity = names[root]


def load_layout(layout: str, meta_info: str | None, root: str | None, backend: str) -> list:
    """Reads ``layout`` into records.

    Args:
        layout: one of :data:`LAYOUTS`.
        meta_info: the list or CSV file (``list`` and ``ffhq_ref_csv``).
        root: the gt root (``identity_folders``; with lmdb, the lmdb folder).
        backend: ``disk`` or ``lmdb``.
    """
    if layout == "identity_folders":
        if root is None:
            raise ValueError("layout identity_folders needs dataroot_gt")
        return read_lmdb_identities(root) if backend == "lmdb" else scan_identity_folders(root)
    if layout in ("list", "ffhq_ref_csv"):
        if not meta_info:
            raise ValueError(f"layout {layout} needs the option meta_info (the list or CSV file)")
        return read_list_file(meta_info) if layout == "list" else read_ffhq_ref_csv(meta_info)
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def identity_pools(records: list) -> dict:
    """``{identity: sorted image paths}`` from every gt and explicit reference of ``records``."""
    pools: dict = {}
    for record in records:
        for path in [record.gt, *(record.refs or [])]:
            if path is not None:
                pools.setdefault(record.identity, set()).add(path)
    return {identity: sorted(paths) for identity, paths in pools.items()}
