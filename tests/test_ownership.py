"""Which existing files nas may replace: its own (tables, cost models, plots, checkpoints, CSVs; recognised by
their content, whatever their name), never a user's JSON, PNG or torch checkpoint at the same path."""
from __future__ import annotations

import json

import torch

from nas.fileio import written_by_nas
from nas.latency.costmodel.model import load_cost_model
from nas.latency.table import LatencyTable
from nas.plots import plot_predicted_vs_measured
from supernet.checkpoint import save_supernet
from supernet.supernet import Supernet


def test_files_nas_wrote_are_recognised_and_look_alikes_are_not(tmp_path, tiny_iphone12):
    ours = {
        "table.json": lambda p: LatencyTable.load(tiny_iphone12).save(p),
        "model.json": lambda p: load_cost_model("iphone12").save(p),
        "plot.png": lambda p: plot_predicted_vs_measured([1.0, 2.0], [1.1, 1.9], p, "t"),
        "ckpt.pt": lambda p: save_supernet(Supernet("tiny"), p),
        "metrics.csv": lambda p: p.write_text("epoch,step,loss\n1,10,2.3\n"),
        "empty.json": lambda p: p.write_text(""),
    }
    for name, write in ours.items():
        write(tmp_path / name)
        assert written_by_nas(tmp_path / name), name

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig(tmp_path / "theirs.png")          # a matplotlib figure, but not one of nas's
    plt.close(fig)
    (tmp_path / "theirs.json").write_text(json.dumps({"header": {"kind": "measured"}, "entries": {}}))
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "cut.json").write_text((tmp_path / "table.json").read_text()[:100])
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "theirs.pt")
    (tmp_path / "notes.csv").write_text("name,value\na,1\n")
    for name in ("theirs.png", "theirs.json", "list.json", "cut.json", "theirs.pt", "notes.csv"):
        assert not written_by_nas(tmp_path / name), name
