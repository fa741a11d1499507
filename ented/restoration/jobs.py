"""Planning a batch run: which files to restore, with which references, written where.

Inputs are files, folders (their images; ``recursive`` descends) and glob patterns. References
follow two rules:

- **Reference files** (``-r face.jpg``, repeatable) are used for *every* input; several files
  are several references per input.
- **Reference folders** (``-r refs/``) are matched *by name*: the input ``photo.jpg`` gets
  ``refs/photo.<any image extension>``, and every image in the folder ``refs/photo/`` (several
  references). An input that no folder matches -- and that has no reference files -- is skipped.

Outputs go to ``<output>/<name><suffix>.<ext>``; an input found inside a folder argument keeps
its sub-folder. Nothing is ever written over an input or a reference, however it was named: files
are compared as the system sees them (``os.path.samefile``: through links, ``..`` and other
spellings), and every file inside a reference folder counts as a reference.

With a ``--suffix``, a file named like the output of another input of the same run (``photo.jpg``
and ``photo<suffix>.png``, or its comparison image) is taken as an earlier output of this tool: it
is neither restored nor protected, so ``-o`` can be an input folder and a rerun overwrites (or with
``--skip-existing`` keeps) those outputs. Without a suffix nothing is recognised that way.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ented.image_io import is_image_file as _is_image_name

logger = logging.getLogger(__name__)


class PlanError(ValueError):
    """The run cannot start (missing argument path, output over an input, ...)."""


@dataclass
class Job:
    """One input file to restore.

    Attributes:
        input: The image file.
        name: Relative name used for the output (``sub/photo``, no extension).
        references: Its reference files.
        output: Where the result goes.
        comparison: Where the side-by-side goes (None: not asked for).
        skip_reason: Set when the job cannot run.
    """

    input: Path
    name: str
    references: list[Path] = field(default_factory=list)
    output: Path | None = None
    comparison: Path | None = None
    skip_reason: str | None = None


def is_image_file(path: Path) -> bool:
    return path.is_file() and _is_image_name(path)


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(path for path in paths if is_image_file(path))


def find_inputs(
    arguments: list[str], recursive: bool = False, exclude: Path | None = None
) -> list[tuple[Path, str]]:
    """Expands files, folders and globs into ``(path, name)`` pairs, in argument order, without duplicates.

    ``name`` is the path relative to its folder argument without extension (the stem for files).
    Files inside ``exclude`` (the output folder, when it lies inside an input folder) are left out.

    Raises:
        PlanError: An argument matches nothing; the message names it.
    """
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    exclude = exclude.resolve() if exclude is not None else None

    def add(path: Path, name: str, folder: Path | None) -> None:
        resolved = path.resolve()
        if resolved in seen:
            return
        if exclude is not None and folder is not None and folder.resolve() != exclude:
            if exclude in resolved.parents:
                return
        seen.add(resolved)
        found.append((path, name))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            for image in _folder_images(path, recursive):
                add(image, image.relative_to(path).with_suffix("").as_posix(), path)
        elif path.exists():
            add(path, path.stem, None)  # a file given by name is taken even with an odd extension
        elif glob.has_magic(argument):
            matches = sorted(Path(p) for p in glob.glob(argument, recursive=recursive))
            images = [match for match in matches if is_image_file(match)]
            if not images:
                raise PlanError(f"{argument}: the pattern matches no image file")
            for image in images:
                add(image, image.stem, None)
        else:
            raise PlanError(f"{argument}: no such file or folder")
    return found


def split_references(arguments: list[str]) -> tuple[list[Path], list[Path]]:
    """Reference arguments as ``(files for every input, folders matched by name)``.

    Raises:
        PlanError: An argument matches nothing.
    """
    files: list[Path] = []
    folders: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            folders.append(path)
        elif path.exists():
            files.append(path)
        elif glob.has_magic(argument):
            matches = [Path(p) for p in sorted(glob.glob(argument)) if is_image_file(Path(p))]
            if not matches:
                raise PlanError(f"reference {argument}: the pattern matches no image file")
            files.extend(matches)
        else:
            raise PlanError(f"reference {argument}: no such file or folder")
    return files, folders


def match_references(name: str, folders: list[Path]) -> list[Path]:
    """References for the input called ``name`` in the by-name folders (see the module docstring)."""
    stem = Path(name).name
    matched: list[Path] = []
    for folder in folders:
        for candidate_dir in dict.fromkeys([folder / Path(name).parent, folder]):
            exact = sorted(
                path for path in candidate_dir.glob(glob.escape(stem) + ".*") if is_image_file(path)
            )
            subfolder = candidate_dir / stem
            several = _folder_images(subfolder, False) if subfolder.is_dir() else []
            if exact or several:
                matched.extend(exact + several)
                break
    return matched


def plan_jobs(
    inputs: list[tuple[Path, str]],
    reference_files: list[Path],
    reference_folders: list[Path],
    output_dir: Path,
    extension: str = ".png",
    suffix: str = "",
    comparisons: bool = False,
    allow_no_reference: bool = False,
) -> list[Job]:
    """Builds the jobs: references per input, output paths, and skip reasons.

    Args:
        extension: Output extension (``".png"``), or ``"same"`` to keep each input's.
        suffix: Appended to output names; with one, inputs named like the outputs of other inputs are
            earlier outputs and left out (see the module docstring).
        allow_no_reference: Restore inputs that have no reference (reference-free) instead of skipping
            them. Without any reference argument, every input is reference-free.

    Raises:
        PlanError: An output would overwrite an input or a reference file.
    """

    def targets(path: Path, name: str) -> tuple[Path, Path | None]:
        ext = path.suffix.lower() if extension == "same" else extension
        comparison = output_dir / "comparisons" / f"{name}{suffix}.png" if comparisons else None
        return output_dir / f"{name}{suffix}{ext}", comparison

    planned = {target.resolve() for path, name in inputs for target in targets(path, name) if target}
    earlier_outputs = planned if suffix else set()
    left_out = [path for path, _ in inputs if path.resolve() in earlier_outputs]
    if left_out:
        logger.info(
            "left out %d file(s) named like outputs of this run (earlier outputs), e.g. %s",
            len(left_out),
            left_out[0],
        )
    jobs = []
    for path, name in inputs:
        if path.resolve() in earlier_outputs:
            continue
        job = Job(input=path, name=name)
        job.references = list(reference_files) + match_references(name, reference_folders)
        if not job.references and reference_folders and not allow_no_reference:
            folders = ", ".join(str(folder) for folder in reference_folders)
            job.skip_reason = f"no reference named {Path(name).name}.* or {Path(name).name}/ in {folders}"
        job.output, job.comparison = targets(path, name)
        jobs.append(job)

    protected = _protected_files(jobs, reference_folders, earlier_outputs)
    used: dict[Path, Path] = {}
    for job in jobs:
        for target in (job.output, job.comparison):
            if target is None:
                continue
            original = protected.get(_file_key(target))
            if original is not None:
                raise PlanError(
                    f"output {target} would overwrite the input or reference {original}; "
                    "choose another output folder or a --suffix"
                )
            resolved = target.resolve()
            if resolved in used and job.skip_reason is None:
                job.skip_reason = f"output {target} is already the output of {used[resolved]}"
        if job.skip_reason is None:
            used[job.output.resolve()] = job.input
            if job.comparison is not None:
                used[job.comparison.resolve()] = job.input
    return jobs


def _file_key(path: Path) -> tuple[int, int] | None:
    """What identifies an existing file however it is named (device, inode), or None if none is there."""
    try:
        status = path.stat()  # follows links, like os.path.samefile
    except OSError:  # missing, or a path through a file or an unreadable folder: nothing to overwrite
        return None
    return status.st_dev, status.st_ino


def _protected_files(
    jobs: list[Job], reference_folders: list[Path], earlier_outputs: set[Path]
) -> dict[tuple[int, int], Path]:
    """The files no output may replace: inputs, references, and every file in a reference folder
    except earlier outputs of this tool (keyed by :func:`_file_key`, valued by a name to show)."""
    named = [job.input for job in jobs] + [ref for job in jobs for ref in job.references]
    in_folders = [
        path
        for folder in reference_folders
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.resolve() not in earlier_outputs
    ]
    protected: dict[tuple[int, int], Path] = {}
    for path in in_folders + named:  # named last: their spelling wins in messages
        key = _file_key(path)
        if key is not None:
            protected[key] = path
    return protected


def check_writable(folder: Path) -> None:
    """Creates ``folder`` if needed and checks that files can be created in it.

    Raises:
        PlanError: It cannot be created or written; the message names it and the reason.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ented-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        raise PlanError(f"output folder {folder} is not writable: {reason}") from None
