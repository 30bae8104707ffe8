"""The read-out probe of a finished SHIRG-X run: its decoder read-out is the run's own evaluation
(the recorded predictions), its one-step read-out is what `ShirgXImagePath.answer` (the `spatialvlm
ask --image` path: PIL image, chat template, post-prompt) gives with a one-token answer, and bad
input stops with one clear line."""

import json

import pytest

from spatialvlm.experiments.shirgx_budget import quick_config, run_budget_experiment
from spatialvlm.experiments.shirgx_probe import main, probe_markdown, probe_read_out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = quick_config(out_dir=str(out), train_images=2, test_images=2, pretrain_steps=1, align_steps=1,
                          answer_words_as_tokens=True, freeze_projector=True, reader="shared", reader_stages=(1,),
                          reader_stage_steps=2, reader_end_stages=(4,), reader_end_steps=2, epochs=1,
                          rows=("shirgx", "pool"), eval_budgets=(512,), train_budgets=(512,), show_progress=False)
    return out, run_budget_experiment(config)


def test_the_probes_decoder_read_out_is_the_runs_evaluation_and_one_step_is_the_ask_path(finished_run):
    from PIL import Image
    from transformers import AutoTokenizer

    from spatialvlm.eval.image_prompts import ImagePromptConfig
    from spatialvlm.models.shirgx_vlm import ShirgXImagePath, load_shirgx_image_model

    out, result = finished_run
    probe = probe_read_out(out, rows=("shirgx", "pool"), budget=512, show_progress=False)
    assert probe["questions"] == 2 and set(probe["accuracy"]) == {"base", "reader"}
    for row in ("shirgx", "pool"):
        # Read back from disk with the reader's recorded settings: the run's own answers.
        assert probe["predictions"]["reader"][row]["decoder"] == result.predictions[row]["512"]
        assert probe["accuracy"]["reader"][row]["decoder"] == pytest.approx(result.accuracy[row]["512"])
    loaded = load_shirgx_image_model(out / "reader")
    tokenizer = AutoTokenizer.from_pretrained(out / "reader")
    path = ShirgXImagePath(loaded.model, loaded.selector, loaded.image_config)
    records = [json.loads(line) for line in (out / "data" / "test.jsonl").read_text().splitlines()]
    for record, predicted in zip(records, probe["predictions"]["reader"]["shirgx"]["one_step"]):
        with Image.open(out / "data" / record["image"]) as image:
            answer = path.answer(image.convert("RGB"), record["question"], tokenizer, decoding="diffusion", budget=512,
                                 max_new_tokens=1, post_prompt=ImagePromptConfig().post_prompt)
        assert predicted == answer.text
        assert len(tokenizer(predicted, add_special_tokens=False)["input_ids"]) <= 1
    # The first N questions only; the table names every model × row.
    first = probe_read_out(out, rows=("pool",), budget=512, test_images=1, show_progress=False)
    assert first["predictions"]["reader"]["pool"]["decoder"] == result.predictions["pool"]["512"][:1]
    table = probe_markdown(probe)
    assert table.count("| base |") == 2 and table.count("| reader |") == 2 and "512+144" in table


def test_the_probe_refuses_a_folder_without_a_shared_reader_and_unknown_rows(finished_run, tmp_path, capsys):
    out, _ = finished_run
    with pytest.raises(SystemExit):
        main(["--run", str(tmp_path), "--no-progress"])
    assert "reader_training.json not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--run", str(out), "--rows", "shirgx,nonesuch", "--no-progress"])
    assert "unknown rows ['nonesuch']" in capsys.readouterr().err
