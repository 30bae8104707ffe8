"""Checks of what a user hands a command, before any work: one-line errors that name the file.

Shared by the commands that load a model (``ask``, ``eval``, ``viz``): a ``--device`` this torch
cannot use, a model directory without ``config.json`` or tokenizer, a JSON file that does not
parse, a truncated ``*.safetensors`` — each becomes a ``ValueError`` / ``FileNotFoundError`` naming
the file and the fix (``spatialvlm.cli`` prints it as one line).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "check_device",
    "check_model_dir",
    "corrupt_weights_error",
    "transformers_output",
    "warn",
]

# Any one of these makes a tokenizer transformers can load without sentencepiece / tiktoken.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def warn(command: str, message: str) -> None:
    """Print ``spatialvlm COMMAND: warning: message`` on stderr (every time, unlike ``warnings``)."""
    print(f"spatialvlm {command}: warning: {message}", file=sys.stderr)


def check_device(name: str) -> str:
    """``name`` when this torch can run on it, else a ValueError saying why and what to use."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r} is not a torch device; use cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(f"--device {name}: no CUDA device here (torch {torch.__version__} is {build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available here; use --device cpu")
    return name


def check_model_dir(directory: Path) -> dict:
    """Check a model directory's files before transformers reads them; returns its config.json.

    Raises:
        FileNotFoundError: no such directory, no ``config.json``, or no tokenizer file.
        ValueError: a ``*.json`` file at its top level does not parse (named, with line and column).
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{directory} has no config.json: not a model directory (save_pretrained or spatialvlm train writes one)"
        )
    config = None
    for path in sorted(directory.glob("*.json")):
        try:
            parsed = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON ({error}); restore it from the original checkpoint") from None
        if path == config_file:
            config = parsed
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} must hold a JSON object, got {type(config).__name__}")
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{directory} has no tokenizer ({', '.join(_TOKENIZER_FILES)}); copy the tokenizer files of the "
            "base model into it (tokenizer.save_pretrained)"
        )
    return config


def corrupt_weights_error(directory: Path, error: Exception) -> ValueError | None:
    """A ValueError naming the ``*.safetensors`` file of ``directory`` that cannot be read, if any.

    Called when loading failed: reads only the headers, so it is quick even for large checkpoints.
    """
    from safetensors import safe_open

    for path in sorted(directory.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                names = list(handle.keys())
                if names:
                    handle.get_slice(names[-1])  # the last tensor's bytes lie at the end of the file
        except Exception as failure:  # noqa: BLE001 - safetensors raises its own error types
            return ValueError(f"{path} is truncated or corrupt ({failure}); re-download or re-save the checkpoint")
    return None


@contextlib.contextmanager
def transformers_output(progress: bool = True, reports: bool = True) -> Iterator[None]:
    """Silence transformers' weight-loading bars (``progress=False``) and load reports / warnings
    (``reports=False``, when the command prints its own one line instead), restoring both after."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    if not reports:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
