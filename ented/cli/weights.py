"""``ented-restore convert`` and ``ented-restore export-onnx``: the weights subcommands.

    ented-restore convert CHECKPOINT.pth OUTPUT_FOLDER [--config OPTION.yml] [--param-key KEY]
    ented-restore export-onnx WEIGHTS OUTPUT.onnx [--batch-size N] [--opset N]

Both return 0 on success and 2 on failure.
"""

from __future__ import annotations

import logging
import sys

from ented.cli.arguments import (
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    load_network,
    param_key,
    positive_int,
    setup_logging,
)


def build_convert_parser() -> Parser:
    parser = Parser(
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


def build_export_parser() -> Parser:
    parser = Parser(
        prog="ented-restore export-onnx",
        description="Export the aligned-face network (inputs lq, ref; fixed size) to ONNX.",
    )
    parser.add_argument("weights", help="same forms as ented-restore --weights")
    parser.add_argument("output", help="the .onnx file")
    parser.add_argument("--config", help="architecture for a .pth checkpoint")
    parser.add_argument("--param-key", default="params_ema")
    parser.add_argument("--revision")
    parser.add_argument("--cache-dir")
    parser.add_argument("--batch-size", type=positive_int, default=1)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-check", action="store_true", help="do not compare with PyTorch")
    return parser


def convert(args) -> int:
    """Runs ``ented-restore convert`` on arguments parsed by :func:`build_convert_parser`; returns the
    exit status."""
    from ented.restoration.pretrained import convert_basicsr_checkpoint

    setup_logging(logging.INFO)
    try:
        folder = convert_basicsr_checkpoint(
            args.checkpoint, args.output, args.config, param_key(args.param_key)
        )
    except (OSError, ValueError, KeyError) as err:
        print(f"ented-restore convert: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {folder}/config.json and {folder}/model.safetensors")
    return EXIT_OK


def export_onnx(args) -> int:
    """Runs ``ented-restore export-onnx`` on arguments parsed by :func:`build_export_parser`; returns
    the exit status."""
    from ented.restoration.onnx_export import export_onnx

    setup_logging(logging.INFO)
    try:
        path = export_onnx(
            load_network(args),
            args.output,
            batch_size=args.batch_size,
            opset=args.opset,
            check=not args.no_check,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        print(f"ented-restore export-onnx: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}")
    return EXIT_OK
