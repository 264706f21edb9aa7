"""The package's imports go one way (docs/architecture.md): no import cycle, and the player process
(player/*, vocab, errors, commands, client) never imports torch.

Read from the source, not from a running interpreter: an import inside a function counts as an edge
too (it runs sooner or later), and the check needs none of the optional MIDI or audio packages.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "deepdrummer_live"
NAME = PACKAGE.name

# The layers, lowest first (docs/architecture.md): a module imports its own layer and those below, never above.
# Top-level modules and subpackages are named by their first part under the package.
LAYERS = (
    ("vocab", "errors", "paths", "progress"),
    ("commands", "sound", "loop", "client", "testing", "playback"),
    ("storage", "player"),
    ("learn",),
    ("worker",),
    ("session",),
    ("experiment", "surfaces"),
    ("cli", "pytest_plugin"),
)

# The player process and what a DAW macro imports: light enough to start in milliseconds.
TORCH_FREE = ("player", "vocab", "errors", "commands", "client", "loop")
HEAVY = ("torch",)


def modules() -> dict[str, Path]:
    """Module name -> its file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in the file, in functions and TYPE_CHECKING blocks too.
    Relative imports are resolved against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parts = path.relative_to(REPO).with_suffix("").parts
    package = parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names]))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (`from pkg import mod` is an edge to pkg.mod)."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        for module, names in _imports(path):
            if module != NAME and not module.startswith(NAME + "."):
                continue
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in mods]
            if len(targets) < len(names) and module in mods:
                targets.append(module)  # names defined in the module itself
            graph[name].update(t for t in targets if t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def reachable(graph: dict[str, set[str]], roots) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo += graph.get(v, ())
    return seen


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert f"{NAME}.commands" in graph[f"{NAME}.session"]  # Session.control imports the table when it runs


def test_no_import_cycle_in_the_package():
    found = cycles(import_graph())
    assert found == [], "import cycles (cut each so imports go one way, see docs/architecture.md): " + "; ".join(
        " <-> ".join(c) for c in found)


def _layer(module: str) -> int | None:
    part = module.split(".")[1] if "." in module else None
    return next((i for i, names in enumerate(LAYERS) if part in names), None)


def test_every_module_has_a_layer():
    assert [m for m in modules() if m != NAME and _layer(m) is None] == []


def test_imports_go_down_the_layers():
    upward = [f"{a} imports {b}" for a, targets in import_graph().items() for b in sorted(targets)
              if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)]
    assert upward == [], "imports go one way (docs/architecture.md): " + "; ".join(upward)


def test_the_player_process_never_imports_torch():
    """Read from the source: every module the player process's modules reach, including imports inside
    functions, imports no torch."""
    graph = import_graph()
    roots = [m for m in graph if m.split(".")[1:2] and m.split(".")[1] in TORCH_FREE]
    assert f"{NAME}.player.sequencer" in roots and f"{NAME}.vocab" in roots
    mods = modules()
    offenders = []
    for module in sorted(reachable(graph, roots)):
        for imported, _ in _imports(mods[module]):
            if imported.split(".")[0] in HEAVY:
                offenders.append(f"{module} imports {imported}")
    assert offenders == [], "the player process must start without torch: " + "; ".join(offenders)


def test_the_player_process_modules_load_without_torch():
    """The same at run time: importing them leaves torch out of sys.modules (optional MIDI/audio packages
    that are not installed here are skipped, not failed)."""
    names = sorted(m for m in modules() if m.split(".")[1:2] and m.split(".")[1] in TORCH_FREE)
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError as exc:\n"
            "        if (exc.name or '').startswith('deepdrummer_live'):\n"
            "            raise\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
