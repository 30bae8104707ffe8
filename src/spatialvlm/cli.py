"""The ``spatialvlm`` command.

Each subcommand lives in ``spatialvlm/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``run`` (a function of the parsed arguments returning an exit code).
Command modules import heavy dependencies inside ``run`` so ``spatialvlm --help`` stays fast.

Every error a command raises is printed as one line (``spatialvlm CMD: error: ...``, exit code 2)
and every Python warning as one ``warning:`` line; ``--debug`` or ``SPATIALVLM_DEBUG=1`` shows
tracebacks and warnings as Python prints them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator

COMMANDS: tuple[str, ...] = ("demo", "ask", "synth", "eval", "train", "viz", "bench", "convert", "geometry")


DEBUG_ENV = "SPATIALVLM_DEBUG"
"""Set to 1 (or pass ``--debug``) to see the full traceback instead of the one-line error."""

# Error messages longer than this are cut (the rest is one --debug away).
_MAX_MESSAGE_CHARS = 500


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spatialvlm",
        description="Spatial intelligence for vision-language models (VLM², SHIRG-X).",
        epilog=f"Errors are one line; --debug (anywhere on the line) or {DEBUG_ENV}=1 shows the traceback.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"spatialvlm.commands.{name}").register(subparsers)
    return parser


def describe_error(error: BaseException) -> str:
    """One line saying what went wrong, for errors users meet (bad files, devices, arguments).

    Our own errors (``ValueError``, ``FileNotFoundError``, ...) already name the file and the fix
    and are printed as they are; an OS error is its file and reason; anything else is its type and
    message, with a pointer to ``--debug``.
    """
    if isinstance(error, KeyError) and error.args:
        message = str(error.args[0])
    elif isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"
    elif isinstance(error, (ValueError, OSError)):
        message = str(error) or type(error).__name__
    else:
        message = f"{type(error).__name__}: {error} (rerun with --debug for the traceback)"
    message = " ".join(message.split())
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + " … (rerun with --debug for all of it)"
    return message


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Print Python warnings as ``spatialvlm CMD: warning: message`` lines (restored afterwards)."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"spatialvlm {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere (before or after the subcommand); the subcommands never see it,
    # except train's flags, which are transformers' TrainingArguments (with a --debug of its own).
    end = argv.index("--") if "--" in argv else len(argv)
    command = next((i for i, token in enumerate(argv) if not token.startswith("-")), None)
    if command is not None and argv[command] == "train":
        end = min(end, command)
    debug = "--debug" in argv[:end] or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [token for i, token in enumerate(argv) if i >= end or token != "--debug"]
    args = build_parser().parse_args(argv)
    if debug:
        return int(args.run(args) or 0)
    try:
        with _one_line_warnings(args.command):
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"spatialvlm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every error a user meets becomes one line
        print(f"spatialvlm {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
