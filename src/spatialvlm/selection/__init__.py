"""SHIRG-X token selection and the baseline selectors it is compared against.

Pure tensor code (torch only). The pipeline, one small file per step:

- ``dual_scale``  48×48 high-detail tokens, 12×12 pooled scaffold, (x, y, h, w) coordinates
- ``scoring``     s = w_sim·Sim − w_nbr·D_nbr − w_ctr·D_ctr; Sim = exact ⟨P(f), ê⟩ over question tokens
- ``merging``     merging of grid neighbours whose scores differ by < ε and whose features are alike
- ``select``      greedy spreading top-K over merged groups (D_nbr: proximity to kept tokens)
- ``tome``        ToMe's merge math for merging inside SigLIP (``models.siglip.tome_siglip_forward``)
- ``lavida_pool`` LaViDa's anyres token layout: bilinear 2× pooling after the projector, unpad, newlines
- ``grouping``    size/area-weighted reduction of patch groups (shared by every selector)
- ``coord_embed`` (x, y, h, w) → 128 → D, zero-initialised output
- ``budget``      patch-entropy features → MLP(32) → logits over {512, 768, 1024}
- ``selector``    ShirgXSelector(config) wiring it all; ``baselines`` the comparison methods
- ``io``          save_selector / load_selector (weights + config, safetensors)
"""

from .baselines import (
    BASELINES,
    BaselineSelector,
    bipartite_assignment,
    divprune_assignment,
    random_assignment,
    uniform_pool_assignment,
    visionzip_split,
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
from .tome import bipartite_soft_matching, merge_source, merge_wavg, tome_schedule
from .lavida_pool import lavida_anyres_layout, lavida_pool_view, unpad_grid

__all__ = [
    "BASELINES",
    "SELECTOR_CONFIG_NAME",
    "SELECTOR_WEIGHTS_NAME",
    "BaselineSelector",
    "BudgetHead",
    "CoordinateEmbedding",
    "bipartite_assignment",
    "bipartite_soft_matching",
    "lavida_anyres_layout",
    "lavida_pool_view",
    "merge_source",
    "merge_wavg",
    "tome_schedule",
    "unpad_grid",
    "visionzip_split",
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
    "random_assignment",
    "save_selector",
    "scaffold_source_index",
    "select_top_groups",
    "text_relevance",
    "uniform_pool_assignment",
]
