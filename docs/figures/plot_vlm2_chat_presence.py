"""docs/figures/vlm2_chat_presence.png from vlm2_chat_presence.json, vlm2_lookup.json and vlm2_lookup_depth.json
(run from the repository root: python docs/figures/plot_vlm2_chat_presence.py)."""
import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

chat = json.load(open("docs/figures/vlm2_chat_presence.json"))["rows"]
two = json.load(open("docs/figures/vlm2_lookup.json"))["rows"]["two-hop"]
four = json.load(open("docs/figures/vlm2_lookup_depth.json"))["rows"]["two-hop"]
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
for x, (name, row) in enumerate(chat.items()):
    values = [r["presence"] for r in row["runs"]]
    left.bar(x, np.mean(values), color="#9ecae1", width=0.6)
    left.scatter([x] * len(values), values, color="#08519c", zorder=3)
left.axhline(90.3, color="#2ca02c", ls="--", label="token curriculum, raw layout (90.3)")
left.axhline(50, color="grey", ls=":", label="chance")
left.set_xticks(range(len(chat)), [n.replace(", ", ",\n").replace(" (", "\n(") for n in chat], fontsize=8)
left.set_ylabel("held-out presence after the stage, %")
left.set_title("Presence stage in the chat layout (3 seeds each)")
left.set_ylim(40, 100)
left.legend(fontsize=8, loc="lower right")
for row, label, colour in ((two, "2 layers (fourth look)", "#d62728"), (four, "4 layers", "#9467bd")):
    mean, std = 100 * np.asarray(row["mean"]), 100 * np.asarray(row["std"])
    right.plot(row["step"], mean, label=label, color=colour)
    right.fill_between(row["step"], mean - std, mean + std, color=colour, alpha=0.2)
right.axhline(50, color="grey", ls=":")
right.set_xlabel("step")
right.set_ylabel("held-out two-hop presence, %")
right.set_title("Raw-layout two-hop lookup: depth does not form it")
right.set_ylim(40, 100)
right.legend(fontsize=8)
fig.tight_layout()
fig.savefig("docs/figures/vlm2_chat_presence.png", dpi=110)
