"""Training checkpoints that hold what was trained, not the whole model.

A checkpoint directory (written by ``SpatialTrainer`` at every save, or by
``save_trained_checkpoint``):

- ``config.json``: the full model config (flags, memory sizes, geometry widths), so the checkpoint
  rebuilds the model it came from even when the base directory is a plain LLaVA-OneVision one;
- ``trained_parameters.safetensors``: every trained parameter that is not a LoRA adapter (projector,
  fusion, dual memory, ...) and every weight that was freshly initialised because the base checkpoint
  lacked it (a frozen new module must come back with the same random values);
- ``adapter_config.json`` + ``adapter_model.safetensors``: the LoRA adapters in peft's own format
  (``PeftModel.from_pretrained`` reads them too);
- ``spatialvlm_training.json``: the manifest (task, base model directory, model arguments, tuned
  parts, names in ``trained_parameters.safetensors``);
- the tokenizer / processor files, saved by the trainer.

``load_trained_model(checkpoint_dir)`` rebuilds the base model with the saved config, adds the
adapters and loads the trained parameters, giving outputs identical to the model at save time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .tunable import canonical_parameter_name

__all__ = [
    "MANIFEST_NAME",
    "TRAINED_WEIGHTS_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "CheckpointManifest",
    "save_trained_checkpoint",
    "load_trained_parameters",
    "load_trained_model",
    "parameters_to_save",
    "read_checkpoint_tensors",
    "verify_checkpoint_files",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "spatialvlm_training.json"
TRAINED_WEIGHTS_NAME = "trained_parameters.safetensors"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT_VERSION = 1


@dataclass
class CheckpointManifest:
    """What a checkpoint holds and how to rebuild its model.

    Attributes:
        task: training task name (``spatialvlm.train.tasks``), which knows the model class.
        base_model: directory of the base weights the checkpoint builds on.
        model_arguments: the ``ModelArguments`` of the run, as a dict.
        tunable_parts: the parts that trained.
        lora: whether LoRA adapters are in the checkpoint.
        saved_parameters: canonical names stored in ``trained_parameters.safetensors``.
    """

    task: str
    base_model: str
    model_arguments: dict[str, Any] = field(default_factory=dict)
    tunable_parts: list[str] = field(default_factory=list)
    lora: bool = False
    saved_parameters: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def save(self, directory: str | os.PathLike) -> None:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CheckpointManifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a spatialvlm training checkpoint: {MANIFEST_NAME} is missing")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} has format_version {data.get('format_version')}; expected {FORMAT_VERSION}")
        return cls(**data)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "peft_config") else model


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def _unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies safetensors accepts (it refuses tensors that share memory)."""
    seen: set[int] = set()
    result = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        result[name] = tensor
    return result


def save_trained_checkpoint(
    model: nn.Module,
    output_dir: str | os.PathLike,
    manifest: CheckpointManifest,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write the trained parts of ``model`` (see the module docstring) to ``output_dir``.

    Args:
        model: the trained model, peft-wrapped when it has LoRA adapters.
        manifest: names ``saved_parameters`` (canonical names) and the rebuild recipe.
        state_dict: a full state dict of ``model`` (keys as ``model.state_dict()``), as DeepSpeed
            ZeRO-3 and FSDP gather it for saving; None reads the model's own tensors.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    given = state_dict is not None
    state = state_dict if given else model.state_dict()
    wanted = set(manifest.saved_parameters)
    tensors = {}
    for key, tensor in state.items():
        name = canonical_parameter_name(key)
        if name in wanted and ".lora_" not in key:
            tensors[name] = tensor
    missing = sorted(wanted - tensors.keys())
    if missing:
        message = f"the state dict lacks {len(missing)} parameters the checkpoint must hold, e.g. {missing[:3]}"
        if not given:
            raise RuntimeError(message)
        # ZeRO-3 with peft gathers trainable tensors only; a frozen, freshly initialised module is
        # then not in the gathered dict. Training it (or saving from a full gather) avoids this.
        logger.warning("%s; they are left out of %s", message, output_dir)
    save_file(_unshared(tensors), str(output_dir / TRAINED_WEIGHTS_NAME), metadata={"format": "pt"})
    if manifest.lora:
        from peft import get_peft_model_state_dict

        adapters = get_peft_model_state_dict(model, state_dict=dict(state) if given else None)
        save_file(_unshared(adapters), str(output_dir / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
        model.peft_config["default"].save_pretrained(str(output_dir))
    _unwrap(model).config.save_pretrained(str(output_dir))
    manifest.saved_parameters = sorted(tensors)
    manifest.save(output_dir)


def read_checkpoint_tensors(path: str | os.PathLike, header_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file of a checkpoint, with a one-line error naming the file
    when it is missing, truncated or not a safetensors file (instead of the reader's traceback).

    ``header_only``: only check the file (its header and that the header's tensors fit the file
    size) and return ``{}``; cheap, for checks before a long model load.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint {path.parent} is incomplete")
    try:
        if header_only:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
            return {}
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as error:
        raise ValueError(
            f"{path} is corrupt or truncated ({error}); re-save the checkpoint or use another one "
            "(e.g. an earlier checkpoint-N)"
        ) from error


def verify_checkpoint_files(checkpoint_dir: str | os.PathLike) -> CheckpointManifest:
    """Check, before anything is built, that a checkpoint's manifest and weight files are readable
    (one-line errors naming the file); returns the manifest."""
    checkpoint_dir = Path(checkpoint_dir)
    manifest = CheckpointManifest.load(checkpoint_dir)
    read_checkpoint_tensors(checkpoint_dir / TRAINED_WEIGHTS_NAME, header_only=True)
    if manifest.lora:
        read_checkpoint_tensors(checkpoint_dir / ADAPTER_WEIGHTS_NAME, header_only=True)
    return manifest


def load_trained_parameters(model: nn.Module, checkpoint_dir: str | os.PathLike) -> None:
    """Load a checkpoint's trained parameters (and adapters) into an already-built ``model``.

    ``model`` must have the checkpoint's structure (same config, LoRA applied when the checkpoint
    has adapters), as when resuming training.
    """
    checkpoint_dir = Path(checkpoint_dir)
    manifest = CheckpointManifest.load(checkpoint_dir)
    tensors = read_checkpoint_tensors(checkpoint_dir / TRAINED_WEIGHTS_NAME)
    base = _unwrap(model)
    result = base.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"checkpoint {checkpoint_dir} holds parameters the model lacks, e.g. {result.unexpected_keys[:3]}; "
            "was it trained with other flags?"
        )
    if manifest.lora:
        if not _is_peft(model):
            raise ValueError(f"checkpoint {checkpoint_dir} has LoRA adapters but the model has none")
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, read_checkpoint_tensors(checkpoint_dir / ADAPTER_WEIGHTS_NAME))
        if result.unexpected_keys:
            raise ValueError(f"adapters in {checkpoint_dir} do not fit the model, e.g. {result.unexpected_keys[:3]}")


def load_trained_model(
    checkpoint_dir: str | os.PathLike,
    base_model: str | os.PathLike | None = None,
    merge_lora: bool = False,
    torch_dtype: torch.dtype | str | None = None,
    config: Any = None,
) -> nn.Module:
    """Rebuild a trained model from a checkpoint directory, in eval mode.

    Args:
        checkpoint_dir: a directory written by ``SpatialTrainer`` / ``save_trained_checkpoint``.
        base_model: the base weights' directory, when it moved since training (default: the one
            recorded in the manifest).
        merge_lora: fold the LoRA adapters into the language model's weights (faster inference,
            returns the plain model instead of a ``PeftModel``).
        torch_dtype: dtype to load the base weights in (default: the checkpoint's).
        config: the model config to build instead of the saved one (e.g. the saved one with a
            module turned off); trained weights of modules it lacks are skipped, with a warning.

    Returns:
        The model (a ``PeftModel`` around it when the checkpoint has adapters and not ``merge_lora``).
    """
    from .tasks import get_task

    checkpoint_dir = Path(checkpoint_dir)
    manifest = CheckpointManifest.load(checkpoint_dir)
    task = get_task(manifest.task)
    base_path = Path(base_model if base_model is not None else manifest.base_model)
    if not (base_path / "config.json").is_file():
        raise FileNotFoundError(
            f"training checkpoint {checkpoint_dir} builds on the base model {base_path}, which is not there "
            "(moved?); pass base_model= the base weights' directory"
        )
    # Read the trained files first: a corrupt one fails before minutes of loading the base.
    tensors = read_checkpoint_tensors(checkpoint_dir / TRAINED_WEIGHTS_NAME)
    adapters = read_checkpoint_tensors(checkpoint_dir / ADAPTER_WEIGHTS_NAME) if manifest.lora else None
    overridden = config is not None
    config = config if overridden else task.load_config(checkpoint_dir)
    with _quiet_base_loading():
        model, new_parameters = task.load_model(str(base_path), config, torch_dtype=torch_dtype)
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        message = f"checkpoint {checkpoint_dir} holds parameters the model lacks, e.g. {result.unexpected_keys[:3]}"
        if not overridden:
            raise ValueError(message)
        logger.warning("%s: the given config turns their modules off, so they are not used", message)
    # The base lacked these weights; the checkpoint restored the ones it holds.
    still_new = sorted(set(new_parameters) - tensors.keys())
    if still_new:
        logger.warning(
            "%d weights are neither in the base %s nor in the checkpoint (freshly initialised), e.g. %s",
            len(still_new), base_path, still_new[:3],
        )
    if hasattr(model, "vlm2_new_weights"):
        model.vlm2_new_weights = still_new
    if manifest.lora:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        lora_config = LoraConfig.from_pretrained(str(checkpoint_dir))
        lora_config.inference_mode = True
        lora_config.base_model_name_or_path = str(base_path)
        with warnings.catch_warnings():
            # Nothing a user can act on: peft calls transformers' deprecated is_gradient_checkpointing,
            # and it reports renaming base_model_name_or_path to the wrapper's name (the base is known).
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            warnings.filterwarnings("ignore", message=".*base_model_name_or_path.*")
            model = get_peft_model(model, lora_config)
        loaded = set_peft_model_state_dict(model, adapters)
        missing = [key for key in loaded.missing_keys if ".lora_" in key]
        if loaded.unexpected_keys or missing:
            raise ValueError(
                f"adapters in {checkpoint_dir / ADAPTER_WEIGHTS_NAME} do not fit the model: "
                f"unexpected {loaded.unexpected_keys[:3]}, missing {missing[:3]}"
            )
        if merge_lora:
            model = model.merge_and_unload()
    return model.eval()


@contextlib.contextmanager
def _quiet_base_loading() -> Iterator[None]:
    """Silence the base model's load report while a checkpoint is rebuilt: it lists as missing the
    very weights the checkpoint restores next (the one warning that matters, weights in neither,
    is given after the restore)."""
    from transformers.utils import logging as hf_logging

    library = logging.getLogger("spatialvlm")
    verbosity, level = hf_logging.get_verbosity(), library.level
    hf_logging.set_verbosity_error()
    library.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        library.setLevel(level)


def parameters_to_save(
    model: nn.Module, trainable: Sequence[str], new: Sequence[str]
) -> list[str]:
    """Canonical names a checkpoint must hold: trained non-LoRA parameters and new weights."""
    names = {canonical_parameter_name(name) for name, _ in model.state_dict().items()}
    return sorted((set(trainable) | set(new)) & names)

