"""The package's layering, checked on its source (issue #27): no import loop anywhere, not even one held by
``TYPE_CHECKING`` or by an import inside a function; no loop between rooms (the packages ``nas/cli``,
``nas/search``, ``nas/latency``, ..., the files directly in ``nas/``, and ``supernet``), i.e. no arrow back up;
``supernet`` imports only the torch-free core of ``nas``; Optuna's insides are reached from one module; and the
modules the command line needs to parse its arguments import without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "supernet")
# what supernet/ may import from nas: the torch-free core (and the data loaders its training reads)
SUPERNET_MAY_IMPORT = {"nas", "nas.space", "nas.errors", "nas.fileio", "nas.data", "nas.plots", "nas.ray_cluster",
                       "nas.schemas", "nas.registry"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, modules: dict[str, Path], type_checking: bool = False) -> set[str]:
    """Internal modules ``path`` imports at run time (top level or inside functions), and with ``type_checking``
    also those it imports for annotations only (under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skipped = set() if type_checking else {
        id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
        for stmt in node.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] in PACKAGES and n in modules}
    return out


def _graph(type_checking: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules, type_checking) - {name} for name, path in modules.items()}


def _room(module: str) -> str:
    """A package of its own (``nas.search``), the files directly in ``nas/`` (``nas``), or ``supernet``; the entry
    point ``nas.__main__`` stands apart (it imports the command line, which imports everything)."""
    parts = module.split(".")
    if module == "nas.__main__":
        return module
    return ".".join(parts[:2]) if len(parts) > 1 and (ROOT / parts[0] / parts[1]).is_dir() else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loop_inside_the_package():
    """Not even through ``TYPE_CHECKING``: a loop held only by annotations is still two modules that cannot be
    understood, or moved, one without the other."""
    graph = _graph(type_checking=True)
    assert len(graph) > 40 and graph["nas.cli"]      # the scan found the package and its imports
    assert "nas.latency.counts" in graph["nas.export.card"]    # an import inside a function is seen
    assert _cycles(graph) == []


def test_no_room_imports_a_room_that_imports_it_back():
    rooms: dict[str, set[str]] = {}
    for module, targets in _graph(type_checking=True).items():
        rooms.setdefault(_room(module), set()).update(_room(t) for t in targets if _room(t) != _room(module))
    assert {"nas", "nas.cli", "nas.search", "nas.latency", "supernet"} <= set(rooms)
    assert _cycles(rooms) == [], {room: sorted(targets) for room, targets in rooms.items()}


def test_optunas_insides_are_reached_from_one_module_only():
    """Optuna through its public API everywhere but ``nas/search/storage.py``, which fences (and tests, in
    tests/search/test_storage_seam.py) what the public API does not offer."""
    import re

    private = re.compile(r"\._(storage|trial_id|study_id)\b|\boptuna(\.\w+)*\._\w+|_CONSTRAINTS_KEY|_get_feasible")
    offenders = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for name, path in _modules().items()
                 if name != "nas.search.storage"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if private.search(line)]
    assert offenders == []


def test_supernet_imports_only_the_torch_free_core_of_nas():
    graph = _graph()
    wrong = {(m, dep) for m, deps in graph.items() if m.startswith("supernet")
             for dep in deps if dep.startswith("nas") and dep not in SUPERNET_MAY_IMPORT}
    assert wrong == set()


def test_argument_parsing_and_torch_free_modules_import_without_torch():
    """The CLI builds its whole parser (every command's choices and defaults) with torch unavailable."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import nas.space, nas.export.formats, nas.latency.coreml.units, nas.latency.paths, nas.search.strategy\n"
            "import supernet.config, nas.plots\n"
            "from nas.cli import build_parser; build_parser().parse_args(['space', 'show'])\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_every_registry_refuses_a_name_given_twice():
    """As timm's registry: a plug-in registered under a taken name is an error, never a silent replacement."""
    import pytest
    import torch

    from nas.data.builtin import _REGISTRY, register
    from nas.export.formats import FORMATS, register_format
    from nas.latency.backends import CpuBackend, register_backend
    from nas.latency.devices import Device, register_device
    from nas.latency.remote import PACKAGE_FORMATS, register_package_format
    from nas.search.objectives import OBJECTIVES, register_objective
    from nas.search.strategy import STRATEGIES, register_strategy
    from nas.search.zero_cost import zero_cost
    from supernet.distill import DISTILLATIONS, distillation
    from supernet.mixers import get_mixer, register_mixer
    from supernet.sampling import SAMPLERS, sampler

    mhsa = get_mixer("mhsa")
    attempts = [
        lambda: register_format(FORMATS["pt"]),
        lambda: register_device(Device("cpu", "cpu")),
        lambda: register_backend("cpu", CpuBackend),
        lambda: register_mixer("mhsa", torch.nn.Identity, mhsa.elastic_cls, knobs=()),
        lambda: zero_cost("synflow")(lambda *a: 0.0),
        lambda: distillation(next(iter(DISTILLATIONS)))(lambda *a: (0, 0)),
        lambda: sampler(next(iter(SAMPLERS)))(lambda *a: []),
        lambda: register(next(iter(_REGISTRY.values()))),
        lambda: register_strategy("slim", STRATEGIES["evolution"]),
        lambda: register_objective("capacity", OBJECTIVES["naswot"]),
        lambda: register_package_format(PACKAGE_FORMATS["onnx"]),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError, match="already registered"):
            attempt()

