"""SHIRG-X image path in a tiny LLaVA-OneVision: base path unchanged, K + 144 tokens, static prefix, QA."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlavaOnevisionForConditionalGeneration

from spatialvlm.models.diffusion import DiffusionConfig
from spatialvlm.models.shirgx_vlm import ShirgXImageConfig, ShirgXImagePath, expand_image_placeholders
from spatialvlm.models.tiny import IMAGE_TOKEN_ID, build_tiny_tokenizer, tiny_llava_onevision_config
from spatialvlm.selection import ShirgXConfig, ShirgXSelector

# Tiny stand-in for 672 px / 48×48 / 144 scaffold / K in {512, 768, 1024}: 224 px / 16×16 / 16 / {32, 48, 64}.
GRID, SCAFFOLD, BUDGETS = 16, 16, (32, 48, 64)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).eval()
    tokenizer = build_tiny_tokenizer()
    selector = ShirgXSelector(
        ShirgXConfig(vision_dim=32, grid=(GRID, GRID), scaffold_pool=4, budgets=BUDGETS, default_budget=48)
    ).eval()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (90, 130, 3), dtype=np.uint8))
    return model, tokenizer, selector, image


def _shirgx(model, selector, **kwargs):
    return ShirgXImagePath(model, selector, ShirgXImageConfig(image_size=GRID * 14, **kwargs))


def _prompt_ids(path, tokenizer, question="How many chairs are in the room?"):
    return tokenizer(path.prompt(question, tokenizer), return_tensors="pt").input_ids


def test_without_selector_the_base_model_path_is_unchanged(tiny):
    model, tokenizer, selector, image = tiny
    base = ShirgXImagePath(model)
    prompt = _prompt_ids(base, tokenizer)
    inputs = base.preprocess(image)
    with torch.no_grad():
        ours = base(prompt, inputs["pixel_values"], image_sizes=inputs["image_sizes"]).logits
        # Stock transformers: count the image tokens from the model itself, expand, call forward.
        count = model.model.get_image_features(
            inputs["pixel_values"], inputs["image_sizes"], vision_feature_layer=-1,
            vision_feature_select_strategy="full").pooler_output[0].shape[0]
        ids, _, _ = expand_image_placeholders(prompt, IMAGE_TOKEN_ID, count)
        stock = model(input_ids=ids, pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"]).logits
    torch.testing.assert_close(ours, stock)
    # Autoregressive answers match stock generate too.
    answer = base.answer(image, "How many chairs are in the room?", tokenizer, max_new_tokens=6)
    with torch.no_grad():
        stock_ids = model.generate(input_ids=ids, pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"],
                                   max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=2)[0, ids.shape[1]:]
    stop = (stock_ids == 2).nonzero()
    stock_ids = stock_ids[: stop[0, 0]] if len(stop) else stock_ids
    assert torch.equal(answer.token_ids, stock_ids)
    # Wrapping with a selector and running it leaves the model's weights untouched.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _shirgx(model, selector).answer(image, "How many chairs?", tokenizer, max_new_tokens=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("budget", BUDGETS)
def test_prompt_holds_k_plus_scaffold_projected_tokens(tiny, budget):
    model, tokenizer, selector, image = tiny
    path = _shirgx(model, selector)
    pixels = path.preprocess(image)["pixel_values"]
    assert pixels.shape == (1, 3, GRID * 14, GRID * 14)
    features = path.image_features(pixels, budget=budget)
    assert features.tokens.shape == (1, budget + SCAFFOLD, 64)
    prompt = _prompt_ids(path, tokenizer)
    inputs = path.build_inputs(prompt, features.tokens)
    assert inputs["inputs_embeds"].shape[1] == prompt.shape[1] + budget + SCAFFOLD - 1
    start = (prompt[0] == IMAGE_TOKEN_ID).nonzero()[0, 0]
    torch.testing.assert_close(inputs["inputs_embeds"][0, start:start + budget + SCAFFOLD], features.tokens[0])


def test_projector_gets_its_trained_layer_and_pools_after_it_while_scoring_may_use_another(tiny):
    model, tokenizer, selector, image = tiny
    pixels = _shirgx(model, selector).preprocess(image)["pixel_values"]
    with torch.no_grad():
        hidden = model.model.vision_tower(pixels, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states
        # The scaffold's first token is the mean over the top-left 4×4 block of the *projected*
        # patches of the projector's layer (LaViDa pools after mm_projector; coordinate embedding 0).
        projected = model.model.multi_modal_projector(hidden[-1][0]).view(GRID, GRID, -1)
    block = projected[:4, :4].reshape(16, -1).mean(0)
    for score_layer in (None, 1):
        features = _shirgx(model, selector, score_layer=score_layer).image_features(pixels, budget=32)
        torch.testing.assert_close(features.tokens[0, 0], block, atol=1e-5, rtol=1e-5)
        assert torch.equal(features.selection.tokens, features.tokens)
    scored_other = _shirgx(model, selector, score_layer=1).image_features(pixels, budget=32).selection.patch_scores
    scored_same = _shirgx(model, selector).image_features(pixels, budget=32).selection.patch_scores
    assert not torch.allclose(scored_other, scored_same)


def test_answer_scores_the_question_tokens_only_as_training_tokenises_them(tiny):
    from spatialvlm.models.shirgx_vlm import question_token_ids

    model, tokenizer, selector, image = tiny
    path = _shirgx(model, selector)
    question = "How many chairs are in the room?"
    ids = question_token_ids(tokenizer, question)
    assert ids == tokenizer(question, add_special_tokens=False)["input_ids"]
    assert tokenizer.bos_token_id not in ids  # no special token, no template, no post-prompt
    pixels = path.preprocess(image)["pixel_values"]
    with torch.no_grad():
        expected = path.image_features(
            pixels, question_embeds=model.get_input_embeddings()(torch.tensor([ids])), budget=48).selection.patch_scores
    answer = path.answer(image, question, tokenizer, budget=48, max_new_tokens=1,
                         post_prompt="\nAnswer the question using a single word or phrase.")
    torch.testing.assert_close(answer.selection.patch_scores, expected)


def test_lavida_base_path_pools_after_the_projector_with_newlines(tiny):
    from spatialvlm.selection import lavida_anyres_layout

    model, tokenizer, _, _ = tiny
    path = ShirgXImagePath(model, None, ShirgXImageConfig(base_path="lavida"))
    wide = Image.fromarray(np.random.default_rng(1).integers(0, 255, (100, 200, 3), dtype=np.uint8))
    inputs = path.preprocess(wide)
    views = inputs["lavida_views"]
    # 56 px tower (the pinpoints scaled by 56/384): 200×100 fits (112, 56): 2 tiles across + the global view.
    assert views.grid_shape == (2, 1) and inputs["pixel_values"].shape == (3, 3, 56, 56)
    with torch.no_grad():
        features = path.image_features(inputs["pixel_values"], lavida_views=views)
        hidden = model.model.vision_tower(inputs["pixel_values"], output_hidden_states=True).hidden_states[-1]
        projected = model.model.multi_modal_projector(hidden)  # (3, 16, 64): project, then pool
        grid = projected.view(3, 4, 4, -1).permute(0, 3, 1, 2)
        pooled = torch.nn.functional.interpolate(grid, size=(2, 2), mode="bilinear").permute(0, 2, 3, 1).reshape(3, 4, -1)
        expected = lavida_anyres_layout(pooled, (2, 1), (200, 100), model.model.image_newline)
    # 4 global + 2 rows × (4 + 1 newline) = 14 tokens.
    assert features.tokens.shape == (1, 14, 64)
    torch.testing.assert_close(features.tokens[0], expected)
    torch.testing.assert_close(features.tokens[0, 8], model.model.image_newline)
    answer = path.answer(wide, "How many?", tokenizer, max_new_tokens=2)
    assert answer.num_image_tokens == 14


def test_padded_view_keeps_the_aspect_ratio(tiny):
    model, _, selector, _ = tiny
    wide = Image.new("RGB", (200, 100), (200, 30, 30))
    squashed = _shirgx(model, selector).preprocess(wide)["pixel_values"][0]
    padded = _shirgx(model, selector, aspect="pad").preprocess(wide)["pixel_values"][0]
    side = GRID * 14
    # Padding with the mean colour (128) is ~0 after normalisation: the top and bottom quarter are padding.
    assert padded[:, : side // 4 - 2].abs().max() < 0.01 and padded[:, -(side // 4 - 2):].abs().max() < 0.01
    assert padded[:, side // 2].abs().min() > 0.1 and squashed[:, 2].abs().min() > 0.1


def test_visionzip_and_tome_baselines_run_through_the_path(tiny):
    from spatialvlm.selection import BaselineSelector

    _, tokenizer, selector, image = tiny
    torch.manual_seed(2)
    # ToMe at most halves the tokens per layer: 256 → 48 needs at least 3 layers before the projector's.
    model = LlavaOnevisionForConditionalGeneration(
        tiny_llava_onevision_config(vision_config={"num_hidden_layers": 4})).eval()
    pixels = _shirgx(model, selector).preprocess(image)["pixel_values"]
    for method in ("visionzip", "tome", "divprune", "pool"):
        baseline = BaselineSelector(method, selector.config)
        features = _shirgx(model, baseline).image_features(pixels, budget=32)
        assert features.tokens.shape == (1, 32 + SCAFFOLD, 64), method
    answer = _shirgx(model, BaselineSelector("tome", selector.config)).answer(image, "How many?", tokenizer, budget=32,
                                                                          max_new_tokens=2)
    assert answer.num_image_tokens == 32 + SCAFFOLD


def test_question_drives_the_selection_only_when_text_conditioned(tiny):
    model, tokenizer, selector, image = tiny
    pixels = _shirgx(model, selector).preprocess(image)["pixel_values"]
    embed = model.get_input_embeddings()
    questions = [embed(tokenizer(q, return_tensors="pt").input_ids) for q in ("red chair", "window size")]
    for conditioned in (True, False):
        path = _shirgx(model, selector, text_conditioned=conditioned)
        scores = [path.image_features(pixels, question_embeds=q, budget=32).selection.patch_scores for q in questions]
        assert torch.allclose(scores[0], scores[1]) != conditioned


class _CallLog:
    def __init__(self, module, with_kwargs=True):
        self.calls = []
        module.register_forward_pre_hook(self, with_kwargs=with_kwargs)

    def __call__(self, module, args, kwargs=None):
        self.calls.append((args, kwargs))


def test_token_set_is_static_after_step_zero(tiny):
    torch.manual_seed(1)
    model = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config()).eval()
    _, tokenizer, selector, image = tiny
    vision, chooser = _CallLog(model.model.vision_tower), _CallLog(selector)
    language = _CallLog(model.model.language_model)
    path = _shirgx(model, selector)
    answers = {}
    for use_cache in (True, False):
        for log in (vision, chooser, language):
            log.calls.clear()
        # Prefix-DLM both times: with and without its cache the decoder must give the same tokens.
        config = DiffusionConfig(mask_token_id=tokenizer.mask_token_id, answer_length=8, steps=8,
                                 attention="prefix_dlm", use_prefix_cache=use_cache)
        answer = path.answer(image, "How many chairs?", tokenizer, decoding="diffusion", budget=48,
                             diffusion_config=config)
        assert answer.num_image_tokens == 48 + SCAFFOLD
        # Vision and selection run once, before step 0.
        assert len(vision.calls) == 1 and len(chooser.calls) == 1
        embeds = [kwargs["inputs_embeds"] for _, kwargs in language.calls]
        positions = [kwargs["position_ids"] for _, kwargs in language.calls]
        prefix_length = _prompt_ids(path, tokenizer, "How many chairs?").shape[1] + 48 + SCAFFOLD - 1
        if use_cache:
            # One prefix pass over the K + 144 image tokens, then 8 steps over the 8 answer tokens only.
            assert embeds[0].shape[1] == prefix_length and len(embeds) == 9
            assert all(e.shape[1] == 8 for e in embeds[1:])
            assert all(torch.equal(p, positions[1]) for p in positions[1:])
            assert torch.equal(positions[1][0], torch.arange(prefix_length, prefix_length + 8))
        else:
            # The whole sequence every step: the prefix part is bit-identical at every step.
            assert len(embeds) == 8
            assert all(torch.equal(e[:, :prefix_length], embeds[0][:, :prefix_length]) for e in embeds)
            assert all(torch.equal(p, positions[0]) for p in positions)
        answers[use_cache] = answer.token_ids
    assert torch.equal(answers[True], answers[False])


@pytest.mark.parametrize("decoding", ["autoregressive", "diffusion"])
def test_image_qa_end_to_end(tiny, decoding):
    model, tokenizer, selector, image = tiny
    path = _shirgx(model, selector)
    answer = path.answer(image, "What is the size of the sofa?", tokenizer, decoding=decoding, max_new_tokens=8)
    assert answer.num_image_tokens == answer.selection.budget + SCAFFOLD
    assert answer.selection.budget in BUDGETS  # adaptive head chose
    assert 0 < len(answer.token_ids) <= 8 or answer.text == ""
    assert tokenizer.mask_token_id not in answer.token_ids.tolist()
    decode_stages = {"decode"} if decoding == "autoregressive" else {"prefix", "denoise"}
    assert {"vision", "project", "score", "merge", "select"} | decode_stages <= set(answer.timings)
    if decoding == "autoregressive":
        # Greedy decoding by hand over the same prompt gives the same tokens.
        pixels = path.preprocess(image)["pixel_values"]
        question = model.get_input_embeddings()(
            torch.tensor([tokenizer("What is the size of the sofa?", add_special_tokens=False).input_ids]))
        inputs = path.build_inputs(_prompt_ids(path, tokenizer, "What is the size of the sofa?"),
                                   path.image_features(pixels, question_embeds=question).tokens)
        embeds, tokens = inputs["inputs_embeds"], []
        with torch.no_grad():
            for _ in range(len(answer.token_ids)):
                token = model(inputs_embeds=embeds).logits[0, -1].argmax()
                tokens.append(int(token))
                embeds = torch.cat([embeds, model.get_input_embeddings()(token)[None, None]], 1)
        assert tokens == answer.token_ids.tolist()


def test_errors(tiny):
    model, _, selector, _ = tiny
    with pytest.raises(ValueError, match="grid"):
        ShirgXImagePath(model, selector, ShirgXImageConfig(image_size=672))
    with pytest.raises(ValueError, match="exactly one image placeholder"):
        expand_image_placeholders(torch.tensor([[1, 2, 7]]), IMAGE_TOKEN_ID, 4)
    ids, mask, labels = expand_image_placeholders(
        torch.tensor([[1, IMAGE_TOKEN_ID, 7]]), IMAGE_TOKEN_ID, 3, torch.ones(1, 3), torch.tensor([[1, 5, 7]]))
    assert ids.tolist() == [[1, 3, 3, 3, 7]] and labels.tolist() == [[1, -100, -100, -100, 7]]
    assert mask.shape == (1, 5)
