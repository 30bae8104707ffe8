"""What every converter shares: reading checkpoint shards, writing safetensors shards, the report.

A converter maps each source tensor name to one of ours (or to nothing, for the few kinds of
tensor that are recomputed, e.g. rotary ``inv_freq`` buffers), checks the result against the
parameter names and shapes of the model it will be loaded into (built on the meta device, so a 7B
model costs nothing), and writes shard by shard: a 15 GB checkpoint never sits in memory twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "ConversionReport",
    "CheckpointReader",
    "ShardWriter",
    "parse_dtype",
    "format_count",
    "check_against_model",
    "DTYPES",
]

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Output shards are cut at about this size (transformers' default is 5 GB; smaller shards keep
# the peak memory of a conversion low).
SHARD_BYTES = 2 * 1024**3


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"--dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def format_count(count: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


@dataclass
class ConversionReport:
    """What a conversion did, printed by ``spatialvlm convert``.

    Attributes:
        source_format: e.g. "LLaVA-NeXT (llava_qwen)".
        source: the directory (or directories) read.
        destination: the directory written (None for a dry run).
        mapped: {source name → our name} of every tensor written.
        skipped: source tensors not written, each with the reason (only recomputed buffers).
        notes: settings taken from the source and choices made (one line each).
        parameters: parameters of the converted model.
    """

    source_format: str
    source: str
    destination: str | None = None
    mapped: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    parameters: int = 0

    def summary(self) -> str:
        lines = [f"converted {self.source_format} from {self.source}" + (f" to {self.destination}" if self.destination else "")]
        lines.append(f"  {len(self.mapped)} tensors mapped, {format_count(self.parameters)} parameters")
        groups: dict[str, int] = {}
        for ours in self.mapped.values():
            groups[_group(ours)] = groups.get(_group(ours), 0) + 1
        for name, count in sorted(groups.items()):
            lines.append(f"    {name}: {count} tensors")
        if self.skipped:
            reasons: dict[str, int] = {}
            for reason in self.skipped.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            lines += [f"  skipped {count} tensors: {reason}" for reason, count in sorted(reasons.items())]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _group(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "lm_head":
        return "lm_head"
    return ".".join(parts[:2]) if parts[0] == "model" else parts[0]


class CheckpointReader:
    """The tensors of a checkpoint directory: ``model.safetensors``, sharded safetensors
    (``model.safetensors.index.json``), ``pytorch_model.bin`` or sharded ``.bin``.

    Args:
        directory: the checkpoint directory.
        names: file stems to look for (``adapter_model`` for a peft adapter).
    """

    def __init__(self, directory: str | os.PathLike, stem: str = "model") -> None:
        self.directory = Path(directory)
        self.shards = _find_shards(self.directory, stem)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """{name: shape} of every tensor, read from safetensors headers (``.bin`` files are loaded)."""
        from safetensors import safe_open

        shapes: dict[str, tuple[int, ...]] = {}
        for shard in self.shards:
            if shard.suffix == ".safetensors":
                with safe_open(str(shard), framework="pt") as handle:
                    for name in handle.keys():
                        shapes[name] = tuple(handle.get_slice(name).get_shape())
            else:
                shapes.update({name: tuple(t.shape) for name, t in _load_bin(shard).items()})
        return shapes

    def iter_shards(self, progress: bool = True) -> Iterator[dict[str, Tensor]]:
        """Each shard's tensors in turn (one shard in memory at a time), with a progress bar."""
        from safetensors.torch import load_file
        from tqdm.auto import tqdm

        for shard in tqdm(self.shards, desc=f"reading {self.directory.name}", unit="shard", disable=not progress):
            yield load_file(str(shard)) if shard.suffix == ".safetensors" else _load_bin(shard)

    def load_all(self) -> dict[str, Tensor]:
        tensors: dict[str, Tensor] = {}
        for shard in self.iter_shards(progress=False):
            tensors.update(shard)
        return tensors


def _load_bin(path: Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def _find_shards(directory: Path, stem: str) -> list[Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    for suffix in (".safetensors", ".bin"):
        base = "pytorch_model" if (stem == "model" and suffix == ".bin") else stem
        index = directory / f"{base}{suffix}.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError(f"{index} has no weight_map")
            files = list(dict.fromkeys(weight_map.values()))
            missing = [name for name in files if not (directory / name).is_file()]
            if missing:
                raise FileNotFoundError(f"{index} names shards that are not there: {missing[:3]}")
            return [directory / name for name in files]
        single = directory / f"{base}{suffix}"
        if single.is_file():
            return [single]
    raise FileNotFoundError(
        f"{directory} holds no {stem}.safetensors, {stem}.safetensors.index.json or "
        f"{'pytorch_model' if stem == 'model' else stem}.bin weights"
    )


class ShardWriter:
    """Writes ``model-0000i-of-0000N.safetensors`` shards and their index into ``directory``.

    ``add`` collects tensors and cuts a shard when ``shard_bytes`` is reached; ``close`` writes the
    last one, renames the shards to their final ``-of-N`` names and writes the index.
    """

    def __init__(self, directory: str | os.PathLike, shard_bytes: int = SHARD_BYTES) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_bytes = shard_bytes
        self.pending: dict[str, Tensor] = {}
        self.pending_bytes = 0
        self.written: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: Tensor) -> None:
        # Shared storage (tied or sliced tensors in .bin files) cannot be saved by safetensors.
        self.pending[name] = tensor.detach().contiguous().clone()
        size = tensor.numel() * tensor.element_size()
        self.pending_bytes += size
        self.total_bytes += size
        if self.pending_bytes >= self.shard_bytes:
            self._flush()

    def _flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        path = self.directory / f"model-part-{len(self.written) + 1:05d}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.written.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        self._flush()
        if len(self.written) == 1:
            self.written[0][0].rename(self.directory / "model.safetensors")
            return
        weight_map: dict[str, str] = {}
        count = len(self.written)
        for number, (path, names) in enumerate(self.written, start=1):
            final = f"model-{number:05d}-of-{count:05d}.safetensors"
            path.rename(self.directory / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def check_against_model(
    produced: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], allowed_missing: Callable[[str], bool]
) -> None:
    """Raise naming every tensor the target model has that the conversion does not produce, every
    produced name the model lacks, and every shape that differs."""
    missing = sorted(name for name in expected if name not in produced and not allowed_missing(name))
    extra = sorted(name for name in produced if name not in expected)
    shapes = sorted(
        f"{name} {produced[name]} vs {expected[name]}"
        for name in produced
        if name in expected and tuple(produced[name]) != tuple(expected[name])
    )
    problems = []
    for label, items in (("not produced", missing), ("unknown to the model", extra), ("of the wrong shape", shapes)):
        if items:
            problems.append(f"{len(items)} {label}: " + ", ".join(items[:5]) + (" …" if len(items) > 5 else ""))
    if problems:
        raise ValueError("the converted weights do not fit the model built from the converted config: " + "; ".join(problems))
