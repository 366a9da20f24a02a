"""EfficientFormer's slimming as the paper runs it: importance-guided actions from a --gumbel supernet, slot
identity, each distinct candidate evaluated once, size limits beside latency, MES, and the whole front."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from nas.search.budgets import Budgets
from nas.search.objectives import CapacityProxy
from nas.search.slim import SlimSettings, actions, guided_actions, slim
from nas.search.workers import LocalEvaluator
from supernet.checkpoint import load_importance
from tests.helpers import run_nas


class CountingEvaluator(LocalEvaluator):
    """The real objective, with a tally of every arch it was asked to evaluate."""

    def __init__(self, objective):
        super().__init__(objective)
        self.asked: Counter[str] = Counter()

    def map(self, archs):
        self.asked.update(a.to_json() for a in archs)
        return super().map(archs)


def _budgets(tiny, table, fraction: float, **limits) -> Budgets:
    probe = Budgets.load(tiny, [1e9], ["iphone12"], {"iphone12": str(table)})
    fastest, largest = probe.fastest(tiny)["iphone12"], probe.latencies(tiny.largest())["iphone12"]
    return Budgets.load(tiny, [fastest + fraction * (largest - fastest)], ["iphone12"], {"iphone12": str(table)},
                        **limits)


def _slim(tmp_path, tiny, budgets, mode, importance=None, **settings):
    objective = CapacityProxy(tiny)
    evaluator = CountingEvaluator(objective)
    record = tmp_path / f"slim-{mode}-{len(list(tmp_path.glob('slim-*.json')))}.json"   # a fresh record per call
    state = slim(tiny, objective, budgets, evaluator, record,
                 settings=SlimSettings(actions=mode, **settings), importance=importance)
    return state, evaluator


def test_guided_actions_are_few_and_follow_importance(tiny, gumbel_ckpt):
    importance = load_importance(gumbel_ckpt)
    arch = tiny.largest()
    guided, every = guided_actions(arch, tiny, importance), actions(arch, tiny)
    assert 3 <= len(guided) <= 5 < len(every)
    identity = next(name for name, _ in guided if name.startswith("identity"))
    least = min((b for b in arch.blocks()), key=lambda b: importance.metapath[(b.stage, b.slot)])
    assert identity.startswith(f"identity for stage {least.stage + 1} position {least.slot + 1}")
    every_arch = {c.to_json() for _, c in every}
    assert all(c.to_json() in every_arch for _, c in guided)      # guided actions are a subset of all actions


@pytest.mark.parametrize("mode", ["importance", "all"])
def test_slimming_reaches_the_budget_evaluating_each_candidate_once(tmp_path, tiny, tiny_iphone12, gumbel_ckpt,
                                                                    mode):
    budgets = _budgets(tiny, tiny_iphone12, 0.3)
    state, evaluator = _slim(tmp_path, tiny, budgets, mode, load_importance(gumbel_ckpt))
    steps = state["steps"]
    assert steps[-1]["feasible"] and not any(s["feasible"] for s in steps[:-1])
    assert steps[-1]["latency_ms"]["iphone12"] <= budgets.primary.budget_ms
    assert max(evaluator.asked.values()) == 1                    # no arch evaluated twice, across steps too
    assert state["evaluations"] == len(evaluator.asked)
    if mode == "importance":
        assert all(s["action"].split()[0] in {"identity", "turn", "narrow", "MLP", "mixer"} for s in steps[1:])


def test_guided_uses_fewer_evaluations_than_exhaustive(tmp_path, tiny, tiny_iphone12, gumbel_ckpt):
    budgets = _budgets(tiny, tiny_iphone12, 0.3)
    guided, _ = _slim(tmp_path, tiny, budgets, "importance", load_importance(gumbel_ckpt))
    every, _ = _slim(tmp_path, tiny, budgets, "all")
    assert guided["evaluations"] * 2 < every["evaluations"]


def test_dropping_a_block_keeps_the_others_on_their_slots(tiny, gumbel_ckpt):
    arch = tiny.largest()
    dropped = dict(actions(arch, tiny))["drop block 1 of stage 1"]
    assert dropped.stage_slots(0) == (1,) and dropped.to_dict()["slots"][0] == [1]
    last = dict(actions(arch, tiny))["drop block 2 of stage 1"]
    assert "slots" not in last.to_dict()                          # dropping the last block is the old prefix


def test_size_limit_holds_in_slimming_and_mes_trades_size(tmp_path, tiny, tiny_iphone12):
    loose = _budgets(tiny, tiny_iphone12, 0.8)
    free, _ = _slim(tmp_path, tiny, loose, "all")
    limit = 0.7 * free["steps"][-1]["sizes"]["params_m"]
    limited = _budgets(tiny, tiny_iphone12, 0.8, max_params_m=limit)
    state, _ = _slim(tmp_path, tiny, limited, "all")
    assert state["steps"][-1]["sizes"]["params_m"] <= limit and state["steps"][-1]["feasible"]
    by_mes, _ = _slim(tmp_path, tiny, limited, "all", trade="mes")
    assert by_mes["config"]["trade"] == "mes" and by_mes["steps"][-1]["feasible"]
    assert by_mes["steps"][-1]["sizes"]["params_m"] <= limit


def test_pareto_goes_past_the_budget_to_the_end_of_the_front(tmp_path, tiny, tiny_iphone12):
    budget = _budgets(tiny, tiny_iphone12, 0.5).primary.budget_ms
    run = tmp_path / "run"
    proc = run_nas("search", "--space", "tiny", "--budget-ms", str(budget), "--device", "iphone12", "--lut",
                   f"iphone12={tiny_iphone12}", "--strategy", "slim", "--pareto", "--out", str(run), "--json",
                   "--no-progress", "--export", "none")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    steps = json.loads((run / "slim.json").read_text())["steps"]
    feasible = [s["feasible"] for s in steps]
    assert feasible.index(True) < len(steps) - 2                  # went on past the first arch under the budget
    assert all(feasible[feasible.index(True):])
    pareto = json.loads((run / "pareto.json").read_text())
    assert len(pareto["path"]) == len(steps) and pareto["front_with_size"]
    assert result["slim"]["pareto"] and result["best"]["latency_ms"] <= budget


def test_max_params_holds_for_optuna_too(tmp_path, tiny, tiny_iphone12):
    budget = _budgets(tiny, tiny_iphone12, 0.9).primary.budget_ms
    common = ["search", "--space", "tiny", "--budget-ms", str(budget), "--device", "iphone12", "--lut",
              f"iphone12={tiny_iphone12}", "--trials", "12", "--json", "--no-progress", "--export", "none"]
    free = json.loads(run_nas(*common, "--out", str(tmp_path / "free")).stdout)["best"]
    limit = round(0.8 * free["details"]["params_m"], 4)
    proc = run_nas(*common, "--max-params", str(limit), "--out", str(tmp_path / "limited"))
    assert proc.returncode == 0, proc.stderr
    best = json.loads(proc.stdout)["best"]
    assert best["details"]["params_m"] <= limit < free["details"]["params_m"]


@pytest.mark.parametrize("extra, words", [
    (["--strategy", "slim", "--actions", "importance"], "needs MetaPath importances"),
    (["--pareto"], "--pareto: a setting of --strategy slim; add --strategy slim"),
    (["--objective", "mes", "--actions", "all"], "--actions, --objective: settings of --strategy slim"),
    (["--strategy", "evolution", "--pareto"], "a setting of --strategy slim"),
    (["--strategy", "slim", "--population", "8"], "--population: a setting of --strategy evolution"),
    (["--strategy", "evolution", "--population", "1"], "--population 1: accepted a number in [2, 100000]"),
    (["--max-params", "0"], "positive number"),
    (["--max-params", "0.0001"], "cannot be met"),
    (["--max-macs", "0.000001"], "cannot be met"),
    (["--val-images", "10"], "--supernet CKPT"),
])
def test_bad_slimming_input_exits_2_in_one_line(tmp_path, tiny_iphone12, extra, words):
    proc = run_nas("search", "--space", "tiny", "--budget-ms", "10", "--device", "iphone12", "--lut",
                   f"iphone12={tiny_iphone12}", "--out", str(tmp_path / "r"), "--no-progress", "--export", "none",
                   *extra)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr


def test_efficientformer_procedure_end_to_end(tmp_path, tiny, tiny_iphone12, gumbel_ckpt):
    """The README's procedure: a --gumbel supernet, slimming guided by its importances (the default when it has
    them), the winner exported with the weights of the slots it kept."""
    import torch

    from supernet import EfficientFormerNet
    from supernet.checkpoint import load_supernet

    budget = _budgets(tiny, tiny_iphone12, 0.7).primary.budget_ms
    run = tmp_path / "run"
    proc = run_nas("search", "--space", "tiny", "--budget-ms", str(budget), "--device", "iphone12", "--lut",
                   f"iphone12={tiny_iphone12}", "--strategy", "slim", "--supernet", str(gumbel_ckpt), "--data",
                   "builtin:digits", "--val-images", "120", "--bn-images", "32", "--out", str(run), "--json",
                   "--no-progress", "--export", "pt")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["slim"]["actions"] == "importance" and result["best"]["latency_ms"] <= budget
    assert result["slim"]["evaluations"] <= 5 * (result["slim"]["steps"] - 1) + 1
    arch = tiny.arch_from_dict(json.loads((run / "best_arch.json").read_text()))
    config = json.loads((run / "export" / "model_config.json").read_text())
    model = EfficientFormerNet(**config)
    model.load_state_dict(torch.load(run / "export" / "model.pt", weights_only=True))
    net, _ = load_supernet(gumbel_ckpt)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), net.extract(arch).eval()(x), atol=1e-5)


def test_the_command_line_offers_what_each_plug_ins_settings_declare():
    """Each strategy's and objective's settings reach the parser from their dataclass alone: every field is an
    option, and what the command line makes of it is that dataclass with that field changed."""
    import dataclasses

    from nas.cli import build_parser
    from nas.cli.search import _chosen_settings
    from nas.search.objectives import OBJECTIVES, objective_options, objective_settings_type
    from nas.search.strategy import STRATEGIES, setting_options, settings_type

    parser, declared = build_parser(), 0
    for chooser, names, options_of, type_of in [("--strategy", STRATEGIES, setting_options, settings_type),
                                                ("--score", OBJECTIVES, objective_options, objective_settings_type)]:
        options = {name: options_of(name) for name in names}
        for name in names:
            cls = type_of(name)
            assert [o.field for o in options[name]] == ([f.name for f in dataclasses.fields(cls)] if cls else [])
            for o in options[name]:
                if isinstance(o.default, bool):
                    given, value = [o.flag], not o.default
                elif o.choices:
                    value = next(c for c in o.choices if c != o.default)
                    given = [o.flag, str(value)]
                elif o.default is None:
                    value = "given"
                    given = [o.flag, value]
                else:
                    value = o.maximum if o.maximum is not None else o.default * 2
                    given = [o.flag, str(value)]
                args = parser.parse_args(["search", chooser, name, *given])
                assert _chosen_settings(args, chooser, name, options, cls) == dataclasses.replace(cls(), **{
                    o.field: value})
                declared += 1
    # slimming's three, evolution's four, Optuna's three; the supernet objective's four, NASWOT's two
    assert declared >= 16
