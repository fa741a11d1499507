"""Runs the files ``ented-restore`` planned (:mod:`ented.restoration.jobs`): read, restore, write, report.

Each reference file is aligned once (cached) and each input read once; the restorer gets arrays
ready for it (:meth:`~ented.restoration.restorer.ENTEDRestorer.restore_prepared`,
:meth:`~ented.restoration.restorer.ENTEDRestorer.restore_photo_prepared`). A face the reference
check refuses comes back unrestored and marked; its file is reported as skipped, the rest of the
batch is written. One bad file never stops the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ented.cli.arguments import EXIT_FAILED, EXIT_OK
from ented.image_io import ImageReadError, load_image, save_image
from ented.restoration.results import NoFaceError
from ented.visualization import side_by_side

logger = logging.getLogger(__name__)

COMPARE_LABELS = ("input", "reference", "output")
# what a single file can go wrong with, past planning: unreadable, no face, unwritable, torch errors
FILE_ERRORS = (OSError, ValueError, RuntimeError)


class Runner:
    """Restores planned jobs one by one (aligned faces in batches), keeping going after failures."""

    def __init__(self, restorer, args):
        self.restorer = restorer
        self.args = args
        self.references_aligned = (
            True if args.aligned else {"auto": None, "yes": True, "no": False}[args.references_aligned]
        )
        self.restored: list = []
        self.skipped: list[tuple[Path, str]] = []
        self.existing: list[Path] = []  # left alone by --skip-existing
        self.mismatch_warnings = 0
        self._references: dict[Path, np.ndarray | Exception] = {}

    def skip(self, job, reason: str) -> None:
        reason = reason.removeprefix(f"{job.input}: ")  # library messages start with the file name
        logger.warning("skipped %s: %s", job.input, reason)
        self.skipped.append((job.input, reason))

    def run(self, jobs) -> None:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        todo = []
        for job in jobs:
            if job.skip_reason:
                self.skip(job, job.skip_reason)
            elif self.args.skip_existing and job.output.exists():
                self.existing.append(job.input)
            else:
                todo.append(job)
        disable = self.args.no_progress or self.args.quiet
        with logging_redirect_tqdm(), tqdm(total=len(todo), unit="image", disable=disable) as bar:
            step = self.restorer.batch_size if self.args.aligned else 1
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                try:
                    self._run_aligned(chunk) if self.args.aligned else self._run_photo(chunk[0])
                except FILE_ERRORS as err:  # e.g. out of memory in a batch: its files are skipped
                    for job in chunk:
                        if job not in self.restored and all(job.input != path for path, _ in self.skipped):
                            self.skip(job, f"{type(err).__name__}: {err}")
                    logger.debug("error details", exc_info=True)
                bar.update(len(chunk))

    def reference(self, path: Path) -> np.ndarray:
        """The aligned reference at ``path``, aligned once (a failure is remembered and re-raised)."""
        if path not in self._references:
            try:
                self._references[path] = self.restorer.align_reference(
                    path, self.references_aligned, str(path)
                )
            except (ImageReadError, NoFaceError, ValueError) as err:
                self._references[path] = err
        cached = self._references[path]
        if isinstance(cached, Exception):
            raise cached
        return cached

    def _references_for(self, job) -> list[np.ndarray] | None:
        try:
            return [self.reference(path) for path in job.references]
        except (ImageReadError, NoFaceError, ValueError) as err:
            self.skip(job, f"reference problem: {err}")
            return None

    def _run_aligned(self, chunk) -> None:
        ready = []
        for job in chunk:
            try:
                face = self.restorer.prepare_aligned(job.input, str(job.input), "face")
            except (ImageReadError, ValueError) as err:
                self.skip(job, str(err))
                continue
            refs = self._references_for(job)
            if refs is not None:
                ready.append((job, face, refs))
        if not ready:
            return
        result = self.restorer.restore_prepared(
            [face for _, face, _ in ready],
            [refs or None for _, _, refs in ready],
            [str(job.input) for job, _, _ in ready],
            [[str(p) for p in job.references] for job, _, _ in ready],
        )
        refused = {check.face: check for check in result.refused}
        self._count_warnings(result.checks)
        for (job, face, refs), restored in zip(ready, result.faces):
            if restored is None:
                self.skip(job, "refused: " + refused[str(job.input)].message())
            else:
                self._write(job, restored, [face, refs[0] if refs else None, restored])

    def _run_photo(self, job) -> None:
        try:
            photo = load_image(job.input, str(job.input))
        except ImageReadError as err:
            self.skip(job, str(err))
            return
        refs = self._references_for(job)
        if refs is None:
            return
        try:
            result = self.restorer.restore_photo_prepared(
                photo, refs, self.args.upscale, str(job.input), [str(p) for p in job.references]
            )
        except NoFaceError as err:
            self.skip(job, str(err))
            return
        self._count_warnings(result.checks)
        if result.refused and all(face.restored is None for face in result.faces):
            self.skip(job, "refused: " + "; ".join(check.message() for check in result.refused))
            return
        self._write(job, result.image, [photo, refs[0] if refs else None, result.image])

    def _count_warnings(self, checks) -> None:
        self.mismatch_warnings += sum(1 for check in checks if not check.same_person and not check.refused)

    def _write(self, job, image: np.ndarray, comparison: list) -> None:
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            save_image(image, job.output)
            if job.comparison is not None:
                job.comparison.parent.mkdir(parents=True, exist_ok=True)
                save_image(side_by_side(comparison, COMPARE_LABELS, gap=4), job.comparison)
        except (OSError, ValueError) as err:
            self.skip(job, f"could not write {job.output}: {err}")
            return
        self.restored.append(job)

    def summarise(self, seconds: float) -> int:
        """Prints the summary; returns the exit status."""
        total = len(self.restored) + len(self.skipped) + len(self.existing)
        existing = f", {len(self.existing)} already done" if self.existing else ""
        print(
            f"ented-restore: restored {len(self.restored)}, skipped {len(self.skipped)}{existing} "
            f"of {total} in {seconds:.1f} s; outputs in {self.args.output}"
        )
        resized = self.restorer.resized
        if resized:
            shown = ", ".join(resized[:3]) + (f" and {len(resized) - 3} more" if len(resized) > 3 else "")
            size = self.restorer.size
            logger.info(
                "%d image(s) were not %dx%d and were resized to %dx%d: %s",
                len(resized),
                size,
                size,
                size,
                size,
                shown,
            )
        for path, reason in self.skipped:
            print(f"  skipped {path}: {reason}")
        if self.mismatch_warnings:
            print(
                f"  {self.mismatch_warnings} face(s) with a reference that may show another person (see warnings)"
            )
        if not self.skipped:
            return EXIT_OK
        if not self.restored or self.args.strict:
            return EXIT_FAILED
        return EXIT_OK
