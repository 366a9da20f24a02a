"""What a supernet training leaves besides its checkpoint: the per-epoch metrics CSV and the training-curves plot
next to the checkpoint, TensorBoard when asked, and the summary ``nas supernet train`` prints (in one process or
on Ray Train workers alike)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.plots import plot_history
from supernet.config import TrainConfig


def history_plot_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".training.png")


def metrics_csv_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".metrics.csv")


METRIC_COLUMNS = ("epoch", "step", "loss", "lr", "images_per_s")


def write_metrics_csv(history: list[dict[str, Any]], path: Path) -> None:
    """One row per epoch: loss, learning rate, images/s and the top-1 of each evaluated subnet (atomic rewrite)."""
    from nas.fileio import atomic_output

    names = list(history[-1]["top1"]) if history else []
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*METRIC_COLUMNS, *(f"top1_{n}" for n in names)])
    for h in history:
        writer.writerow([h.get(c, "") for c in METRIC_COLUMNS] + [h["top1"].get(n, "") for n in names])
    with atomic_output(path) as staging:
        staging.write_text(buf.getvalue())


class TrainingLog:
    """Where a run's metrics go besides the checkpoint: the CSV and plot next to ``out``, TensorBoard when asked
    (``log_dir``; torch's writer when the ``tensorboard`` package is installed, else tensorboardX's)."""

    def __init__(self, out: Path, log_dir: str | None = None):
        self.out, self.writer = out, None
        if log_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                try:
                    from tensorboardX import SummaryWriter  # type: ignore[no-redef]
                except ImportError:
                    raise UsageError("--log-dir needs TensorBoard: pip install tensorboard") from None
            self.writer = SummaryWriter(log_dir)

    def step(self, step: int, loss: float, lr: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, history: list[dict[str, Any]], title: str) -> None:
        entry = history[-1]
        write_metrics_csv(history, metrics_csv_path(self.out))
        plot_history(history, history_plot_path(self.out), title)
        if self.writer is not None:
            for key in ("loss", "lr", "images_per_s"):
                self.writer.add_scalar(f"epoch/{key}", entry[key], entry["epoch"])
            for name, top1 in entry["top1"].items():
                self.writer.add_scalar(f"top1/{name}", top1, entry["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def result_summary(history: list[dict[str, Any]], steps: int, cfg: TrainConfig, out: Path, space: str,
                   resumed_from: int | None, steps_this_run: int, wall_s: float, workers: int) -> dict[str, Any]:
    return {"out": str(out), "plot": str(history_plot_path(out)), "metrics": str(metrics_csv_path(out)),
            "space": space, "data": cfg.data, "epochs": cfg.epochs, "steps": steps, "resumed_from_step": resumed_from,
            "steps_this_run": steps_this_run, "wall_s": wall_s, "workers": workers, "history": history,
            "top1": history[-1]["top1"] if history else {}}
