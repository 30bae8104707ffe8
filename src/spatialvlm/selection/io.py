"""Save and load a ShirgXSelector: its weights and the config that shapes them.

A selector directory holds ``shirgx_selector.safetensors`` (the coordinate embedding and the budget
head) and ``shirgx_selector_config.json`` (every ``ShirgXConfig`` field). ``spatialvlm ask --image
--model DIR`` and SHIRG-X training checkpoints use this layout; a directory with only the weights
(no config file) loads into the default ``ShirgXConfig`` at the given ``vision_dim``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .config import ShirgXConfig
from .selector import ShirgXSelector

__all__ = ["SELECTOR_WEIGHTS_NAME", "SELECTOR_CONFIG_NAME", "save_selector", "load_selector", "selector_config_from_dict"]

SELECTOR_WEIGHTS_NAME = "shirgx_selector.safetensors"
SELECTOR_CONFIG_NAME = "shirgx_selector_config.json"


def selector_config_from_dict(values: dict[str, Any]) -> ShirgXConfig:
    """``ShirgXConfig`` from a dict (JSON lists become tuples); unknown keys are an error."""
    known = {field.name for field in fields(ShirgXConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown ShirgXConfig fields {unknown}; known: {sorted(known)}")
    return ShirgXConfig(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


def save_selector(selector: ShirgXSelector, directory: str | os.PathLike) -> Path:
    """Write ``selector``'s weights and config into ``directory`` (created if needed).

    Returns:
        The weights file's path.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in selector.state_dict().items()}
    save_file(tensors, str(directory / SELECTOR_WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / SELECTOR_CONFIG_NAME).write_text(json.dumps(asdict(selector.config), indent=2) + "\n")
    return directory / SELECTOR_WEIGHTS_NAME


def load_selector(directory: str | os.PathLike, vision_dim: int | None = None) -> ShirgXSelector:
    """Rebuild a selector saved by ``save_selector``.

    Args:
        directory: holds ``shirgx_selector.safetensors`` and, normally, ``shirgx_selector_config.json``.
        vision_dim: the SigLIP width the selector must have; checked against the saved config, and
            used to build the default config when the directory has weights but no config.

    Raises:
        FileNotFoundError: no weights file in ``directory``.
        ValueError: the saved width differs from ``vision_dim``, or the weights do not fit the config.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    weights = directory / SELECTOR_WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has no {SELECTOR_WEIGHTS_NAME}")
    config_file = directory / SELECTOR_CONFIG_NAME
    if config_file.is_file():
        config = selector_config_from_dict(json.loads(config_file.read_text()))
        if vision_dim is not None and config.vision_dim != vision_dim:
            raise ValueError(f"selector in {directory} has vision_dim {config.vision_dim}; the model needs {vision_dim}")
    else:
        config = ShirgXConfig() if vision_dim is None else ShirgXConfig(vision_dim=vision_dim)
    selector = ShirgXSelector(config)
    try:
        selector.load_state_dict(load_file(str(weights)))
    except RuntimeError as error:
        raise ValueError(f"{weights} does not fit the selector config {config}: {error}") from error
    return selector
