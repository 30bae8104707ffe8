"""Adaptive budget: per-channel patch entropy → MLP(hidden 32) → logits over the budgets.

The entropy feature of channel c is the entropy of softmax over patches of f_{·,c}/τ, divided by
log N so it lies in [0, 1]: near 1 when the channel responds evenly over the image (little detail),
lower when it fires on a few patches. The D-vector of these entropies summarises how much distinct
content an image has, which is what the budget should follow.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def patch_entropy(tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, N, D) → (B, D) normalised entropy of each channel's distribution over patches."""
    # H = log Z − Σ p·z with z = x/τ, p = softmax(z): one exp pass, no log-probability tensor.
    logits = tokens.float()  # exp and sums over 2,304 patches want float32
    if temperature != 1.0:
        logits = logits / temperature
    peak = logits.amax(dim=1, keepdim=True)
    # In-place steps: each fresh (B, N, D) buffer costs as much as the arithmetic on CPU.
    weights = (logits - peak).exp_()
    partition = weights.sum(dim=1)
    expected_logit = weights.mul_(logits).sum(dim=1) / partition
    entropy = torch.log(partition) + peak.squeeze(1) - expected_logit
    return entropy / math.log(tokens.shape[1])


class BudgetHead(nn.Module):
    """Two-layer MLP choosing K per image.

    Args:
        dim: input width (the scoring feature width D).
        budgets: the K values, one logit each.
        hidden: hidden width (32).
        default_index: which budget the untrained head picks. The last layer starts with zero
            weights and a bias of 1 on this entry, so inference is predictable before training.
    """

    def __init__(self, dim: int, budgets: tuple[int, ...], hidden: int = 32, default_index: int = 0) -> None:
        super().__init__()
        # A tuple, not a buffer: a non-persistent buffer is in no state dict (a selector built on the
        # meta device and then loaded would keep garbage there).
        self.budgets = tuple(int(k) for k in budgets)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, len(budgets)))
        nn.init.zeros_(self.mlp[2].weight)
        with torch.no_grad():
            self.mlp[2].bias.zero_()[default_index] = 1.0

    def forward(self, entropy: torch.Tensor) -> torch.Tensor:
        """(B, D) entropy features → (B, len(budgets)) logits."""
        return self.mlp(entropy.to(self.mlp[0].weight.dtype))

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, len(budgets)) logits → (B,) chosen K (the argmax)."""
        return torch.tensor(self.budgets, device=logits.device)[logits.argmax(dim=-1)]

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())

    def extra_repr(self) -> str:
        return f"budgets={self.budgets}, parameters={self.num_parameters():,}"
