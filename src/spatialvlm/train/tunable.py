"""Which parameters train: named parts, LoRA adapters (peft), and a summary of the result.

Model-agnostic. A *part map* names the trainable parts of one model family, each as parameter-name
prefixes on the unwrapped model (``{"mm_mlp_adapter": ("model.multi_modal_projector",), ...}``);
``prepare_tunable_model`` freezes everything, optionally wraps the model with peft LoRA, then thaws
the requested parts. The VLM² and SHIRG-X tasks differ in their part maps and where LoRA goes.

With LoRA, the adapted parts (VLM²: the language model; SHIRG-X: the projector) train through their
adapters only (their base weights stay frozen); without LoRA, naming such a part trains it whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

__all__ = [
    "PartMap",
    "TrainableSummary",
    "canonical_parameter_name",
    "parameter_names_under",
    "language_model_lora_config",
    "prepare_tunable_model",
    "summarize_trainable",
    "trainable_parameter_names",
]

PartMap = Mapping[str, Sequence[str]]

# peft nests the wrapped model under these prefixes; LoRA-wrapped linears keep their weight in
# ``base_layer``. Canonical names drop both so they match the unwrapped model's names.
_PEFT_PREFIX = "base_model.model."
_BASE_LAYER = ".base_layer"


def canonical_parameter_name(name: str) -> str:
    """The name a parameter has on the model before peft wrapped it."""
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX) :]
    return name.replace(_BASE_LAYER, "")


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _is_lora(name: str) -> bool:
    return ".lora_" in name


def parameter_names_under(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Canonical names of the base (non-LoRA) parameters inside the modules ``prefixes`` name."""
    return [
        canonical_parameter_name(name)
        for name, _ in model.named_parameters()
        if not _is_lora(name) and _under(canonical_parameter_name(name), prefixes)
    ]


def language_model_lora_config(
    language_model_prefix: str,
    target_modules: Sequence[str],
    r: int,
    alpha: int,
    dropout: float,
    bias: str = "none",
):
    """A peft ``LoraConfig`` that puts adapters on the named linears of the language model only.

    The vision tower has layers with the same names (SigLIP's ``q_proj``...), so targets are a
    regular expression anchored at ``language_model_prefix`` (peft full-matches it against module
    names).

    Args:
        language_model_prefix: module path of the language model, e.g. ``model.language_model``.
        target_modules: linear layer names inside it, e.g. Qwen2's ``q_proj`` ... ``down_proj``.
    """
    from peft import LoraConfig

    if not target_modules:
        raise ValueError("target_modules is empty; name at least one language-model linear layer")
    names = "|".join(re.escape(name) for name in target_modules)
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias=bias,
        target_modules=rf"{re.escape(language_model_prefix)}\..*\.({names})",
        task_type="CAUSAL_LM",
    )


@dataclass
class TrainableSummary:
    """What trains after ``prepare_tunable_model``.

    Attributes:
        parts: the tuned part names.
        lora: whether LoRA adapters train.
        trainable_per_part: trainable parameter count of each part (LoRA adapters count under the
            part whose modules they adapt).
        trainable: trainable parameters in total.
        total: all parameters (including LoRA adapters).
    """

    parts: tuple[str, ...]
    lora: bool
    trainable_per_part: dict[str, int] = field(default_factory=dict)
    trainable: int = 0
    total: int = 0

    def __str__(self) -> str:
        rows = [f"  {part:<20s} {count:>14,d}" for part, count in self.trainable_per_part.items()]
        share = 100.0 * self.trainable / max(self.total, 1)
        return "\n".join(
            [f"trainable parameters ({'with LoRA adapters' if self.lora else 'no LoRA'}):", *rows]
            + [f"  {'total':<20s} {self.trainable:>14,d} of {self.total:,d} ({share:.2f}%)"]
        )


def summarize_trainable(
    model: nn.Module, parts: Sequence[str], part_map: PartMap, lora: bool
) -> TrainableSummary:
    per_part = {part: 0 for part in parts}
    trainable = total = 0
    for name, parameter in model.named_parameters():
        total += parameter.numel()
        if not parameter.requires_grad:
            continue
        trainable += parameter.numel()
        canonical = canonical_parameter_name(name)
        for part in parts:
            if _under(canonical, part_map[part]):
                per_part[part] += parameter.numel()
    return TrainableSummary(tuple(parts), lora, per_part, trainable, total)


def prepare_tunable_model(
    model: nn.Module,
    parts: Sequence[str],
    part_map: PartMap,
    language_model_part: str | Sequence[str] = "mm_language_model",
    lora_config=None,
) -> tuple[nn.Module, TrainableSummary]:
    """Freeze ``model`` except ``parts`` (and LoRA adapters when ``lora_config`` is given).

    Args:
        model: the model to train.
        parts: part names to train; each must be a key of ``part_map`` and cover at least one
            parameter of ``model``.
        part_map: part name → parameter-name prefixes on the unwrapped model.
        language_model_part: the part(s) LoRA adapts (the language model, or e.g. the projector);
            with ``lora_config`` they train through their adapters only.
        lora_config: a peft ``LoraConfig``; the model comes back wrapped in a ``PeftModel``.

    Returns:
        ``(model, summary)``: the (possibly peft-wrapped) model and what trains.
    """
    unknown = [part for part in parts if part not in part_map]
    if unknown:
        raise ValueError(f"unknown tunable parts {unknown}; this model has {sorted(part_map)}")
    empty = [part for part in parts if not parameter_names_under(model, part_map[part])]
    if empty:
        raise ValueError(
            f"tunable parts {empty} have no parameters in {type(model).__name__} "
            "(is the module switched off in its config?)"
        )
    adapted = (language_model_part,) if isinstance(language_model_part, str) else tuple(language_model_part)
    model.requires_grad_(False)
    if lora_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config)
    for name, parameter in model.named_parameters():
        if _is_lora(name):
            continue
        canonical = canonical_parameter_name(name)
        for part in parts:
            if lora_config is not None and part in adapted:
                continue
            if _under(canonical, part_map[part]):
                parameter.requires_grad_(True)
    summary_parts = list(parts)
    if lora_config is not None:
        summary_parts += [part for part in adapted if part not in summary_parts and part in part_map]
    return model, summarize_trainable(model, summary_parts, part_map, lora_config is not None)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Canonical names of the trainable parameters that are not LoRA adapters."""
    return [
        canonical_parameter_name(name)
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and not _is_lora(name)
    ]

