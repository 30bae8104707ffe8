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
                          rows=("shirgx", "pool", "divprune"), eval_budgets=(512,), train_budgets=(512,), show_progress=False)
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


def test_selection_stats_on_a_hand_made_selection():
    import torch

    from spatialvlm.experiments.shirgx_probe import selection_stats

    # A 4×4 grid: one scaffold token over patches 0, 1, 4, 5; singletons 5, 6, 15; one merged pair 9 + 10.
    source = torch.tensor([[0, 1, 4, 5], [5, -1, -1, -1], [6, -1, -1, -1], [9, 10, -1, -1], [15, -1, -1, -1]])
    scaffold = torch.tensor([True, False, False, False, False])
    stats = selection_stats(source, scaffold, target=5, content=[3, 5, 6, 15], grid=4)
    # Patch 5's neighbours are 0, 1, 2, 4, 6, 8, 9, 10: only 6 is kept alone (9 and 10 are merged).
    assert stats == {"target_kept": 1, "target_group": 1, "neighbours_kept": 1, "content_kept": 2,
                     "fine_tokens": 3, "merged_tokens": 1}
    merged = selection_stats(source, scaffold, target=10, content=[10], grid=4)
    assert merged["target_kept"] == 0 and merged["target_group"] == 2 and merged["neighbours_kept"] == 3  # 5, 6, 15
    # Patch 0 is only in the scaffold: not held by any detail token; its corner has 3 neighbours (1, 4, 5).
    corner = selection_stats(source, scaffold, target=0, content=[0], grid=4)
    assert corner["target_kept"] == 0 and corner["target_group"] == 0 and corner["neighbours_kept"] == 1


def test_wrong_answers_are_traced_to_the_cell_they_came_from():
    from spatialvlm.experiments.shirgx_probe import wrong_answer_kind

    # 4×4 grid, answer patch 5 ("A"); 6 ("B") is kept, 9 ("C") is a neighbour not kept, 15 ("D") far away.
    cells = {5: "A", 6: "B", 9: "C", 15: "D"}
    assert wrong_answer_kind("B", {5, 6}, 5, cells, grid=4) == "kept_other"
    assert wrong_answer_kind("C", {5, 6}, 5, cells, grid=4) == "neighbour"
    assert wrong_answer_kind("D", {5, 6}, 5, cells, grid=4) == "elsewhere"
    assert wrong_answer_kind("D", {5, 15}, 5, cells, grid=4) == "kept_other"
    assert wrong_answer_kind("Q", {5, 6}, 5, cells, grid=4) == "absent"
    # The answer's own value at the target is not "another cell"; 3 is not adjacent to 5 on a 4×4 grid.
    assert wrong_answer_kind("A", {5}, 5, cells, grid=4) == "absent"
    assert wrong_answer_kind("E", {5}, 4, {3: "E", 4: "A"}, grid=4) == "elsewhere"


def test_content_cells_name_what_each_detail_family_draws():
    from spatialvlm.experiments.shirgx_probe import content_cells

    assert content_cells({"family": "dense_glyphs", "glyphs": [[2, 3, "K"], [2, 4, "P"]]}) == {2 * 48 + 3: "K", 2 * 48 + 4: "P"}
    assert content_cells({"family": "dense_marks", "marks": [[0, 1, "red"]]}, grid=4) == {1: "red"}
    bars = {"family": "dense_bars", "label_row": 10, "bars": [{"col": 5, "label": "A"}, {"col": 6, "label": "Z"}]}
    assert content_cells(bars) == {485: "A", 486: "Z"}
    with pytest.raises(ValueError, match="detail families only"):
        content_cells({"family": "layout"})


def test_the_selection_probe_reads_the_runs_answers_and_agrees_with_its_coverage(finished_run, capsys):
    from spatialvlm.experiments.shirgx_probe import probe_selection, selection_markdown

    out, result = finished_run
    probe = probe_selection(out, rows=("shirgx", "pool"), budget=512, show_progress=False)
    assert len(probe["questions"]) == 2
    for row in ("shirgx", "pool"):
        stats = [q[row] for q in probe["questions"]]
        assert [s["prediction"] for s in stats] == result.predictions[row]["512"]
        assert [s["correct"] for s in stats] == [score > 0 for score in result.scores[row]["512"]]
        assert all((s["wrong_kind"] is None) == s["correct"] for s in stats)
        # SHIRG-X: K detail tokens beside its scaffold; a baseline spends all K + 144 on its own tokens.
        assert all(s["fine_tokens"] + s["merged_tokens"] == (512 if row == "shirgx" else 656) for s in stats)
    # The fixture's two questions (a colour mark, a glyph) have one-patch answer regions, so the run's own
    # full-resolution coverage (full_resolution_coverage, its mean over the test images) is the target-kept share.
    assert all(q["question_type"] in ("dense_color", "dense_glyph") for q in probe["questions"])
    for row in ("shirgx", "pool"):
        kept = sum(q[row]["target_kept"] for q in probe["questions"]) / 2
        assert 100 * kept == pytest.approx(result.spread[row]["512"]["region_full_res"])
    assert selection_markdown(probe).count("| shirgx |") == len(probe["summary"]["shirgx"])
    with pytest.raises(ValueError, match="no answers at K = 768"):
        probe_selection(out, rows=("shirgx",), budget=768, show_progress=False)
    assert main(["--run", str(out), "--selection", "--rows", "shirgx", "--no-progress"]) == 0
    assert "Selection probe at 512+144" in capsys.readouterr().out and (out / "selection_probe.json").is_file()


def test_the_scaffold_swap_reproduces_the_runs_rows_and_moves_only_the_scaffold(finished_run, capsys):
    import torch

    from spatialvlm.experiments.shirgx_probe import probe_scaffold, scaffold_markdown

    out, result = finished_run
    probe = probe_scaffold(out, budget=512, show_progress=False)
    # The run's two rows, read back through the same reader and decoder: its own answers.
    assert probe["predictions"]["shirgx"] == result.predictions["shirgx"]["512"]
    assert probe["predictions"]["divprune"] == result.predictions["divprune"]["512"]
    assert probe["accuracy"]["divprune"]["all"] == pytest.approx(result.accuracy["divprune"]["512"])
    assert set(probe["accuracy"]) == {"shirgx", "shirgx-detail-only", "divprune", "divprune+scaffold"}
    table = scaffold_markdown(probe)
    assert "656 tokens each" in table and table.count("\n| ") == 5
    assert main(["--run", str(out), "--scaffold", "--no-progress"]) == 0
    assert "Scaffold swap" in capsys.readouterr().out and (out / "scaffold_probe.json").is_file()
    with pytest.raises(SystemExit):
        main(["--run", str(out), "--scaffold", "--selection", "--no-progress"])
    assert "pick one" in capsys.readouterr().err


def test_detail_only_is_the_selection_at_k_plus_144_without_its_scaffold():
    import torch

    from spatialvlm.experiments.shirgx_probe import _detail_only
    from spatialvlm.selection import ShirgXConfig, ShirgXSelector

    torch.manual_seed(0)
    config = ShirgXConfig(vision_dim=8, grid=(8, 8), scaffold_pool=2, budgets=(8, 16), default_budget=8)
    selector = ShirgXSelector(config).eval()
    tokens, text = torch.randn(1, 64, 8), torch.randn(1, 3, 8)
    with torch.no_grad():
        out = _detail_only(selector)(tokens, text, 8)
        reference = selector(tokens, text, 8 + 16)
    # 8 + 16 tokens, none of them the scaffold; they are the K + 144-equivalent selection's detail tokens.
    assert out.tokens.shape == (1, 24, 8) and not out.is_scaffold.any()
    torch.testing.assert_close(out.tokens, reference.tokens[:, 16:])
    sources = out.source_index[out.source_index >= 0]
    assert len(sources) == len(set(sources.tolist()))  # no patch in two tokens
