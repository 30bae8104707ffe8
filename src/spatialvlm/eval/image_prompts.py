"""Prompts of the image benchmarks, as lmms-eval's ChartQA and DocVQA tasks build them.

``pre_prompt + question + post_prompt`` with the ``default`` kwargs of ``chartqa.yaml`` and
``_default_template_docvqa_yaml``: ``pre_prompt = ""``, ``post_prompt = "\\nAnswer the question
using a single word or phrase."``. Our synthetic suite uses the same prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from spatialvlm.data.image_readers import ImageQAItem

__all__ = ["ImagePromptConfig", "build_image_prompt"]


@dataclass
class ImagePromptConfig:
    """Prompt pieces around an image question (defaults: lmms-eval ``default``).

    Attributes:
        pre_prompt: text before the question.
        post_prompt: text after the question.
    """

    pre_prompt: str = ""
    post_prompt: str = "\nAnswer the question using a single word or phrase."


def build_image_prompt(item: ImageQAItem, config: ImagePromptConfig | None = None) -> str:
    """The text prompt for ``item`` (the image goes to the model separately)."""
    config = config or ImagePromptConfig()
    return f"{config.pre_prompt}{item.question}{config.post_prompt}"
