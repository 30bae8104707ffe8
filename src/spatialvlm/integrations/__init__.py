"""Where spatialvlm meets outside harnesses: a VLM² checkpoint as a benchmark predictor
(:class:`VLM2VideoPredictor`, used by ``spatialvlm eval --model``) and the lmms-eval model plugin
(:mod:`spatialvlm.integrations.lmms_eval`, needs the ``[lmms]`` extra; imported only by lmms-eval)."""

from spatialvlm.integrations.vlm2_predictor import VLM2VideoPredictor

__all__ = ["VLM2VideoPredictor"]
