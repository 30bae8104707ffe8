"""The distance-aware score of SHIRG-X, term by term.

    s_i = w_sim·Sim_i − w_nbr·D_nbr(i) − w_ctr·D_ctr(i)        (defaults 0.7, 0.2, 0.1)

Every term is min-max normalised per image to [0, 1], so the weights compare full ranges:

- Sim_i, relevance. With a question: max over the question's tokens t of cos(f_i, q_t), with f_i the
  scoring-layer feature of patch i and q_t the question embedded in the same (vision) space (see
  ``text_space.py``). Without one: distinctiveness 1 − cos(f_i, f̄), f̄ the mean patch feature of the
  image, a text-free saliency that is high for patches unlike the bulk of the image.
- D_nbr(i), neighbour crowding: the relevance of the other patches around i, weighted by their
  distance, Σ_{j≠i} k(||p_i − p_j||) Sim_j / Σ_{j≠i} k(||p_i − p_j||), k(d) = exp(−d²/2σ²), p in
  patch units, sums over patches inside the image (so borders are not favoured). A relevant patch
  among relevant neighbours loses score against an equally relevant one elsewhere: the selection
  spreads over more of the image.
- D_ctr(i): ||p_i − c||₂ to the image centre c, divided by its largest value (a corner).
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
    """Cosine relevance of each patch to the question, max over question tokens.

    Args:
        tokens: (B, N, D) scoring-layer patch features.
        text_embeds: (B, T, D) or (B, D) question embeddings in the same space.
        text_mask: (B, T) bool, True for real (non-padding) question tokens.

    Returns:
        (B, N) raw cosine similarities in [−1, 1].
    """
    if text_embeds.dim() == 2:
        text_embeds = text_embeds[:, None]
    if text_embeds.dim() != 3 or text_embeds.shape[0] != tokens.shape[0] or text_embeds.shape[-1] != tokens.shape[-1]:
        raise ValueError(
            f"text_embeds must be (B, T, {tokens.shape[-1]}) or (B, {tokens.shape[-1]}) with B = {tokens.shape[0]}, "
            f"in the scoring feature space; got shape {tuple(text_embeds.shape)}"
        )
    # Dividing the (B, N, T) products by the token norms avoids writing a normalised copy of tokens.
    token_norm = torch.linalg.vector_norm(tokens, dim=-1, keepdim=True).clamp(min=1e-12)
    cosine = (tokens @ F.normalize(text_embeds, dim=-1).transpose(1, 2)) / token_norm
    if text_mask is not None:
        if text_mask.shape != text_embeds.shape[:2]:
            raise ValueError(f"text_mask must be {tuple(text_embeds.shape[:2])}; got {tuple(text_mask.shape)}")
        if not bool(text_mask.any(dim=1).all()):
            raise ValueError("text_mask has an image whose question has no unmasked token")
        cosine = cosine.masked_fill(~text_mask[:, None, :].bool(), float("-inf"))
    return cosine.amax(dim=-1)


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
    """D_nbr before normalisation: distance-weighted mean relevance of the other patches.

    Args:
        relevance: (B, N) normalised relevance, row-major over ``grid``.
        grid: (rows, cols).
        sigma: Gaussian width in patches.

    Returns:
        (B, N).
    """
    rows, cols = grid
    batch = relevance.shape[0]
    kernel = _gaussian_kernel(sigma, relevance.device, relevance.dtype)
    pad = kernel.numel() // 2

    def blur(image: torch.Tensor) -> torch.Tensor:
        # The 2-D Gaussian is separable: two 1-D passes; zero padding keeps sums inside the image.
        image = F.conv2d(image, kernel.view(1, 1, 1, -1), padding=(0, pad))
        return F.conv2d(image, kernel.view(1, 1, -1, 1), padding=(pad, 0))

    stacked = torch.cat([relevance.view(batch, 1, rows, cols), relevance.new_ones(1, 1, rows, cols)])
    blurred = blur(stacked).flatten(1)
    # k(0) = 1 is each patch's own weight: removing it leaves the sum over j ≠ i.
    weighted_sum = blurred[:batch] - relevance
    weight = blurred[batch:] - 1.0
    return weighted_sum / weight


def centre_distance(coords: torch.Tensor) -> torch.Tensor:
    """D_ctr: (..., N, 4) coordinates → (..., N) distance of each centre to (0.5, 0.5), max 1."""
    distance = torch.linalg.vector_norm(coords[..., :2] - 0.5, dim=-1)
    return distance / distance.amax(dim=-1, keepdim=True)


def distance_aware_score(
    relevance: torch.Tensor,
    grid: tuple[int, int],
    coords: torch.Tensor,
    weights: tuple[float, float, float] = (0.7, 0.2, 0.1),
    sigma: float = 4.0,
) -> torch.Tensor:
    """s = w_sim·Sim − w_nbr·D_nbr − w_ctr·D_ctr, each term normalised to [0, 1] per image.

    Args:
        relevance: (B, N) raw relevance (text cosine or distinctiveness).
        grid: (rows, cols) of the patches.
        coords: (N, 4) or (B, N, 4) patch coordinates (x, y, h, w).
        weights: (w_sim, w_nbr, w_ctr).
        sigma: width of D_nbr's Gaussian in patches.

    Returns:
        (B, N) scores in [−w_nbr − w_ctr, w_sim].
    """
    relevance_weight, neighbour_weight, centre_weight = weights
    # Scores are small (B, N) maps: float32 keeps ε-level differences exact under bf16 features.
    sim = minmax_normalise(relevance.float())
    score = relevance_weight * sim
    if neighbour_weight:
        score = score - neighbour_weight * minmax_normalise(neighbour_crowding(sim, grid, sigma))
    if centre_weight:
        score = score - centre_weight * centre_distance(coords).expand_as(sim)
    return score
