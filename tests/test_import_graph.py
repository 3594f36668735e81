"""No import circle inside gemfuse, counting imports inside functions too; the backends know nothing of fusion,
the config file or the server."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "gemfuse"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "gemfuse.models.backends" in graph["gemfuse.config"]  # imported inside load_config()
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_backends_know_nothing_of_fusion_config_or_server():
    graph = import_graph()
    above = ("gemfuse.fusion", "gemfuse.config", "gemfuse.registry", "gemfuse.serve", "gemfuse.commands")
    leaks = {name: sorted(t for t in targets if t.startswith(above))
             for name, targets in graph.items() if name.startswith("gemfuse.models")}
    assert not {name: t for name, t in leaks.items() if t}


@pytest.mark.heavy
def test_a_backend_plugin_import_loads_no_fusion_registry_or_config():
    import subprocess
    import sys

    probe = ("import sys, gemfuse.models.base; "
             "print(sorted(m for m in sys.modules if m.startswith(('gemfuse.fusion', 'gemfuse.registry', "
             "'gemfuse.config', 'gemfuse.serve'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.heavy
def test_the_command_line_starts_light():
    """`import gemfuse.cli` (what every `gemfuse` command and `--help` pays) reaches few of gemfuse's modules and
    none of the heavy libraries: each command imports what it needs when it runs."""
    import subprocess
    import sys

    probe = ("import sys, json, gemfuse.cli; print(json.dumps([sorted(m for m in sys.modules if m.startswith("
             "'gemfuse')), sorted(m for m in ('rich', 'torch', 'aiohttp', 'fastapi', 'numpy', 'transformers') "
             "if m in sys.modules)]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    import json

    modules, heavy = json.loads(done.stdout)
    assert len(modules) <= 30 and heavy == [], (len(modules), heavy, modules)


def test_a_lazy_face_keeps_a_functions_name_when_its_namesake_module_loads():
    import importlib
    import types

    from gemfuse import distil, tune

    for module in ("gemfuse.distil.label", "gemfuse.distil.filter", "gemfuse.tune.train"):
        importlib.import_module(module)
    from gemfuse.distil import filter as filter_rows

    assert not isinstance(distil.label, types.ModuleType) and distil.label.__module__ == "gemfuse.distil.api"
    assert filter_rows.__module__ == "gemfuse.distil.api" and tune.train.__module__ == "gemfuse.tune.train"
    assert callable(tune.train)


# The layers, highest first. A module imports its own layer or a lower one only; layers of one rank (evals, tune
# and weights; models and data) do not import each other.
RANKS = {
    "gemfuse.testing": 9, "gemfuse": 8, "gemfuse.cli": 7.5, "gemfuse.commands": 7,
    "gemfuse.serve": 6, "gemfuse.dashboard": 5.6,
    "gemfuse.api": 5.5, "gemfuse.distil": 5.2, "gemfuse.registry": 5, "gemfuse.finetune_gguf": 4.5,
    "gemfuse.evals": 4, "gemfuse.tune": 4, "gemfuse.weights": 4, "gemfuse.tune.guests": 3.9,
    "gemfuse.config": 3.5, "gemfuse.capture": 3.2,
    "gemfuse.fusion": 3,
    "gemfuse.models": 2, "gemfuse.data": 2,
    "gemfuse.families": 1.8,
    "gemfuse.processors": 1.6, "gemfuse.files": 1.6, "gemfuse.devices": 1.5, "gemfuse.gguf_tools": 1.6,
    "gemfuse.gguf_layout": 0.3,
    "gemfuse.prompted_tools": 1.2, "gemfuse.messages": 1, "gemfuse.tool_calls": 0.9, "gemfuse.json_schema": 0.8,
    "gemfuse.quiet": 0.7,
    "gemfuse.memory": 0.5, "gemfuse.paths": 0.5, "gemfuse._lazy": 0.5, "gemfuse.shapes": 0.5, "gemfuse._sync": 0.5,
    "gemfuse._json": 0.3, "gemfuse._torchvision": 0.5,
    "gemfuse.errors": 0,
}


def layer(module: str) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in RANKS:
            return ".".join(parts[:end])
    raise AssertionError(f"{module} has no layer: give it a rank in RANKS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        own = layer(module)
        for target in targets:
            other = layer(target)
            if other != own and RANKS[other] >= RANKS[own]:
                wrong.append(f"{module} ({RANKS[own]}) imports {target} ({RANKS[other]})")
    return sorted(wrong)


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_the_guests_are_a_leaf_of_tune_entered_by_their_door():
    """tune/guests (the code standing in for libraries' own) imports nothing else of tune/, and the rest of tune/
    imports only its package, never one of its modules."""
    graph, room = import_graph(), "gemfuse.tune.guests"
    inside = [m for m in graph if m == room or m.startswith(room + ".")]
    assert len(inside) >= 8
    out = [f"{m} imports {t}" for m in inside for t in graph[m] if t.startswith("gemfuse.tune") and
           not (t == room or t.startswith(room + "."))]
    side_doors = [f"{m} imports {t}" for m in graph if m.startswith("gemfuse.tune.") and m not in inside
                  for t in graph[m] if t.startswith(room + ".")]
    assert out == [] and side_doors == []


def test_the_layer_check_sees_upward_and_sideways_imports():
    graph = {"gemfuse.config": {"gemfuse.serve.schemas", "gemfuse.fusion.preset"},
             "gemfuse.weights.plan": {"gemfuse.tune.memory"}, "gemfuse.tune.loop": {"gemfuse.tune.loss"},
             "gemfuse.tune.guests.guard": {"gemfuse.tune.run_writer"}}
    assert upward_imports(graph) == ["gemfuse.config (3.5) imports gemfuse.serve.schemas (6)",
                                     "gemfuse.tune.guests.guard (3.9) imports gemfuse.tune.run_writer (4)",
                                     "gemfuse.weights.plan (4) imports gemfuse.tune.memory (4)"]
