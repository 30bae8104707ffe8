"""LLaVA-format conversations → token ids with answer-only labels; record loading; padding."""

from __future__ import annotations

import json

import pytest
import torch

from spatialvlm.models.tiny import VIDEO_TOKEN_ID, build_tiny_tokenizer
from spatialvlm.train import IGNORE_INDEX, load_conversation_records, pad_sequences, to_chat_messages, tokenize_conversation

TURNS = [
    {"from": "human", "value": "<video>\nHow many chairs are in the room?"},
    {"from": "gpt", "value": "3"},
    {"from": "human", "value": "And tables?"},
    {"from": "gpt", "value": "two tables"},
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_ids_equal_the_whole_rendered_conversation(tokenizer):
    # Reference: render the full chat at once, tokenise it, expand the video token by hand.
    messages = to_chat_messages(TURNS, "<video>")
    input_ids, labels = tokenize_conversation(tokenizer, messages, {VIDEO_TOKEN_ID: 9})
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    reference = []
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        reference += [token] * (9 if token == VIDEO_TOKEN_ID else 1)
    assert input_ids.tolist() == reference
    assert int((input_ids == VIDEO_TOKEN_ID).sum()) == 9


def test_only_assistant_turns_are_labelled(tokenizer):
    messages = to_chat_messages(TURNS, "<video>")
    input_ids, labels = tokenize_conversation(tokenizer, messages, {VIDEO_TOKEN_ID: 5})
    learnt = tokenizer.decode(input_ids[labels != IGNORE_INDEX])
    assert learnt == "3<|im_end|>\ntwo tables<|im_end|>\n"
    assert torch.equal(labels[labels != IGNORE_INDEX], input_ids[labels != IGNORE_INDEX])
    # The prompts (including "<|im_start|>assistant\n") and the visual tokens are never learnt.
    assert not bool((labels == VIDEO_TOKEN_ID).any())


def test_placeholder_is_added_or_read_from_image_alias():
    plain = to_chat_messages([{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A"}], "<video>")
    assert plain[0]["content"] == "<video>\nQ?"
    alias = to_chat_messages(
        [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}], "<video>", aliases=("<image>",)
    )
    assert alias[0]["content"] == "<video>\nQ?"
    with pytest.raises(ValueError, match="2 '<video>' placeholders"):
        to_chat_messages([{"from": "human", "value": "<video><video>Q"}, {"from": "gpt", "value": "A"}], "<video>")


def test_max_length_cuts_text_but_never_visual_tokens(tokenizer):
    messages = to_chat_messages(TURNS, "<video>")
    full, _ = tokenize_conversation(tokenizer, messages, {VIDEO_TOKEN_ID: 5})
    cut, cut_labels = tokenize_conversation(tokenizer, messages, {VIDEO_TOKEN_ID: 5}, max_length=full.numel() - 3)
    assert torch.equal(cut, full[: full.numel() - 3])
    with pytest.raises(ValueError, match="split its visual tokens"):
        tokenize_conversation(tokenizer, messages, {VIDEO_TOKEN_ID: 5}, max_length=4)
    with pytest.raises(ValueError, match="no answer token"):
        tokenize_conversation(tokenizer, messages[:2], {VIDEO_TOKEN_ID: 5}, max_length=20)


def test_record_loading_checks_shape(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"video": "v.mp4", "conversations": TURNS}) + "\n")
    assert load_conversation_records(good)[0]["video"] == "v.mp4"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video": "v.mp4", "conversations": [{"from": "robot", "value": "x"}]}]))
    with pytest.raises(ValueError, match="'from'"):
        load_conversation_records(bad)
    unanswered = tmp_path / "unanswered.json"
    unanswered.write_text(json.dumps([{"conversations": [{"from": "human", "value": "x"}]}]))
    with pytest.raises(ValueError, match="no assistant"):
        load_conversation_records(unanswered)
    with pytest.raises(FileNotFoundError):
        load_conversation_records(tmp_path / "missing.json")


def test_pad_sequences_right_and_left():
    rows = [torch.tensor([1, 2, 3]), torch.tensor([4])]
    assert pad_sequences(rows, 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_sequences(rows, -1, side="left").tolist() == [[1, 2, 3], [-1, -1, 4]]
