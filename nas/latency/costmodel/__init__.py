"""A latency cost model for devices that cannot be measured here: a roofline over traced ops, fitted to published
end-to-end latencies.

Per op (``nas.latency.trace``)::

    t_op = max(flops / peak, bytes * multiplier[category] / bandwidth) + per_op
    t_model = fixed + sum(t_op)

- ``peak`` and ``bandwidth`` are the compute and memory terms; dense ops are the reference (multiplier 1).
- The multipliers price what EfficientFormer found slow on phones: layout changes (reshape/transpose), LayerNorm,
  softmax, and activations Core ML has to decompose (SiLU, HardSwish). Depthwise and plain elementwise ops get their
  own multiplier because the Neural Engine streams them at a different rate than dense ops.
- ``per_op`` is the dispatch cost of one kernel, ``fixed`` the per-inference cost (input copy, ANE hand-off). In a
  lookup table built from the model, ops carry ``t_op`` and ``fixed`` becomes the table's correction offset, so the
  table and the model predict the same number for the same network.

Fitting: weighted least squares on log(predicted / published), so every model counts by its relative error; rows
read off a plot weigh 0.5 (the calibration README asks for less weight). The multipliers have a Gaussian prior at
1 (``PRIOR_STRENGTH`` on their log): a multiplier the data cannot pin down (say the layout cost when the only
reshape-heavy family is held out) stays near "costs what any memory op costs" instead of extrapolating wildly.
Ten parameters over about twenty models is only honest with that prior and with cross-validation, which the
calibration report does by leaving out each model and each family.

Modules: ``model`` (the ``CostModel`` and its file), ``published`` (published latencies and timm models to trace),
``fit`` (the weighted least-squares fit), ``calibration`` (the cross-validated report against a MACs-linear
baseline), ``estimate`` (a whole table priced by the model).
"""
