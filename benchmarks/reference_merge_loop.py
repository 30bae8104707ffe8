"""Per-patch Python-loop reference of SHIRG-X neighbour merging (what the earlier attempt did).

Kept as the correctness and speed reference for ``spatialvlm.selection.neighbour_merge_targets`` +
``group_reduce``: same rule (checkerboard sources join the closest-score grid neighbour when the
difference is below ε, closest pairs first, at most ``max_merges``), one patch at a time with
``.item()``. Used by ``bench_selection.py``; not part of the library.
"""

from __future__ import annotations

import torch

DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right


def merge_targets_loop(scores: torch.Tensor, grid: tuple[int, int], threshold: float, max_merges: int) -> list[int]:
    """One image: scores (N,) → representative patch of each patch (the merge decision)."""
    rows, cols = grid
    candidates = []
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                continue
            index = r * cols + c
            best, best_neighbour = float("inf"), -1
            for dr, dc in DIRECTIONS:
                nr, nc = r + dr, c + dc
                if 0 <= nr < rows and 0 <= nc < cols:
                    difference = abs(scores[index] - scores[nr * cols + nc]).item()
                    if difference < best:
                        best, best_neighbour = difference, nr * cols + nc
            if best < threshold:
                candidates.append((best, index, best_neighbour))
    candidates.sort()
    targets = list(range(rows * cols))
    for _, source, destination in candidates[:max_merges]:
        targets[source] = destination
    return targets


def merge_loop(
    tokens: torch.Tensor, scores: torch.Tensor, grid: tuple[int, int], threshold: float, max_merges: int
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """One image: tokens (N, D), scores (N,) → merged tokens (G, D), coords (G, 4), member lists.

    Groups are ordered by their representative (destination) patch index.
    """
    rows, cols = grid
    targets = merge_targets_loop(scores, grid, threshold, max_merges)
    members: dict[int, list[int]] = {}
    for patch, representative in enumerate(targets):
        members.setdefault(representative, []).append(patch)

    merged_tokens, merged_coords, groups = [], [], []
    for representative in sorted(members):
        group = members[representative]
        feature = torch.zeros_like(tokens[0])
        x_sum = y_sum = 0.0
        left = top = float("inf")
        right = bottom = float("-inf")
        for patch in group:
            r, c = divmod(patch, cols)
            feature += tokens[patch]
            x, y = (c + 0.5) / cols, (r + 0.5) / rows
            x_sum, y_sum = x_sum + x, y_sum + y
            left, right = min(left, c / cols), max(right, (c + 1) / cols)
            top, bottom = min(top, r / rows), max(bottom, (r + 1) / rows)
        merged_tokens.append(feature / len(group))
        merged_coords.append(torch.tensor([x_sum / len(group), y_sum / len(group), bottom - top, right - left]))
        groups.append(group)
    return torch.stack(merged_tokens), torch.stack(merged_coords), groups
