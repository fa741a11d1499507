"""What the command lines share: one-line argparse errors, checked number types, the weights options.

Nothing here imports torch: ``--help`` and argument errors answer before any heavy import.
"""

from __future__ import annotations

import argparse
import logging
import math
import os

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit status 2), without the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_weights_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``-w/--weights`` (default ``$ENTED_WEIGHTS``), ``--config``, ``--param-key``, ``--revision``, ``--cache-dir``."""
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


def param_key(value: str) -> str | None:
    return None if value.lower() == "none" else value


def load_network(args):
    """The network the weights options name (see :func:`ented.restoration.pretrained.load_network`)."""
    from ented.restoration.pretrained import load_network

    return load_network(
        args.weights,
        config=args.config,
        param_key=param_key(args.param_key),
        revision=args.revision,
        cache_dir=args.cache_dir,
    )


def setup_logging(level: int) -> None:
    """Messages as ``LEVEL: text`` on stderr; ``ented``'s loggers at ``level``."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s: %(message)s")
    logging.getLogger("ented").setLevel(level)
