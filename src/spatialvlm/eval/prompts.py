"""Prompts exactly as the official VSI-Bench / VSTI-Bench lmms-eval tasks build them.

Numerical: ``pre_prompt + "\\n" + question + "\\n" + na_post_prompt``.
Multiple choice: ``"\\n".join([pre_prompt, question, "Options:\\n" + "\\n".join(options),
mca_post_prompt])``. The official YAML sets ``pre_prompt: ""``, which the code replaces with
"These are frames of a video."; an empty string here does the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from spatialvlm.data.readers import BenchmarkItem
from spatialvlm.eval.metrics import is_numerical

__all__ = ["PromptConfig", "build_prompt"]


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


def build_prompt(item: BenchmarkItem, benchmark: str = "vsibench", config: PromptConfig | None = None) -> str:
    """The text prompt for ``item`` (the video goes to the model separately)."""
    config = config or PromptConfig()
    pre_prompt = config.pre_prompt or "These are frames of a video."
    if is_numerical(item.question_type, benchmark):
        post_prompt = config.na_post_prompt or "Please answer the question using a single word or phrase."
        return pre_prompt + "\n" + item.question + "\n" + post_prompt
    post_prompt = config.mca_post_prompt or "Answer with the option's letter from the given choices directly."
    options = "Options:\n" + "\n".join(item.options)
    return "\n".join([pre_prompt, item.question, options, post_prompt])
