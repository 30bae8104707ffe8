"""LLaVA-Video's training prompt (qwen_1_5 system prompt + time instruction) on chat messages."""

import torch

from spatialvlm.models.processing import QWEN_1_5_SYSTEM_PROMPT, llava_video_time_instruction
from spatialvlm.models.tiny import build_tiny_tokenizer
from spatialvlm.train.conversation import IGNORE_INDEX, add_video_prompt, to_chat_messages, tokenize_conversation


def test_messages_render_as_llava_next_train_py_writes_them():
    tokenizer = build_tiny_tokenizer()
    turns = [{"from": "human", "value": "<image>\nHow many chairs?"}, {"from": "gpt", "value": "3"}]
    instruction = llava_video_time_instruction(10.0, [0.0, 5.0, 9.8])
    messages = add_video_prompt(to_chat_messages(turns, "<video>", aliases=("<image>",)), "<video>", QWEN_1_5_SYSTEM_PROMPT, instruction)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    # conv_qwen (CHATML): system + sep + "\n", then role + "\n" + message + sep + "\n"; the user text is
    # f"{image}\n{time_instruction}\n{value without the image token}" (train.py, add_time_instruction)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<video>\nThe video lasts for 10.00 seconds, and 3 frames are uniformly sampled from it. "
        "These frames are located at 0.00s,5.00s,9.80s.Please answer the following questions related to this video."
        "\n\nHow many chairs?<|im_end|>\n<|im_start|>assistant\n3<|im_end|>\n"
    )
    input_ids, labels = tokenize_conversation(tokenizer, messages, {tokenizer.convert_tokens_to_ids("<video>"): 5})
    answer = tokenizer("3<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert labels[labels != IGNORE_INDEX].tolist() == answer
    assert int((input_ids == tokenizer.convert_tokens_to_ids("<video>")).sum()) == 5


def test_records_with_their_own_system_turn_keep_it():
    turns = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "<video>\nWhere?"}, {"from": "gpt", "value": "left"}]
    messages = add_video_prompt(to_chat_messages(turns, "<video>"), "<video>", QWEN_1_5_SYSTEM_PROMPT, None)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"] and messages[0]["content"] == "Be brief."
    assert messages[1]["content"] == "<video>\nWhere?"
