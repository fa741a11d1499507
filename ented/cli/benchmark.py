"""``ented-benchmark``: the benchmarks, one sub-command each.

::

    ented-benchmark quality --list testset/test_list.txt --gt-root faces --output bench bicubic ented:run
    ented-benchmark speed ...
    ented-benchmark train --output bench_train

Each sub-command is a module with ``run(args) -> int`` and ``add_arguments(parser)`` (or a light
module of its own for the options, so that ``ented-benchmark <command> --help`` imports no torch),
imported only when that sub-command is run, so that ``ented-benchmark --help`` imports none of them.
"""

import argparse
import importlib
import logging
import sys

# sub-command -> (module, one-line description, module of its options if not the module itself)
SUBCOMMANDS = {
    "quality": (
        "ented.benchmark.quality",
        "methods x metrics on a paired-reference test set: tables, grids, plot",
        None,
    ),
    "speed": (
        "ented.benchmark.speed",
        "speed and size of ENTED and the other restorers",
        "ented.benchmark.speed_options",
    ),
    "train": (
        "ented.benchmark.train",
        "train ENTED, blind ENTED and GFPGANv1Clean on the same data and budget, then score them",
        "ented.benchmark.train_options",
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ented-benchmark",
        description="Benchmarks of ENTED. Run `ented-benchmark <command> --help` for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (_, description, _) in SUBCOMMANDS.items():
        commands.add_parser(name, help=description, add_help=False)
    return parser


def load_subcommand(name: str, options: bool = False):
    """The module of sub-command ``name`` (with ``options``: the module of its options).

    Raises:
        SystemExit: naming the sub-command, when its module is not there (this install lacks it).
    """
    module_name = SUBCOMMANDS[name][0]
    if options:
        module_name = SUBCOMMANDS[name][2] or module_name
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise SystemExit(f"ented-benchmark {name}: this install has no {module_name} module") from None


def parse_args(argv: list | None = None) -> tuple:
    """``(module, args)``: the sub-command's module and its parsed arguments.

    ``--help`` and bad arguments exit here, having imported only the sub-command's options module.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        _top_parser().parse_args(argv)  # --help, or an error naming the known commands
        raise SystemExit(2)  # not reached: argparse exits (no command given is an error)
    name = argv[0]
    options = load_subcommand(name, options=True)
    parser = argparse.ArgumentParser(
        prog=f"ented-benchmark {name}", description=SUBCOMMANDS[name][1].capitalize()
    )
    options.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return load_subcommand(name), args


def main(argv: list | None = None) -> int:
    """Parses ``argv`` and runs the sub-command; returns its exit status."""
    module, args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
