"""The ``emoca`` command: one sub-command per job, registered in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main", "COMMANDS"]

# name -> module with `add_arguments(parser)` and `run(args) -> int`; imported lazily so
# `emoca --help` stays fast and a missing optional extra only affects its own command
COMMANDS: dict[str, tuple[str, str]] = {
    "assets": ("emoca.cli.assets_cmd", "check, download or synthesise the official files"),
    "reconstruct": ("emoca.cli.reconstruct_cmd",
                    "reconstruct faces from photos and videos (EMOCA)"),
    "fit": ("emoca.cli.fit_cmd", "fit the open ICT-FaceKit model (or FLAME) to photos"),
    "prepare": ("emoca.cli.prepare_cmd", "detect, crop and cache labelled faces for training"),
    "train": ("emoca.cli.train_cmd", "train the emotion net, EMOCA coarse/detail stages or EmoMLP"),
    "evaluate": ("emoca.cli.evaluate_cmd", "Table-1 emotion metrics from images and 3D codes"),
    "demo": ("emoca.cli.demo_cmd", "run the whole job on a real photo shipped with a package"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emoca", description="EMOCA: emotion-driven 3D face reconstruction in PyTorch")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"emoca {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
