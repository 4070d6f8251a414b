"""The package's shape: no import cycles, and modules small enough to hold in one's head.

Read from the source (an AST walk), not by importing it, so the checks cost milliseconds and
see imports inside functions too. An import that runs counts, at module level or inside a
function (a lazy import is still a dependency); one under `if TYPE_CHECKING:` does not: it
never runs, and it lets a module name the type of the facade that calls it (`Lake`).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xray_lake"
MAX_LINES = 400

# Modules allowed over MAX_LINES. The query tree (nodes, the typed builder over them) is one
# closed vocabulary and stays whole; every other entry is a module still to be split, named
# so that it cannot grow silently and must leave this list once it is split.
OVER_MAX_LINES: dict[str, str] = {
    "query/nodes.py": "the query tree: every node type in one place",
    "query/builder.py": "the typed builder over the query tree",
}

# Cycles not yet broken, as sets of modules; each must leave this list once broken.
KNOWN_CYCLES: list[frozenset[str]] = []


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The package modules `module` imports when it runs (TYPE_CHECKING blocks left out)."""

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def walk(node: ast.AST) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (n for stmt in child.orelse for n in walk_one(stmt))
                continue
            yield from walk_one(child)

    def walk_one(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := owner(alias.name)) is not None:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:
                target = owner(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules \
                    else owner(base)
                if target is not None:
                    yield target
        else:
            yield from walk(node)

    for target in walk(ast.parse(path.read_text(encoding="utf-8"))):
        if target != module and target.startswith("xray_lake"):
            yield target


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(name, path, modules)) for name, path in modules.items()}


def test_the_cycle_finder_finds_a_cycle_and_nothing_else() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph()
    assert "xray_lake.sdk.decorators" in graph and graph["xray_lake.cli.root"]
    new = [sorted(c) for c in _cycles(graph) if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}; move what both need into a module below them"


def test_every_known_cycle_is_still_there() -> None:
    cycles = _cycles(_graph())
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not gone, f"cycles broken (well done): remove {gone} from KNOWN_CYCLES"


def _lines() -> dict[str, int]:
    return {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
            for p in PACKAGE.rglob("*.py")}


def test_no_module_is_over_the_line_budget_but_the_listed_ones() -> None:
    over = {name: n for name, n in _lines().items() if n > MAX_LINES and name not in OVER_MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}; split them by job"


def test_every_listed_module_is_still_over_the_line_budget() -> None:
    lines = _lines()
    done = [name for name in OVER_MAX_LINES if lines.get(name, 0) <= MAX_LINES]
    assert not done, f"{done} are split or gone: remove them from OVER_MAX_LINES"


COMPACTION = "xray_lake.storage.compaction"
# Who may import which compaction module; readers (query, catalog, doctor) import the protocol.
COMPACTION_USERS = {
    "xray_lake": {"api"},  # xr.compact
    "xray_lake.cli.compact": {"api", "report"},
    "xray_lake.storage.spool": {"protocol", "locks"},  # replay holds the partition lock
}


def test_readers_import_only_the_compaction_protocol() -> None:
    wrong = {}
    for module, targets in _graph().items():
        if module.startswith(COMPACTION):
            continue
        allowed = {f"{COMPACTION}.{m}" for m in COMPACTION_USERS.get(module, set())}
        allowed |= {f"{COMPACTION}.protocol", f"{COMPACTION}.background"} \
            if module.startswith("xray_lake.writer") else {f"{COMPACTION}.protocol"}
        bad = {t for t in targets if t.startswith(COMPACTION) and t not in allowed}
        if bad:
            wrong[module] = sorted(bad)
    assert not wrong, f"import the compaction protocol, not the compactor: {wrong}"


def test_compaction_modules_import_no_private_name_of_each_other() -> None:
    private = []
    for path in (PACKAGE / "storage" / "compaction").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xray_lake"):
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_")]
    assert not private, private
