"""Bring question embeddings into the vision feature space where Sim is computed.

Sim compares patch features f (scoring layer, width D) with question vectors q of the same width.
A VLM's question lives in the language model's embedding space (width H). The projector maps vision
to language: P(f) = W_L(… act(W_1 f + b_1) …) + b_L. Treating the activations as the identity,
⟨P(f), e⟩ = ⟨f, W_1ᵀ ⋯ W_Lᵀ e⟩ + a constant that is the same for every patch, so

    q = W_1ᵀ W_2ᵀ ⋯ W_Lᵀ e

is the vision-space vector whose dot product with f ranks patches as the (linearised) projector
would rank them against the question token e. This costs a few matrix-vector products per question
token instead of projecting all 2,304 patches. The selector then takes cosines with q.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pull_back_text_embeds(text_embeds: torch.Tensor, projector_weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Map language-space embeddings through the transposed projector weights.

    Args:
        text_embeds: (..., H) question token embeddings in the language model's input space.
        projector_weights: the projector's linear weights in forward order, each (out, in) as in
            ``nn.Linear.weight``; the last one's out width must be H.

    Returns:
        (..., D) vectors in the projector's input (vision feature) space.
    """
    vectors = text_embeds
    for index, weight in reversed(list(enumerate(projector_weights))):
        if vectors.shape[-1] != weight.shape[0]:
            raise ValueError(
                f"projector_weights[{index}] is {tuple(weight.shape)} (out, in) but the vectors reaching it have "
                f"width {vectors.shape[-1]}"
            )
        vectors = vectors @ weight.to(vectors.dtype)
    return vectors
