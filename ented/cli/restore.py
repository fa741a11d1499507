"""``ented-restore``: restore face photos with references from the command line.

Usage::

    ented-restore [restore] INPUT... -o OUTPUT -w WEIGHTS [-r REFERENCE ...] [options]
    ented-restore convert CHECKPOINT.pth OUTPUT_FOLDER [--config OPTION.yml] [--param-key KEY]
    ented-restore export-onnx WEIGHTS OUTPUT.onnx [--batch-size N] [--opset N]

(or ``python -m ented.cli.restore ...``). Exit status: 0 when every input was restored (or was
already done, with ``--skip-existing``), or some were and the others skipped; 1 when inputs had to
be skipped and none could be restored (or, with ``--strict``, when anything was skipped); 2 when
the run could not start (bad arguments, weights, detector, unwritable output folder).
:mod:`ented.cli.restore_arguments` parses (:func:`parse_args`, also called by ``_ented_launcher``
before torch loads); this module sets up; :mod:`ented.cli.restore_batch` runs the files,
:mod:`ented.cli.weights` the subcommands (0 on success, 2 on failure). See docs/restoring.md.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from ented.cli.arguments import EXIT_USAGE, load_network, setup_logging
from ented.cli.restore_arguments import VIDEO_EXTENSIONS, build_restore_parser, parse_args

__all__ = ["build_restore_parser", "main", "parse_args"]

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Runs ``ented-restore``; returns the exit status."""
    command, args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if command != "restore":
        from ented.cli import weights

        return weights.convert(args) if command == "convert" else weights.export_onnx(args)
    return _restore(args)


def _restore(args) -> int:
    from ented.cli.restore_batch import ALIGNED_FOLDER, PHOTO_FOLDER, Runner
    from ented.restoration import jobs as planning

    setup_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    started = time.monotonic()
    output_dir = Path(args.output)
    try:
        found = planning.find_inputs(args.inputs, args.recursive, exclude=output_dir)
        inputs = _without_earlier_outputs(found, args)
        if not inputs:
            raise planning.PlanError("no input images found in " + ", ".join(args.inputs))
        videos = [(path, name) for path, name in inputs if path.suffix.lower() in VIDEO_EXTENSIONS]
        images = [entry for entry in inputs if entry not in videos]
        if videos and args.aligned:
            raise planning.PlanError("videos are restored as whole frames: leave out --aligned")
        references = planning.split_references(args.reference)
        if args.pick_references:
            references = _candidates(args, images, videos, references)
        folder = output_dir / (ALIGNED_FOLDER if args.aligned else PHOTO_FOLDER)
        jobs = planning.plan_jobs(
            images, *references, folder, args.ext, args.suffix, False, args.allow_no_reference
        )
        video_suffix = args.suffix or "_restored"
        video_jobs = planning.plan_jobs(
            videos, *references, output_dir, ".mp4", video_suffix, False, args.allow_no_reference
        )
        planning.check_writable(output_dir)
        restorer = _build_restorer(args)
        runner = Runner(restorer, args, _protected_files(jobs + video_jobs, references[1], output_dir))
    except (planning.PlanError, SetupError) as err:
        print(f"ented-restore: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as err:  # the reference picker's dlib
        print(f"ented-restore: --pick-references needs dlib (the identity extra): {err}", file=sys.stderr)
        return EXIT_USAGE
    if not args.reference:
        logger.warning(
            "no --reference given: restoring without a reference (ENTED then uses the input itself)"
        )
    runner.run(jobs)
    if video_jobs:
        from ented.cli.restore_video import restore_videos

        restore_videos(runner, video_jobs)
    return runner.summarise(time.monotonic() - started)


def _without_earlier_outputs(inputs: list[tuple[Path, str]], args) -> list[tuple[Path, str]]:
    """``inputs`` without the files found (not named) in the output folder's GFPGAN folders: earlier
    outputs of this tool, when ``-o`` is an input folder searched with ``--recursive``."""
    from ented.cli.restore_batch import FACE_FOLDERS, PHOTO_FOLDER

    folders = [(Path(args.output) / name).resolve() for name in (PHOTO_FOLDER, *FACE_FOLDERS)]
    named = {Path(argument) for argument in args.inputs}
    kept = [
        (path, name)
        for path, name in inputs
        if path in named or not any(folder in path.resolve().parents for folder in folders)
    ]
    if len(kept) < len(inputs):
        logger.info("left out %d file(s) in the output's folders (earlier outputs)", len(inputs) - len(kept))
    return kept


def _protected_files(jobs, reference_folders, output_dir: Path) -> dict:
    """What no per-face output may replace (the planned outputs are checked by ``plan_jobs``): inputs,
    references, and files in reference folders except those in the output's GFPGAN folders (earlier
    outputs). ``(device, inode)`` -> path, as :mod:`ented.restoration.jobs` keys them."""
    from ented.cli.restore_batch import FACE_FOLDERS, PHOTO_FOLDER
    from ented.restoration import jobs as planning

    ours = [output_dir / name for name in (PHOTO_FOLDER, *FACE_FOLDERS)]
    earlier = {path.resolve() for folder in ours if folder.is_dir() for path in folder.rglob("*")}
    return planning._protected_files(jobs, reference_folders, earlier)


def _candidates(args, images, videos, references) -> tuple[list[Path], list[Path]]:
    """``--pick-references``: the ``(files, folders)`` of :func:`planning.split_references` with plain
    folders of the person's photos as files (:func:`restore_picking.plain_folders_as_files`)."""
    from ented.cli.restore_picking import plain_folders_as_files
    from ented.restoration.jobs import PlanError

    if not args.reference:
        raise PlanError("--pick-references chooses among the -r references: give some with -r")
    if videos:
        raise PlanError(
            "--pick-references is for photos and aligned faces; give a video its references with -r"
        )
    return plain_folders_as_files(images, *references)


class SetupError(Exception):
    """The restorer, its identity check or its detector cannot be built; the run does not start."""


def _build_restorer(args):
    """The restorer, with what it builds lazily built now: bad weights stop the run, not every file."""
    from safetensors import SafetensorError

    from ented.restoration.restorer import ENTEDRestorer

    threshold = {} if args.identity_threshold is None else {"identity_threshold": args.identity_threshold}
    try:
        restorer = ENTEDRestorer(
            load_network(args),
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
            reference_check=args.reference_check,
            identity_weights=args.identity_weights,
            identity_backend=args.identity_backend,
            detector=args.detector,
            detector_weights=args.detector_weights,
            face_selection=args.faces,
            reference_strength=args.reference_strength,
            **threshold,
        )
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise SetupError(f"cannot set up the restorer: {err}") from err
    if restorer.checker.enabled and args.identity_weights:
        try:
            restorer.checker.encoder  # noqa: B018
        except (OSError, ValueError, ImportError, SafetensorError) as err:
            raise SetupError(f"cannot load --identity-weights {args.identity_weights}: {err}") from err
    if not args.aligned:
        try:
            restorer.detector  # noqa: B018
        except (OSError, ValueError, ImportError) as err:
            raise SetupError(f"cannot build the face detector: {err}") from err
        restorer.background = _build_background(args, restorer.device)
    return restorer


def _build_background(args, device):
    """The background upsampler (None: Lanczos inside the paste-back); Real-ESRGAN weights load now."""
    if args.bg_upsampler == "lanczos":
        if args.bg_weights:
            logger.warning("--bg-weights is only used with --bg-upsampler realesrgan; ignored")
        return None
    if not args.bg_weights:
        raise SetupError(
            "--bg-upsampler realesrgan needs --bg-weights: a Real-ESRGAN RRDBNet file such as "
            "RealESRGAN_x2plus.pth (nothing is downloaded)"
        )
    from safetensors import SafetensorError

    from ented.restoration.background import RealESRGANUpsampler

    half = args.precision == "fp16"
    try:
        return RealESRGANUpsampler(args.bg_weights, device, args.bg_tile, half=half)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError, SafetensorError) as err:
        raise SetupError(f"cannot load --bg-weights {args.bg_weights}: {err}") from err


if __name__ == "__main__":
    sys.exit(main())
