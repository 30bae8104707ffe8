"""Moved: the LLaDA converter lives in ``spatialvlm.convert.llada`` with the other converters.

This module keeps ``from spatialvlm.models.llada import convert_llada_checkpoint`` working.
"""

from ..convert.llada import (  # noqa: F401
    convert_llada_checkpoint,
    convert_llada_state_dict,
    llada_parameter_name,
    llada_to_hf_config,
)

__all__ = ["llada_to_hf_config", "llada_parameter_name", "convert_llada_state_dict", "convert_llada_checkpoint"]
