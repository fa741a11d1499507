"""ENTEDReferenceFaceDataset: identity-grouped HQ faces, lq synthesized on the fly, ref = another
photo of the same person. The training dataset."""

import logging

import numpy as np
import torch
from basicsr.utils.registry import DATASET_REGISTRY

from ented.data.correspondences import GRID, correspondence_rows, flip_rows
from ented.data.degradation import DEGRADATION_DEFAULTS, FaceDegradation
from ented.data.layouts import identity_pools, load_layout
from ented.data.reference_augment import REFERENCE_AUGMENT_DEFAULTS, ReferenceAugmentation
from ented.data.reference_base import ReferenceDatasetBase
from ented.data.sidecars import read_sidecar

logger = logging.getLogger(__name__)


def training_rng() -> np.random.Generator:
    """A fresh generator per sample, drawn from torch's RNG: reproducible under
    ``torch.manual_seed`` and different in every DataLoader worker (torch seeds each one)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


@DATASET_REGISTRY.register()
class ENTEDReferenceFaceDataset(ReferenceDatasetBase):
    """Training samples (gt, synthetic lq, reference(s) of the same identity).

    Options, beyond those of :mod:`ented.data.reference_base`:

    - ``dataroot_gt`` (required for ``identity_folders``), ``layout`` (``identity_folders``),
      ``meta_info``. Stored lq paths of list/CSV layouts are ignored: lq is always synthesized.
    - ``use_hflip`` (True): flip gt with probability 0.5; its references are flipped with it, so
      the pair stays consistent (left-cheek mole stays on the same side in gt and ref).
    - degradation keys of :class:`~ented.data.degradation.FaceDegradation` (GFPGAN's defaults).
    - reference augmentation keys of :class:`~ented.data.reference_augment.ReferenceAugmentation`.
    - ``reference`` (``matched``): ``none`` trains a *blind* model: samples carry no ``ref``, so
      ENTED sees its own input as reference (the baseline that "reference vs blind" compares with:
      the same network and data, trained without references).
    - ``correspondences`` (False): add ``correspondences`` (K, N, 5), where each point of the gt
      sits in each reference, from the images' sidecars (the pose-varied synthetic set has them;
      :mod:`ented.data.correspondences`), for the reference flow's loss. Disk backend; not with
      ``ref_use_hflip`` or ``ref_affine_prob``, which move a reference without its sidecar.
    - ``mismatched_reference_prob`` (0): the probability that a sample's references are another
      identity's (all from one other person; their correspondences invalid). Samples then carry
      ``reference_match`` (K,): 1.0 for the gt's person, 0.0 for another, what
      ``ENTEDReferenceGateLoss`` trains ``ENTED(reference_gate=True)``'s gate with. Without a
      gate the network hedges on every reference instead (validation recall 0.22 at 0.2 on the
      synthetic set; docs/architecture.md).

    Identities with a single image cannot give a different reference: they are skipped with a
    logged warning, unless ``allow_gt_as_ref: true``, which keeps them with the gt as reference.
    Rows of a CSV / triplet list whose only reference is their gt are treated the same way.

    Sample: ``lq``, ``gt``: (3, H, W); ``ref``: (3, H, W) or (K, 3, H, W); ``lq_path`` (= gt path,
    lq is synthetic), ``gt_path``, ``ref_path`` (K paths joined with ``os.pathsep``).
    """

    OPTIONS = (
        ReferenceDatasetBase.OPTIONS
        | {"layout", "reference", "use_hflip", "correspondences", "mismatched_reference_prob"}
        | DEGRADATION_DEFAULTS.keys()
        | REFERENCE_AUGMENT_DEFAULTS.keys()
    )

    def __init__(self, opt: dict):
        super().__init__(opt)
        self.reference = opt.get("reference", "matched")
        if self.reference not in ("matched", "none"):
            raise ValueError(
                f"{type(self).__name__}: reference must be 'matched' or 'none', got {self.reference!r}"
            )
        if self.sidecars:
            raise ValueError(
                f"{type(self).__name__}: sidecars are for evaluation datasets (the training set flips)"
            )
        self.correspondences = bool(opt.get("correspondences", False))
        self._posed_sidecars: dict = {}  # path -> parsed sidecar, checked once (correspondences)
        layout = opt.get("layout", "identity_folders")
        records = load_layout(layout, self.meta_info, self.roots["gt"], self.backend)
        records = [r for r in records if r.gt is not None]
        self.pools = identity_pools(records)
        kept, skipped = [], []
        for record in records:
            (kept if self.reference_candidates(record, self.pools) else skipped).append(record)
        if skipped:
            logger.warning(
                "%s: skipping %d image(s) with no other image of their identity to serve as reference "
                "(e.g. %s from %s); set allow_gt_as_ref: true to keep them",
                type(self).__name__,
                len(skipped),
                skipped[0].gt,
                skipped[0].source,
            )
        self.records = kept
        self.require_records(f"{layout} layout at {self.meta_info or self.roots['gt']}")
        self.check_files(roles=("gt", "ref"))
        self.use_hflip = bool(opt.get("use_hflip", True))
        self.mismatched_reference_prob = self._read_mismatched_reference_prob(opt)
        self.degradation = FaceDegradation.from_opt(opt)
        self.ref_augment = ReferenceAugmentation.from_opt(opt)
        if self.correspondences:
            self._check_correspondence_options()
        logger.info(
            "%s: %d images of %d identities; degradation: %s",
            type(self).__name__,
            len(self.records),
            len({r.identity for r in self.records}),
            self.degradation.describe(),
        )

    def __getitem__(self, index: int) -> dict:
        rng = training_rng()
        record = self.records[index]
        mismatched = self.mismatched_reference_prob > 0 and rng.uniform() < self.mismatched_reference_prob
        ref_record = self._other_identity(record, rng) if mismatched else record
        refs = self.choose(self.reference_candidates(ref_record, self.pools), rng)
        gt = self.read("gt", record.gt)
        flip = self.use_hflip and rng.uniform() < 0.5
        if flip:
            gt = np.ascontiguousarray(gt[:, ::-1])
        lq, gt = self.degradation(gt, rng)
        gt_path = self.resolve("gt", record.gt)
        sample = self.gt_sample(lq, gt, gt_path, gt_path)
        if self.reference == "none":
            return sample
        role = self.ref_role(ref_record)
        ref_images = []
        for path in refs:
            img = self.read(role, path)
            if flip:
                img = np.ascontiguousarray(img[:, ::-1])
            ref_images.append(self.ref_augment(img, rng) if self.ref_augment.active else img)
        sample = self.add_refs(sample, refs, ref_images, role)
        if self.mismatched_reference_prob > 0:
            sample["reference_match"] = torch.full((len(refs),), 0.0 if mismatched else 1.0)
        if mismatched and self.correspondences:  # no point of the gt is in a stranger's photo
            sample["correspondences"] = torch.zeros(len(refs), GRID * GRID, 5)
        elif self.correspondences:
            sample["correspondences"] = self._correspondences(
                gt_path, [self.resolve(role, p) for p in refs], flip
            )
        return sample

    def _read_mismatched_reference_prob(self, opt: dict) -> float:
        name = type(self).__name__
        prob = float(opt.get("mismatched_reference_prob", 0))
        if not 0 <= prob < 1:
            raise ValueError(f"{name}: mismatched_reference_prob must be in [0, 1), got {prob}")
        if prob and self.reference == "none":
            raise ValueError(f"{name}: mismatched_reference_prob needs references (reference: matched)")
        if prob and len({r.identity for r in self.records}) < 2:
            raise ValueError(f"{name}: mismatched_reference_prob needs at least two identities")
        return prob

    def _other_identity(self, record, rng: np.random.Generator):
        """A record of an identity other than ``record``'s, drawn uniformly over records."""
        while True:
            other = self.records[int(rng.integers(len(self.records)))]
            if other.identity != record.identity:
                return other

    def _check_correspondence_options(self) -> None:
        name = type(self).__name__
        if self.backend != "disk":
            raise ValueError(
                f"{name}: correspondences: true needs the disk backend (sidecars are not packed into lmdb)"
            )
        if self.reference == "none":
            raise ValueError(f"{name}: correspondences: true needs references (reference: matched)")
        if self.ref_augment.hflip or self.ref_augment.affine_prob > 0:
            raise ValueError(
                f"{name}: correspondences: true cannot follow ref_use_hflip or ref_affine_prob "
                "(they move a reference without its sidecar); turn those off"
            )

    def _correspondences(self, gt_path: str, ref_paths: list, flip: bool) -> torch.Tensor:
        """(K, N, 5) rows ``x_gt, y_gt, x_ref, y_ref, valid`` of the gt's points in each reference."""
        gt_sidecar = self._posed_sidecar(gt_path)
        blocks = []
        for ref_path in ref_paths:
            rows = correspondence_rows(gt_sidecar, self._posed_sidecar(ref_path), self.out_size)
            blocks.append(flip_rows(rows, self.out_size) if flip else rows)
        return torch.from_numpy(np.stack(blocks))

    def _posed_sidecar(self, path: str) -> dict:
        """The sidecar of ``path``, read and checked on first use (each worker keeps its own)."""
        sidecar = self._posed_sidecars.get(path)
        if sidecar is None:
            sidecar = read_sidecar(path)
            missing = [key for key in ("head", "pose", "to_image") if key not in sidecar]
            if missing or sidecar["size"] != self.out_size:
                raise ValueError(
                    f"sidecar of {path} cannot give correspondences: it must describe a posed face "
                    f"at the dataset's out_size {self.out_size} (size {sidecar['size']}, "
                    f"missing: {', '.join(missing) or 'nothing'})"
                )
            self._posed_sidecars[path] = sidecar
        return sidecar
