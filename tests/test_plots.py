"""What the figures' legends promise is drawn: the Pareto panel lists only elements that can be seen."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from nas.plots import ParetoPanel, ParetoPlot, _pareto_panel  # noqa: E402
from nas.search.records import TrialRecord  # noqa: E402


def _record(n: int, ms: float, objective: float, feasible: bool) -> TrialRecord:
    return TrialRecord(n, objective, {}, {"iphone12": ms}, feasible)


def _labels(records, front, best) -> list[str]:
    fig, ax = plt.subplots()
    panel = ParetoPanel("iphone12", 1.2, "estimated", front)
    _pareto_panel(ax, ParetoPlot(records, best, [panel], "objective", "title"), panel)
    labels = ax.get_legend_handles_labels()[1]
    plt.close(fig)
    return labels


def test_a_slimming_path_with_one_feasible_step_lists_no_hidden_front_or_dot():
    # a slimming path: every step misses the budget but the last, which is the winner (under its star)
    path = [_record(i, 6.0 - i, 30.0 - 5 * i, False) for i in range(5)] + [_record(5, 1.1, 4.0, True)]
    labels = _labels(path, front=[path[-1]], best=path[-1])
    assert labels == ["misses a budget", "budget 1.2 ms", "best"]


def test_a_search_with_a_front_lists_it_and_the_feasible_points():
    records = [_record(0, 0.8, 2.0, True), _record(1, 1.0, 3.0, True), _record(2, 1.1, 3.5, True),
               _record(3, 1.5, 6.0, False)]
    labels = _labels(records, front=records[:3], best=records[2])
    assert labels == ["misses a budget", "meets every budget", "Pareto front", "budget 1.2 ms", "best"]
