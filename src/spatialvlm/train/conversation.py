"""LLaVA-format conversation records → token ids with answer-only labels, and their padding.

Model-agnostic text side of every training task. A record (one element of the JSON list, or one
line of a JSONL file)::

    {"id": "scene0_q3",
     "video": "videos/scene0.mp4",            # or "image": ..., task-dependent
     "geometry": "geometry/scene0",           # VLM²: per-frame geometry folder
     "conversations": [{"from": "human", "value": "<video>\\nHow many chairs are there?"},
                       {"from": "gpt", "value": "3"}]}

Roles ``human``/``user``, ``gpt``/``assistant`` and ``system`` are accepted. The text is rendered
with the tokenizer's chat template; only the assistant turns (their text and end-of-turn token)
carry labels, everything else is ``IGNORE_INDEX``. Each media placeholder token is then expanded to
the number of visual tokens the model puts there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "load_conversation_records",
    "read_record_list",
    "to_chat_messages",
    "add_video_prompt",
    "tokenize_conversation",
    "pad_sequences",
]

IGNORE_INDEX = -100

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def read_record_list(path: str | os.PathLike) -> list[Any]:
    """Read a non-empty JSON list (``.json``) or JSON Lines file (``.jsonl``) of training records."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"data file {path} is not valid JSON: {error}") from error
    if not isinstance(records, list) or not records:
        raise ValueError(f"data file {path} must hold a non-empty list of records")
    return records


def load_conversation_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a LLaVA-format JSON list (or JSON Lines file) and check every record's shape."""
    path = Path(path)
    records = read_record_list(path)
    for index, record in enumerate(records):
        turns = record.get("conversations") if isinstance(record, dict) else None
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"record {index} of {path} has no 'conversations' list")
        for turn in turns:
            if not isinstance(turn, dict) or turn.get("from") not in _ROLES or not isinstance(turn.get("value"), str):
                raise ValueError(
                    f"record {index} of {path}: each turn needs 'from' in {sorted(_ROLES)} and a string 'value'; got {turn!r}"
                )
        if not any(_ROLES[turn["from"]] == "assistant" for turn in turns):
            raise ValueError(f"record {index} of {path} has no assistant ('gpt') turn to learn from")
    return records


def to_chat_messages(
    turns: Sequence[Mapping[str, str]], placeholder: str | None = None, aliases: Sequence[str] = ()
) -> list[dict[str, str]]:
    """LLaVA turns → chat-template messages, with exactly one media ``placeholder`` in the text.

    Args:
        turns: ``[{"from": "human", "value": ...}, ...]``.
        placeholder: the media token string (``"<video>"``), or None for text-only samples.
        aliases: other placeholder spellings to read as ``placeholder`` (LLaVA-Video data writes
            ``<image>`` for videos).

    A record without a placeholder gets ``placeholder + "\\n"`` in front of its first user turn,
    as LLaVA does.
    """
    messages = [{"role": _ROLES[turn["from"]], "content": turn["value"]} for turn in turns]
    if placeholder is None:
        return messages
    for message in messages:
        if placeholder not in message["content"]:
            for alias in aliases:
                message["content"] = message["content"].replace(alias, placeholder)
    count = sum(message["content"].count(placeholder) for message in messages)
    if count == 0:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise ValueError("conversation has no user turn to attach the media placeholder to")
        first_user["content"] = f"{placeholder}\n{first_user['content']}"
    elif count > 1:
        raise ValueError(f"conversation has {count} '{placeholder}' placeholders; expected one")
    return messages


def add_video_prompt(
    messages: list[dict[str, str]],
    placeholder: str,
    system_prompt: str | None = None,
    time_instruction: str | None = None,
) -> list[dict[str, str]]:
    """LLaVA-Video's training prompt around chat messages (a new list; ``messages`` is unchanged).

    Args:
        messages: output of ``to_chat_messages`` (one ``placeholder`` in the text).
        placeholder: the media token string.
        system_prompt: put in front as a system turn when the record has none (qwen_1_5: "You are
            a helpful assistant.").
        time_instruction: ``llava_video_time_instruction(...)``; the turn holding the placeholder
            becomes ``f"{placeholder}\n{time_instruction}\n{text without the placeholder}"``, which is
            how LLaVA-NeXT's ``train.py`` writes it with ``add_time_instruction``.
    """
    messages = [dict(message) for message in messages]
    if time_instruction is not None:
        for message in messages:
            if placeholder in message["content"]:
                rest = message["content"].replace(placeholder, "")
                message["content"] = f"{placeholder}\n{time_instruction}\n{rest}"
                break
    if system_prompt and not any(message["role"] == "system" for message in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, str]],
    media_tokens: Mapping[int, int] | None = None,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chat messages → ``(input_ids, labels)`` for next-token training.

    The template is rendered for growing prefixes of the conversation; the text an assistant turn
    adds (after the generation prompt) is labelled, the rest is ``IGNORE_INDEX``. This works for
    any template whose render of a prefix is a prefix of the full render (ChatML / Qwen2's is).

    Args:
        tokenizer: with a chat template and the media tokens among its special tokens.
        messages: ``[{"role": "user" | "assistant" | "system", "content": str}, ...]``.
        media_tokens: token id → how many ids it expands to (``{video_token_id: n_visual_tokens}``).
        max_length: longest allowed sequence; longer ones are cut at the end, and an error is raised
            when the cut would split visual tokens or leave no labelled token.

    Returns:
        ``input_ids`` (L,) int64 and ``labels`` (L,) int64.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; set tokenizer.chat_template")
    pieces: list[str] = []
    labelled: list[bool] = []
    rendered = ""
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = _render(tokenizer, list(messages[:index]), generation_prompt=True)
            full = _render(tokenizer, list(messages[: index + 1]), generation_prompt=False)
            if not prompt.startswith(rendered) or not full.startswith(prompt):
                raise ValueError("the chat template is not prefix-stable; cannot locate the assistant turns")
            pieces += [prompt[len(rendered) :], full[len(prompt) :]]
            labelled += [False, True]
        else:
            full = _render(tokenizer, list(messages[: index + 1]), generation_prompt=False)
            if not full.startswith(rendered):
                raise ValueError("the chat template is not prefix-stable; cannot locate the assistant turns")
            pieces.append(full[len(rendered) :])
            labelled.append(False)
        rendered = full
    encoded = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([token for piece in encoded for token in piece], dtype=torch.long)
    is_label = torch.tensor([flag for flag, piece in zip(labelled, encoded) for _ in piece], dtype=torch.bool)
    labels = torch.where(is_label, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    if media_tokens:
        repeats = torch.ones_like(input_ids)
        for token_id, count in media_tokens.items():
            repeats[input_ids == token_id] = count
        input_ids = input_ids.repeat_interleave(repeats)
        labels = labels.repeat_interleave(repeats)
        labels[torch.isin(input_ids, torch.tensor(list(media_tokens)))] = IGNORE_INDEX

    if max_length is not None and input_ids.numel() > max_length:
        if media_tokens and bool(torch.isin(input_ids[max_length:], torch.tensor(list(media_tokens))).any()):
            raise ValueError(
                f"sample is {input_ids.numel()} tokens, longer than max_length={max_length}, and cutting it "
                "would split its visual tokens; raise model_max_length or sample fewer frames"
            )
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    if not bool((labels != IGNORE_INDEX).any()):
        raise ValueError("sample has no answer token to learn from (empty answer, or cut by max_length)")
    return input_ids, labels


def pad_sequences(sequences: Sequence[torch.Tensor], value: int, side: str = "right") -> torch.Tensor:
    """Stack 1-D tensors of different lengths into (B, L_max), filling with ``value``."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    longest = max(sequence.numel() for sequence in sequences)
    out = sequences[0].new_full((len(sequences), longest), value)
    for row, sequence in enumerate(sequences):
        if side == "right":
            out[row, : sequence.numel()] = sequence
        else:
            out[row, longest - sequence.numel() :] = sequence
    return out
