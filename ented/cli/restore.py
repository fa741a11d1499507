"""``ented-restore``: restore face photos with references from the command line.

Usage::

    ented-restore [restore] INPUT... -o OUTPUT -w WEIGHTS [-r REFERENCE ...] [options]
    ented-restore convert CHECKPOINT.pth OUTPUT_FOLDER [--config OPTION.yml] [--param-key KEY]
    ented-restore export-onnx WEIGHTS OUTPUT.onnx [--batch-size N] [--opset N]

(or ``python -m ented.cli.restore ...``). Exit status: 0 when every input was restored (or was
already done, with ``--skip-existing``), or some were and the others skipped; 1 when inputs had to
be skipped and none could be restored (or, with ``--strict``, when anything was skipped); 2 when
the run could not start (bad arguments, weights, detector, unwritable output folder). The
subcommands return 0 on success and 2 on failure.
See docs/restoring.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ented.image_io import IMAGE_EXTENSIONS
from ented.restoration.reference_check import DEFAULT_THRESHOLDS

logger = logging.getLogger("ented.cli.restore")

SUBCOMMANDS = ("restore", "convert", "export-onnx")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COMPARE_LABELS = ("input", "reference", "output")


# ----------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit status 2), without the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _upscale(text: str) -> float:
    value = _number(text)
    if value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 1 (1 keeps the photo's size), got {text}")
    return value


def _similarity(text: str) -> float:
    value = _number(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a cosine similarity is in [-1, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _output_extension(text: str) -> str:
    """``"same"``, or an image extension with its dot, lower case (``"JPG"`` -> ``".jpg"``)."""
    if text == "same":
        return text
    extension = "." + text.lower().lstrip(".")
    if extension not in IMAGE_EXTENSIONS:
        known = ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
        raise argparse.ArgumentTypeError(f"unknown image format {text!r}; choose one of {known} or 'same'")
    return extension


def _add_weights_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("weights")
    group.add_argument(
        "-w",
        "--weights",
        required=required and not os.environ.get("ENTED_WEIGHTS"),
        default=os.environ.get("ENTED_WEIGHTS"),
        help="a pretrained folder (config.json + model.safetensors), a .safetensors file, a BasicSR "
        ".pth checkpoint or experiment folder, a Hugging Face Hub repo id (owner/name) or file "
        "(hf://owner/name/model.safetensors) (default: $ENTED_WEIGHTS)",
    )
    group.add_argument(
        "--config", help="architecture for a .pth checkpoint: BasicSR option .yml or config.json"
    )
    group.add_argument(
        "--param-key",
        default="params_ema",
        help="checkpoint entry: params_ema (default; falls back to params), params, or 'none' for a bare "
        "state dict",
    )
    group.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    group.add_argument("--cache-dir", help="Hub cache folder")


def build_restore_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ented-restore",
        description="Restore degraded face photos with ENTED and a reference photo of the same person.",
        epilog="Subcommands: 'ented-restore convert -h', 'ented-restore export-onnx -h'. "
        "Exit status: 0 all restored (or some, others skipped), 1 nothing restored but something skipped "
        "(or anything skipped, with --strict), "
        "2 the run could not start.",
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
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
    _add_weights_arguments(parser)

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
    mode.add_argument("--faces", choices=("all", "largest"), default="all", help="faces to restore per photo")
    mode.add_argument(
        "--upscale", type=_upscale, default=1.0, help="photos mode: enlarge the photo by this factor (>= 1)"
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
        help="identity similarity below which a reference is suspicious (default: dlib "
        f"{DEFAULT_THRESHOLDS['dlib']}, arcface {DEFAULT_THRESHOLDS['arcface']})",
    )

    run = parser.add_argument_group("running")
    run.add_argument(
        "--device", default="auto", help="auto (default: cuda, then mps, then cpu), cuda, mps, cpu"
    )
    precision = run.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    precision.add_argument("--bf16", dest="precision", action="store_const", const="bf16")
    run.add_argument("--batch-size", type=_positive_int, default=4, help="faces per forward pass")

    out = parser.add_argument_group("output")
    out.add_argument("--suffix", default="", help="appended to output names (e.g. _restored)")
    out.add_argument(
        "--ext",
        type=_output_extension,
        default=".png",
        help="output format: png (default), jpg, webp, bmp, tif, or 'same' (each input's)",
    )
    out.add_argument("--compare", action="store_true", help="also write input | reference | output images")
    out.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists")
    out.add_argument("--recursive", action="store_true", help="descend into sub-folders of input folders")
    out.add_argument("--strict", action="store_true", help="exit with 1 if any input was skipped")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    verbosity = out.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    return parser


def build_convert_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ented-restore convert",
        description="Convert a BasicSR checkpoint (.pth) into config.json + model.safetensors.",
    )
    parser.add_argument("checkpoint", help="net_g_<iter>.pth")
    parser.add_argument("output", help="folder to write config.json and model.safetensors into")
    parser.add_argument(
        "--config", help="BasicSR option .yml or config.json (default: the experiment folder's .yml)"
    )
    parser.add_argument("--param-key", default="params_ema", help="params_ema (default), params or none")
    return parser


def build_export_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ented-restore export-onnx",
        description="Export the aligned-face network (inputs lq, ref; fixed size) to ONNX.",
    )
    parser.add_argument("weights", help="same forms as ented-restore --weights")
    parser.add_argument("output", help="the .onnx file")
    parser.add_argument("--config", help="architecture for a .pth checkpoint")
    parser.add_argument("--param-key", default="params_ema")
    parser.add_argument("--revision")
    parser.add_argument("--cache-dir")
    parser.add_argument("--batch-size", type=_positive_int, default=1)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-check", action="store_true", help="do not compare with PyTorch")
    return parser


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Runs ``ented-restore``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else "restore"
    if argv and argv[0] in SUBCOMMANDS:
        argv = argv[1:]
    if command == "convert":
        return _convert(build_convert_parser().parse_args(argv))
    if command == "export-onnx":
        return _export(build_export_parser().parse_args(argv))
    return _restore(build_restore_parser().parse_args(argv))


def _setup_logging(level: int) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s: %(message)s")
    logging.getLogger("ented").setLevel(level)


def _param_key(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _load_network(args):
    from ented.restoration.pretrained import load_network

    return load_network(
        args.weights,
        config=args.config,
        param_key=_param_key(args.param_key),
        revision=args.revision,
        cache_dir=args.cache_dir,
    )


def _convert(args) -> int:
    from ented.restoration.pretrained import convert_basicsr_checkpoint

    _setup_logging(logging.INFO)
    try:
        folder = convert_basicsr_checkpoint(
            args.checkpoint, args.output, args.config, _param_key(args.param_key)
        )
    except (OSError, ValueError, KeyError) as err:
        print(f"ented-restore convert: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {folder}/config.json and {folder}/model.safetensors")
    return EXIT_OK


def _export(args) -> int:
    from ented.restoration.onnx_export import export_onnx

    _setup_logging(logging.INFO)
    try:
        net = _load_network(args)
        path = export_onnx(
            net, args.output, batch_size=args.batch_size, opset=args.opset, check=not args.no_check
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        print(f"ented-restore export-onnx: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}")
    return EXIT_OK


# ----------------------------------------------------------------------------- restore


def _restore(args) -> int:
    from ented.restoration import jobs as planning
    from ented.restoration.restorer import ENTEDRestorer

    _setup_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    started = time.monotonic()
    output_dir = Path(args.output)
    try:
        inputs = planning.find_inputs(args.inputs, args.recursive, exclude=output_dir)
        if not inputs:
            raise planning.PlanError("no input images found in " + ", ".join(args.inputs))
        ref_files, ref_folders = planning.split_references(args.reference)
        jobs = planning.plan_jobs(
            inputs,
            ref_files,
            ref_folders,
            output_dir,
            args.ext,
            args.suffix,
            args.compare,
            args.allow_no_reference,
        )
        planning.check_writable(output_dir)
    except planning.PlanError as err:
        print(f"ented-restore: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not args.reference:
        logger.warning(
            "no --reference given: restoring without a reference (ENTED then uses the input itself)"
        )

    check_options = {}
    if args.identity_threshold is not None:
        check_options["identity_threshold"] = args.identity_threshold
    try:
        restorer = ENTEDRestorer(
            _load_network(args),
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
            reference_check=args.reference_check,
            identity_weights=args.identity_weights,
            identity_backend=args.identity_backend,
            detector=args.detector,
            detector_weights=args.detector_weights,
            face_selection=args.faces,
            **check_options,
        )
    except (OSError, ValueError, KeyError, ImportError) as err:
        print(f"ented-restore: cannot set up the restorer: {err}", file=sys.stderr)
        return EXIT_USAGE
    if restorer.checker.enabled and args.identity_weights:
        from safetensors import SafetensorError

        try:
            restorer.checker.encoder  # noqa: B018  (load now: bad weights stop the run, not every file)
        except (OSError, ValueError, ImportError, SafetensorError) as err:
            print(
                f"ented-restore: cannot load --identity-weights {args.identity_weights}: {err}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if not args.aligned:
        try:
            restorer.detector  # noqa: B018  (build it now: a missing detector stops the run, not every file)
        except (OSError, ValueError, ImportError) as err:
            print(f"ented-restore: cannot build the face detector: {err}", file=sys.stderr)
            return EXIT_USAGE

    runner = _Runner(restorer, args)
    runner.run(jobs)
    return runner.summarise(time.monotonic() - started)


class _Runner:
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
        self._reference_cache: dict[Path, np.ndarray | Exception] = {}

    # -- bookkeeping

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
                self.skipped.append((job.input, job.skip_reason))
            elif self.args.skip_existing and job.output.exists():
                self.existing.append(job.input)
            else:
                todo.append(job)
        for path, reason in self.skipped:
            logger.warning("skipped %s: %s", path, reason)
        disable = self.args.no_progress or self.args.quiet
        with logging_redirect_tqdm(), tqdm(total=len(todo), unit="image", disable=disable) as bar:
            step = self.restorer.batch_size if self.args.aligned else 1
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                try:
                    if self.args.aligned:
                        self._run_aligned(chunk)
                    else:
                        self._run_photo(chunk[0])
                except KeyboardInterrupt:
                    raise
                except Exception as err:  # keep going: one bad file must not stop the run
                    for job in chunk:
                        if not self._done(job):
                            self.skip(job, f"unexpected error: {type(err).__name__}: {err}")
                    logger.debug("error details", exc_info=True)
                bar.update(len(chunk))

    def _done(self, job) -> bool:
        return any(job is done for done in self.restored) or any(
            job.input == path for path, _ in self.skipped
        )

    # -- references

    def reference(self, path: Path) -> np.ndarray:
        """The aligned reference at ``path`` (cached; a failure is cached and re-raised)."""
        if path not in self._reference_cache:
            try:
                self._reference_cache[path] = self.restorer.align_reference(
                    path, self.references_aligned, str(path)
                )
            except Exception as err:  # remembered and re-raised for every input that uses it
                self._reference_cache[path] = err
        cached = self._reference_cache[path]
        if isinstance(cached, Exception):
            raise cached
        return cached

    def _references_for(self, job) -> list[np.ndarray] | None:
        from ented.image_io import ImageReadError
        from ented.restoration.restorer import NoFaceError

        try:
            return [self.reference(path) for path in job.references]
        except (ImageReadError, NoFaceError, ValueError) as err:
            self.skip(job, f"reference problem: {err}")
            return None

    # -- aligned faces

    def _run_aligned(self, chunk) -> None:
        from ented.image_io import ImageReadError
        from ented.restoration.reference_check import ReferenceMismatchError

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
        while ready:
            try:
                result = self.restorer.restore_aligned(
                    [face for _, face, _ in ready],
                    [refs or None for _, _, refs in ready],
                    face_names=[str(job.input) for job, _, _ in ready],
                    reference_names=[[str(p) for p in job.references] for job, _, _ in ready],
                )
            except ReferenceMismatchError as err:  # skip the refused faces, restore the others
                refused = {check.face: check for check in err.checks}
                for job, _, _ in ready:
                    if str(job.input) in refused:
                        self.skip(job, "refused: " + refused[str(job.input)].message())
                ready = [item for item in ready if str(item[0].input) not in refused]
                continue
            self._count_warnings(result.checks)
            for (job, face, refs), restored in zip(ready, result.faces):
                self._write(job, restored, [face, refs[0] if refs else None, restored])
            return

    # -- whole photos

    def _run_photo(self, job) -> None:
        from ented.image_io import ImageReadError, load_image
        from ented.restoration.reference_check import ReferenceMismatchError
        from ented.restoration.restorer import NoFaceError

        try:
            photo = load_image(job.input, str(job.input))
        except ImageReadError as err:
            self.skip(job, str(err))
            return
        refs = self._references_for(job)
        if refs is None:
            return
        try:
            result = self.restorer.restore_photo(
                photo,
                refs or None,
                references_aligned=True,  # already aligned by self.reference()
                upscale=self.args.upscale,
                name=str(job.input),
                reference_names=[str(p) for p in job.references],
            )
        except NoFaceError as err:
            self.skip(job, str(err))
            return
        except ReferenceMismatchError as err:
            self.skip(job, f"refused: {err}")
            return
        self._count_warnings(result.checks)
        self._write(job, result.image, [photo, refs[0] if refs else None, result.image])

    # -- output

    def _count_warnings(self, checks) -> None:
        self.mismatch_warnings += sum(1 for check in checks if not check.same_person)

    def _write(self, job, image: np.ndarray, comparison: list) -> None:
        from ented.image_io import save_image
        from ented.visualization import side_by_side

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
        total = len(self.restored) + len(self.skipped) + len(self.existing)
        existing = f", {len(self.existing)} already done" if self.existing else ""
        print(
            f"ented-restore: restored {len(self.restored)}, skipped {len(self.skipped)}{existing} "
            f"of {total} in {seconds:.1f} s; outputs in {self.args.output}"
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


if __name__ == "__main__":
    sys.exit(main())
