"""Convert a LaViDa release (``model_type: llava_llada``) into a LLaVA-OneVision directory the SHIRG-X
image path loads offline (``load_shirgx_base`` / ``LlavaOnevisionForConditionalGeneration``).

    spatialvlm convert lavida lavida-llada-hd/ lavida-hf/ [--vision-config siglip.json] [--dtype bfloat16]

LaViDa (jacklishufan/LaViDa) is LLaVA-NeXT's code around LLaDA-8B. Its checkpoint holds:

=================================================================  ===========================================
LaViDa tensor                                                      LLaVA-OneVision tensor
=================================================================  ===========================================
``model.transformer.wte.weight``                                   ``model.language_model.embed_tokens.weight``
``model.transformer.blocks.N.{attn_norm, q_proj, k_proj, v_proj,   ``model.language_model.layers.N.*`` (the
attn_out, ff_norm, ff_proj, up_proj, ff_out}.weight``              LLaDA → LLaMA table of ``convert.llada``)
``model.transformer.ln_f.weight``                                  ``model.language_model.norm.weight``
``model.transformer.ff_out.weight``                                ``lm_head.weight``
``model.vision_tower.vision_tower.vision_model.*``                 the SigLIP tower (same inner names)
``model.mm_projector.0.*`` / ``model.mm_projector.2.*``            ``model.multi_modal_projector.linear_1/2.*``
``model.image_newline``                                            ``model.image_newline``
=================================================================  ===========================================

Every source tensor is carried over or the conversion fails, naming it; every parameter of the target
model must be filled or it fails too.

What else is written, from LaViDa's code:

- the mask token 126336 (``mask_token_id`` in the LLaDA config, else LaViDa's hard-coded id) on the
  text config and as the tokenizer's ``mask_token``;
- LaViDa's ``conv_llava_llada`` prompt as the tokenizer's chat template: its system prompt, LLaDA's
  LLaMA-3-style headers (``<|start_header_id|>role<|end_header_id|>\\n\\n … <|eot_id|>``) and the image
  as ``<image>\\n`` before the question (LaViDa's ``DEFAULT_IMAGE_TOKEN + "\\n" + question``);
- the stop id: ``<|eot_id|>`` (126348, ``conv_llava_llada.stop_token_ids``) as the tokenizer's
  ``eos_token`` and first of ``generation_config.eos_token_id`` (then ``<|endoftext|>``, the padding
  LaViDa trains the answer to end with);
- a reserved ``<image>`` id: LaViDa adds ``<image>`` to the tokenizer (``tokenizer.add_tokens``), which
  gives it the first id past the tokenizer's vocabulary, a row of the embedding table no text uses
  (126349 of 126464 for LLaDA); LLaVA-OneVision needs a real id there (``image_token_id``);
- ``diffusion_training_attention`` (``"bidirectional"``: LaViDa trains with ``prefix_lm=False``) on the
  text config, which the diffusion decoder and the ``shirgx`` training task read.

**Layer-index convention.** LaViDa's SigLIP tower (``siglip_encoder.py``) deletes so400m's last encoder
layer and takes ``hidden_states[-1]`` of the 26 that remain (``mm_vision_select_layer`` is not read
there). The converted ``vision_feature_layer`` is the absolute ``hidden_states`` index of that layer's
output, counted from the embeddings (0): ``original_layers − 1`` = **26** for so400m. Absolute indices
mean the same layer whether the tower holds 26 layers (LaViDa's release) or all 27 (a tower whose
last layer was kept): index 26 is the last layer of the first and the penultimate of the second. The
checkpoint's layers are all carried over; the tower is built with as many layers as it holds.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .common import CheckpointReader, ConversionReport, check_against_model, format_count, parse_dtype
from .llada import llada_parameter_name, llada_to_hf_config

__all__ = [
    "LAVIDA_MASK_TOKEN_ID",
    "LAVIDA_STOP_TOKEN_ID",
    "LAVIDA_SYSTEM_PROMPT",
    "LAVIDA_CHAT_TEMPLATE",
    "LavidaLayout",
    "lavida_parameter_name",
    "lavida_vision_config",
    "lavida_to_hf_config",
    "convert_lavida",
]

LAVIDA_MASK_TOKEN_ID = 126336
LAVIDA_STOP_TOKEN_ID = 126348  # <|eot_id|>, conv_llava_llada.stop_token_ids
LLADA_VOCAB_SIZE = 126464
LAVIDA_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)
# conv_llava_llada: LLaDA's LLaMA-3 chat format with LaViDa's system prompt; the image goes first in
# the user turn as "<image>\n" (LaViDa prepends DEFAULT_IMAGE_TOKEN + "\n" to the question).
LAVIDA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\n\n" + LAVIDA_SYSTEM_PROMPT + "<|eot_id|>' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] | trim }}{% endfor %}"
    "{% endif %}"
    "{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
_PROJECTOR = re.compile(r"^model\.mm_projector\.(0|2)\.(weight|bias)$")
_VISION_LAYER = re.compile(r"encoder\.layers\.(\d+)\.")
# so400m (google/siglip-so400m-patch14-384), the tower every LaViDa release uses, by its widths.
_SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": 27,
           "patch_size": 14, "image_size": 384, "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass
class LavidaLayout:
    """Where LaViDa tensors go: parameter-name prefixes of the LLaVA-OneVision model as built at run time.

    Attributes:
        language_prefix: prefix of the language model's parameters (``model.language_model.``).
        vision_prefix: prefix of the SigLIP tower's parameters (``model.vision_tower.``, plus
            ``vision_model.`` in transformers versions that keep it).
        projector_prefix: prefix of the projector's (``model.multi_modal_projector.``).
    """

    language_prefix: str = "model.language_model."
    vision_prefix: str = "model.vision_tower.vision_model."
    projector_prefix: str = "model.multi_modal_projector."

    @classmethod
    def of(cls, model: torch.nn.Module) -> LavidaLayout:
        """The prefixes of a LLaVA-OneVision model as this transformers version names its parameters."""
        names = list(model.state_dict())

        def prefix_of(suffix: str, within: str) -> str:
            for name in names:
                if name.endswith(suffix) and within in name:
                    return name[: -len(suffix)]
            raise ValueError(f"the LLaVA-OneVision model has no parameter ending in {suffix!r}")

        return cls(
            language_prefix=prefix_of("embed_tokens.weight", "language_model"),
            vision_prefix=prefix_of("embeddings.patch_embedding.weight", "vision_tower"),
            projector_prefix=prefix_of("linear_1.weight", "multi_modal_projector"),
        )


def lavida_parameter_name(name: str, layout: LavidaLayout | None = None) -> str:
    """One LaViDa tensor name -> its LLaVA-OneVision name (see the module table)."""
    layout = layout or LavidaLayout()
    if name.startswith("model.transformer."):
        renamed = llada_parameter_name(name)
        return renamed if renamed == "lm_head.weight" else layout.language_prefix + renamed[len("model."):]
    if name.startswith(_VISION_PREFIX):
        return layout.vision_prefix + name[len(_VISION_PREFIX):]
    match = _PROJECTOR.match(name)
    if match:
        return f"{layout.projector_prefix}linear_{1 if match.group(1) == '0' else 2}.{match.group(2)}"
    if name == "model.image_newline":
        return "model.image_newline"
    raise ValueError(f"unknown LaViDa tensor {name!r} (not LLaDA, SigLIP, mm_projector.0/2 or image_newline)")


def _read_vision_config_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--vision-config {path} does not exist")
    values = json.loads(path.read_text())
    # A full SiglipConfig (text + vision) keeps the tower's fields under "vision_config".
    values = values.get("vision_config", values)
    if "hidden_size" not in values:
        raise ValueError(f"{path} is not a SiglipVisionConfig (no hidden_size)")
    return values


def lavida_vision_config(shapes: dict[str, tuple[int, ...]], vision_config_file: str | os.PathLike | None = None):
    """The SigLIP tower's config, from the checkpoint's tensor shapes and, optionally, a config file.

    Widths, patch size, the patch grid and the layer count come from the tensors; the number of heads
    (which no shape shows), ``image_size`` (SigLIP floors it by the patch: so400m's 384 px give 27 × 27),
    ``layer_norm_eps`` and ``hidden_act`` from ``vision_config_file``, or
    so400m's when the widths are so400m's. Returns ``(SiglipVisionConfig, original_layers)``, the
    second being the tower's depth before LaViDa deleted its last layer.
    """
    from transformers import SiglipVisionConfig

    vision = {name[len(_VISION_PREFIX):]: shape for name, shape in shapes.items() if name.startswith(_VISION_PREFIX)}
    for needed in ("embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
                   "encoder.layers.0.mlp.fc1.weight"):
        if needed not in vision:
            raise ValueError(f"the checkpoint has no {_VISION_PREFIX}{needed}: not a LaViDa SigLIP tower")
    width, channels, patch, _ = vision["embeddings.patch_embedding.weight"]
    positions = vision["embeddings.position_embedding.weight"][0]
    side = round(positions**0.5)
    if side * side != positions:
        raise ValueError(f"the SigLIP position embedding has {positions} rows, not a square grid")
    layers = {int(m.group(1)) for name in vision if (m := _VISION_LAYER.search(name))}
    if layers != set(range(len(layers))):
        raise ValueError(f"the SigLIP tower's layers are not 0..N-1: {sorted(layers)}")
    measured = {
        "hidden_size": width, "num_channels": channels, "patch_size": patch, "image_size": side * patch,
        "intermediate_size": vision["encoder.layers.0.mlp.fc1.weight"][0], "num_hidden_layers": len(layers),
    }
    if vision_config_file is not None:
        given = _read_vision_config_file(vision_config_file)
        where = f"--vision-config {vision_config_file}"
    elif (width, measured["intermediate_size"]) == (_SO400M["hidden_size"], _SO400M["intermediate_size"]):
        given, where = dict(_SO400M), "so400m's config"
    else:
        raise ValueError(
            f"the SigLIP tower ({width} wide, {measured['intermediate_size']} MLP) is not so400m: pass "
            "--vision-config with its SiglipVisionConfig JSON (num_attention_heads cannot be read from the weights)"
        )
    for key in ("hidden_size", "intermediate_size", "patch_size", "num_channels"):
        if key in given and given[key] != measured[key]:
            raise ValueError(f"{where} has {key}={given[key]} but the checkpoint's tower has {measured[key]}")
    # SigLIP floors image_size / patch_size (so400m: 384 px / 14 → 27 × 27 = 729 positions).
    if "image_size" in given:
        if given["image_size"] // patch != side:
            raise ValueError(f"{where} has image_size={given['image_size']} ({given['image_size'] // patch} patches a "
                             f"side) but the checkpoint's position embedding is {side}×{side}")
        measured["image_size"] = given["image_size"]
    original_layers = given.get("num_hidden_layers", measured["num_hidden_layers"] + 1)
    if measured["num_hidden_layers"] not in (original_layers - 1, original_layers):
        raise ValueError(
            f"the checkpoint's tower has {measured['num_hidden_layers']} layers; {where} says {original_layers} "
            f"(LaViDa keeps {original_layers - 1} of them, or all {original_layers})"
        )
    known = set(SiglipVisionConfig().to_dict())
    extra = {k: v for k, v in given.items() if k in known and k not in measured and k not in ("model_type", "architectures")}
    has_head = any(name.startswith("head.") for name in vision)
    config = SiglipVisionConfig(**{**extra, **measured, "vision_use_head": has_head})
    return config, original_layers


def lavida_to_hf_config(
    lavida_config: dict[str, Any],
    vision_config,
    original_vision_layers: int,
    image_token_id: int,
    training_attention: str = "bidirectional",
):
    """LaViDa ``config.json`` contents -> ``LlavaOnevisionConfig`` (LLaMA text config, SigLIP tower)."""
    from transformers import LlavaOnevisionConfig

    if lavida_config.get("model_type") not in (None, "llava_llada"):
        raise ValueError(f"config.json has model_type {lavida_config.get('model_type')!r}; a LaViDa-LLaDA "
                         "release has 'llava_llada'")
    projector = lavida_config.get("mm_projector_type", "mlp2x_gelu")
    if projector != "mlp2x_gelu":
        raise ValueError(f"config.json mm_projector_type={projector!r}; only LaViDa's 'mlp2x_gelu' maps onto "
                         "LLaVA-OneVision's projector")
    if training_attention not in ("bidirectional", "prefix_dlm"):
        raise ValueError(f"training_attention must be 'bidirectional' or 'prefix_dlm', got {training_attention!r}")
    text = llada_to_hf_config(lavida_config)
    text.mask_token_id = lavida_config.get("mask_token_id") or LAVIDA_MASK_TOKEN_ID
    text.diffusion_training_attention = training_attention
    if not 0 <= image_token_id < text.vocab_size:
        raise ValueError(f"image token id {image_token_id} is outside the embedding table ({text.vocab_size} rows)")
    pinpoints = lavida_config.get("image_grid_pinpoints")
    if isinstance(pinpoints, str):  # LLaVA-NeXT accepts the training flag's string form
        pinpoints = json.loads(pinpoints.replace("(", "[").replace(")", "]"))
    extra = {"image_grid_pinpoints": [list(p) for p in pinpoints]} if pinpoints else {}
    config = LlavaOnevisionConfig(
        text_config=text.to_dict(),
        vision_config=vision_config.to_dict(),
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        vision_feature_select_strategy="full",  # SigLIP has no CLS token: LaViDa keeps all patches
        vision_feature_layer=original_vision_layers - 1,
        tie_word_embeddings=text.tie_word_embeddings,
        **extra,
    )
    config.text_config.mask_token_id = text.mask_token_id
    config.text_config.diffusion_training_attention = training_attention
    return config


def _load_tokenizer(source: Path, tokenizer_dir: str | os.PathLike | None):
    from transformers import AutoTokenizer

    directory = Path(tokenizer_dir) if tokenizer_dir is not None else source
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"no tokenizer files ({', '.join(_TOKENIZER_FILES)}) in {directory}; pass --tokenizer with "
            "LLaDA-8B-Instruct's tokenizer directory"
        )
    return AutoTokenizer.from_pretrained(directory)


def _prepare_tokenizer(tokenizer, vocab_size: int, mask_token_id: int) -> dict[str, int]:
    """Add LaViDa's ``<image>``, set mask / eos / pad / chat template; return the ids it settled."""
    ids = {}
    for token in ("<|eot_id|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token}: not LLaDA's tokenizer (pass --tokenizer)")
        ids[token] = token_id
    if vocab_size == LLADA_VOCAB_SIZE and ids["<|eot_id|>"] != LAVIDA_STOP_TOKEN_ID:
        raise ValueError(f"<|eot_id|> is id {ids['<|eot_id|>']}, not LaViDa's stop id {LAVIDA_STOP_TOKEN_ID}")
    mask_token = tokenizer.convert_ids_to_tokens(mask_token_id)
    if mask_token is None:
        raise ValueError(f"the tokenizer has no token with the mask id {mask_token_id}")
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_tokens(["<image>"], special_tokens=True)  # as LaViDa's preprocess_llada does
    ids["<image>"] = tokenizer.convert_tokens_to_ids("<image>")
    if ids["<image>"] >= vocab_size:
        raise ValueError(f"<image> got id {ids['<image>']}, past the {vocab_size}-row embedding table: no reserved row left")
    tokenizer.mask_token = mask_token
    tokenizer.eos_token = "<|eot_id|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = LAVIDA_CHAT_TEMPLATE
    return ids


def convert_lavida(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    vision_config: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    dtype: str | torch.dtype | None = None,
    training_attention: str = "bidirectional",
    progress: bool = True,
) -> ConversionReport:
    """Convert a LaViDa-LLaDA release directory into a LLaVA-OneVision directory.

    Args:
        source: the release (``config.json``, safetensors or ``.bin`` weights, tokenizer files).
        destination: output directory (``save_pretrained`` layout + tokenizer + generation config).
        vision_config: SiglipVisionConfig JSON of the tower; needed unless the tower is so400m.
        tokenizer: tokenizer directory when ``source`` has none (LLaDA-8B-Instruct's).
        dtype: store weights in this dtype (default: the source's).
        training_attention: attention the checkpoint was trained with (LaViDa: ``"bidirectional"``;
            ``"prefix_dlm"`` for a Prefix-DLM fine-tune).
        progress: show a progress bar over the shards.

    Returns:
        the ``ConversionReport`` (every tensor mapped; raises ``ValueError`` otherwise).
    """
    from transformers import GenerationConfig, LlavaOnevisionForConditionalGeneration

    source, destination = Path(source), Path(destination)
    config_path = source / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {source}")
    lavida_config = json.loads(config_path.read_text())
    dtype = parse_dtype(dtype)
    reader = CheckpointReader(source)
    shapes = reader.shapes()
    siglip, original_layers = lavida_vision_config(shapes, vision_config)

    text_vocab = lavida_config.get("embedding_size") or lavida_config["vocab_size"]
    mask_token_id = lavida_config.get("mask_token_id") or LAVIDA_MASK_TOKEN_ID
    tok = _load_tokenizer(source, tokenizer)
    token_ids = _prepare_tokenizer(tok, text_vocab, mask_token_id)
    config = lavida_to_hf_config(lavida_config, siglip, original_layers, token_ids["<image>"], training_attention)

    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(config)
    layout = LavidaLayout.of(model)
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    mapped, unknown = {}, []
    for name in shapes:
        try:
            mapped[name] = lavida_parameter_name(name, layout)
        except ValueError:
            unknown.append(name)
    if unknown:
        raise ValueError(f"{len(unknown)} LaViDa tensors have no place in the converted model (nothing is dropped "
                         f"silently): {', '.join(sorted(unknown)[:8])}")
    tied = config.text_config.tie_word_embeddings
    check_against_model(
        {ours: shapes[name] for name, ours in mapped.items()}, expected,
        allowed_missing=lambda name: tied and name == "lm_head.weight",
    )

    state: dict[str, torch.Tensor] = {}
    for shard in reader.iter_shards(progress=progress):
        for name, tensor in shard.items():
            state[mapped[name]] = tensor if dtype is None else tensor.to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [name for name in missing if not (tied and name == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"LaViDa weights do not fill the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if tied:
        model.tie_weights()
    model.generation_config = GenerationConfig(
        eos_token_id=[token_ids["<|eot_id|>"], token_ids["<|endoftext|>"]],
        pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(destination)
    tok.save_pretrained(destination)

    report = ConversionReport(
        source_format="LaViDa (llava_llada)", source=str(source), destination=str(destination), mapped=mapped,
        parameters=sum(int(torch.Size(shape).numel()) for shape in shapes.values()),
    )
    report.notes += [
        f"SigLIP tower: {siglip.num_hidden_layers} layers carried (of {original_layers}); projector input = "
        f"hidden_states[{config.vision_feature_layer}] (absolute index: the same layer in a "
        f"{original_layers - 1}- or {original_layers}-layer tower)",
        f"mask token {mask_token_id}, <image> reserved as id {token_ids['<image>']}, stop id "
        f"{token_ids['<|eot_id|>']} (<|eot_id|>), conv_llava_llada chat template",
        f"diffusion_training_attention = {training_attention}; weights "
        f"{'as stored' if dtype is None else str(dtype).replace('torch.', '')}, {format_count(report.parameters)} parameters",
    ]
    return report
