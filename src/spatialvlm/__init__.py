"""spatialvlm: spatial intelligence for vision-language models.

Subpackages (each algorithm folder depends only on torch and numpy):

- ``spatialvlm.memory``      VLM² dual memory (working + episodic, Algorithm 1)
- ``spatialvlm.geometry``    3D inputs: point maps, cameras, geometry sources
- ``spatialvlm.fusion``      VLM² coordinate injection, viewpoint alignment, cross-attention fusion
- ``spatialvlm.selection``   SHIRG-X token selection and the baseline selectors
- ``spatialvlm.models``      Hugging Face integration (the only place that imports model classes)
- ``spatialvlm.data``        video/image IO, preprocessing, dataset readers, synthetic scenes
- ``spatialvlm.eval``        metrics and benchmark runners
- ``spatialvlm.train``       argument dataclasses, trainer, LoRA and tunable parts
- ``spatialvlm.diagnostics`` statistics, pictures and per-stage timings
"""

__version__ = "0.1.0"

__all__ = ["patch"]


def __getattr__(name: str):
    # `patch` lives with the transformers integration; importing it lazily keeps `import spatialvlm`
    # free of transformers and torch.
    if name == "patch":
        from .models.vlm2 import patch

        return patch
    raise AttributeError(f"module 'spatialvlm' has no attribute {name!r}")
