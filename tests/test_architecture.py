"""The layering of ``../shared/STYLE.md``, checked on the source: no import cycle in the core, and
the core and the validation package never import torch, Lightning, Prefect or the layers above.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a deferred
import hides a cycle from the interpreter, not from a reader.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "nightrec": {"torch", "lightning", "torchmetrics", "prefect", "expectations", "lightning_modules", "flows"},
    "expectations": {"torch", "lightning", "torchmetrics", "prefect", "lightning_modules", "flows"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """Absolute module names ``path`` imports; ``from a import b`` names ``a.b`` when that is a module."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    modules = package_modules(package)
    return {name: imported_names(path, name) & modules.keys() - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_core_has_no_import_cycle():
    cycle = find_cycle(import_graph("nightrec"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_core_and_validation_never_import_torch_prefect_or_the_layers_above():
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for name, path in package_modules(package).items():
            for imported in imported_names(path, name):
                if imported.split(".")[0] in forbidden:
                    bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_every_stage_of_the_diagram_is_a_package_of_the_core():
    for stage in ("ingest", "sequences", "behavior", "fallback", "publish", "evaluation"):
        assert (ROOT / "nightrec" / stage / "__init__.py").is_file(), stage


def test_flows_stay_thin():
    """``flows/`` only sequences the core: no module over 300 lines, no function over 60."""
    too_big = []
    for path in sorted((ROOT / "flows").rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > 300:
            too_big.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                too_big.append(f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_big, "\n".join(too_big)
