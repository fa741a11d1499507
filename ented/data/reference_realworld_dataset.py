"""ENTEDReferenceRealWorldDataset: real degraded faces with references and no ground truth."""

import logging
import os

import numpy as np
from basicsr.utils.registry import DATASET_REGISTRY

from ented.data.layouts import FaceRecord, identity_pools, load_layout
from ented.data.reference_base import ReferenceDatasetBase
from ented.image_io import is_image_file

logger = logging.getLogger(__name__)


def _scan_real_world_folders(lq_root: str, ref_root: str) -> list:
    """One record per image of ``lq_root/<identity>/``; its references: every image of
    ``ref_root/<identity>/``."""
    for name, root in (("dataroot_lq", lq_root), ("dataroot_ref", ref_root)):
        if root is None or not os.path.isdir(root):
            raise FileNotFoundError(f"the identity_folders layout needs {name} to be a folder, got {root}")
    records = []
    for identity in sorted(os.listdir(lq_root)):
        folder = os.path.join(lq_root, identity)
        if not os.path.isdir(folder):
            continue
        ref_folder = os.path.join(ref_root, identity)
        refs = sorted(f"{identity}/{n}" for n in os.listdir(ref_folder)) if os.path.isdir(ref_folder) else []
        refs = [r for r in refs if is_image_file(r)]
        for name in sorted(os.listdir(folder)):
            if is_image_file(name):
                records.append(FaceRecord(None, f"{identity}/{name}", refs, identity, folder))
    return records


@DATASET_REGISTRY.register()
class ENTEDReferenceRealWorldDataset(ReferenceDatasetBase):
    """Real-world inputs: (lq, ref), no gt.

    Options, beyond those of :mod:`ented.data.reference_base`:

    - ``layout`` (``list``): a triplet list whose gt field is ``-`` (or ignored), an FFHQ-Ref CSV with
      ``lq`` and ``ref`` columns, or ``identity_folders``: ``dataroot_lq/<identity>/<image>`` inputs
      with every image of ``dataroot_ref/<identity>/`` as their references.
    - ``dataroot_lq``, ``dataroot_ref`` (required for identity_folders), ``meta_info``.
    - ``reference`` (``matched``), ``seed`` (0): as in ENTEDReferenceTripletDataset.

    Sample: ``lq``: (3, H, W); ``ref``: (3, H, W) or (K, 3, H, W); ``lq_path``, ``ref_path``.
    No ``gt`` / ``gt_path`` keys.
    """

    OPTIONS = ReferenceDatasetBase.OPTIONS | ReferenceDatasetBase.REFERENCE_MODE_OPTIONS | {"layout"}

    def __init__(self, opt: dict):
        super().__init__(opt)
        self.read_reference_mode()
        layout = opt.get("layout", "list")
        if layout == "identity_folders":
            if self.backend != "disk":
                raise ValueError("the real-world identity_folders layout reads folders; use a list with lmdb")
            records = _scan_real_world_folders(self.roots["lq"], self.roots["ref"])
        else:
            records = load_layout(layout, self.meta_info, self.roots["lq"], self.backend)
        for record in records:
            if record.lq is None:
                raise ValueError(f"{record.source}: no lq path for a real-world input")
            record.gt = None
        self.records = records
        self.require_records(f"{layout} layout at {self.meta_info or self.roots['lq']}")
        self.pools = identity_pools(records)
        if self.reference == "matched":
            for record in records:
                if not record.refs:
                    raise ValueError(f"{record.source}: {record.lq} has no reference (use reference: none)")
        if self.reference == "mismatched" and len(self.pools) < 2:
            raise ValueError("reference: mismatched needs at least two identities with references")
        self.check_files(roles=("lq",) if self.reference == "none" else ("lq", "ref"))
        logger.info("%s: %d inputs, reference %s", type(self).__name__, len(records), self.reference)

    def references(self, index: int) -> list:
        record = self.records[index]
        if self.reference == "mismatched":
            rng = np.random.default_rng([self.seed, index, 2])
            others = sorted(i for i in self.pools if i != record.identity)
            return self.choose(self.pools[others[int(rng.integers(len(others)))]], rng)
        return [record.refs[i % len(record.refs)] for i in range(self.num_ref)]

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        sample = {"lq": self.tensor(self.read("lq", record.lq)), "lq_path": self.resolve("lq", record.lq)}
        if self.reference == "none":
            return sample
        refs = self.references(index)
        return self.add_refs(sample, refs, [self.read("ref", p) for p in refs])
