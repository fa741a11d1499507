"""ENTEDReferenceTripletDataset: fixed (lq, gt, ref) test triplets, reproducible to the pixel."""

import logging

import numpy as np
from basicsr.utils.registry import DATASET_REGISTRY

from ented.data.degradation import DEGRADATION_DEFAULTS, FaceDegradation
from ented.data.layouts import identity_pools, load_layout
from ented.data.reference_base import ReferenceDatasetBase

logger = logging.getLogger(__name__)


@DATASET_REGISTRY.register()
class ENTEDReferenceTripletDataset(ReferenceDatasetBase):
    """Test / validation samples (lq, gt, ref).

    Options, beyond those of :mod:`ented.data.reference_base`:

    - ``layout`` (``list``), ``meta_info``, ``dataroot_gt``, ``dataroot_lq``, ``dataroot_ref``.
      Rows with a stored lq (written by ``ented-prepare testset``) read it, so every method sees the
      same input. Rows without one (``-``, or identity layouts) degrade gt on the fly with
      ``np.random.default_rng([seed, index])``: the same lq on every run.
    - ``seed`` (0): the dataset seed for on-the-fly degradation and reference choice.
    - ``reference`` (``matched``): ``matched``: the row's references (the first ``num_ref``; for
      identity layouts, a seeded choice among the identity's other images); ``mismatched``: a
      seeded choice of ``num_ref`` images of ANOTHER identity; ``none``: the sample has no ``ref``
      and no ``ref_path``.
    - degradation keys of :class:`~ented.data.degradation.FaceDegradation`, used only on the fly.

    A row with fewer than ``num_ref`` references repeats them (logged). With ``reference:
    matched``, a row with no reference other than its gt is an error naming the row, unless
    ``allow_gt_as_ref: true``.

    Sample: ``lq``, ``gt``: (3, H, W); ``ref``: (3, H, W) or (K, 3, H, W); ``lq_path`` (the stored
    lq file, or the gt path when degraded on the fly), ``gt_path``, ``ref_path``; ``face_mask`` and
    ``marks`` with ``sidecars: true``.
    """

    OPTIONS = (
        ReferenceDatasetBase.OPTIONS
        | ReferenceDatasetBase.REFERENCE_MODE_OPTIONS
        | {"layout"}
        | DEGRADATION_DEFAULTS.keys()
    )

    def __init__(self, opt: dict):
        super().__init__(opt)
        self.read_reference_mode()
        layout = opt.get("layout", "list")
        records = load_layout(layout, self.meta_info, self.roots["gt"], self.backend)
        missing_gt = [r for r in records if r.gt is None]
        if missing_gt:
            raise ValueError(
                f"{missing_gt[0].source}: no gt path; rows without gt belong to ENTEDReferenceRealWorldDataset"
            )
        self.records = records
        self.require_records(f"{layout} layout at {self.meta_info or self.roots['gt']}")
        self.pools = identity_pools(records)
        self.pool_role = "ref" if any(r.refs is not None for r in records) else "gt"
        if self.reference == "matched":
            for record in records:
                if not self.reference_candidates(record, self.pools):
                    raise ValueError(
                        f"{record.source}: {record.gt} has no reference other than itself "
                        "(give one, use reference: none, or set allow_gt_as_ref: true)"
                    )
        if self.reference == "mismatched" and len(self.pools) < 2:
            raise ValueError("reference: mismatched needs at least two identities")
        roles = ("gt", "lq") if self.reference == "none" else ("gt", "lq", "ref")
        self.check_files(roles=roles)
        self.degradation = FaceDegradation.from_opt(opt)
        logger.info(
            "%s: %d triplets of %d identities, reference %s, %d with stored lq",
            type(self).__name__,
            len(records),
            len(self.pools),
            self.reference,
            sum(r.lq is not None for r in records),
        )

    def references(self, index: int) -> tuple:
        """The (paths, role) of sample ``index``'s references under the ``reference`` mode."""
        record = self.records[index]
        if self.reference == "mismatched":
            rng = np.random.default_rng([self.seed, index, 2])
            others = sorted(i for i in self.pools if i != record.identity)
            identity = others[int(rng.integers(len(others)))]
            return self.choose(self.pools[identity], rng), self.pool_role
        candidates = self.reference_candidates(record, self.pools)
        if record.refs is not None:  # explicit references: the first num_ref, repeated if short
            if len(candidates) < self.num_ref:
                logger.warning(
                    "%s: %d reference(s) for num_ref %d; repeating",
                    record.source,
                    len(candidates),
                    self.num_ref,
                )
            return [candidates[i % len(candidates)] for i in range(self.num_ref)], "ref"
        return self.choose(candidates, np.random.default_rng([self.seed, index, 1])), "gt"

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        gt = self.read("gt", record.gt)
        gt_path = self.resolve("gt", record.gt)
        if record.lq is not None:
            lq, lq_path = self.read("lq", record.lq), self.resolve("lq", record.lq)
        else:
            lq, gt = self.degradation(gt, np.random.default_rng([self.seed, index]))
            lq_path = gt_path
        sample = self.gt_sample(lq, gt, lq_path, gt_path)
        if self.reference == "none":
            return sample
        refs, role = self.references(index)
        return self.add_refs(sample, refs, [self.read(role, p) for p in refs], role)
