"""The package layers: the driver (tpc/) uses dialects and passes, which use neither the driver
nor the run-time; the run-time uses the passes it needs to build code (the LLVM pipeline) but
never the driver; tpc.diagnostics (locations and the error types) is a leaf every layer may use.
And the import graph has no cycle at module level."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = {"tpc": ROOT / "tpc", "tpc.dialects": ROOT / "dialects",
            "tpc.passes": ROOT / "passes", "tpc.runtime": ROOT / "runtime"}
LEAVES = {"tpc.diagnostics"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.glob("*.py"):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return out


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    known = set(modules())
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tpc"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            # `from tpc import compiler` imports the submodule; `from tpc.x import f`, x
            found |= subs if len(subs) == len(node.names) else subs | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tpc")}
    return found & set(modules())


def layer(module: str) -> str:
    if module in LEAVES:
        return "leaf"
    for pkg in ("tpc.dialects", "tpc.passes", "tpc.runtime"):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return "tpc"


ALLOWED = {
    "tpc.dialects": {"tpc.dialects", "leaf"},
    "tpc.passes": {"tpc.dialects", "tpc.passes", "leaf"},
    "tpc.runtime": {"tpc.runtime", "tpc.passes", "tpc.dialects", "leaf"},
    "leaf": set(),
}


def test_no_layer_imports_above_itself():
    bad = []
    for name, path in modules().items():
        own = layer(name)
        if own == "tpc":
            continue
        for imp in imports(path):
            if layer(imp) not in ALLOWED[own]:
                bad.append(f"{name} imports {imp}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_at_module_level():
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in modules().items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if state.get(node) is None and visit(node, [node]):
            break
    assert not cycle, " -> ".join(cycle)
