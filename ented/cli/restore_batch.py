"""Runs the files ``ented-restore`` planned (:mod:`ented.restoration.jobs`): read, restore, write, report.

Each reference file is aligned once (cached) and each input read once; the restorer gets arrays
ready for it (:meth:`~ented.restoration.restorer.ENTEDRestorer.restore_prepared`,
:meth:`~ented.restoration.restorer.ENTEDRestorer.restore_photos_prepared`). A face the reference
check refuses comes back unrestored and marked; its file is reported as skipped, the rest of the
batch is written. A photo without a face is written all the same (enlarged) and listed in the
summary. One bad file never stops the run. With ``--pick-references`` each face's references are
chosen among the job's (:mod:`ented.cli.restore_picking`), from the same cache of aligned references.

Outputs follow GFPGAN's ``inference_gfpgan.py`` under the output folder (:class:`Layout`)::

    restored_imgs/<name><suffix>.<ext>        the whole photo, faces pasted back (photos mode)
    cropped_faces/<name>_<idx>.png            each aligned input face (photos mode)
    restored_faces/<name>_<idx><suffix>.png   each restored face (aligned mode: <name><suffix>.<ext>)
    cmp/<name>_<idx>.png                      input face | every reference | restored face, labelled
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ented.cli.arguments import EXIT_FAILED, EXIT_OK
from ented.image_io import ImageReadError, load_image, save_image
from ented.restoration.jobs import _file_key
from ented.restoration.results import NoFaceError
from ented.visualization import side_by_side

logger = logging.getLogger(__name__)


def comparison(crop: np.ndarray, references: list[np.ndarray], restored: np.ndarray | None) -> np.ndarray:
    """Input face | each reference | restored face, labelled (a missing one: a grey "none" panel)."""
    names = [f"ref {k + 1}" for k in range(len(references))] if len(references) > 1 else ["reference"]
    return side_by_side([crop, *(references or [None]), restored], ["input", *names, "restored"], gap=4)


def face_paths(output_dir: Path, name: str, index: int | None, suffix: str) -> dict[str, Path]:
    """GFPGAN's per-face files: ``cropped_faces/``, ``restored_faces/`` and ``cmp/`` ``<name>_<index:02d>``
    (``index`` None, aligned mode: ``restored_faces/`` is the planned output, ``cmp/<name>.png``)."""
    stem = name if index is None else f"{name}_{index:02d}"
    return {
        "cropped_faces": output_dir / "cropped_faces" / f"{stem}.png",
        "restored_faces": output_dir / "restored_faces" / f"{stem}{suffix}.png",
        "cmp": output_dir / "cmp" / f"{stem}.png",
    }


PHOTO_FOLDER, ALIGNED_FOLDER = "restored_imgs", "restored_faces"  # where the planned outputs go
FACE_FOLDERS = ("cropped_faces", "restored_faces", "cmp")
# what a single file can go wrong with, past planning: unreadable, no face, unwritable, torch errors
FILE_ERRORS = (OSError, ValueError, RuntimeError)


class Runner:
    """Restores planned jobs one by one (aligned faces in batches), keeping going after failures."""

    def __init__(self, restorer, args, protected: dict | None = None):
        self.restorer = restorer
        self.args = args
        self.protected = protected or {}  # (device, inode) -> input or reference that no output replaces
        self.references_aligned = (
            True if args.aligned else {"auto": None, "yes": True, "no": False}[args.references_aligned]
        )
        self.restored: list = []
        self.skipped: list[tuple[Path, str]] = []
        self.existing: list[Path] = []  # left alone by --skip-existing
        self.no_face: list[Path] = []  # photos without a face: written all the same, enlarged
        self.notes: list[str] = []  # more lines for the summary (videos' frames without a face)
        self.output_dir = Path(args.output)
        self.mismatch_warnings = 0
        self._references: dict[Path, np.ndarray | Exception] = {}
        self.picker = None  # --pick-references: each face's references chosen among the job's
        if getattr(args, "pick_references", None):
            from ented.cli.restore_picking import Picker

            self.picker = Picker(self, args.pick_references)

    def skip(self, job, reason: str) -> None:
        reason = reason.removeprefix(f"{job.input}: ")  # library messages start with the file name
        logger.warning("skipped %s: %s", job.input, reason)
        self.skipped.append((job.input, reason))

    def to_do(self, jobs) -> list:
        """The jobs to run; the others are recorded as skipped (with their reason) or already done."""
        todo = []
        for job in jobs:
            if job.skip_reason:
                self.skip(job, job.skip_reason)
            elif self.args.skip_existing and job.output.exists():
                self.existing.append(job.input)
            else:
                todo.append(job)
        return todo

    def run(self, jobs) -> None:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        todo = self.to_do(jobs)
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

    def references_for(self, job) -> list[np.ndarray] | None:
        try:
            return [self.reference(path) for path in job.references]
        except (ImageReadError, NoFaceError, ValueError) as err:
            self.skip(job, f"reference problem: {err}")
            return None

    def chosen_for(self, job, face: np.ndarray) -> tuple[list[np.ndarray], list[str]] | None:
        """An aligned input's references and their names: those picked for ``face`` with
        ``--pick-references``, else all of the job's (None, reported: one cannot be had)."""
        if self.picker is not None:
            return self.picker.choose(job.references, face, str(job.input))
        refs = self.references_for(job)
        return None if refs is None else (refs, [str(path) for path in job.references])

    def _run_aligned(self, chunk) -> None:
        ready = []
        for job in chunk:
            try:
                face = self.restorer.prepare_aligned(job.input, str(job.input), "face")
            except (ImageReadError, ValueError) as err:
                self.skip(job, str(err))
                continue
            chosen = self.chosen_for(job, face)
            if chosen is not None:
                ready.append((job, face, *chosen))
        if not ready:
            return
        result = self.restorer.restore_prepared(
            [face for _, face, _, _ in ready],
            [refs or None for _, _, refs, _ in ready],
            [str(job.input) for job, _, _, _ in ready],
            [names for _, _, _, names in ready],
        )
        refused = {check.face: check for check in result.refused}
        self.count_warnings(result.checks)
        for (job, face, refs, _), restored in zip(ready, result.faces):
            if restored is None:
                self.skip(job, "refused: " + refused[str(job.input)].message())
            else:
                if self._write(job, restored, [(None, face, restored, refs)]):
                    self.restored.append(job)

    def _run_photo(self, job) -> None:
        try:
            photo = load_image(job.input, str(job.input))
        except ImageReadError as err:
            self.skip(job, str(err))
            return
        picked, choose = [], None  # --pick-references: each face's references, in face order
        if self.picker is not None:
            refs = []

            def choose(crop: np.ndarray, name: str) -> tuple[list[np.ndarray], list[str]]:
                chosen = self.picker.choose(job.references, crop, name)
                picked.append(chosen[0])
                return chosen

        else:
            refs = self.references_for(job)
            if refs is None:
                return
        (result,) = self.restorer.restore_photos_prepared(
            [photo], refs, self.args.upscale, [str(job.input)], [str(p) for p in job.references], choose
        )
        self.count_warnings(result.checks)
        if result.refused and all(face.restored is None for face in result.faces):
            self.skip(job, "refused: " + "; ".join(check.message() for check in result.refused))
            return
        faces = [
            (index, face.crop, face.restored, picked[index] if picked else refs)
            for index, face in enumerate(result.faces)
        ]
        if self._write(job, result.image, faces):
            if result.faces:
                self.restored.append(job)
            else:
                self.no_face.append(job.input)

    def count_warnings(self, checks) -> None:
        self.mismatch_warnings += sum(1 for check in checks if not check.same_person and not check.refused)

    def _write(self, job, image: np.ndarray, faces: list[tuple]) -> bool:
        """Writes the planned output and, for each ``(index, crop, restored, references)`` face, GFPGAN's
        face files (an aligned input, ``index`` None, is its own crop); False, reported, when a write fails."""
        files = [(job.output, image)]
        for index, crop, restored, refs in faces:
            paths = face_paths(self.output_dir, job.name, index, self.args.suffix)
            if index is not None:
                files.append((paths["cropped_faces"], crop))
                files += [(paths["restored_faces"], restored)] if restored is not None else []
            files.append((paths["cmp"], comparison(crop, refs or [], restored)))
        for path, picture in files:
            original = self.protected.get(_file_key(path))
            if original is not None:
                self.skip(job, f"{path} would overwrite the input or reference {original}")
                return False
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_image(picture, path)
            except (OSError, ValueError) as err:
                self.skip(job, f"could not write {path}: {err}")
                return False
        return True

    def summarise(self, seconds: float) -> int:
        """Prints the summary; returns the exit status."""
        total = len(self.restored) + len(self.no_face) + len(self.skipped) + len(self.existing)
        existing = f", {len(self.existing)} already done" if self.existing else ""
        no_face = f", {len(self.no_face)} without a face (written enlarged)" if self.no_face else ""
        print(
            f"ented-restore: restored {len(self.restored)}{no_face}, skipped {len(self.skipped)}{existing} "
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
        for path in self.no_face:
            print(f"  no face in {path}: written enlarged, not restored")
        for note in self.notes:
            print(f"  {note}")
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
