"""Configuration of the SHIRG-X selector: every knob, its default and what it means."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ShirgXConfig:
    """Knobs of :class:`~spatialvlm.selection.ShirgXSelector`.

    Attributes:
        vision_dim: width D of the tokens handed to the projector (SigLIP so400m: 1152). The
            coordinate embedding outputs this width and is added to every patch before the
            projector; pooling and merging happen after it.
        score_dim: width of ``score_tokens`` when they come from another SigLIP layer (text-free
            saliency, the merge similarity gate and the budget head); ``None`` means ``vision_dim``.
            Question relevance is always computed on the projected tokens.
        grid: (rows, cols) of the high-detail patch grid; 672 px at patch 14 gives (48, 48).
        scaffold_pool: side of the average-pooling window that makes the low-resolution scaffold
            (4 turns 48×48 into 12×12 = 144 tokens, always kept).
        budgets: the K values the adaptive head chooses between.
        default_budget: budget an untrained head picks (its last layer starts at zero with a bias
            towards this entry) and baselines use when called with ``budget=None``.
        relevance_weight: weight of Sim in ``s = w_sim·Sim − w_nbr·D_nbr − w_ctr·D_ctr``.
        neighbour_weight: weight of D_nbr, the proximity to tokens already kept (greedy spreading;
            0 = plain top-K).
        centre_weight: weight of the distance-to-centre term D_ctr.
        neighbour_sigma: width, in patches, of the Gaussian kernel over patch distance
            ||p_i − p_j|| used by D_nbr.
        spread_rounds: greedy rounds of the spreading selection (each keeps K / rounds groups, then
            D_nbr is recomputed).
        merge_threshold: ε; grid-adjacent tokens whose scores differ by less than this merge ...
        merge_similarity: τ; ... and only when the cosine of their scoring features is at least this.
        coord_hidden: hidden width of the coordinate embedding (x, y, h, w) → coord_hidden → D.
        budget_hidden: hidden width of the adaptive budget MLP.
        entropy_temperature: softmax temperature over patches for the per-channel entropy features.
        add_coord_embedding: add the coordinate embedding to every patch before the projector (False
            hands the projector the raw SigLIP features).
        check_finite: raise on NaN/inf input tokens (one cheap pass over the input).
    """

    vision_dim: int = 1152
    score_dim: int | None = None
    grid: tuple[int, int] = (48, 48)
    scaffold_pool: int = 4
    budgets: tuple[int, ...] = (512, 768, 1024)
    default_budget: int = 768
    relevance_weight: float = 0.7
    neighbour_weight: float = 0.2
    centre_weight: float = 0.1
    neighbour_sigma: float = 4.0
    spread_rounds: int = 16
    merge_threshold: float = 0.05
    merge_similarity: float = 0.9
    coord_hidden: int = 128
    budget_hidden: int = 32
    entropy_temperature: float = 1.0
    add_coord_embedding: bool = True
    check_finite: bool = True

    def __post_init__(self) -> None:
        self.grid = tuple(int(side) for side in self.grid)
        self.budgets = tuple(int(k) for k in self.budgets)
        if len(self.grid) != 2 or min(self.grid) <= 0:
            raise ValueError(f"grid must be two positive sides (rows, cols), got {self.grid}")
        rows, cols = self.grid
        if self.scaffold_pool <= 0 or rows % self.scaffold_pool or cols % self.scaffold_pool:
            raise ValueError(f"scaffold_pool={self.scaffold_pool} must divide both grid sides {self.grid}")
        if not self.budgets or any(k <= 0 or k > rows * cols for k in self.budgets):
            raise ValueError(f"budgets {self.budgets} must be in [1, {rows * cols}] (the patch count)")
        if self.default_budget not in self.budgets:
            raise ValueError(f"default_budget {self.default_budget} must be one of budgets {self.budgets}")
        if self.neighbour_sigma <= 0 or self.merge_threshold < 0 or self.entropy_temperature <= 0:
            raise ValueError("neighbour_sigma and entropy_temperature must be > 0, merge_threshold >= 0")
        if self.spread_rounds < 1 or not -1.0 <= self.merge_similarity <= 1.0:
            raise ValueError(
                f"spread_rounds must be >= 1 (got {self.spread_rounds}) and merge_similarity a cosine in [-1, 1] "
                f"(got {self.merge_similarity})"
            )

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_scaffold(self) -> int:
        return self.num_patches // (self.scaffold_pool * self.scaffold_pool)

    @property
    def scoring_dim(self) -> int:
        return self.vision_dim if self.score_dim is None else self.score_dim
