"""``ented-restore``: restore face photos with references from the command line.

Usage::

    ented-restore [restore] INPUT... -o OUTPUT -w WEIGHTS [-r REFERENCE ...] [options]
    ented-restore convert CHECKPOINT.pth OUTPUT_FOLDER [--config OPTION.yml] [--param-key KEY]
    ented-restore export-onnx WEIGHTS OUTPUT.onnx [--batch-size N] [--opset N]

(or ``python -m ented.cli.restore ...``). Exit status: 0 when every input was restored (or was
already done, with ``--skip-existing``), or some were and the others skipped; 1 when inputs had to
be skipped and none could be restored (or, with ``--strict``, when anything was skipped); 2 when
the run could not start (bad arguments, weights, detector, unwritable output folder). This module
parses and sets up; :mod:`ented.cli.restore_batch` runs the files, :mod:`ented.cli.weights` the
subcommands (0 on success, 2 on failure). See docs/restoring.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ented.cli.arguments import (
    EXIT_USAGE,
    Parser,
    add_weights_arguments,
    load_network,
    number,
    positive_int,
    setup_logging,
)

logger = logging.getLogger(__name__)

SUBCOMMANDS = ("restore", "convert", "export-onnx")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def _upscale(text: str) -> float:
    value = number(text)
    if value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 1 (1 keeps the photo's size), got {text}")
    return value


def _tile(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no tiling) or a tile size in pixels, got {value}")
    return value


def _similarity(text: str) -> float:
    value = number(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a cosine similarity is in [-1, 1], got {text}")
    return value


def _output_extension(text: str) -> str:
    """``"same"`` (``auto`` and ``same``: each input's, GFPGAN's ``--ext auto``), or an image extension with
    its dot, lower case (``"JPG"`` -> ``".jpg"``)."""
    if text in ("auto", "same"):
        return "same"
    from ented.image_io import IMAGE_EXTENSIONS

    extension = "." + text.lower().lstrip(".")
    if extension not in IMAGE_EXTENSIONS:
        known = ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
        raise argparse.ArgumentTypeError(f"unknown image format {text!r}; choose one of {known} or 'auto'")
    return extension


def build_restore_parser() -> Parser:
    parser = Parser(
        prog="ented-restore",
        description="Restore degraded face photos with ENTED and a reference photo of the same person.",
        epilog="Subcommands: 'ented-restore convert -h', 'ented-restore export-onnx -h'. Exit status: 0 all "
        "restored (or some, others skipped), 1 nothing restored but something skipped (or anything skipped, "
        "with --strict), 2 the run could not start.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="image files, folders or glob patterns; video files ("
        + ", ".join(VIDEO_EXTENSIONS)
        + ") by name",
    )
    parser.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    parser.add_argument(
        "-r",
        "--reference",
        action="append",
        default=[],
        help="a reference image used for every input (repeat for several), or a folder matched by name: "
        "input photo.jpg uses REF/photo.* and every image in REF/photo/",
    )
    parser.add_argument(
        "--allow-no-reference",
        action="store_true",
        help="restore inputs that a reference folder does not match without a reference instead of "
        "skipping them",
    )
    add_weights_arguments(parser)

    mode = parser.add_argument_group("faces")
    mode.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are FFHQ-aligned faces (restored as they are); default: whole photos "
        "(detect, align, restore, paste back)",
    )
    mode.add_argument(
        "--references-aligned",
        choices=("auto", "yes", "no"),
        default="auto",
        help="photos mode: are the references aligned faces? auto: a square image whose face already "
        "sits on the FFHQ template (or shows no detectable face) is taken as aligned",
    )
    faces = mode.add_mutually_exclusive_group()
    faces.add_argument(
        "--faces",
        choices=("all", "largest", "center"),
        default="all",
        help="faces to restore per photo: all, the largest, or the one nearest the centre",
    )
    faces.add_argument(
        "--only-center-face",
        dest="faces",
        action="store_const",
        const="center",
        help="GFPGAN's: only the face nearest the photo's centre (--faces center)",
    )
    mode.add_argument(
        "--upscale",
        type=_upscale,
        default=1.0,
        help="photos mode: the output is the photo enlarged by this factor (>= 1; GFPGAN's --upscale), "
        "faces pasted at that size",
    )
    mode.add_argument(
        "--bg-upsampler",
        choices=("lanczos", "realesrgan"),
        default="lanczos",
        help="how the photo is enlarged: lanczos (default, as facexlib) or realesrgan (needs --bg-weights)",
    )
    mode.add_argument(
        "--bg-weights",
        help="Real-ESRGAN RRDBNet weights for --bg-upsampler realesrgan (RealESRGAN_x2plus.pth)",
    )
    mode.add_argument(
        "--bg-tile",
        type=_tile,
        default=400,
        help="Real-ESRGAN tile size in pixels, 0 for whole photos at once (default 400, as GFPGAN)",
    )
    mode.add_argument(
        "--detector",
        default="mtcnn",
        choices=("mtcnn", "retinaface", "retinaface_mobile0.25"),
        help="face detector: mtcnn (facenet-pytorch, works offline; default) or facexlib's retinaface",
    )
    mode.add_argument("--detector-weights", help="folder with the RetinaFace weights")

    check = parser.add_argument_group("reference identity check")
    check.add_argument(
        "--reference-check",
        choices=("warn", "refuse", "off"),
        default="warn",
        help="when a reference looks like another person: warn (default), refuse (skip the input), off",
    )
    check.add_argument("--identity-weights", help="ArcFace weights (path or hf://owner/repo/file)")
    check.add_argument(
        "--identity-backend",
        choices=("dlib", "arcface"),
        default=None,
        help="identity model of the check: dlib (default without --identity-weights; needs ented[identity]) "
        "or arcface (needs --identity-weights)",
    )
    check.add_argument(
        "--identity-threshold",
        type=_similarity,
        default=None,
        help="identity similarity below which a reference is suspicious (default: the backend's own, "
        "see docs/identity.md)",
    )

    run = parser.add_argument_group("running")
    run.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, mps, cpu")
    precision = run.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    precision.add_argument("--bf16", dest="precision", action="store_const", const="bf16")
    run.add_argument(
        "--batch-size", type=positive_int, default=4, help="faces per forward pass (video: frames per batch)"
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--suffix", default="", help="appended to the names of restored images and faces (e.g. _restored)"
    )
    out.add_argument(
        "--ext",
        type=_output_extension,
        default="auto",
        help="format of restored_imgs/: auto (default: each input's, as GFPGAN), png, jpg, webp, bmp, tif",
    )
    out.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)  # cmp/ is always written
    out.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists")
    out.add_argument("--recursive", action="store_true", help="descend into sub-folders of input folders")
    out.add_argument("--strict", action="store_true", help="exit with 1 if any input was skipped")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    verbosity = out.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``ented-restore``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("convert", "export-onnx"):
        from ented.cli import weights

        return weights.convert(argv[1:]) if argv[0] == "convert" else weights.export_onnx(argv[1:])
    if argv and argv[0] == "restore":
        argv = argv[1:]
    return _restore(build_restore_parser().parse_args(argv))


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
    except (planning.PlanError, SetupError) as err:
        print(f"ented-restore: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not args.reference:
        logger.warning(
            "no --reference given: restoring without a reference (ENTED then uses the input itself)"
        )
    runner = Runner(restorer, args, _protected_files(jobs + video_jobs, references[1], output_dir))
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
