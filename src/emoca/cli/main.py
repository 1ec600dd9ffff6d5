"""The ``emoca`` command: one sub-command per job, registered in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import logging
import pickle
import sys
from collections.abc import Sequence

from emoca.errors import EmocaError, UsageError

__all__ = ["main", "COMMANDS"]

# name -> module with `add_arguments(parser)` and `run(args) -> int`; imported lazily so
# `emoca --help` stays fast and a missing optional extra only affects its own command
COMMANDS: dict[str, tuple[str, str]] = {
    "assets": ("emoca.cli.assets_cmd", "check, download or synthesise the official files"),
    "reconstruct": ("emoca.cli.reconstruct_cmd",
                    "reconstruct faces from photos and videos (EMOCA)"),
    "merge-shards": ("emoca.cli.merge_cmd",
                     "one codes table and summary from the shards of a batch"),
    "fit": ("emoca.cli.fit_cmd", "fit the open ICT-FaceKit model (or FLAME) to photos"),
    "prepare": ("emoca.cli.prepare_cmd", "detect, crop and cache labelled faces for training"),
    "train": ("emoca.cli.train_cmd", "train the emotion net, EMOCA coarse/detail stages or EmoMLP"),
    "evaluate": ("emoca.cli.evaluate_cmd", "Table-1 emotion metrics from images and 3D codes"),
    "view": ("emoca.cli.view_cmd", "see an output folder in the browser (3D, video, emotion)"),
    "animate": ("emoca.cli.animate_cmd",
                "animated glTF (+ ARKit curves) from a video track or face folders"),
    "retarget": ("emoca.cli.retarget_cmd", "FLAME <-> ARKit-52 blendshape retargeting"),
    "edit": ("emoca.cli.edit_cmd", "move a performance's expression toward an emotion"),
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
        print(f"emoca {args.command}: interrupted (what was finished is kept; run the same "
              "command again to resume)", file=sys.stderr)
        return 130
    except BaseException as e:  # noqa: BLE001 - user errors become one line, bugs stay loud
        message = user_message(e)
        if message is None:
            raise
        print(f"emoca {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1


def user_message(e: BaseException) -> str | None:
    """One line for an error a user can act on; None for a bug (shown with a traceback)."""
    if isinstance(e, EmocaError):
        return " ".join(str(e).split())
    if isinstance(e, ImportError) and not isinstance(e, ModuleNotFoundError):
        return " ".join(str(e).split())
    if isinstance(e, ModuleNotFoundError):
        return (f"the optional package {e.name!r} is not installed (pip install "
                "'emoca[all]' installs every extra)")
    if isinstance(e, pickle.UnpicklingError):  # the restricted unpickler's refusals
        return " ".join(str(e).split())
    if isinstance(e, OSError):
        if getattr(e, "filename", None):
            return f"{e.filename}: {e.strerror or e}"
        return " ".join(str(e).split())
    if isinstance(e, MemoryError):
        return "out of memory (try a smaller --batch-size)"
    if isinstance(e, (FileNotFoundError, ValueError)):
        return " ".join(str(e).split())
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
