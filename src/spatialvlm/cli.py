"""The ``spatialvlm`` command.

Each subcommand lives in ``spatialvlm/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``run`` (a function of the parsed arguments returning an exit code).
Command modules import heavy dependencies inside ``run`` so ``spatialvlm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: tuple[str, ...] = ("demo", "ask", "synth", "eval", "train", "viz", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spatialvlm",
        description="Spatial intelligence for vision-language models (VLM², SHIRG-X).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"spatialvlm.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        # Bad user input surfaces as one clear line, not a traceback.
        print(f"spatialvlm {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
