"""Prompts exactly as the official VSI-Bench / VSTI-Bench / ReVSI lmms-eval tasks build them.

VSI-Bench (full and debiased), VSTI-Bench — numerical: ``pre_prompt + "\\n" + question + "\\n" +
na_post_prompt``; multiple choice: ``"\\n".join([pre_prompt, question, "Options:\\n" +
"\\n".join(options), mca_post_prompt])``. The official YAML sets ``pre_prompt: ""``, which the code
replaces with "These are frames of a video."; an empty string here does the same.

ReVSI (``tasks/revsi/utils.py``) — numerical: ``"\\n".join([pre_prompt, question,
nq_post_prompt]).strip()``; multiple choice: ``"\\n".join([pre_prompt, question, "Options:\\n" +
"\\n".join(options), mcq_post_prompt]).strip()``, with its own numeric post-prompt "Answer the
question using a single integer or decimal number." and no fallback for empty pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

from spatialvlm.data.readers import BenchmarkItem
from spatialvlm.eval.metrics import is_numerical

__all__ = ["PromptConfig", "build_prompt", "default_prompt_config"]

REVSI_NUMERIC_POST_PROMPT = "Answer the question using a single integer or decimal number."


@dataclass
class PromptConfig:
    """The benchmark's prompt pieces (defaults: lmms-eval ``default`` kwargs of vsibench.yaml).

    Attributes:
        pre_prompt: text before the question; "" means the official fallback below.
        mca_post_prompt: text after the options of a multiple-choice question.
        na_post_prompt: text after a numerical question.
    """

    pre_prompt: str = "These are frames of a video."
    mca_post_prompt: str = "Answer with the option's letter from the given choices directly."
    na_post_prompt: str = "Please answer the question using a single word or phrase."


def default_prompt_config(benchmark: str = "vsibench") -> PromptConfig:
    """The official prompt pieces of ``benchmark`` (its YAML's ``default`` kwargs)."""
    if benchmark == "revsi":
        return PromptConfig(na_post_prompt=REVSI_NUMERIC_POST_PROMPT)
    return PromptConfig()


def build_prompt(item: BenchmarkItem, benchmark: str = "vsibench", config: PromptConfig | None = None) -> str:
    """The text prompt for ``item`` (the video goes to the model separately)."""
    config = config or default_prompt_config(benchmark)
    if benchmark == "revsi":
        if is_numerical(item.question_type, benchmark):
            return "\n".join([config.pre_prompt, item.question, config.na_post_prompt]).strip()
        options = "Options:\n" + "\n".join(item.options)
        return "\n".join([config.pre_prompt, item.question, options, config.mca_post_prompt]).strip()
    pre_prompt = config.pre_prompt or "These are frames of a video."
    if is_numerical(item.question_type, benchmark):
        post_prompt = config.na_post_prompt or "Please answer the question using a single word or phrase."
        return pre_prompt + "\n" + item.question + "\n" + post_prompt
    post_prompt = config.mca_post_prompt or "Answer with the option's letter from the given choices directly."
    options = "Options:\n" + "\n".join(item.options)
    return "\n".join([pre_prompt, item.question, options, post_prompt])
