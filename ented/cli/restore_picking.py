"""``ented-restore --pick-references K``: each face's references chosen among the ``-r`` candidates.

The candidates of an input are the references ``-r`` gives it: files, the images a folder matches
by name, and every image directly in a ``-r`` folder that matches no input by name (a plain folder
of the person's photos, :func:`plain_folders_as_files`). Each candidate is aligned once for the
whole run (:meth:`ented.cli.restore_batch.Runner.reference`). For each face -- an aligned input, or
every face of a photo (:meth:`~ented.restoration.restorer.ENTEDRestorer.restore_photos_prepared`'s
``choose``) -- :func:`~ented.restoration.reference_picker.pick_references` keeps the K that pass the
identity check's threshold, closest in pose, sharpest. Its report is logged at INFO; the chosen
names, and the picker's notes, go to the summary. A face that no candidate passes, or that the
picker cannot measure, is restored without a reference, with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ented.image_io import ImageReadError
from ented.restoration.jobs import PlanError, match_references
from ented.restoration.results import NoFaceError

logger = logging.getLogger(__name__)


def plain_folders_as_files(
    inputs: list[tuple[Path, str]], files: list[Path], folders: list[Path]
) -> tuple[list[Path], list[Path]]:
    """``(files, folders)`` with every folder that matches none of ``inputs`` by name replaced by the
    images directly in it (sorted by name): candidates for every input.

    Raises:
        PlanError: Such a folder holds no image file.
    """
    from ented.restoration.reference_picker import reference_files

    files, by_name = list(files), []
    for folder in folders:
        if any(match_references(name, [folder]) for _, name in inputs):
            by_name.append(folder)
            continue
        try:
            files += reference_files(folder)
        except ValueError as err:
            raise PlanError(str(err)) from err
    return files, by_name


class Picker:
    """Chooses each face's references for a :class:`~ented.cli.restore_batch.Runner`.

    Args:
        runner: Its cache of aligned references is used, its ``notes`` get the summary lines.
        num_refs: K, how many references per face.
    """

    def __init__(self, runner, num_refs: int):
        from ented.dlib_identity import DlibFaceDescriptor
        from ented.restoration.reference_check import DLIB_THRESHOLD

        self.runner = runner
        self.num_refs = num_refs
        checker = runner.restorer.checker
        # the picker measures identity with dlib: the check's threshold when the check uses dlib too
        self.threshold = checker.threshold if checker.backend == "dlib" else DLIB_THRESHOLD
        self.descriptor = DlibFaceDescriptor(aligned=True)

    def candidates(self, paths: list[Path]):
        """One :class:`~ented.restoration.reference_picker.Candidate` per path, aligned once per run; a
        file that cannot be read or shows no face is a candidate with its error."""
        from ented.restoration.reference_picker import Candidate

        found = []
        for path in paths:
            try:
                found.append(Candidate(str(path), self.runner.reference(path)))
            except (ImageReadError, NoFaceError, ValueError) as err:
                found.append(Candidate(str(path), error=str(err)))
        return found

    def choose(self, paths: list[Path], face: np.ndarray, name: str) -> tuple[list[np.ndarray], list[str]]:
        """The references of the aligned ``face`` among ``paths`` and their names, best first (both
        empty: restore without a reference)."""
        from ented.dlib_identity import NoFaceError as DlibNoFaceError
        from ented.restoration.reference_picker import pick_references

        try:
            pick = pick_references(
                face,
                self.candidates(paths),
                self.num_refs,
                name,
                threshold=self.threshold,
                descriptor=self.descriptor,
            )
        except (DlibNoFaceError, ValueError) as err:
            logger.warning("%s: cannot pick references (%s); restored without a reference", name, err)
            self.runner.notes.append(f"{name}: no reference (cannot pick: {err})")
            return [], []
        for line in pick.report():
            logger.info("picking for %s: %s", name, line)
        if pick.chosen:
            self.runner.notes.append(f"{name}: references {', '.join(pick.chosen_names)}")
            self.runner.notes += pick.notes  # fewer pass than asked for: all of them are used
        else:
            logger.warning("%s: no candidate reference passes the identity check; restored without one", name)
            self.runner.notes.append(f"{name}: no reference (no candidate passes the identity check)")
        return pick.references, pick.chosen_names
