"""The distance-aware score of SHIRG-X, term by term.

    s_i = w_sim·Sim_i − w_nbr·D_nbr(i) − w_ctr·D_ctr(i)        (defaults: docs/decisions.md)

Sim and D_ctr are min-max normalised per image to [0, 1]; D_nbr is a share in [0, 1]:

- Sim_i, relevance. With a question: the exact inner product of the token the language model would
  receive for patch i, t_i = P(f_i) (the projector, LoRA included, applied to the patch), with the
  unit question-token embeddings ê_q, max over the question's tokens q (``text_relevance``). Score and
  question live in one space, the language model's input space; nothing is linearised. Without a
  question: distinctiveness 1 − cos(f_i, f̄), f̄ the image's mean patch feature, a text-free saliency
  that is high for patches unlike the bulk of the image.
- D_nbr(i), proximity to what is already kept: Σ_{j kept} k(‖p_i − p_j‖) / Σ_{j≠i} k(‖p_i − p_j‖),
  k(d) = exp(−d²/2σ²), p in patch units, sums inside the image: the share of i's neighbourhood
  already kept. It changes as tokens are kept, so selection is greedy, in a few rounds
  (``select.select_top_groups``): each round keeps the best groups under the current D_nbr, then
  D_nbr is recomputed. A patch next to kept tokens loses against an equally relevant one elsewhere,
  so the selection spreads (the earlier static crowding of *relevance* did not: it penalised every
  patch of a relevant region alike).
- D_ctr(i): ‖p_i − c‖₂ to the image centre c, divided by its largest value (a corner).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def minmax_normalise(values: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, N) → (B, N) scaled per row to [0, 1]; a constant row becomes 0."""
    low = values.amin(dim=1, keepdim=True)
    span = values.amax(dim=1, keepdim=True) - low
    return (values - low) / span.clamp(min=eps)


def text_relevance(
    tokens: torch.Tensor, text_embeds: torch.Tensor, text_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Relevance of each patch to the question: max over question tokens of ⟨t_i, e_q / ‖e_q‖⟩.

    Args:
        tokens: (B, N, H) per-patch tokens in the question's space: the projector's output P(f_i)
            for a VLM (then this is the exact ⟨P(f_i), ê_q⟩), or any tokens sharing the width.
        text_embeds: (B, T, H) or (B, H) question-token embeddings (the language model's input
            embeddings of the question's own tokens: no template, no post-prompt).
        text_mask: (B, T) bool, True for real (non-padding) question tokens.

    Returns:
        (B, N) raw inner products (unbounded; ``distance_aware_score`` normalises them).
    """
    if text_embeds.dim() == 2:
        text_embeds = text_embeds[:, None]
    if text_embeds.dim() != 3 or text_embeds.shape[0] != tokens.shape[0] or text_embeds.shape[-1] != tokens.shape[-1]:
        raise ValueError(
            f"text_embeds must be (B, T, {tokens.shape[-1]}) or (B, {tokens.shape[-1]}) with B = {tokens.shape[0]}, "
            f"in the space of the scored tokens (the projector's output for a VLM); got shape {tuple(text_embeds.shape)}"
        )
    # Unit question vectors: a token with a large embedding norm must not win the max by its norm.
    products = tokens @ F.normalize(text_embeds.to(tokens.dtype), dim=-1).transpose(1, 2)
    if text_mask is not None:
        if text_mask.shape != text_embeds.shape[:2]:
            raise ValueError(f"text_mask must be {tuple(text_embeds.shape[:2])}; got {tuple(text_mask.shape)}")
        if not bool(text_mask.any(dim=1).all()):
            raise ValueError("text_mask has an image whose question has no unmasked token")
        products = products.masked_fill(~text_mask[:, None, :].bool(), float("-inf"))
    return products.amax(dim=-1)


def distinctiveness(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, D) → (B, N) text-free saliency 1 − cos(f_i, mean_j f_j)."""
    mean = F.normalize(tokens.mean(dim=1), dim=-1)
    token_norm = torch.linalg.vector_norm(tokens, dim=-1).clamp(min=1e-12)
    return 1.0 - (tokens @ mean[..., None]).squeeze(-1) / token_norm


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    return torch.exp(-(offsets**2) / (2 * sigma**2))


def neighbour_crowding(relevance: torch.Tensor, grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """Distance-weighted mean of a per-patch map over the *other* patches:
    Σ_{j≠i} k(‖p_i − p_j‖) v_j / Σ_{j≠i} k(‖p_i − p_j‖). With v = 1 at kept patches this is D_nbr.

    Args:
        relevance: (B, N) values v, row-major over ``grid``.
        grid: (rows, cols).
        sigma: Gaussian width in patches.

    Returns:
        (B, N).
    """
    return NeighbourKernel(grid, sigma, relevance.device, relevance.dtype)(relevance)


class NeighbourKernel:
    """The Gaussian neighbourhood mean of ``neighbour_crowding``, with the kernel and the per-patch
    normaliser computed once (greedy spreading applies it every round)."""

    def __init__(self, grid: tuple[int, int], sigma: float, device: torch.device, dtype: torch.dtype) -> None:
        self.grid = grid
        self.kernel = _gaussian_kernel(sigma, device, dtype)
        self.pad = self.kernel.numel() // 2
        # k(0) = 1 is each patch's own weight: removing it leaves the sum over j ≠ i.
        self.weight = self._blur(torch.ones(1, grid[0] * grid[1], device=device, dtype=dtype)) - 1.0

    def _blur(self, values: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid
        # The 2-D Gaussian is separable: two 1-D passes; zero padding keeps sums inside the image.
        image = values.view(-1, 1, rows, cols)
        image = F.conv2d(image, self.kernel.view(1, 1, 1, -1), padding=(0, self.pad))
        return F.conv2d(image, self.kernel.view(1, 1, -1, 1), padding=(self.pad, 0)).flatten(1)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """(B, N) → (B, N) neighbourhood means over the other patches."""
        return (self._blur(values) - values) / self.weight


def centre_distance(coords: torch.Tensor) -> torch.Tensor:
    """D_ctr: (..., N, 4) coordinates → (..., N) distance of each centre to (0.5, 0.5), max 1."""
    distance = torch.linalg.vector_norm(coords[..., :2] - 0.5, dim=-1)
    return distance / distance.amax(dim=-1, keepdim=True)


def distance_aware_score(
    relevance: torch.Tensor,
    coords: torch.Tensor,
    relevance_weight: float = 0.7,
    centre_weight: float = 0.1,
) -> torch.Tensor:
    """The static part of the score, w_sim·Sim − w_ctr·D_ctr; D_nbr depends on what is kept and is
    applied during selection (``select.select_top_groups``).

    Args:
        relevance: (B, N) raw relevance (``text_relevance`` or ``distinctiveness``).
        coords: (N, 4) or (B, N, 4) patch coordinates (x, y, h, w).
        relevance_weight, centre_weight: w_sim, w_ctr.

    Returns:
        (B, N) float32 scores in [−w_ctr, w_sim].
    """
    # Scores are small (B, N) maps: float32 keeps ε-level differences exact under bf16 features.
    sim = minmax_normalise(relevance.float())
    score = relevance_weight * sim
    if centre_weight:
        score = score - centre_weight * centre_distance(coords).expand_as(sim)
    return score
