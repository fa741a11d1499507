"""What the three ENTED reference datasets share: options, roots, the lazy file client, reading,
reference choice and the sample tensors.

Common options (all optional unless a dataset says otherwise):

- ``io_backend``: ``{type: disk}`` (default) or ``{type: lmdb}``; with lmdb every root is an
  ``.lmdb`` folder and paths become keys (the relative path without its extension). Further keys
  go to BasicSR's disk client or to ``lmdb.open``. Each process opens an lmdb once
  (:mod:`ented.data.lmdb_reader`), so datasets and forked workers can share one.
- ``dataroot_gt``, ``dataroot_lq``, ``dataroot_ref`` (default: ``dataroot_gt``): roots the layout's
  relative paths are joined to; ``~`` is expanded here and in ``meta_info``.
- ``layout``, ``meta_info``: see :mod:`ented.data.layouts`.
- ``out_size`` (512): every image is checked to be ``out_size`` square; others are centre-cropped and
  resized with a logged warning (``size_mismatch: error`` raises instead).
- ``mean``, ``std`` (None): normalize like BasicSR; 0.5 / 0.5 gives [-1, 1], absent gives [0, 1].
- ``num_ref`` (1): references per sample; ``ref`` is (3, H, W) for 1 and (K, 3, H, W) for K > 1,
  and ``ref_path`` the K paths joined with ``os.pathsep``.
- ``allow_gt_as_ref`` (False): whether the gt image itself may serve as its own reference.
- ``check_files`` (True): with the disk backend, check at start that every listed file exists.
- ``sidecars`` (False): add the gt's sidecar data (``face_mask``, ``marks``; see
  :mod:`ented.data.sidecars`) to each sample, for the identity-detail metrics. Disk backend only;
  every gt needs a sidecar at ``out_size`` (the pose-varied synthetic set has them).
"""

import logging
import os

import numpy as np
import torch
from basicsr.utils import FileClient
from torch.utils import data as data

from ented.data.layouts import FaceRecord
from ented.data.lmdb_reader import read_lmdb
from ented.data.sidecars import sidecar_tensors
from ented.image_io import decode_image, fit_to_size, to_tensor
from ented.options import BASICSR_DATASET_KEYS, check_known_keys

logger = logging.getLogger(__name__)


REFERENCE_MODES = ("matched", "mismatched", "none")


def _expand(path):
    return None if path in (None, "", "~") else os.path.expanduser(str(path))


class ReferenceDatasetBase(data.Dataset):
    """Base class; subclasses fill ``self.records`` and implement ``__getitem__``.

    Subclasses extend :attr:`OPTIONS` with the keys they read; any other key in ``opt`` (other
    than BasicSR's own dataset keys) is an error naming it and the closest known key.

    Args:
        opt: the dataset's option dict (BasicSR passes the whole ``datasets.<phase>`` entry).
    """

    # the keys this class reads (the module docstring describes them)
    OPTIONS = BASICSR_DATASET_KEYS | {
        "io_backend",
        "dataroot_gt",
        "dataroot_lq",
        "dataroot_ref",
        "meta_info",
        "out_size",
        "size_mismatch",
        "mean",
        "std",
        "num_ref",
        "allow_gt_as_ref",
        "check_files",
        "sidecars",
    }

    def __init__(self, opt: dict):
        super().__init__()
        check_known_keys(f"datasets {opt.get('name', '')} ({type(self).__name__})", opt, self.OPTIONS)
        self.opt = opt
        self.out_size = int(opt.get("out_size", 512))
        self.mean, self.std = opt.get("mean"), opt.get("std")
        self.num_ref = int(opt.get("num_ref", 1))
        if self.num_ref < 1:
            raise ValueError(f"num_ref must be >= 1, got {self.num_ref}")
        self.allow_gt_as_ref = bool(opt.get("allow_gt_as_ref", False))
        self.size_mismatch = opt.get("size_mismatch", "resize")
        if self.size_mismatch not in ("resize", "error"):
            raise ValueError(f"size_mismatch must be 'resize' or 'error', got {self.size_mismatch!r}")
        self.io_backend_opt = dict(opt.get("io_backend") or {"type": "disk"})
        self.backend = self.io_backend_opt.get("type", "disk")
        if self.backend not in ("disk", "lmdb"):
            raise ValueError(f"io_backend type must be 'disk' or 'lmdb', got {self.backend!r}")
        gt_root = _expand(opt.get("dataroot_gt"))
        self.roots = {
            "gt": gt_root,
            "lq": _expand(opt.get("dataroot_lq")),
            "ref": _expand(opt.get("dataroot_ref")) or gt_root,
        }
        self.meta_info = _expand(opt.get("meta_info"))
        self.sidecars = bool(opt.get("sidecars", False))
        if self.sidecars and self.backend != "disk":
            raise ValueError("sidecars: true needs the disk backend (sidecars are not packed into lmdb)")
        self.file_client = None
        self.records: list = []

    # ---------------------------------------------------------------- paths and files
    def resolve(self, role: str, path: str) -> str:
        """The file path (disk) or lmdb key of a layout path."""
        if self.backend == "lmdb":
            return os.path.splitext(path)[0]
        root = self.roots[role]
        return os.path.join(root, path) if root else path

    def _fetch(self, role: str, location: str) -> tuple:
        """(bytes or None, name for messages) of a resolved location."""
        options = {k: v for k, v in self.io_backend_opt.items() if k != "type"}
        if self.backend == "lmdb":
            root = self.roots[role]
            if root is None or not root.endswith(".lmdb"):
                raise ValueError(
                    f"with the lmdb backend, dataroot_{role} must be an .lmdb folder, got {root}"
                )
            return read_lmdb(root, location, **options), f"{root}:{location}"
        if self.file_client is None:  # lazily, as BasicSR does, so that each worker makes its own
            self.file_client = FileClient("disk", **options)
        try:
            return self.file_client.get(location), location
        except FileNotFoundError:
            raise FileNotFoundError(f"{role} image {location} does not exist") from None

    def read(self, role: str, path: str) -> np.ndarray:
        """Reads a layout path as BGR float32 (out_size, out_size, 3) in [0, 1]."""
        content, name = self._fetch(role, self.resolve(role, path))
        return fit_to_size(decode_image(content, name), self.out_size, name, self.size_mismatch)

    def check_files(self, roles=("gt", "lq", "ref")) -> None:
        """With the disk backend and ``check_files``, fails early on listed files that do not exist."""
        if self.backend != "disk" or not self.opt.get("check_files", True):
            return
        missing = []
        for record in self.records:
            entries = [("gt", record.gt), ("lq", record.lq)] + [("ref", p) for p in record.refs or []]
            for role, path in entries:
                if role in roles and path is not None and not os.path.isfile(self.resolve(role, path)):
                    missing.append(f"{role} {self.resolve(role, path)} (from {record.source})")
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError("missing image(s): " + "; ".join(missing[:5]) + more)

    def require_records(self, what: str) -> None:
        if not self.records:
            raise ValueError(f"{type(self).__name__}: no samples in {what}")

    # ---------------------------------------------------------------- references
    # the keys read by read_reference_mode
    REFERENCE_MODE_OPTIONS = frozenset({"reference", "seed"})

    def read_reference_mode(self) -> None:
        """Sets ``reference`` (``matched`` | ``mismatched`` | ``none``) and ``seed`` from the options
        (the evaluation datasets)."""
        self.reference = self.opt.get("reference", "matched")
        if self.reference not in REFERENCE_MODES:
            raise ValueError(f"reference must be one of {', '.join(REFERENCE_MODES)}, got {self.reference!r}")
        self.seed = int(self.opt.get("seed", 0))

    def reference_candidates(self, record: FaceRecord, pools: dict) -> list:
        """The images that may serve as ``record``'s reference, never its gt unless allowed."""
        pool = record.refs if record.refs is not None else pools.get(record.identity, [])
        candidates = [p for p in pool if p != record.gt]
        if not candidates and self.allow_gt_as_ref and record.gt is not None:
            candidates = [record.gt]
        return candidates

    def choose(self, candidates: list, rng: np.random.Generator) -> list:
        """``num_ref`` distinct candidates when there are enough, else drawn with repetition."""
        replace = len(candidates) < self.num_ref
        picks = rng.choice(len(candidates), size=self.num_ref, replace=replace)
        return [candidates[int(i)] for i in picks]

    # ---------------------------------------------------------------- tensors
    def tensor(self, img: np.ndarray) -> torch.Tensor:
        return to_tensor(img, self.mean, self.std)

    def gt_sample(self, lq: np.ndarray, gt: np.ndarray, lq_path: str, gt_path: str) -> dict:
        """The sample's ``lq``, ``gt`` and paths, plus the gt's sidecar tensors with ``sidecars``."""
        sample = {"lq": self.tensor(lq), "gt": self.tensor(gt), "lq_path": lq_path, "gt_path": gt_path}
        if self.sidecars:
            sample.update(sidecar_tensors(gt_path, self.out_size))
        return sample

    def add_refs(self, sample: dict, refs: list, images: list, role: str = "ref") -> dict:
        """Adds ``ref`` ((3, H, W) or (K, 3, H, W)) and ``ref_path`` (os.pathsep-joined)."""
        tensors = [self.tensor(img) for img in images]
        sample["ref"] = tensors[0] if self.num_ref == 1 else torch.stack(tensors)
        sample["ref_path"] = os.pathsep.join(self.resolve(role, p) for p in refs)
        return sample

    @staticmethod
    def ref_role(record: FaceRecord) -> str:
        """Explicit references live under ``dataroot_ref``; ones drawn from an identity's images
        (identity layouts) are gt images, under ``dataroot_gt``."""
        return "ref" if record.refs is not None else "gt"

    def __len__(self) -> int:
        return len(self.records)
