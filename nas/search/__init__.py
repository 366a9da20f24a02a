"""Search: find the best arch of a space under latency budgets.

- ``objectives``: what is maximised (a pluggable ``Objective``: today the capacity proxy, or a trained supernet's
  inherited accuracy), and ``capacity``'s per-op parameter/MAC counts.
- ``budgets``: one or several (device, ms) constraints, priced by the devices' latency tables.
- ``encoding``: an arch as Optuna parameters.
- ``evaluate``: objective evaluation here or on Ray workers (retried when a worker dies).
- ``optuna_search``: TPE / NSGA-II / random studies with storage and resume; ``slim``: EfficientFormer's greedy
  latency-driven slimming.
- ``run``: the run directory (best_arch.json, trials.csv, Pareto front, exported winner, run.json).
"""
