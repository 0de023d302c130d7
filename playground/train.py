"""Command line for training: ``python -m playground.train <model> [options]``.

Examples:
    python -m playground.train vae --beta 4 --minutes 30                 # CPU, 30 minutes
    python -m playground.train vae --beta 4 --minutes 60 --resume        # continue it
    python -m playground.train vae --beta 4 --epochs 20 --device auto    # GPU if there is one
    torchrun --nproc_per_node=2 -m playground.train vae --beta 4 --device cuda   # DDP

Run ``python -m playground.train vae --help`` for all options. Subcommands come from
`playground.training.trainers.TRAINERS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from playground.training.trainers import TRAINERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m playground.train",
        description="Train a playground model; a run folder can be resumed with --resume.",
    )
    sub = parser.add_subparsers(dest="model", required=True, metavar="MODEL",
                                help=", ".join(TRAINERS))
    for name, module_name in TRAINERS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
        sp.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = args._main
    del args._main
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:  # bad options or files: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
