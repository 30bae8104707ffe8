"""docs/figures/vlm2_oracle_text.png from vlm2_oracle_text_results.json and vlm2_oracle_token_first_results.json
(run from the repository root: python docs/figures/plot_vlm2_oracle_text.py)."""
import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

text = {row["name"]: row for row in json.load(open("docs/figures/vlm2_oracle_text_results.json"))["rows"]}
first = {row["name"]: row for row in json.load(open("docs/figures/vlm2_oracle_token_first_results.json"))["rows"]}
# The 854 held-out questions' baselines (docs/results.md, second ablation table).
prior = {"object_counting": 36.9, "object_abs_distance": 34.5, "object_size_estimation": 55.2, "room_size_estimation": 62.1,
         "object_rel_distance": 23.0, "object_rel_direction": 43.1, "route_planning": 50.0, "obj_appearance_order": 20.0}
bars = [("category prior (40.6)", prior, "#bbbbbb"),
        (f"blind, text stage ({text['oracle-none-text']['overall_mean']:.1f})", text["oracle-none-text"]["tasks"], "#9ecae1"),
        (f"tied, token-first stage ({first['oracle-tied-token-first']['overall_mean']:.1f})", first["oracle-tied-token-first"]["tasks"], "#fdae6b"),
        (f"tied, text stage ({text['oracle-tied-text']['overall_mean']:.1f})", text["oracle-tied-text"]["tasks"], "#08519c")]
tasks = list(prior)
fig, axis = plt.subplots(figsize=(12, 4.2))
width = 0.8 / len(bars)
for index, (label, scores, colour) in enumerate(bars):
    axis.bar(np.arange(len(tasks)) + (index - 1.5) * width, [scores[t] for t in tasks], width, label=label, color=colour)
axis.set_xticks(range(len(tasks)), [t.replace("object_", "").replace("obj_", "").replace("_", "\n") for t in tasks], fontsize=8)
axis.set_ylabel("official score (3-seed mean)")
axis.set_title("Perfect video tokens, tiny LM: the text stage first (854 held-out VSI questions)")
axis.legend(fontsize=8)
fig.tight_layout()
fig.savefig("docs/figures/vlm2_oracle_text.png", dpi=110)
