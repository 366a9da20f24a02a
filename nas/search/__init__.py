"""Search: find the best arch of a space under latency budgets.

- ``strategy``: the ``Strategy`` seam and the registry of strategies and samplers (torch- and Optuna-free).
- ``optuna_search`` (TPE / NSGA-II / random studies with storage and resume) and ``slim`` (EfficientFormer's
  greedy latency-driven slimming): the two strategies.
- ``objectives``: what is maximised (an ``Objective``: the capacity proxy, or a trained supernet's inherited
  accuracy), with ``capacity``'s per-op parameter/MAC counts.
- ``budgets``: one or several (device, ms) constraints, priced by the devices' latency tables.
- ``encoding``: an arch as Optuna parameters.
- ``workers``: the ``Evaluator`` seam: objective evaluation here or on Ray workers (retried when a worker dies).
- ``records``: ``TrialRecord``, the best record, the Pareto front, ``trials.csv``.
- ``verify``: ``--verify``, finalists measured on the devices at hand.
- ``run``: orchestration: strategy, then the run directory (best_arch.json, trials.csv, Pareto front, exported
  winner, run.json).
"""
