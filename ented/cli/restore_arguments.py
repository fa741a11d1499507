"""``ented-restore``'s command line: the options, their checks, and which subcommand runs.

Nothing here imports torch, BasicSR or OpenCV: ``--help`` and usage errors answer before any heavy
import (``_ented_launcher`` calls :func:`parse_args` first). :mod:`ented.cli.restore` runs what is parsed.
"""

from __future__ import annotations

import argparse

from ented.cli.arguments import Parser, add_weights_arguments, number, positive_int

SUBCOMMANDS = ("restore", "convert", "export-onnx")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def parse_args(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """``(subcommand, arguments)``: ``convert`` and ``export-onnx`` with their own parsers, else
    ``restore`` (named or not). ``--help`` and bad arguments exit here (status 2 for errors)."""
    if argv and argv[0] in ("convert", "export-onnx"):
        from ented.cli import weights

        parser = weights.build_convert_parser() if argv[0] == "convert" else weights.build_export_parser()
        return argv[0], parser.parse_args(argv[1:])
    return "restore", build_restore_parser().parse_args(argv[1:] if argv and argv[0] == "restore" else argv)


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


def _strength(text: str) -> float:
    value = number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (0: no reference, 1: full), got {text}")
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
    parser.add_argument(
        "--pick-references",
        type=positive_int,
        metavar="K",
        help="the -r references are candidates: for each face use the K that pass the identity check, "
        "closest in pose, sharpest (a -r folder that matches no input by name: all its images)",
    )
    parser.add_argument(
        "--reference-strength",
        type=_strength,
        default=1.0,
        metavar="S",
        help="how much the network reads the references, in [0, 1]: 0 is exactly no reference, 1 (default) full",
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
