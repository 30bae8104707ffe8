"""SHIRG-X token selection and the baseline selectors it is compared against.

Pure tensor code (torch only). The pipeline, one small file per step:

- ``dual_scale``  48×48 high-detail tokens, 12×12 pooled scaffold, (x, y, h, w) coordinates
- ``scoring``     s = 0.7·Sim − 0.2·D_nbr − 0.1·D_ctr, each term normalised to [0, 1]
- ``text_space``  question embeddings pulled back into the vision feature space for Sim
- ``merging``     ToMe-style merging of grid neighbours whose scores differ by less than ε
- ``select``      top-K over merged groups with consistent indices
- ``grouping``    size/area-weighted reduction of patch groups (shared by every selector)
- ``coord_embed`` (x, y, h, w) → 128 → D, zero-initialised output
- ``budget``      patch-entropy features → MLP(32) → logits over {512, 768, 1024}
- ``selector``    ShirgXSelector(config) wiring it all; ``baselines`` the comparison methods
- ``io``          save_selector / load_selector (weights + config, safetensors)
"""

from .baselines import (
    BASELINES,
    BaselineSelector,
    divprune_assignment,
    random_assignment,
    tome_assignment,
    uniform_pool_assignment,
    visionzip_assignment,
)
from .budget import BudgetHead, patch_entropy
from .config import ShirgXConfig
from .coord_embed import CoordinateEmbedding
from .dual_scale import dual_scale_tokens, grid_coords, scaffold_source_index
from .grouping import GroupedTokens, group_reduce
from .io import SELECTOR_CONFIG_NAME, SELECTOR_WEIGHTS_NAME, load_selector, save_selector
from .merging import neighbour_merge_targets
from .output import SelectionOutput
from .scoring import (
    centre_distance,
    distance_aware_score,
    distinctiveness,
    minmax_normalise,
    neighbour_crowding,
    text_relevance,
)
from .select import select_top_groups
from .selector import ShirgXSelector
from .text_space import pull_back_text_embeds

__all__ = [
    "BASELINES",
    "SELECTOR_CONFIG_NAME",
    "SELECTOR_WEIGHTS_NAME",
    "BaselineSelector",
    "BudgetHead",
    "CoordinateEmbedding",
    "GroupedTokens",
    "SelectionOutput",
    "ShirgXConfig",
    "ShirgXSelector",
    "centre_distance",
    "distance_aware_score",
    "distinctiveness",
    "divprune_assignment",
    "dual_scale_tokens",
    "grid_coords",
    "group_reduce",
    "load_selector",
    "minmax_normalise",
    "neighbour_crowding",
    "neighbour_merge_targets",
    "patch_entropy",
    "pull_back_text_embeds",
    "random_assignment",
    "save_selector",
    "scaffold_source_index",
    "select_top_groups",
    "text_relevance",
    "tome_assignment",
    "uniform_pool_assignment",
    "visionzip_assignment",
]
